"""Evaluation policies of the Atari protocols: epsilon-greedy (``epsilon_eval``) and noisy-net noise kept on (BBF's ``eval_noise``)."""

from __future__ import annotations

import copy

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.modules import NoisyLinear

from mbrl_lightning.nets.noisy import scaled_normal


class EvalEpsilonGreedy(TensorDictModuleBase):
    """The greedy actor, with each one-hot action replaced by a uniform one with probability ``epsilon``.

    TorchRL's ``EGreedyModule`` acts only under RANDOM exploration, which would also switch noisy
    layers on; evaluation runs DETERMINISTIC. The draws come from a generator of their own, seeded
    per evaluation, so an evaluation's actions depend on the weights and the seed alone and the
    training run's random stream is left untouched (a resumed run evaluates as the straight one).

    Args:
        actor: the greedy actor (one-hot ``action`` out).
        epsilon: probability of a uniform action at each step, in [0, 1].
        seed: seed of the generator of the draws.
    """

    def __init__(self, actor: TensorDictModuleBase, epsilon: float, seed: int) -> None:
        super().__init__()
        self.actor = actor
        self.epsilon = epsilon
        self.in_keys = list(actor.in_keys)
        self.out_keys = list(actor.out_keys)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Act greedily, then replace each action with a uniform one with probability ``epsilon``."""
        tensordict = self.actor(tensordict)
        action = tensordict.get("action")
        flat = action.reshape(-1, action.shape[-1])
        explore = torch.rand(flat.shape[0], generator=self.generator) < self.epsilon
        if bool(explore.any()):
            uniform = torch.randint(flat.shape[-1], (flat.shape[0],), generator=self.generator)
            replaced = torch.nn.functional.one_hot(uniform, flat.shape[-1]).to(flat.device, flat.dtype)
            flat = torch.where(explore.to(flat.device)[:, None], replaced, flat)
            tensordict.set("action", flat.reshape(action.shape))
        return tensordict


class NoisyEvaluation(TensorDictModuleBase):
    """A copy of the Q-actor whose noisy layers act with fresh noise at every step (BBF's ``eval_noise``).

    A copy, so that evaluation leaves the training network's noise draws as they were (the next
    collected batch acts with the draw of the last gradient step, resumed or not); the draws come
    from a generator of its own, seeded per evaluation.

    Args:
        actor: the greedy Q-actor whose network holds noisy layers.
        seed: seed of the generator of the draws.
    """

    def __init__(self, actor: TensorDictModuleBase, seed: int) -> None:
        super().__init__()
        self.actor = copy.deepcopy(actor)
        self.layers = [m for m in self.actor.modules() if isinstance(m, NoisyLinear)]
        self.in_keys = list(actor.in_keys)
        self.out_keys = list(actor.out_keys)
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def resample(self) -> None:
        """Fresh factorized noise in every noisy layer of the copy."""
        for layer in self.layers:
            device = layer.weight_epsilon.device
            epsilon_in = scaled_normal(layer.in_features, self.generator).to(device)
            epsilon_out = scaled_normal(layer.out_features, self.generator).to(device)
            torch.outer(epsilon_out, epsilon_in, out=layer.weight_epsilon)
            if layer.bias_mu is not None:
                layer.bias_epsilon.copy_(epsilon_out)
            layer._noisy_cache = None  # a cached noisy weight of the old draw (CachedNoisyLinear)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """New noise, then the actor with its noisy layers on."""
        self.resample()
        with set_exploration_type(ExplorationType.RANDOM):  # noisy layers add their noise only then
            return self.actor(tensordict)
