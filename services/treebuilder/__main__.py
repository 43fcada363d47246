from services.treebuilder.app import main

main()
