"""`python -m inrkit.cli` and `torchrun -m inrkit.cli`: the same entry point as the `inrkit` script."""

from inrkit.cli import main

main()
