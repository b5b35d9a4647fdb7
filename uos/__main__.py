from uos.cli import main

main()
