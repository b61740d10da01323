"""Model-based PPO with adaptive imagination and curiosity, following the adaptive-imagination algorithm flow."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer
from torchrl.envs import ExplorationType, set_exploration_type

from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.model_based import LearnerFactory, ModelBased
from mbrl_lightning.algorithms.on_policy import WEIGHT_KEY
from mbrl_lightning.algorithms.ppo import PPO
from mbrl_lightning.curiosity import Curiosity, FixedBeta
from mbrl_lightning.data import TRANSITION_KEYS
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.imagination import Propagation, imagine
from mbrl_lightning.world_models.learner import WorldModelLearner

CuriosityFactory = Callable[[int, int], Curiosity]
# The adaptive-imagination design's settings where the YAML gives no ``model_learning`` block.
DEFAULT_LEARNER = partial(WorldModelLearner, lr=1e-3, batch_size=256, updates_per_batch=50, k_step_horizon=10,
                          buffer_size=100_000)


def interpolate_rollouts(confidence: float, threshold: float, low: int, high: int) -> int:
    """The adaptive-imagination design's rule: map confidence in ``[threshold, 1]`` linearly onto ``[low, high]`` rollouts."""
    fraction = min(max((confidence - threshold) / max(1.0 - threshold, 1e-8), 0.0), 1.0)
    return int(round(low + fraction * (high - low)))


