"""The randomness of a run: one seed per process, and one per epoch that depends on
(seed, epoch, rank) only, so an epoch draws the same numbers whether the run was
resumed before it or not."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's random with `seed` (taken modulo 2**32)."""
    seed = int(seed) % (2 ** 32)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one epoch of one process: a function of (seed, epoch, rank) only."""
    return int(np.random.SeedSequence([int(seed) % (2 ** 32), int(epoch), int(rank)]).generate_state(1)[0])
