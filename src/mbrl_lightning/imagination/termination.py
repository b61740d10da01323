"""Termination of imagined rollouts: the env's own rule where it is known, else the world model's.

MBPO (Janner et al. 2019) stops its branched rollouts with each env's termination function
(``mbpo/static/*.py``) rather than a learned one. The rules here are the ones the env code
applies (read from ``pybullet_envs_gymnasium`` and gymnasium), written on batched observations.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from mbrl_lightning.errors import ConfigurationError

# (observation, action, next observation) -> terminated, ``[n, 1]`` bool.
TerminationFunction = Callable[[Tensor, Tensor, Tensor], Tensor]

# The torso's height above the ground at the first reset (``robot_locomotors.WalkerBase.initial_z``):
# Ant's observation[0] is the height minus this, and the episode ends once the height is <= 0.26.
ANT_BULLET_INITIAL_Z = 0.75
ANT_BULLET_MIN_Z = 0.26


def never(observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor:
    """Never terminates, except on a non-finite state (every pybullet walker ends on one)."""
    return ~next_observation.isfinite().all(-1, keepdim=True)


def ant_bullet(observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor:
    """``AntBulletEnv``: the torso scrapes the ground (height <= 0.26), or the state is non-finite."""
    height = next_observation[..., :1] + ANT_BULLET_INITIAL_Z
    return (height <= ANT_BULLET_MIN_Z) | never(observation, action, next_observation)


TERMINATION_FUNCTIONS: dict[str, TerminationFunction] = {"never": never, "ant_bullet": ant_bullet}
# The given rule of each env id that has one (``auto``).
ENV_TERMINATION = {
    "HalfCheetahBulletEnv-v0": "never",  # its _isDone() is False: only time limits end episodes
    "AntBulletEnv-v0": "ant_bullet",
    "Pendulum-v1": "never",
}
CHOICES = ("auto", "learned", *TERMINATION_FUNCTIONS)


def resolve_termination(name: str, env_id: str, key: str = "model.imagined.termination") -> TerminationFunction | None:
    """The termination function ``name`` means for ``env_id``; None for ``learned`` (the world model's head)."""
    if name not in CHOICES:
        raise ConfigurationError(f"{key}={name!r}: allowed values are {', '.join(map(repr, CHOICES))}.")
    if name == "learned":
        return None
    if name == "auto":
        if env_id not in ENV_TERMINATION:
            given = ", ".join(map(repr, TERMINATION_FUNCTIONS))
            raise ConfigurationError(
                f"{key}='auto': no termination function is known for {env_id}; set 'learned' (the world model "
                f"predicts termination) or name one of {given}."
            )
        name = ENV_TERMINATION[env_id]
    return TERMINATION_FUNCTIONS[name]


def with_observation_scale(function: TerminationFunction, loc: Tensor, scale: Tensor) -> TerminationFunction:
    """``function`` applied to observations the env standardised as ``(x - loc) / scale`` (``ObservationNorm``)."""

    def on_raw(observation: Tensor, action: Tensor, next_observation: Tensor) -> Tensor:
        l, s = loc.to(observation), scale.to(observation)
        return function(observation * s + l, action, next_observation * s + l)

    return on_raw
