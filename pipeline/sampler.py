"""Prepared pairs -> training order: each epoch trains on its own draw of NSP pairs.

Pairs drawn once and repeated every epoch let a model memorise which B follows which
A on a small corpus. `prepare` therefore draws the training pairs `dupe_factor` times
(google-research/bert's name), tagging each row with its draw in column `epoch`; this
sampler gives epoch e the rows of draw e mod dupe_factor, shuffled, optionally grouped
by length. Trainer calls `set_epoch` on it before every epoch, also under accelerate.
"""

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices


class EpochDrawSampler(Sampler[int]):
    """Yields the indices of one draw per epoch; every epoch has the same length (the smallest draw's)."""

    def __init__(self, draws: np.ndarray, lengths: np.ndarray | None, *, batch_size: int, seed: int):
        self.by_draw = [np.flatnonzero(draws == d) for d in np.unique(draws)]
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.num_samples = min(len(rows) for rows in self.by_draw)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        rows = self.by_draw[self.epoch % len(self.by_draw)]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        rows = rows[torch.randperm(len(rows), generator=generator).numpy()[: self.num_samples]]
        if self.lengths is None:
            return iter(rows.tolist())
        # Batches of similar lengths pad less (LengthGroupedSampler's mega-batches, sorted by length within each);
        # then the batches in random order, the longest still first (any out-of-memory at once) and a short last
        # one still last (the loader cuts batches from this order): in sorted order every mega-batch would run from
        # long pairs to short, a trend across steps that a sentence head with a small signal does not learn through
        # (a tiny BERT's SOP stayed at chance; tests/test_sentence_learning.py).
        order = get_length_grouped_indices(self.lengths[rows].tolist(), self.batch_size, generator=generator)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        last = [batches.pop()] if len(batches) > 1 and len(batches[-1]) < self.batch_size else []
        middle = [batches[i + 1] for i in torch.randperm(len(batches) - 1, generator=generator).tolist()]
        return iter(rows[[i for batch in batches[:1] + middle + last for i in batch]].tolist())
