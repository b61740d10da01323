"""Model-based policy optimisation (MBPO, Janner et al. 2019): SAC on short branched rollouts of a model ensemble.

Every ``model_train_every_frames`` real frames the bootstrap ensemble is retrained to convergence
on all real data (held-out early stopping, elites by held-out loss), and then ``starts`` real
states branch into rollouts of the current SAC policy through the elites, one random elite per
row and step, stopped by the env's termination rule or the model's; the rollouts go into a model
buffer that keeps the newest of them. Between retrainings SAC updates at a high update-to-data
ratio on batches drawn mostly from the model buffer (``real_ratio`` of them real).

The parts are the spine's: SAC the update, :class:`Dyna` the world-model learner and the
imagined replay (rollout schedule, retention, termination, batch mix); this file decides when
the model learns and rolls out.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.dyna import Dyna
from mbrl_lightning.algorithms.model_based import LearnerFactory
from mbrl_lightning.algorithms.sac import SAC
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.imagination import ImaginedReplay
from mbrl_lightning.world_models import GaussianEnsembleWorldModel, WorldModelLearner

# MBPO's model (``mbpo/models/constructor.py``, ``bnn.py``): 7 members, 5 elites, four hidden
# layers of 200 swish units, trained with batches of 256 until the held-out error (20% of the
# data, at most 5,000 transitions) stops improving by 1% for 5 epochs.
DEFAULT_LEARNER = partial(
    WorldModelLearner,
    world_model=partial(GaussianEnsembleWorldModel, num_members=7, num_elites=5, hidden_sizes=(200, 200, 200, 200)),
    batch_size=256, validation_fraction=0.2, validation_size=5_000, early_stopping_patience=5, k_step_horizon=0,
)


def default_imagined() -> ImaginedReplay:
    """MBPO's rollouts for HalfCheetah: 100,000 starts, horizon 1, the newest epoch's rollouts kept, 5% real."""
    return ImaginedReplay(starts=100_000, horizon=1, retain_rollouts=4, termination="auto", real_ratio=0.05,
                          sample_noise=True)


class MBPO(Dyna, SAC):
    """SAC trained on branched model rollouts: the model retrained every ``model_train_every_frames`` real frames.

    Args:
        env: the environment factory (continuous actions).
        model_learning: the ensemble and how it learns (:class:`WorldModelLearner`); default MBPO's
            7-member, 5-elite ensemble with held-out early stopping.
        imagined: the branched rollouts and the batch mix (:class:`ImaginedReplay`): ``starts``
            (MBPO's ``rollout_batch_size``), ``rollout_schedule``, ``retain_rollouts``,
            ``termination``, ``real_ratio``.
        model_train_every_frames: real frames between two model trainings, each followed by a
            rollout (MBPO's ``model_train_freq``, 250).
        **kwargs: SAC, OffPolicyActorCritic and RLModule settings (``update_to_data`` is MBPO's
            ``n_train_repeat``).
    """

    def __init__(
        self,
        env: EnvFactory,
        model_learning: LearnerFactory | None = None,
        imagined: ImaginedReplay | None = None,
        model_train_every_frames: int = 250,
        **kwargs: Any,
    ) -> None:
        require(model_train_every_frames >= 1, "model.model_train_every_frames", model_train_every_frames,
                "must be a positive integer")
        super().__init__(env=env, **kwargs)
        self.attach_model_learner(model_learning, DEFAULT_LEARNER, self.replay_buffer)
        self.attach_imagined_replay(imagined or default_imagined())
        self.model_train_every_frames = model_train_every_frames
        # Real frames at the last model training (None: not trained yet), checkpointed.
        self.model_trained_at: int | None = None

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """SAC's optimizers, then Adam for the world model."""
        return self.with_model_optimizer(super().configure_optimizers())

    @property
    def imagination_policy(self) -> TensorDictModuleBase:
        """The current SAC policy, sampled (the warm-up's uniform actions never enter the model)."""
        return self.actor

    def model_due(self) -> bool:
        """Whether the model retrains (and rolls out) now: first after the warm-up, then every ``model_train_every_frames``."""
        if self.imagined.fraction == 0:  # real_ratio 1: SAC alone, as MBPO then skips its model too
            return False
        if self.model_trained_at is None:
            return True
        every = self.model_train_every_frames
        return self.frames // every > self.model_trained_at // every

    def before_updates(self, batch: TensorDictBase) -> Metrics:
        """When due, retrain the ensemble and refill the model buffer; always report the batch mix."""
        metrics: Metrics = {}
        if self.model_due():
            metrics.update(self.learn_model(batch))
            metrics.update(self.imagined.imagine(self.world_model, self.imagination_policy, self.replay_buffer,
                                                 self.device, self.confidence, self.frames))
            self.model_trained_at = self.frames
        imagined = self.imagined.imagined_count(self.batch_size)
        metrics["imagination/real_ratio"] = (self.batch_size - imagined) / self.batch_size
        metrics["imagination/model_buffer_size"] = float(len(self.imagined.buffer))
        metrics["imagination/rollout_length"] = float(self.imagined.horizon_at(self.frames))
        return metrics

    def replay_batches(self, count: int) -> Iterator[TensorDictBase]:
        """``count`` mixed batches, drawn with one sampling call per buffer."""
        if count:
            yield from self.imagined.mixed_batches(self.replay_buffer, count, self.batch_size, self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also keep when the model last trained, so retraining stays on the same frames after resume."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["mbrl"]["model_trained_at"] = self.model_trained_at

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the extras and the last model-training frame."""
        super().on_load_checkpoint(checkpoint)
        self.model_trained_at = checkpoint["mbrl"]["model_trained_at"]
