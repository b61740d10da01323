"""Curiosity: intrinsic rewards for novel transitions, and the weight beta that scales them."""

from mbrl_lightning.curiosity.base import Curiosity
from mbrl_lightning.curiosity.beta import AdaptiveBeta, FixedBeta
from mbrl_lightning.curiosity.disagreement import EnsembleDisagreement
from mbrl_lightning.curiosity.icm import ICM
from mbrl_lightning.curiosity.imagination_entropy import (
    ImaginationEntropy,
    action_spread,
    discrete_imagination_entropy,
)
from mbrl_lightning.curiosity.rnd import RND

__all__ = [
    "AdaptiveBeta",
    "Curiosity",
    "EnsembleDisagreement",
    "FixedBeta",
    "ICM",
    "ImaginationEntropy",
    "RND",
    "action_spread",
    "discrete_imagination_entropy",
]
