"""`python -m piu` runs the CLI."""

from piu.cli import main

main()
