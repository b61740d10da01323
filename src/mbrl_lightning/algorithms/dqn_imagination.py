"""DQN with a learned imagination model (Dyna, Sutton 1991): Dyna-style imagined transitions."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import ReplayBuffer

from mbrl_lightning.algorithms.dqn import DQN
from mbrl_lightning.algorithms.dyna import Dyna
from mbrl_lightning.algorithms.model_based import LearnerFactory
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.imagination import ImaginedReplay
from mbrl_lightning.world_models.learner import WorldModelLearner

# The imagination-DQN design's settings where the YAML gives no ``model_learning`` block.
DEFAULT_LEARNER = partial(WorldModelLearner, lr=1e-3, batch_size=256, updates_per_batch=20, k_step_horizon=10)


class ImaginationDQN(Dyna, DQN):
    """DQN whose Q-updates also learn from transitions imagined by a world model.

    Each collected batch: the world model trains on the real replay buffer (a held-out fraction
    measures it), then the exploration policy is rolled out in the model from real start states,
    and the imagined transitions go to their own buffer (:class:`ImaginedReplay`). Every Q step
    mixes real and imagined transitions (the :class:`Dyna` mixin). With ``imagined_targets`` the TD targets of real samples
    use the model's predicted next state and reward (the variant of the imagination-DQN design).

    Args:
        env: the environment factory.
        model_learning: the world model and how it learns (:class:`WorldModelLearner`; default MLP).
        imagined: the imagined replay (:class:`ImaginedReplay`: starts, horizon, buffer size, the
            imagined share of every Q batch, confidence gate and weights); default its defaults.
        imagined_targets: compute TD targets of real samples from model-predicted next states.
        **kwargs: DQN and RLModule settings.
    """

    def __init__(
        self,
        env: EnvFactory,
        model_learning: LearnerFactory | None = None,
        imagined: ImaginedReplay | None = None,
        imagined_targets: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        self.attach_imagined_replay(imagined or ImaginedReplay())
        self.imagined_targets = imagined_targets
        # The world model learns from the Q-learner's own replay buffer (held-out share flagged).
        self.attach_model_learner(model_learning, DEFAULT_LEARNER, self.replay_buffer)

    @property
    def imagined_buffer(self) -> ReplayBuffer:
        """The imagined transitions."""
        return self.imagined.buffer

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for the Q-network, Adam for the world model."""
        return self.with_model_optimizer([super().configure_optimizers()])

    def real_transform(self) -> Callable[[TensorDictBase], TensorDictBase] | None:
        """Model-predicted targets for real samples when ``imagined_targets`` is set."""
        return self.predicted_targets if self.imagined_targets else None

    def predicted_targets(self, real: TensorDictBase) -> TensorDictBase:
        """Real transitions whose next state and reward are the model's predictions (the imagination-DQN design's variant)."""
        with torch.no_grad():
            predicted = self.world_model(real.clone())
        real.set(("next", "observation"), predicted["next", "observation"])
        real.set(("next", "reward"), predicted["next", "reward"])
        return real
