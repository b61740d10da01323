"""The shared reinforcement-learning LightningModule: collection, budget, evaluation, logging."""

from __future__ import annotations

import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import ReplayBuffer, TensorSpec

from mbrl_lightning.algorithms.rank_agreement import RankAgreement
from mbrl_lightning.algorithms.rank_shards import OTHER_RANKS_KEY, gather_other_ranks, own_extras, use_own_loader_state
from mbrl_lightning.algorithms.rng_state import capture_rng, restore_rng
from mbrl_lightning.data import CollectorStream
from mbrl_lightning.data.collector import COLLECTOR_KINDS, CollectorKind
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError, DivergenceError
from mbrl_lightning.evaluation import EVAL_SEED_OFFSET, evaluate_policy

Metrics = dict[str, float]

# Offset between the seeds of two DDP ranks (envs and random generators).
RANK_SEED_OFFSET = 10_007


class RLModule(RankAgreement, LightningModule, ABC):
    """Template for every algorithm: a subclass says what one update is, nothing more.

    The module owns the collector stream, the frame budget, the replay buffer (when the
    algorithm has one), periodic deterministic evaluation on a separate env, logging with the
    env-frame count as the step, and the checkpoint extras that make resume exact.

    Args:
        env: the environment factory (id, number of copies, options).
        total_frames: the budget of real environment frames for the whole run (all DDP ranks together).
        frames_per_batch: real frames collected between two updates, over all env copies and DDP ranks.
        eval_every_frames: evaluate the deterministic policy every this many frames (0: never).
        eval_episodes: episodes per evaluation, run in parallel on a separate env.
        eval_max_steps: step cap of one evaluation episode; defaults to the env's time limit.
        eval_same_starts: every evaluation plays the same env seeds (so the same start states),
            where by default evaluation ``i`` plays its own; for agents whose return depends more
            on the start state than on training progress, it makes evaluations (and so the best
            checkpoint) compare policies rather than draws of start states.
        collector: what steps the training env: ``auto`` (the lean in-process collector where it
            gives exactly TorchRL's batches, else TorchRL's), ``lean``, ``torchrl`` or
            ``multi_sync`` (TorchRL's ``MultiSyncCollector`` with ``collector_workers`` processes,
            for costly simulators; in-flight episodes restart on resume).
        collector_workers: processes of the ``multi_sync`` collector; ``env.num_envs`` is split
            evenly between them.

    Under DDP on N processes the run is the same run split over ranks: ``total_frames``,
    ``frames_per_batch`` and the logged frame count are sums over ranks, each rank collecting
    ``frames_per_batch / N`` frames per step (with ``env.num_envs / N`` copies where that divides)
    with its own env seeds into its own replay shard, so the run takes as many updates per frame
    as in one process.
    """

    automatic_optimization = False
    # Whether the exploration policy (with ``worker_modules``) holds all it reads, so that the
    # ``multi_sync`` collector's processes can act with copies kept current by weight sync.
    policy_runs_in_workers: bool = True

    def __init__(
        self,
        env: EnvFactory,
        total_frames: int = 100_000,
        frames_per_batch: int = 256,
        eval_every_frames: int = 10_000,
        eval_episodes: int = 10,
        eval_max_steps: int | None = None,
        eval_same_starts: bool = False,
        collector: CollectorKind = "auto",
        collector_workers: int = 2,
    ) -> None:
        super().__init__()
        positive = {"total_frames": total_frames, "frames_per_batch": frames_per_batch, "eval_episodes": eval_episodes}
        for key, value in positive.items():
            if value < 1:
                raise ConfigurationError(f"model.{key}={value}: must be a positive integer.")
        if frames_per_batch % env.num_envs:
            raise ConfigurationError(
                f"model.frames_per_batch={frames_per_batch}: must be a multiple of env.num_envs={env.num_envs}."
            )
        if collector not in COLLECTOR_KINDS:
            raise ConfigurationError(f"model.collector={collector!r}: must be one of {', '.join(map(repr, COLLECTOR_KINDS))}.")
        if collector == "multi_sync" and not self.policy_runs_in_workers:
            raise ConfigurationError(
                f"model.collector='multi_sync': {type(self).__name__}'s policy reads state of the module that "
                "collector processes do not receive; use 'auto', 'lean' or 'torchrl'."
            )
        if collector == "multi_sync" and (collector_workers < 1 or env.num_envs % collector_workers):
            raise ConfigurationError(
                f"model.collector_workers={collector_workers}: must be a positive divisor of env.num_envs={env.num_envs}."
            )
        if eval_max_steps is None and env.episode_step_limit is None and eval_every_frames > 0:
            raise ConfigurationError(
                f"model.eval_max_steps: required because {env.env_id} has no time limit."
            )
        self.env = env
        self.total_frames = total_frames
        self.frames_per_batch = frames_per_batch
        self.eval_every_frames = eval_every_frames
        self.eval_episodes = eval_episodes
        self.eval_max_steps = eval_max_steps or env.episode_step_limit
        self.eval_same_starts = eval_same_starts
        self.collector = collector
        self.collector_workers = collector_workers

        probe = env.make(num_envs=1)
        self.observation_spec: TensorSpec = probe.observation_spec_unbatched["observation"]
        self.action_spec: TensorSpec = probe.full_action_spec_unbatched["action"]
        probe.close()

        self.seed = torch.initial_seed() % 2**31
        self.frames = 0
        self.last_batch_frames = frames_per_batch
        self.episodes = 0
        self.evaluations = 0
        self.train_seconds = 0.0
        self.replay_buffer: ReplayBuffer | None = None
        self._clock: tuple[float, int] | None = None
        self.progress: Metrics = {}
        self._stream: CollectorStream | None = None
        # In-flight episodes read from a checkpoint, continued by the next collector.
        self._episodes_to_continue: dict[str, Any] = {}

    # ----------------------------------------------------------------- what a subclass says
    @property
    @abstractmethod
    def exploration_policy(self) -> TensorDictModuleBase:
        """The policy the collector acts with (exploration included)."""

    @property
    @abstractmethod
    def eval_policy(self) -> TensorDictModuleBase:
        """The policy evaluated deterministically."""

    @abstractmethod
    def update(self, batch: TensorDictBase) -> Metrics:
        """One learning update on a freshly collected batch; returns metrics to log."""

    def optimizer(self, index: int = 0) -> torch.optim.Optimizer:
        """The ``index``-th optimizer of ``configure_optimizers`` (Lightning-wrapped)."""
        optimizers = self.optimizers()
        return optimizers[index] if isinstance(optimizers, list) else optimizers

    def gradient_step(self, index: int) -> Callable[[torch.Tensor], None]:
        """A function that takes one optimizer step of optimizer ``index`` on a loss."""
        optimizer = self.optimizer(index)

        def step(loss: torch.Tensor) -> None:
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()

        return step

    def worker_modules(self) -> dict[str, torch.nn.Module]:
        """Modules the exploration policy reads besides its own (a planner's world model): ``multi_sync`` workers get their weights too."""
        return {}

    def checkpointed_buffers(self) -> dict[str, ReplayBuffer]:
        """Buffers saved with every checkpoint; subclasses with more buffers extend this."""
        return {"replay": self.replay_buffer} if self.replay_buffer is not None else {}

    def checkpointed_state(self) -> dict[str, Any]:
        """Parts with ``state_dict``/``load_state_dict`` saved with every checkpoint besides the weights."""
        return {}

    # ----------------------------------------------------------------- data
    def train_dataloader(self) -> CollectorStream:
        """Real transitions from the collector, one batch per training step, until the budget ends."""
        workers = self.collector_workers
        envs, frames = self.rank_collection()
        self._stream = CollectorStream(
            make_env=lambda: self.env.make(num_envs=envs, seed=self.env_seed),
            policy=self.exploration_policy,
            frames_per_batch=frames,
            frames_left=lambda: self.total_frames - self.frames,
            collector=self.collector,
            # Picklable builders (no closure over the module): the workers are other processes.
            make_worker_env=lambda index: partial(self.env.make, envs // workers, self.env_seed + index * 7919),
            workers=workers,
            worker_modules=self.worker_modules(),
        )
        self._stream.load_state_dict(self._episodes_to_continue)
        return self._stream

    @property
    def env_seed(self) -> int:
        """The training env's seed for the next collector: distinct per rank and per pass."""
        rank = self.global_rank if self._trainer is not None else 0
        return self.seed + self.frames + rank * RANK_SEED_OFFSET

    def setup(self, stage: str) -> None:
        """Under DDP, check that the batch splits over ranks and give every rank its own random stream."""
        if self.world_size > 1:
            envs, frames = self.rank_collection()
            if self.frames_per_batch % self.world_size or frames % envs:
                raise ConfigurationError(
                    f"model.frames_per_batch={self.frames_per_batch}: on {self.world_size} DDP processes each "
                    f"collects frames_per_batch/{self.world_size} frames with {envs} env copies; it must be a "
                    f"multiple of {self.world_size * envs}."
                )
            if self.collector == "multi_sync" and envs % self.collector_workers:
                raise ConfigurationError(
                    f"model.collector_workers={self.collector_workers}: must divide the {envs} env copies of each "
                    f"of the {self.world_size} DDP processes."
                )
            seed = (self.seed + self.global_rank * RANK_SEED_OFFSET) % 2**31
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)

    def training_step(self, dataloader_iter: Iterator) -> None:
        """Take one collected batch, update on it, evaluate when due, log by env frames."""
        started = time.perf_counter()
        # Acting is inference: full precision, whatever autocast the precision plugin opened.
        with torch.autocast(self.device.type, enabled=False):
            batch, _, _ = next(dataloader_iter)
        batch = batch.to(self.device)
        frames_before = self.frames
        self.frames += self.global_frames(batch.numel())
        self.last_batch_frames = self.frames - frames_before
        metrics = self.update(batch)
        self.check_finite(metrics)
        # Time spent collecting and learning, evaluation and logging excluded: what speed claims compare.
        self.train_seconds += time.perf_counter() - started
        metrics.update(self._episode_metrics(batch))
        metrics.update(self._throughput_metrics())
        if self._evaluation_due(frames_before):
            metrics.update(self.evaluate())
        self.log_frames(metrics)
        if self.frames >= self.total_frames:
            self.trainer.should_stop = True

    def on_train_epoch_start(self) -> None:
        """Stop at once when a resumed run has already spent its budget."""
        if self.frames >= self.total_frames:
            self.trainer.should_stop = True

    def check_finite(self, metrics: Metrics) -> None:
        """Stop with a DivergenceError naming the loss term (or parameter) and frame that went non-finite.

        It raises before the batch ends, so no checkpoint of the diverged weights is ever written,
        and the error is recorded on the MLflow run (which Lightning then marks failed).
        """
        culprit = next((key for key, value in metrics.items() if key.startswith("loss/") and not math.isfinite(value)), None)
        # The 2-norm of all weights (one foreach kernel) is NaN or inf whenever a weight is; a scan
        # of each tensor with isfinite (a mask per tensor: 16 ms of CPU per check on the Atari net)
        # runs only then, or when the norm overflows (weights of 1e19 and more), to name the culprit.
        if culprit is None and math.isfinite(torch.nn.utils.get_total_norm(list(self.parameters()))):
            return
        if culprit is None:
            checks = [p.detach().isfinite().all() for p in self.parameters()]
            finite = torch.stack(checks) if checks else torch.ones(0, dtype=torch.bool)
            if bool(finite.all()):
                return
            names = [name for name, _ in self.named_parameters()]
            culprit = f"parameter {names[int((~finite).nonzero()[0])]}"
        else:
            culprit = f"{culprit}={metrics[culprit]}"
        message = f"training diverged: {culprit} at frame {self.frames}; the last good checkpoint is kept"
        for logger in self.loggers:
            if hasattr(logger, "run_id"):
                logger.experiment.set_tag(logger.run_id, "divergence", message)
        raise DivergenceError(message)

    # ----------------------------------------------------------------- metrics
    def _episode_metrics(self, batch: TensorDictBase) -> Metrics:
        done = batch["next", "done"].squeeze(-1)
        finished = int(done.sum())
        if not finished:
            return {}
        self.episodes += finished
        returns = batch["next", "episode_reward"].squeeze(-1)[done].float()
        lengths = batch["next", "step_count"].squeeze(-1)[done].float()
        self.progress["return"] = returns.mean().item()
        return {
            "train/episode_return": returns.mean().item(),
            "train/episode_length": lengths.mean().item(),
            "train/episodes": float(self.episodes),
        }

    def _throughput_metrics(self) -> Metrics:
        now = time.perf_counter()
        if self._clock is None:
            self._clock = (now, self.frames)
            fps = 0.0
        else:
            start, start_frames = self._clock
            fps = (self.frames - start_frames) / max(now - start, 1e-9)
        self.progress["fps"] = fps
        return {"train/env_frames": float(self.frames), "train/fps": fps, "train/seconds": self.train_seconds}

    def log_frames(self, metrics: Metrics) -> None:
        """Send metrics to every logger with the env-frame count as step; expose them to callbacks."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.frames)
        # Callbacks (checkpoint monitors, early stopping) read trainer.callback_metrics.
        self.trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})

    # ----------------------------------------------------------------- gradients
    def clip_gradient_norm(self, optimizer: torch.optim.Optimizer, max_norm: float) -> None:
        """Clip the norm of ``optimizer``'s gradients to ``max_norm``, under any training precision."""
        # Not Lightning's clip_gradients: under mixed precision it refuses fused optimizers (which
        # unscale fp16 gradients themselves, so it cannot unscale before clipping), and in manual
        # optimisation the fp16 gradients it would clip are still scaled. Clipping the scaled
        # gradients at max_norm times the scale is the same clip on the true ones; bf16 has no scale.
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        scale = scaler.get_scale() if scaler is not None else 1.0
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, max_norm * scale)

    # ----------------------------------------------------------------- evaluation
    def _evaluation_due(self, frames_before: int) -> bool:
        if self.eval_every_frames <= 0:
            return False
        crossed = self.frames // self.eval_every_frames > frames_before // self.eval_every_frames
        return crossed or self.frames >= self.total_frames

    def evaluate(self) -> Metrics:
        """Run ``eval_episodes`` deterministic episodes in parallel on a fresh env; return their statistics."""
        # Acting is inference: full precision, as in collection (evaluation runs inside training_step).
        with torch.autocast(self.device.type, enabled=False):
            result = evaluate_policy(
                self.env, self.eval_policy, self.eval_episodes, self.eval_seed(self.evaluations), self.eval_max_steps
            )
        self.evaluations += 1
        metrics = result.metrics()
        self.progress["eval"] = metrics["eval/return_mean"]
        return metrics

    def eval_seed(self, evaluation: int) -> int:
        """Seed of the env of evaluation number ``evaluation`` (its copies take the following seeds)."""
        return self.seed + EVAL_SEED_OFFSET + (0 if self.eval_same_starts else evaluation)

    # ----------------------------------------------------------------- checkpoint extras
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add counters, RNG states, the replay buffer and the MLflow run id to the checkpoint."""
        checkpoint["mbrl"] = {
            "algorithm": type(self).__name__,
            "env_id": self.env.env_id,
            "frames": self.frames,
            "episodes": self.episodes,
            "evaluations": self.evaluations,
            "train_seconds": self.train_seconds,
            "seed": self.seed,
            "rng": capture_rng(),
            "buffers": {name: buffer.state_dict() for name, buffer in self.checkpointed_buffers().items()},
            "state": {name: part.state_dict() for name, part in self.checkpointed_state().items()},
            "mlflow_run_id": getattr(self.logger, "run_id", None),
            "episodes_in_flight": self._stream.state_dict() if self._stream is not None else {},
        }
        if self.world_size > 1 and not getattr(self, "_collecting_own_extras", False):
            own = self._own_extras() if self.global_rank > 0 else None  # rank 0's are already here
            checkpoint[OTHER_RANKS_KEY] = gather_other_ranks(own, self.global_rank, self.world_size)

    def _own_extras(self) -> dict[str, Any]:
        """This rank's complete ``mbrl`` extras, subclasses' additions included (for the DDP shards)."""
        self._collecting_own_extras = True
        try:
            local: dict[str, Any] = {}
            self.on_save_checkpoint(local)
            # Running statistics (normalisers) are buffers each rank updates from its own data.
            local["mbrl"]["module_buffers"] = {name: value.detach().clone() for name, value in self.named_buffers()}
            return local["mbrl"]
        finally:
            self._collecting_own_extras = False

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore what :meth:`on_save_checkpoint` added."""
        # Under DDP each rank takes its own shard; subclasses then read theirs from ``checkpoint["mbrl"]``.
        extras, own = own_extras(checkpoint, self.global_rank)
        checkpoint["mbrl"] = extras
        self.frames = extras["frames"]
        self.episodes = extras["episodes"]
        self.evaluations = extras["evaluations"]
        self.train_seconds = extras["train_seconds"]
        self.seed = extras["seed"]
        for name, buffer in self.checkpointed_buffers().items():
            buffer.load_state_dict(extras["buffers"][name])
        for name, part in self.checkpointed_state().items():
            if name not in extras["state"] and hasattr(part, "state_missing"):
                part.state_missing(extras)  # a part switched on after the checkpoint was written
                continue
            part.load_state_dict(extras["state"][name])
        # Older checkpoints have no in-flight episodes: the resumed run starts new ones.
        self._episodes_to_continue = extras.get("episodes_in_flight", {})
        if not own:
            # Rank 0's episodes: replaying them here would duplicate its data.
            self._episodes_to_continue = {}
        if self.global_rank > 0:
            use_own_loader_state(checkpoint, self._episodes_to_continue)
            own_buffers = extras.get("module_buffers", {})
            # Lightning loads ``state_dict`` (rank 0's) after this hook: give it this rank's buffers.
            checkpoint["state_dict"].update({k: v for k, v in own_buffers.items() if k in checkpoint["state_dict"]})
        if self._stream is not None:
            self._stream.load_state_dict(self._episodes_to_continue)
        restore_rng(extras["rng"])