class ModelBasedPPO(ModelBased, PPO):
    """PPO that also learns from rollouts imagined by a world model, with curiosity (the adaptive-imagination design).

    One update, as in the seed's flow: (1) the real batch is stored and (2) the world model
    trains on real data only, its confidence being ``exp(-held-out loss)``; (3) the number of
    imagined rollouts is interpolated between ``min_rollouts`` and ``max_rollouts`` by confidence
    above ``confidence_threshold``, each rollout running the current policy from a recent real
    state for up to ``imagination_horizon`` steps and stopping on predicted termination;
    (4) ``beta`` times the curiosity reward is added to real and imagined rewards; (5) GAE runs
    on the real and the imagined trajectories; (6) PPO updates on the mixed batch with imagined
    samples weighted ``imagination_discount * confidence``; (7) the curiosity module trains;
    (8) beta adapts to the trend of extrinsic returns.

    Ablations: ``imagination: false`` (plain PPO with curiosity), ``adaptive_rollouts: false``
    (always ``max_rollouts``), no ``curiosity``, ``weight_imagined: false`` (imagined weight 1).

    Args:
        env: the environment factory.
        model_learning: the world model and how it learns (:class:`WorldModelLearner`, its own
            replay buffer); default MLP, 50 Adam steps (lr 1e-3) per batch.
        curiosity: class called as ``curiosity(observation_size, action_size)``; none by default.
        beta: weight of intrinsic rewards (``FixedBeta`` or ``AdaptiveBeta``); default fixed 0.1.
        imagination: learn from imagined rollouts at all.
        imagination_horizon: the most steps of one imagined rollout (seed: planning_horizon).
        min_rollouts: imagined rollouts at confidence ``confidence_threshold`` or below.
        max_rollouts: imagined rollouts at confidence 1.
        confidence_threshold: confidence from which the rollout count starts to grow.
        adaptive_rollouts: interpolate the count by confidence (False: always ``max_rollouts``).
        imagination_discount: imagined samples weigh ``imagination_discount * confidence``.
        weight_imagined: apply that weight (False: imagined samples weigh as much as real ones).
        done_threshold: predicted termination probability that ends an imagined rollout.
        propagation: ensemble propagation of imagined rollouts.
        curiosity_lr: Adam learning rate of the curiosity module.
        curiosity_updates_per_batch: curiosity gradient steps per collected batch.
        intrinsic_on_imagined: add intrinsic rewards to imagined transitions too.
        imagination_iterations: PPO updates per real batch; the seed's flow is 1, and each further
            one learns from rollouts freshly imagined with the updated policy (as in ME-TRPO).
        **kwargs: PPO settings.
    """

    def __init__(
        self,
        env: EnvFactory,
        model_learning: LearnerFactory | None = None,
        curiosity: CuriosityFactory | None = None,
        beta: FixedBeta | None = None,
        imagination: bool = True,
        imagination_horizon: int = 5,
        min_rollouts: int = 10,
        max_rollouts: int = 100,
        confidence_threshold: float = 0.05,
        adaptive_rollouts: bool = True,
        imagination_discount: float = 0.8,
        weight_imagined: bool = True,
        done_threshold: float = 0.5,
        propagation: Propagation = "random_member",
        curiosity_lr: float = 1e-3,
        curiosity_updates_per_batch: int = 4,
        intrinsic_on_imagined: bool = True,
        imagination_iterations: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        require(0 <= min_rollouts <= max_rollouts, "model.min_rollouts", min_rollouts,
                f"must lie in [0, model.max_rollouts={max_rollouts}]")
        require(imagination_horizon >= 1, "model.imagination_horizon", imagination_horizon, "must be a positive integer")
        require(imagination_iterations >= 1, "model.imagination_iterations", imagination_iterations,
                "must be a positive integer")
        self.imagination = imagination
        self.imagination_horizon = imagination_horizon
        self.min_rollouts = min_rollouts
        self.max_rollouts = max_rollouts
        self.confidence_threshold = confidence_threshold
        self.adaptive_rollouts = adaptive_rollouts
        self.imagination_discount = imagination_discount
        self.weight_imagined = weight_imagined
        self.done_threshold = done_threshold
        self.propagation = propagation
        self.curiosity_lr = curiosity_lr
        self.curiosity_updates_per_batch = curiosity_updates_per_batch
        self.intrinsic_on_imagined = intrinsic_on_imagined
        self.imagination_iterations = imagination_iterations
        self.beta = beta or FixedBeta(0.1)

        observation_size = int(self.observation_spec.shape[-1])
        action_size = int(self.action_spec.shape[-1])
        self.world_model = None
        if imagination:
            self.attach_model_learner(model_learning, DEFAULT_LEARNER)
        self.curiosity = curiosity(observation_size, action_size) if curiosity is not None else None
        self.imagined_frames = 0

    # ----------------------------------------------------------------- parts
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for policy and value, and for the world model and curiosity module when present."""
        optimizers = [super().configure_optimizers()]
        self._optimizer_slot: dict[str, int] = {}
        if self.model_learner is not None:
            optimizers = self.with_model_optimizer(optimizers)
        if self.curiosity is not None:
            self._optimizer_slot["curiosity"] = len(optimizers)
            optimizers.append(torch.optim.Adam(self.curiosity.parameters(), lr=self.curiosity_lr))
        return optimizers

    def checkpointed_buffers(self) -> dict[str, ReplayBuffer]:
        """The world model's real-transition buffer."""
        return {"model_replay": self.model_learner.replay_buffer} if self.model_learner is not None else {}

    # ----------------------------------------------------------------- one update (the adaptive-imagination design's flow)
    def update(self, batch: TensorDictBase) -> Metrics:
        """Model learning, imagination, curiosity, GAE, weighted PPO, curiosity update, beta."""
        metrics: Metrics = {}
        real_flat = batch.select(*TRANSITION_KEYS).reshape(-1)
        if self.model_learner is not None:
            self.model_learner.store(real_flat)
            metrics.update(self.learn_model(batch))
        imagined = self.imagine_rollouts(batch, metrics) if self.imagination else None
        if self.curiosity is not None:
            self.curiosity.observe(real_flat)
            metrics.update(self.add_intrinsic_rewards(batch, imagined))
        samples = self.mixed_samples(batch, imagined)
        metrics.update(self.optimize(samples))
        if self.curiosity is not None:
            metrics.update(self.train_curiosity(samples))
            metrics.update(self.adapt_beta(batch))
        if self.imagination:
            for _ in range(self.imagination_iterations - 1):
                metrics.update(self.improve_in_imagination(batch))
        return metrics

    def improve_in_imagination(self, batch: TensorDictBase) -> Metrics:
        """One more PPO update, on rollouts of the updated policy imagined from the real batch's states."""
        metrics: Metrics = {}
        imagined = self.imagine_rollouts(batch, metrics)
        if imagined is None:
            return metrics
        if self.curiosity is not None and self.intrinsic_on_imagined:
            self.add_curiosity_bonus(imagined)
        samples = self.imagined_samples(imagined)
        metrics.update({f"imagination/{key.split('/')[-1]}": value for key, value in self.optimize(samples).items()
                        if key.startswith("loss/")})
        return metrics

    def rollout_count(self) -> int:
        """How many rollouts to imagine now: interpolated by confidence, or fixed."""
        if not self.adaptive_rollouts:
            return self.max_rollouts
        # Under DDP the confidence is already agreed over ranks (``learn_model``), so the count is too.
        return interpolate_rollouts(self.confidence, self.confidence_threshold, self.min_rollouts, self.max_rollouts)

    def imagine_rollouts(self, batch: TensorDictBase, metrics: Metrics) -> TensorDictBase | None:
        """Current-policy rollouts in the model from states of the newest real batch."""
        count = self.rollout_count()
        metrics["imagination/rollouts"] = float(count)
        if count == 0:
            return None
        # Under DDP each rank imagines its share of the rollouts, from its own real states.
        count = -(-count // self.world_size)
        observations = batch["observation"].reshape(-1, batch["observation"].shape[-1])
        index = torch.randint(observations.shape[0], (count,), device=observations.device)
        start = batch.reshape(-1)[index].select("observation")
        with set_exploration_type(ExplorationType.RANDOM):
            rollout = imagine(self.world_model, self.actor, start, self.imagination_horizon,
                              propagation=self.propagation, done_threshold=self.done_threshold)
        alive = int((rollout["weight"] > 0).sum())
        self.imagined_frames += alive
        metrics["imagination/frames"] = float(self.imagined_frames)
        metrics["imagination/mean_length"] = alive / count
        metrics["imagination/weight"] = self.imagined_weight()
        return rollout

    def imagined_weight(self) -> float:
        """Weight of an imagined sample in the PPO loss."""
        return self.imagination_discount * self.confidence if self.weight_imagined else 1.0

    @torch.no_grad()
    def add_curiosity_bonus(self, trajectories: TensorDictBase) -> torch.Tensor:
        """Add ``beta`` times the curiosity reward to the rewards of ``[..., time]`` trajectories; return it."""
        bonus = self.curiosity.intrinsic_reward(trajectories.reshape(-1)).reshape(trajectories.shape)
        trajectories["next", "reward"] = trajectories["next", "reward"] + self.beta.value * bonus.unsqueeze(-1)
        return bonus

    def add_intrinsic_rewards(self, batch: TensorDictBase, imagined: TensorDictBase | None) -> Metrics:
        """Add curiosity bonuses to real (and imagined) rewards, in place."""
        metrics = {"curiosity/intrinsic_reward": self.add_curiosity_bonus(batch).mean().item(),
                   "curiosity/beta": self.beta.value}
        if imagined is not None and self.intrinsic_on_imagined:
            bonus = self.add_curiosity_bonus(imagined)
            metrics["curiosity/intrinsic_reward_imagined"] = bonus[imagined[WEIGHT_KEY] > 0].mean().item()
        return metrics

    def imagined_samples(self, imagined: TensorDictBase) -> TensorDictBase:
        """GAE on imagined trajectories, then their live steps, flat, weighted for the PPO loss."""
        samples = self.add_advantages(imagined).reshape(-1)
        samples = samples[samples[WEIGHT_KEY] > 0]
        samples.set(WEIGHT_KEY, samples[WEIGHT_KEY] * self.imagined_weight())
        return samples

    def mixed_samples(self, batch: TensorDictBase, imagined: TensorDictBase | None) -> TensorDictBase:
        """GAE on each set of trajectories, then one flat batch with per-sample weights."""
        real = self.add_advantages(batch).reshape(-1)
        real.set(WEIGHT_KEY, torch.ones(real.shape, device=real.device))
        if imagined is None:
            return real
        imagined = self.imagined_samples(imagined)
        keys = set(real.keys(True, True)) & set(imagined.keys(True, True))
        return torch.cat([real.select(*keys), imagined.select(*keys)], 0)

    def train_curiosity(self, samples: TensorDictBase) -> Metrics:
        """Curiosity gradient steps on minibatches of real and imagined transitions."""
        optimize = self.gradient_step(self._optimizer_slot["curiosity"])
        size = samples.numel()
        minibatch = min(self.per_rank(self.minibatch_size) or size, size)
        total = 0.0
        for _ in range(self.curiosity_updates_per_batch):
            terms = self.curiosity.loss(samples[torch.randint(size, (minibatch,), device=samples.device)])
            loss = sum(terms.values())
            optimize(loss)
            total += loss.item()
        return {"loss/curiosity": total / max(self.curiosity_updates_per_batch, 1)}

    def adapt_beta(self, batch: TensorDictBase) -> Metrics:
        """Move beta against the trend of finished episodes' extrinsic returns (of every DDP rank)."""
        done = batch["next", "done"].squeeze(-1)
        returns = batch["next", "episode_reward"].squeeze(-1)[done]
        if self.world_size > 1:
            # Every rank moves beta by the mean return of all ranks' finished episodes, so beta agrees.
            local = torch.stack([returns.double().sum(), torch.tensor(float(returns.numel()), dtype=torch.float64)])
            total, finished = self.sum_over_ranks(local).tolist()
            mean = total / finished if finished else None
        else:
            mean = returns.mean().item() if returns.numel() else None
        if mean is not None:
            self.beta.update(mean)
        return {"curiosity/beta": self.beta.value}

    # ----------------------------------------------------------------- checkpoint
    def checkpointed_state(self) -> dict[str, Any]:
        """Beta and the learner's state, besides the base class's parts."""
        return {**super().checkpointed_state(), "beta": self.beta}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also keep the imagined-frame counter."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["mbrl"]["imagined_frames"] = self.imagined_frames

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore what :meth:`on_save_checkpoint` added."""
        super().on_load_checkpoint(checkpoint)
        self.imagined_frames = checkpoint["mbrl"]["imagined_frames"]
