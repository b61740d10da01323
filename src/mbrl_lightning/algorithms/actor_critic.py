"""Stochastic actors and state-value critics built from the env specs."""

from __future__ import annotations

from collections.abc import Callable

from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import TensorSpec
from torchrl.modules import OneHotCategorical, ProbabilisticActor, TanhNormal, ValueOperator

from mbrl_lightning.errors import ConfigurationError

NetFactory = Callable[[int, int], nn.Module]


def is_discrete(action_spec: TensorSpec) -> bool:
    """Whether actions are one-hot choices among ``n`` (rather than continuous vectors)."""
    return hasattr(action_spec, "space") and hasattr(action_spec.space, "n")


def make_actor(net: NetFactory, observation_size: int, action_spec: TensorSpec) -> ProbabilisticActor:
    """A policy with log-probabilities: categorical over one-hot actions, tanh-Gaussian in a box.

    Deterministic evaluation takes the mode (the most likely action, or the squashed mean).
    """
    if is_discrete(action_spec):
        logits = TensorDictModule(net(observation_size, action_spec.space.n), ["observation"], ["logits"])
        return ProbabilisticActor(
            logits, in_keys=["logits"], spec=action_spec, distribution_class=OneHotCategorical,
            return_log_prob=True,
        )
    if action_spec.shape == () or not hasattr(action_spec.space, "low"):
        raise ConfigurationError(f"model: unsupported action space {type(action_spec).__name__}; expected one-hot or a box.")
    size = int(action_spec.shape[-1])
    body = nn.Sequential(net(observation_size, 2 * size), NormalParamExtractor())
    params = TensorDictModule(body, ["observation"], ["loc", "scale"])
    return ProbabilisticActor(
        params, in_keys=["loc", "scale"], spec=action_spec, distribution_class=TanhNormal,
        distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
        return_log_prob=True,
    )


def make_critic(net: NetFactory, observation_size: int) -> ValueOperator:
    """A state-value function ``V(observation)`` written to ``state_value``."""
    return ValueOperator(net(observation_size, 1), in_keys=["observation"])
