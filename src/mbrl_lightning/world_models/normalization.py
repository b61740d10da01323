"""Running mean and standard deviation of data, kept apart from the networks that use it."""

from __future__ import annotations

import torch
from torch import nn

from mbrl_lightning.distributed import gather_from_ranks


class RunningNormalizer(nn.Module):
    """Per-feature mean and standard deviation over all data seen (Chan et al. parallel update).

    Statistics are buffers, so they travel with checkpoints and devices.

    Args:
        size: number of features.
        min_std: floor of the standard deviation, so constant features do not explode.
    """

    def __init__(self, size: int, min_std: float = 1e-4) -> None:
        super().__init__()
        self.min_std = min_std
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(size, dtype=torch.float64))
        # (mean, std) in the dtype last asked for, with the key it was computed under: planners read
        # the statistics thousands of times per action, and recomputing the float64 std each time
        # cost more than the model's forward pass.
        self._cached_key: tuple | None = None
        self._cached: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``[..., size]`` into the statistics; under DDP, every rank's batch, in rank order.

        One process sees all the data; DDP ranks each see their own, and DDP would copy rank 0's
        buffers over the others' at every step: so every rank folds in all ranks' batches and all
        hold the statistics of all the data, as one process would.
        """
        x = x.reshape(-1, x.shape[-1]).to(torch.float64)
        n = x.shape[0]
        batch_mean = x.mean(0) if n else torch.zeros_like(self.mean)
        batch_m2 = ((x - batch_mean) ** 2).sum(0)
        for part in gather_from_ranks(torch.cat([batch_mean.new_tensor([n]), batch_mean, batch_m2])):
            self._fold(part[0], part[1:1 + self.mean.numel()], part[1 + self.mean.numel():])

    def _fold(self, n: torch.Tensor, batch_mean: torch.Tensor, batch_m2: torch.Tensor) -> None:
        """Chan et al.'s merge of one batch's count, mean and squared deviations."""
        if n == 0:
            return
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count.fill_(total)

    @property
    def std(self) -> torch.Tensor:
        """Standard deviation per feature (1 before any data)."""
        if self.count < 2:
            return torch.ones_like(self.mean)
        return (self.m2 / (self.count - 1)).sqrt().clamp_min(self.min_std)

    def stats(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation in ``dtype``; recomputed only after the statistics change.

        The key holds the buffers' version counters, which every in-place change bumps (``update``,
        ``load_state_dict``, a DDP buffer broadcast), so a stale value can never be returned.
        """
        key = (dtype, self.mean.device, self.count._version, self.mean._version, self.m2._version)
        if key != self._cached_key or self._cached is None:
            self._cached = (self.mean.to(dtype), self.std.to(dtype))
            self._cached_key = key
        return self._cached

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` in the dtype of ``x``."""
        mean, std = self.stats(x.dtype)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        mean, std = self.stats(x.dtype)
        return x * std + mean
