"""DeGMix-Tuning on NYUD-v2: `accelerate launch recipes/tune_nyud.py --synthetic` (demo) or `--data-root NYUDv2/`."""

import sys

from degmix_tuning.training.recipe import main

if __name__ == "__main__":
    sys.exit(main("nyud"))
