"""Learned dynamics models, interchangeable through the YAML."""

from mbrl_lightning.world_models.base import Prediction, WorldModel
from mbrl_lightning.world_models.conv import ConvWorldModel
from mbrl_lightning.world_models.deterministic import LinearWorldModel, MLPWorldModel
from mbrl_lightning.world_models.ensemble import GaussianEnsembleWorldModel
from mbrl_lightning.world_models.learner import WorldModelLearner

__all__ = ["ConvWorldModel", "GaussianEnsembleWorldModel", "LinearWorldModel", "MLPWorldModel", "Prediction", "WorldModel",
           "WorldModelLearner"]
