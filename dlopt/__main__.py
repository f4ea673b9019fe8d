"""`python -m dlopt` is the same as the `dlopt` command."""

from dlopt.cli.app import main

main()
