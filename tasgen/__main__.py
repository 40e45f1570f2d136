from tasgen_cli.app import main

main()
