"""Generalized state-dependent exploration (gSDE; Raffin et al. 2022, "Smooth Exploration for Robotic RL").

The actor's action before tanh is ``mu(s) + phi(s) @ W``: ``phi(s)`` are the features of the
actor net's last hidden layer and ``W`` (``features x actions``) is drawn from ``N(0, sigma^2)``
with a learnt ``log sigma`` per entry, held fixed for ``sde_sample_freq`` env steps. For a fixed
state the noise is Gaussian with variance ``sum_j (phi_j(s) sigma_jk)^2`` per action dimension,
so :class:`GSDEHead` hands TorchRL's ``TanhNormal`` that scale: SACLoss's actor, critic and
temperature terms then score and reparameterise actions under the gSDE distribution (tanh
log-det included by ``TanhNormal``). :class:`GSDENoise` replaces the collected action by the
squashed ``mu(s) + phi(s) @ W`` with the held matrix. Written here rather than taken from
Stable-Baselines3, whose distribution classes do not plug into TorchRL's ``ProbabilisticActor``.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import Tensor, nn
from torchrl.data import TensorSpec
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules import TanhNormal

from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.nets.normalized_input import NormalizedInput

# Added to the variance before the square root, as the gSDE paper's implementation does, so a
# state whose features are all zero still has a valid scale.
VARIANCE_FLOOR = 1e-6
# Stable-Baselines3's SAC clips the gSDE actor's mean to [-2, 2] before tanh (``clip_mean``): with a
# state-dependent scale an unbounded mean drives tanh into saturation early in training.
MEAN_CLIP = 2.0


def split_last_linear(net: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """``net`` as (features ``phi``, final ``nn.Linear``); gSDE's noise reads the features the mean is made from."""
    normalized = net if isinstance(net, NormalizedInput) else None
    inner = net.net if normalized is not None else net
    layers = list(inner.children()) if isinstance(inner, nn.Sequential) else []
    if not layers or type(layers[-1]) is not nn.Linear:
        raise ConfigurationError(
            f"model.actor_net: use_sde needs an actor net that is an nn.Sequential ending in nn.Linear "
            f"(such as mbrl_lightning.nets.MLP), got {type(inner).__name__}."
        )
    features: nn.Module = nn.Sequential(*layers[:-1])
    if normalized is not None:
        features = NormalizedInput(features, normalized.normalizer)
    return features, layers[-1]


class GSDEHead(nn.Module):
    """Observation to ``(loc, scale, features)``: the gSDE mean, its state-dependent Gaussian scale and ``phi(s)``.

    Args:
        net: the actor net built for ``(observation_size, action_size)``; its last Linear gives the mean.
        log_std_init: the initial ``log sigma`` of every entry of the noise matrix (the zoo uses -3).
        learn_features: let the noise's scale train the features (Stable-Baselines3's SAC actor:
            ``learn_features=True``); false detaches them, so only the mean's gradient shapes them
            (the default of Stable-Baselines3's distribution class, which its PPO and A2C keep).
    """

    def __init__(self, net: nn.Module, log_std_init: float, learn_features: bool = True) -> None:
        super().__init__()
        self.learn_features = learn_features
        self.features, self.mean = split_last_linear(net)
        # One sigma per (feature, action) entry: Stable-Baselines3's default ``full_std=True``.
        self.log_std = nn.Parameter(torch.full((self.mean.in_features, self.mean.out_features), float(log_std_init)))

    def forward(self, observation: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The clipped mean, ``sqrt(phi(s)^2 @ sigma^2 + floor)`` and the features (detached unless ``learn_features``)."""
        hidden = self.features(observation)
        loc = self.mean(hidden).clamp(-MEAN_CLIP, MEAN_CLIP)
        features = hidden if self.learn_features else hidden.detach()
        variance = features.pow(2) @ self.log_std.exp().pow(2)
        return loc, (variance + VARIANCE_FLOOR).sqrt(), features


class GSDENoise(TensorDictModuleBase):
    """Replaces the sampled action by ``squash(loc + phi(s) @ W)`` with ``W ~ N(0, sigma^2)`` held between resamples.

    One matrix per env copy. It is redrawn for all copies every ``sample_freq`` calls (env steps)
    when ``sample_freq > 0``, for a copy whose ``step_count`` is 0 (an episode start), and, when
    ``sample_freq`` is -1, at :meth:`step`, which the learner calls once per collected batch
    (Stable-Baselines3's once per rollout; sigma is the one before that batch's gradient steps). The matrix and the step counter are buffers, so a
    checkpoint holds them and a resumed run continues with the same noise. It acts only under the
    ``RANDOM`` exploration type that collection sets; elsewhere (evaluation, a collector's probe
    call) the actor's action is left as it is and nothing is counted.

    Args:
        head: the actor's :class:`GSDEHead`, whose ``log_std`` gives sigma.
        action_spec: the bounded action spec (the box the squashed action is scaled to).
        sample_freq: env steps between redraws, or -1 (only at :meth:`resample` and episode starts).
        copies: env copies acting at once (one matrix each).
    """

    def __init__(self, head: GSDEHead, action_spec: TensorSpec, sample_freq: int, copies: int) -> None:
        super().__init__()
        # Not registered as a child: the head's parameters belong to the actor (one copy in the state dict).
        self._head = (head,)
        self.sample_freq = sample_freq
        self.low, self.high = action_spec.space.low, action_spec.space.high
        self.in_keys = ["loc", "scale", "sde_features", "step_count"]
        self.out_keys = ["action"]
        # Sized at construction so that a checkpoint's matrix loads into a fresh learner.
        self.register_buffer("noise_matrix", torch.zeros(copies, *head.log_std.shape))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.resample()

    def resample(self, rows: Tensor | None = None) -> None:
        """Draw new matrices for the env copies in ``rows`` (all when None) from ``N(0, sigma^2)``."""
        sigma = self._head[0].log_std.detach().exp()
        if rows is None:
            self.noise_matrix = torch.randn(self.noise_matrix.shape, device=sigma.device) * sigma
        elif rows.any():
            self.noise_matrix[rows] = torch.randn((int(rows.sum()), *sigma.shape), device=sigma.device) * sigma

    def step(self, frames: int) -> None:
        """The learner's once-per-collected-batch call: a new matrix for every copy when ``sample_freq`` is -1."""
        if self.sample_freq == -1:
            self.resample()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Resample where due, then write the squashed ``loc + phi(s) @ W`` as the action."""
        if exploration_type() is not ExplorationType.RANDOM:
            return tensordict
        loc, scale, features = (tensordict.get(key) for key in self.in_keys[:3])
        copies = loc.shape[:-1].numel()
        if self.noise_matrix.shape[0] != copies:  # a caller with another number of env copies
            self.noise_matrix = torch.zeros(copies, *self.noise_matrix.shape[1:], device=loc.device)
            self.resample()
        elif self.sample_freq > 0 and int(self.steps) % self.sample_freq == 0:
            self.resample()
        elif "step_count" in tensordict.keys():
            self.resample(tensordict.get("step_count").reshape(copies) == 0)
        self.steps += 1
        noise = torch.bmm(features.reshape(copies, 1, -1), self.noise_matrix).reshape(loc.shape)
        squash = TanhNormal(loc, scale, low=self.low, high=self.high).transforms[0]
        tensordict.set("action", squash(loc + noise))
        return tensordict
