"""`python -m bsnc` (and `torchrun -m bsnc`) runs the `bsnc` command."""

from bsnc.cli import main

main()
