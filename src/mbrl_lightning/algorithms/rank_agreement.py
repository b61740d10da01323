"""What DDP ranks must agree on: the split of each batch over ranks and the decisions taken from local data."""

from __future__ import annotations

import torch


class RankAgreement:
    """Mixin of :class:`RLModule`: per-rank shares of a batch and collectives over DDP ranks.

    Under DDP on N processes a run is the one-process run split over ranks: each rank collects
    ``frames_per_batch / N`` frames per step and learns from minibatches of ``1 / N`` the size,
    DDP averaging the gradients; every count of gradient steps that depends on local data is
    agreed through these collectives, or one rank would wait for the other forever.
    """

    @property
    def world_size(self) -> int:
        """Processes training together (1 without DDP)."""
        trainer = self._trainer
        return trainer.world_size if trainer is not None else 1

    def rank_collection(self) -> tuple[int, int]:
        """This rank's env copies and frames per batch: ``frames_per_batch`` is split over DDP ranks.

        The env copies are split too where ``env.num_envs`` divides by the process count, so the
        ranks together step the copies of one process; otherwise each rank steps them all.
        """
        ranks = self.world_size
        envs = self.env.num_envs // ranks if self.env.num_envs % ranks == 0 else self.env.num_envs
        return envs, self.frames_per_batch // ranks

    def per_rank(self, count: int) -> int:
        """A per-step sample count of one process (a minibatch) split over DDP ranks, at least 1 if positive."""
        return max(count // self.world_size, 1) if count > 0 else count

    def global_frames(self, local_frames: int) -> int:
        """Frames collected by all ranks together in this step (``local_frames`` without DDP)."""
        if self.world_size == 1:
            return local_frames
        total = self.trainer.strategy.reduce(torch.tensor(local_frames, device=self.device), reduce_op="sum")
        return int(total.item())

    def mean_over_ranks(self, value: float) -> float:
        """``value`` averaged over DDP ranks, for decisions that set how many gradient steps a rank takes.

        DDP synchronises gradients inside every backward pass, so all ranks must take the same
        number of them; a count derived from local data (say, a world model's held-out confidence)
        would otherwise differ between ranks and leave one waiting for the other forever.
        """
        if self.world_size == 1:
            return value
        total = self.trainer.strategy.reduce(torch.tensor(float(value), device=self.device), reduce_op="mean")
        return float(total.item())

    def sum_over_ranks(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over DDP ranks (a collective call: every rank must make it)."""
        if self.world_size == 1:
            return values
        return self.trainer.strategy.reduce(values.to(self.device), reduce_op="sum")

    def max_over_ranks(self, count: int) -> int:
        """The largest ``count`` of all DDP ranks, for gradient-step counts derived from local data."""
        if self.world_size == 1:
            return count
        return int(self.trainer.strategy.reduce(torch.tensor(count, device=self.device), reduce_op="max").item())
