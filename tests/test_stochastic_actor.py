"""The off-policy actor-critic base admits a stochastic actor: SAC's tanh-Gaussian, with TorchRL's SACLoss."""

from __future__ import annotations

from lightning.pytorch import seed_everything
from tensordict import TensorDictBase
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictModuleBase
from test_ddpg import TASK_ID, _fit
from torch import nn
from torchrl.modules import ProbabilisticActor, TanhNormal
from torchrl.objectives import LossModule, SACLoss

from mbrl_lightning.algorithms.off_policy import NetFactory, OffPolicyActorCritic
from mbrl_lightning.envs import EnvFactory


class FixedTemperatureSAC(OffPolicyActorCritic):
    """SAC with a fixed entropy temperature: only the actor, the loss and its terms are new."""

    def make_actor(self, actor_net: NetFactory, observation_size: int, action_size: int) -> TensorDictModuleBase:
        """A tanh-Gaussian over the action box."""
        body = nn.Sequential(actor_net(observation_size, 2 * action_size), NormalParamExtractor())
        return ProbabilisticActor(
            TensorDictModule(body, ["observation"], ["loc", "scale"]), in_keys=["loc", "scale"], spec=self.action_spec,
            distribution_class=TanhNormal,
            distribution_kwargs={"low": self.action_spec.space.low, "high": self.action_spec.space.high},
        )

    def make_exploration(self, *settings: object) -> None:
        """None: the actor explores by sampling."""
        return None

    def make_loss(self) -> LossModule:
        """TorchRL's SACLoss with two critics and a fixed temperature."""
        return SACLoss(self.actor, self.critic, num_qvalue_nets=2, fixed_alpha=True, alpha_init=0.05,
                       loss_function="l2", action_spec=self.action_spec)

    def critic_loss(self, sample: TensorDictBase):
        """Both critics' regression to the soft TD target."""
        return self.loss_module.qvalue_v2_loss(sample)[0]

    def actor_loss(self, sample: TensorDictBase):
        """Temperature-weighted log-probability minus the smaller Q of reparameterised actions."""
        return self.loss_module.actor_loss(sample)[0]

    def critic_parameters(self) -> TensorDictBase:
        """The stacked critics inside the loss."""
        return self.loss_module.qvalue_network_params


def test_a_tanh_gaussian_actor_learns_through_the_off_policy_base() -> None:
    seed_everything(0)
    model = FixedTemperatureSAC(
        EnvFactory(TASK_ID, num_envs=4), actor_lr=1e-3, critic_lr=1e-3, tau=0.01, gamma=0.9, batch_size=64,
        learning_starts=200, frames_per_batch=40, updates_per_batch=20, total_frames=1200, eval_every_frames=0,
        eval_episodes=16,
    )
    assert model.exploration is None and model.exploration_policy is model.actor and model.noise_scale == 0.0
    before = model.evaluate()["eval/return_mean"]
    _fit(model)
    after = model.evaluate()["eval/return_mean"]
    assert model.gradient_steps == 20 * (1200 - 160) // 40
    assert after > before + 3.0, (before, after)
    assert after > -4.0, after
