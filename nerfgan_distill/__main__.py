"""`python -m nerfgan_distill` is the nerfgan-distill command (so torchrun can launch it:
`torchrun --nproc-per-node 2 -m nerfgan_distill train ...`)."""
import sys

from .cli import main

sys.exit(main())
