from patchbay.cli import main

main()
