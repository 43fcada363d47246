from services.profiler.app import main

main()
