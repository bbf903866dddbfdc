"""`python -m piu` runs the CLI."""

from piu.launch import main

main()
