"""`python -m stoker.cli ...`: the same command as `stoker ...`."""

from stoker.cli.commands import main

main()
