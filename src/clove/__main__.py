from clove.cli import main

main()
