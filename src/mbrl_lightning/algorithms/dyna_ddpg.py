"""DDPG trained on real and imagined transitions (MBPO's data flow with a deterministic actor).

The worked example of docs/architecture.md ("how to add an algorithm"): a thin file over shared
parts. DDPG brings the actor-critic update, :class:`Dyna` the world-model learner and the
imagined replay; this file only wires them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from mbrl_lightning.algorithms.ddpg import DDPG
from mbrl_lightning.algorithms.dyna import Dyna
from mbrl_lightning.algorithms.model_based import LearnerFactory
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.imagination import ImaginedReplay
from mbrl_lightning.world_models import GaussianEnsembleWorldModel, WorldModelLearner

# MBPO's model: a bootstrap ensemble, retrained on the real buffer after every batch.
DEFAULT_LEARNER = partial(WorldModelLearner, world_model=GaussianEnsembleWorldModel, updates_per_batch=20)


class DynaDDPG(Dyna, DDPG):
    """DDPG whose every gradient step learns from a mix of real and model-imagined transitions.

    Args:
        env: the environment factory (continuous actions).
        model_learning: the world model and how it learns (:class:`WorldModelLearner`); default a
            5-member Gaussian ensemble.
        imagined: the imagined replay: rollouts per batch, horizon, the imagined share of every
            batch, the confidence gate and weights (:class:`ImaginedReplay`).
        **kwargs: DDPG, OffPolicyActorCritic and RLModule settings.
    """

    def __init__(
        self,
        env: EnvFactory,
        model_learning: LearnerFactory | None = None,
        imagined: ImaginedReplay | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        self.attach_model_learner(model_learning, DEFAULT_LEARNER, self.replay_buffer)
        self.attach_imagined_replay(imagined or ImaginedReplay())

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for actor and critic, Adam for the world model."""
        return self.with_model_optimizer(super().configure_optimizers())
