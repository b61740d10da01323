"""The contract every world model meets, whatever it predicts from (vectors or frames)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from tensordict import TensorDictBase
from torch import nn


class DynamicsModel(nn.Module, ABC):
    """What learners, imagination and diagnostics may ask of any world model.

    - :meth:`observe` folds real transitions into the model's data statistics (normalisers);
    - :meth:`loss` returns named training terms (keys ``loss_*``), summed by the learner;
    - :meth:`validate` returns ``val_loss`` on held-out transitions: the mean per-transition error of
      everything the model predicts, in the units it trains in (normalised targets for vector
      models, pixels in [0, 1] for frame models), plus ``disagreement`` for ensembles;
    - :meth:`forward` writes the point prediction as ``("next", "observation")`` (and
      ``("next", "reward")``, ``("next", "done_probability")`` where the model predicts them).

    :class:`~mbrl_lightning.world_models.WorldModelLearner` trains and measures any of them.
    """

    @property
    def num_members(self) -> int:
        """Ensemble size; 1 for a single model."""
        return 1

    def observe(self, transitions: TensorDictBase) -> None:
        """Fold real transitions into the model's data statistics; a model without any keeps none."""

    @abstractmethod
    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """Named loss terms (keys starting with ``loss_``) on real transitions."""

    @abstractmethod
    def validate(self, transitions: TensorDictBase) -> TensorDictBase:
        """``val_loss`` (and, for ensembles, ``disagreement``) on held-out transitions."""

    @abstractmethod
    def forward(self, transitions: TensorDictBase) -> TensorDictBase:
        """Write the point prediction of the next step into ``transitions``."""
