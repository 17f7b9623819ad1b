"""`python -m benchmarks` (from the repository root): the same as `nerfgan-distill bench`,
writing to benchmarks/results/."""
import sys

from nerfgan_distill.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
