"""Reproducible randomness for training: seeding, and an order of batches that is a function of
(seed, epoch, rank) and can start in the middle of an epoch, so a resumed run reads what the uninterrupted
run would have read."""
from __future__ import annotations

import random
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["derive_seed", "seed_all", "EpochBatchSampler", "TrainLoader"]


def derive_seed(*keys: int) -> int:
    """A seed in [0, 2**32) mixed from non-negative integer ``keys`` (numpy's SeedSequence): distinct key
    tuples give unrelated seeds, unlike ``seed + rank``."""
    if any(int(k) < 0 for k in keys):
        raise ValueError(f"seed keys must be non-negative integers, got {keys}")
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def seed_all(seed: int, rank: int = 0) -> int:
    """Seeds Python's ``random``, numpy's global RNG and torch (CPU and every CUDA device) of this process with
    ``derive_seed(seed, rank)``, and returns it. Call it once at the start of each process."""
    derived = derive_seed(seed, rank)
    random.seed(derived)
    np.random.seed(derived)
    torch.manual_seed(derived)
    return derived


class EpochBatchSampler(Sampler[List[int]]):
    """The batches of one epoch that one rank reads, from batch ``start`` on.

    The epoch's order is ``np.random.default_rng([seed, epoch]).permutation(size)`` (``0..size-1`` without
    ``shuffle``), the same on every rank. Its first ``batches_per_epoch * world_size * batch_size`` entries
    are dealt out: rank r takes positions r, r + world_size, r + 2 * world_size, ..., and cuts them into
    consecutive batches of ``batch_size``; the rest of the epoch is left out (every rank reads
    ``batches_per_epoch = size // (world_size * batch_size)`` full batches).
    """

    def __init__(self, size: int, *, batch_size: int, epoch: int, start: int = 0, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank} and "
                             f"{world_size}")
        self.batches_per_epoch = size // (world_size * batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"a dataset of {size} samples gives no full batch of {batch_size} to each of "
                             f"{world_size} processes")
        if not 0 <= start <= self.batches_per_epoch:
            raise ValueError(f"start batch {start} is outside the epoch's {self.batches_per_epoch} batches")
        self.size, self.batch_size, self.epoch, self.start = size, batch_size, epoch, start
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def __iter__(self) -> Iterator[List[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size) if self.shuffle \
            else np.arange(self.size)
        used = self.batches_per_epoch * self.world_size * self.batch_size
        shard = order[:used][self.rank::self.world_size].tolist()
        for b in range(self.start, self.batches_per_epoch):
            yield shard[b * self.batch_size:(b + 1) * self.batch_size]


class TrainLoader:
    """Endless training batches: epoch after epoch, each one ``DataLoader`` pass over ``EpochBatchSampler``.

    Before each epoch, ``dataset.set_epoch(epoch)`` is called when the dataset has it (DataLoader workers
    are started anew for each epoch, so they see it). The workers' RNGs are seeded by the DataLoader from a
    generator seeded with ``derive_seed(seed, epoch, rank)``, which leaves the process's global RNGs alone.
    A resumed epoch restarts those worker RNGs, so a dataset whose samples must be exactly reproducible
    draws its randomness from (seed, epoch, index), as ``s3d_det.data.ClipDataset`` does.

    ``state_dict()`` is the position of the next batch, ``{"epoch": e, "batch": b}``; after
    ``load_state_dict`` iteration continues from there.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, collate_fn: Optional[Callable[[list], Any]] = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True, num_workers: int = 0,
                 pin_memory: bool = False):
        self.dataset, self.batch_size, self.collate_fn = dataset, batch_size, collate_fn
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.epoch, self.batch = 0, 0

    def state_dict(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def __iter__(self) -> Iterator[Any]:
        while True:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.epoch)
            sampler = EpochBatchSampler(len(self.dataset), batch_size=self.batch_size, epoch=self.epoch,
                                        start=self.batch, seed=self.seed, rank=self.rank,
                                        world_size=self.world_size, shuffle=self.shuffle)
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, self.rank))
            loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate_fn,
                                num_workers=self.num_workers if len(sampler) else 0,
                                pin_memory=self.pin_memory, generator=generator)
            for batch in loader:
                self.batch += 1  # the position of the next batch, as the consumer sees it
                yield batch
            self.epoch, self.batch = self.epoch + 1, 0
