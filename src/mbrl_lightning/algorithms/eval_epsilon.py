"""Epsilon-greedy evaluation (the Atari protocol's ``epsilon_eval``: 0.001 in Dopamine, DER, SPR and BBF)."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase


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
