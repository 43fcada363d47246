from services.searcher.app import main

main()
