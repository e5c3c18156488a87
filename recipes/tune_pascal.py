"""DeGMix-Tuning on PASCAL-Context: `accelerate launch recipes/tune_pascal.py --synthetic` or `--data-root PASCALContext/`."""

import sys

from degmix_tuning.training.recipe import main

if __name__ == "__main__":
    sys.exit(main("pascal"))
