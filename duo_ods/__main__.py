from duo_ods.cli.main import main

main()
