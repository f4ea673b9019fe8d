"""`python -m dlopt.cli` is the same as the `dlopt` command."""

from dlopt.cli.app import main

main()
