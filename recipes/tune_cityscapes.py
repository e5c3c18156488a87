"""DeGMix-Tuning on Cityscapes (semseg + depth): `accelerate launch recipes/tune_cityscapes.py --synthetic` (demo on
synthetic streets) or `--data-root cityscapes/` (samples read at data.crop_size, default 256x512)."""

import sys

from degmix_tuning.training.recipe import main

if __name__ == "__main__":
    sys.exit(main("cityscapes"))
