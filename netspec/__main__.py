"""`python -m netspec` is the `netspec` command (torchrun uses it: `torchrun -m netspec train ...`)."""

from .cli import main

main()
