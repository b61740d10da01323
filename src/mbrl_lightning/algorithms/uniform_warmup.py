"""Uniformly random actions inside the action box until learning starts (SB3's and the TD3/SAC papers' warm-up)."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import TensorSpec


class UniformWarmup(TensorDictModuleBase):
    """The wrapped policy, with its action replaced by a uniform draw from the action box while ``warming_up``.

    The learner clears the flag once its replay buffer holds ``learning_starts`` transitions, so
    the flag changes only between collected batches. It is a buffer, so it travels with
    checkpoints and with the weights that ``multi_sync`` collector processes receive. TorchRL's
    collectors have ``init_random_frames``, but the project's lean collector does not, and a
    policy-side switch serves every collector kind alike.

    Args:
        policy: the exploration policy used after the warm-up.
        action_spec: the bounded action spec whose ``rand`` draws the warm-up actions.
        warming_up: whether the warm-up is on at the start (off when learning starts at once).
    """

    def __init__(self, policy: TensorDictModuleBase, action_spec: TensorSpec, warming_up: bool = True) -> None:
        super().__init__()
        self.policy = policy
        self.action_spec = action_spec
        self.in_keys = list(policy.in_keys)
        self.out_keys = list(policy.out_keys)
        self.register_buffer("warming_up", torch.tensor(warming_up))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Act with the policy; during the warm-up overwrite its action with a uniform one."""
        # The policy still runs during the warm-up, so batches carry the same keys before and after it.
        tensordict = self.policy(tensordict)
        if bool(self.warming_up):
            action = tensordict.get("action")
            tensordict.set("action", self.action_spec.rand(tensordict.batch_size).to(action.device, action.dtype))
        return tensordict
