from stg_cli.cli import main

main()
