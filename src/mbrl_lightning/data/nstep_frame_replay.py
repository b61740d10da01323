"""Stacked-frame replay sampled as n-step transitions, by priority, with the K-step sequences of self-prediction."""

from __future__ import annotations

from pathlib import Path

import torch
from tensordict import TensorDict

from mbrl_lightning.data.frame_replay import FrameStackReplay
from mbrl_lightning.data.priorities import ReplayPriorities
from mbrl_lightning.data.replay import StorageKind
from mbrl_lightning.errors import require

# Per-step rewards summed over the n-step window (the bonus of AtariDQN is a reward as well).
SUMMED_KEYS = (("next", "reward"), ("next", "bonus"))


class NStepFrameReplay(FrameStackReplay):
    """:class:`FrameStackReplay` whose samples are n-step transitions, optionally drawn by priority.

    A sample at step ``t`` of an env copy carries ``("next", "reward") = sum_i gamma^i r_{t+i}``
    over the ``m <= n_step`` steps up to the first episode end (or the newest stored step), the
    next observation, ``done`` and ``terminated`` of step ``t + m - 1``, and
    ``steps_to_next_obs = m``, which TorchRL's TD(0) estimator turns into ``gamma ** m`` (the
    multi-step target of Hessel et al. 2018). Everything is computed on whole index tensors.

    With ``priority_exponent > 0`` samples are drawn by :class:`ReplayPriorities`; each carries
    ``index`` (to :meth:`update_priority` after the TD step) and ``priority_weight`` (the
    importance weight TorchRL's ``DQNLoss`` multiplies its loss by). With ``sequence_length = K``
    each sample also carries the K observations after ``t`` (``future_observation``,
    ``[batch, K, C, H, W]``), the actions ``a_t .. a_{t+K-1}`` (``future_action``) and
    ``future_mask`` (False once the episode ended), the targets of self-predictive
    representations (Schwarzer et al. 2021).

    Args:
        capacity, num_envs, frame_stack, storage, scratch_dir: as :class:`FrameStackReplay`.
        n_step: steps summed per transition (1: one-step transitions).
        gamma: discount of the summed rewards (the learner's).
        priority_exponent: alpha of prioritized replay in [0, 1] (0: uniform sampling).
        importance_exponent: beta of the importance weights at the start.
        sequence_length: K, future observations per sample (0: none).
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        frame_stack: int,
        storage: StorageKind = "memmap",
        scratch_dir: str | Path | None = None,
        n_step: int = 1,
        gamma: float = 0.99,
        priority_exponent: float = 0.0,
        importance_exponent: float = 0.4,
        sequence_length: int = 0,
    ) -> None:
        require(n_step >= 1, "model.n_step", n_step, "must be a positive integer")
        require(sequence_length >= 0, "model.latent_model.prediction_steps", sequence_length, "must be 0 or more")
        super().__init__(capacity, num_envs, frame_stack, storage, scratch_dir)
        self.n_step = n_step
        self.gamma = gamma
        self.sequence_length = sequence_length
        self.priorities = (
            ReplayPriorities(self.slots * num_envs, priority_exponent, importance_exponent)
            if priority_exponent > 0 else None
        )

    def extend(self, batch: TensorDict) -> None:
        """Append a ``[num_envs, time]`` batch; its slots get the largest priority so far."""
        start = self.written
        super().extend(batch)
        if self.priorities is not None:
            slots = torch.arange(start, self.written) % self.slots
            self.priorities.mark_new((slots[:, None] * self.num_envs + torch.arange(self.num_envs)).reshape(-1))

    def sample(self, batch_size: int) -> TensorDict:
        """``batch_size`` n-step transitions, uniformly or by priority (then with ``index`` and ``priority_weight``)."""
        if self.priorities is None:
            return super().sample(batch_size)  # uniform steps, built by :meth:`gather`
        flat, weight = self.priorities.sample(len(self), batch_size)
        slots, envs = flat // self.num_envs, flat % self.num_envs
        steps = slots + self.slots * ((self.written - 1 - slots) // self.slots)  # the step a slot holds now
        # The oldest slots' earlier frames are overwritten once the ring wraps: their successors stand in.
        steps = steps.clamp_min(self.first_valid_step)
        transitions = self.gather(steps, envs)
        transitions["index"] = (steps % self.slots) * self.num_envs + envs
        transitions["priority_weight"] = weight
        return transitions

    def update_priority(self, index: torch.Tensor, td_error: torch.Tensor) -> None:
        """Set the priorities of sampled transitions to their absolute TD errors (no-op when uniform)."""
        if self.priorities is not None:
            self.priorities.update(index, td_error.abs())

    def _window(self, steps: torch.Tensor, envs: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Slots of steps ``t .. t+length-1``, ``[batch, length]``, and whether each is stored and in ``t``'s episode."""
        future = steps[:, None] + torch.arange(length)
        stored = future < self.written
        slots = future.clamp_max(self.written - 1) % self.slots
        done = self.data["next", "done"][slots, envs[:, None]].reshape(future.shape).long()
        ended_before = (done.cumsum(1) - done) > 0  # an earlier step of the window ended the episode
        return slots, stored & ~ended_before

    def gather(self, steps: torch.Tensor, envs: torch.Tensor) -> TensorDict:
        """n-step transitions (and K-step sequences) starting at absolute steps ``steps`` of env copies ``envs``."""
        transitions = super().gather(steps, envs)
        # The other stacks are next observations (the n-step window's closing one, the K future
        # ones): rebuilt together, by one call.
        stack_steps, stack_envs = [], []
        if self.n_step > 1:
            slots, used = self._window(steps, envs, self.n_step)
            discount = self.gamma ** torch.arange(self.n_step, dtype=torch.float32)
            for key in SUMMED_KEYS:
                if key in transitions.keys(True):
                    values = self.data[key][slots, envs[:, None]].reshape(used.shape)
                    transitions[key] = (values * discount * used).sum(1, keepdim=True).to(transitions[key].dtype)
            count = used.sum(1)
            closing = steps + count - 1
            closing_data = self.data["next"][closing % self.slots, envs]
            for key in ("done", "terminated", "truncated"):
                transitions["next", key] = closing_data[key]
            transitions["steps_to_next_obs"] = count[:, None]
            stack_steps.append(closing)
            stack_envs.append(envs)
        if self.sequence_length:
            # Observation t+k is the next observation of step t+k-1 (clamped to the newest stored step).
            stack_steps.append((steps[:, None] + torch.arange(self.sequence_length)).clamp_max(self.written - 1).reshape(-1))
            stack_envs.append(envs.repeat_interleave(self.sequence_length))
        if stack_steps:
            stacks = self.next_observations(torch.cat(stack_steps), torch.cat(stack_envs))
            if self.n_step > 1:
                transitions["next", "observation"] = stacks[:len(steps)]
            if self.sequence_length:
                transitions.update(self.sequences(steps, envs, stacks[-len(steps) * self.sequence_length:]))
        return transitions

    def sequences(self, steps: torch.Tensor, envs: torch.Tensor, observations: torch.Tensor) -> TensorDict:
        """``future_observation`` (the given K stacks per sample: obs ``t+1 .. t+K``), ``future_action``, ``future_mask``.

        ``future_action`` holds ``a_t .. a_{t+K-1}``; ``future_mask`` is False once the episode ended.
        """
        length = self.sequence_length
        slots, in_episode = self._window(steps, envs, length)
        # Observation t+k is the next observation of step t+k-1: valid when that step is in t's episode.
        return TensorDict({
            "future_observation": observations.reshape(len(steps), length, *observations.shape[1:]),
            "future_action": self.data["action"][slots, envs[:, None]],
            "future_mask": in_episode,
        }, batch_size=[len(steps)])

    def one_step_sample(self, batch_size: int) -> TensorDict:
        """Uniform one-step transitions (what a pixel world model learns from)."""
        return FrameStackReplay.gather(self, *self.uniform_indices(batch_size))


class OneStepView:
    """The one-step, uniform face of an :class:`NStepFrameReplay`, for a world-model learner that shares it."""

    def __init__(self, replay: NStepFrameReplay) -> None:
        self.replay = replay

    def __len__(self) -> int:
        return len(self.replay)

    def sample(self, batch_size: int) -> TensorDict:
        """Uniform one-step transitions."""
        return self.replay.one_step_sample(batch_size)
