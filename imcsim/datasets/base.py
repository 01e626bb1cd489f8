"""The :class:`Dataset` record every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Dataset:
    """Images (N, C, H, W) in [0, 1], or event sequences (T, N, 2, H, W) of 0/1 spikes
    (``sample_dim`` 1: the layout a sequence network takes); int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    description: str
    sample_dim: int = 0

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[self.sample_dim + 1:])

    @property
    def timesteps(self) -> int | None:
        """Sequence length of an event dataset (None for images)."""
        return int(self.x_train.shape[0]) if self.sample_dim == 1 else None

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def take(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Samples start..stop of x (along the sample dimension)."""
        n = x.shape[self.sample_dim]
        stop = n if stop is None else min(stop, n)
        return x.narrow(self.sample_dim, start, max(0, stop - start))

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "Dataset":
        """The first n_train / n_test samples (None keeps all)."""
        return Dataset(self.name, self.take(self.x_train, 0, n_train), self.y_train[:n_train],
                       self.take(self.x_test, 0, n_test), self.y_test[:n_test],
                       self.description + (f"; first {n_train} train" if n_train else "")
                       + (f", first {n_test} test" if n_test else ""), self.sample_dim)
