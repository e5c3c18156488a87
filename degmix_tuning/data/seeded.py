"""Per-sample seeds for random augmentation.

A DataLoader's worker processes and a resumed run each start from their own RNG state, so augmentation drawn from
the global RNGs would differ between a fresh and a resumed run, or between worker counts. Seeding each sample from
(seed, epoch, index) makes the augmented sample the same wherever and whenever it is loaded.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset


class SeededSamples(Dataset):
    """Makes augmentation a pure function of (seed, epoch, index): exact resume, identical across worker counts."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int):
        sample_seed = (self.seed * 1_000_003 + self.epoch * 10_007 + index) % (2**31)
        np_state, py_state = np.random.get_state(), random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            np.random.seed(sample_seed)
            random.seed(sample_seed)
            try:
                return self.dataset[index]
            finally:
                np.random.set_state(np_state)
                random.setstate(py_state)
