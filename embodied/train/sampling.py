"""The order of training batches: reproducible, sharded across processes, resumable mid-epoch.

Batch ``b`` of a run (counted from 0 over all epochs) is a pure function of
``(seed, rank, world_size, b)``: epoch ``b // batches_per_epoch`` permutes the samples with a
generator seeded by ``(seed, epoch)``; each process takes every ``world_size``-th index of the
permutation (as ``DistributedSampler`` does, padded so that all processes see as many
batches); and the random draws made while the batch is read (the clip's start frame) come
from a generator seeded by ``(seed, epoch, position, rank)``. So a resumed run only needs the
batch counter to go on with exactly the batches an uninterrupted run would have seen, and
neither DataLoader workers nor the training process's own random draws change them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from embodied.data.reader import DemoDataset
from embodied.errors import UserError


def _seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from several integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class ShardedBatches:
    """An endless batch sampler: yields ``(read_seed, indices)`` from batch ``start`` on."""

    def __init__(
        self, num_samples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> None:
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size, self.start = rank, world_size, start
        self.per_rank = -(-num_samples // world_size)  # ceil: every process gets as many samples
        self.batches_per_epoch = self.per_rank // batch_size  # the last, short batch is dropped

    def position(self, batch: int) -> tuple[int, int]:
        """(epoch, batch within the epoch) of run batch ``batch``."""
        return divmod(batch, self.batches_per_epoch)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """This process's sample indices for ``epoch`` (per_rank,)."""
        order = np.random.default_rng(_seed(self.seed, epoch)).permutation(self.num_samples)
        padded = np.resize(order, self.per_rank * self.world_size)  # wrap around, as DistributedSampler pads
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        epoch, pos = self.position(self.start)
        while True:
            indices = self.epoch_indices(epoch)
            for p in range(pos, self.batches_per_epoch):
                chunk = indices[p * self.batch_size : (p + 1) * self.batch_size]
                yield _seed(self.seed, epoch, p, self.rank), chunk.tolist()
            epoch, pos = epoch + 1, 0


class MixedBatches(ShardedBatches):
    """Batches of a fixed mixture: the first ``rows`` of each from ``subset`` (the samples of the
    action demos, in learning by watching), the other ``batch_size - rows`` from every sample, as
    :class:`ShardedBatches` draws them (co-training's fixed sampling ratio: every method then
    learns behaviour cloning from as many rows a step, whatever it watches besides). Each part
    is a stream of its own, the subset's under its own seed tag, so batch ``b`` stays a pure
    function of ``(seed, rank, world_size, b)`` and a resume needs only the batch counter;
    epochs count the whole set's part."""

    def __init__(
        self,
        subset: np.ndarray,
        num_samples: int,
        batch_size: int,
        rows: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
    ) -> None:
        if not 0 < rows < batch_size:
            raise UserError(
                f"data.action_rows must be in 1..{batch_size - 1} (below data.batch_size), got {rows}"
            )
        super().__init__(num_samples, batch_size - rows, seed, rank, world_size, start)
        self.subset = np.asarray(subset)
        self.part = ShardedBatches(len(self.subset), rows, _seed(seed, _SUBSET_STREAM), rank, world_size)
        if self.part.batches_per_epoch == 0:
            raise UserError(
                f"the action demos have {self.part.per_rank} samples per process, fewer than "
                f"data.action_rows={rows}"
            )

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        self.part.start = self.start
        for (read_seed, rest), (_, mine) in zip(super().__iter__(), self.part, strict=False):
            yield read_seed, self.subset[mine].tolist() + rest


class SeededReads(torch.utils.data.Dataset):
    """Wrap a :class:`DemoDataset` so that each batch is read under its own random seed."""

    def __init__(self, dataset: DemoDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, item: tuple[int, list[int]]) -> dict:
        seed, indices = item
        with torch.random.fork_rng(devices=[]):  # leave the caller's generator untouched
            torch.manual_seed(seed)
            return self.dataset.__getitems__(indices)


_VALIDATION_STREAM = 1 << 40
"""Seed tag of the validation subset, far from any epoch number."""

_SUBSET_STREAM = 1 << 41
"""Seed tag of :class:`MixedBatches`' subset stream."""


def _identity(batch: dict) -> dict:
    return batch


def train_loader(
    dataset: DemoDataset, sampler: ShardedBatches, num_workers: int
) -> torch.utils.data.DataLoader:
    """An endless loader of whole batches in the sampler's order."""
    return torch.utils.data.DataLoader(
        SeededReads(dataset),
        batch_sampler=sampler,
        collate_fn=_identity,
        num_workers=num_workers,
        # Its own generator, so that starting the loader draws nothing from the global one.
        generator=torch.Generator().manual_seed(sampler.seed),
        persistent_workers=False,
    )


def batches_of(loader: torch.utils.data.DataLoader) -> Iterator[dict]:
    """The loader's batches. A :class:`UserError` that a worker process raised while reading (a
    checksum failure) keeps its one line: torch re-raises it in this process with the worker's
    whole traceback in the message."""
    it = iter(loader)
    while True:
        try:
            yield next(it)
        except StopIteration:
            return
        except UserError as err:
            text = str(err).rstrip()
            if "Original Traceback" not in text:
                raise
            raise UserError(text.splitlines()[-1].partition("UserError: ")[2] or text) from None


def fixed_subset(num_samples: int, count: int, seed: int) -> np.ndarray:
    """``count`` sample indices spread over the whole set, the same on every call (validation)."""
    order = np.random.default_rng(_seed(seed, _VALIDATION_STREAM)).permutation(num_samples)
    return order[:count]
