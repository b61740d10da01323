"""SAC: learning a small task, the entropy temperature and the target critics move, the temperature survives a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from tensordict import TensorDict
from test_ddpg import TASK_ID, _fit

from mbrl_lightning.algorithms import SAC
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.nets import MLP


def _net(inputs: int, outputs: int) -> torch.nn.Module:
    return MLP(inputs, outputs, hidden_sizes=(32, 32))


def _task_sac(env_copies: int = 2, **overrides) -> SAC:
    settings = dict(
        actor_net=_net, critic_net=_net, actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-2, tau=0.05, gamma=0.9,
        batch_size=32, learning_starts=40, frames_per_batch=20, update_to_data=0.5, total_frames=120,
        eval_every_frames=0, eval_episodes=2,
    )
    settings.update(overrides)
    return SAC(EnvFactory(TASK_ID, num_envs=env_copies), **settings)


def test_sac_learns_a_small_continuous_task() -> None:
    seed_everything(0)
    model = _task_sac(
        env_copies=4, batch_size=64, learning_starts=200, frames_per_batch=40,
        total_frames=1200, eval_episodes=16, tau=0.01, alpha_lr=1e-3,
    )
    before = model.evaluate()["eval/return_mean"]
    _fit(model)
    after = model.evaluate()["eval/return_mean"]
    assert model.gradient_steps == 0.5 * (1200 - 160)  # from the batch that reaches 200 frames
    # A random policy scores about -10, heading to the origin about -2.
    assert after > before + 3.0 and after > -4.0, (before, after)


def test_the_temperature_and_the_target_critics_move_every_step() -> None:
    seed_everything(0)
    model = _task_sac()
    targets = model.loss_module.target_qvalue_network_params.clone()
    assert model.alpha == pytest.approx(1.0)
    assert model.loss_module.target_entropy == -1.0  # minus the action dimensions
    _fit(model)
    assert model.gradient_steps == 50  # 0.5 steps per frame over the 100 frames from the batch that reaches 40
    # The policy starts far more random than the target entropy asks: the temperature falls.
    assert model.alpha < 0.9, model.alpha
    online = model.loss_module.qvalue_network_params
    for key, target in model.loss_module.target_qvalue_network_params.items(include_nested=True, leaves_only=True):
        assert not torch.equal(target, targets[key]), key  # the Polyak update moved it
        assert not torch.equal(target, online[key]), key  # by tau, not all the way


def test_a_fixed_temperature_stays_and_has_no_optimizer() -> None:
    seed_everything(0)
    model = _task_sac(fixed_alpha=True, alpha_init=0.2)
    _fit(model)
    assert len(model.optimizers()) == 2
    assert model.alpha == pytest.approx(0.2)


def test_the_temperature_and_its_optimizer_resume_from_a_checkpoint(tmp_path: Path) -> None:
    seed_everything(0)
    model = _task_sac()
    trainer = Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model)
    path = tmp_path / "sac.ckpt"
    trainer.save_checkpoint(path)
    saved_state = model.optimizers()[2].optimizer.state_dict()["state"]

    restored = _task_sac()
    assert restored.alpha == pytest.approx(1.0)
    # The budget is spent: the resumed fit restores everything and stops before collecting.
    resumed = Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0)
    resumed.fit(restored, ckpt_path=path)
    assert restored.alpha == model.alpha != 1.0
    restored_state = restored.optimizers()[2].optimizer.state_dict()["state"]
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(restored_state[0][key], saved_state[0][key]), key
    assert restored.gradient_steps == model.gradient_steps


def test_sac_rejects_bad_settings() -> None:
    with pytest.raises(ConfigurationError, match="model.alpha_init"):
        _task_sac(alpha_init=0.0)
    with pytest.raises(ConfigurationError, match="model.update_to_data"):
        _task_sac(update_to_data=0)
    with pytest.raises(ConfigurationError, match="continuous actions"):
        SAC(EnvFactory("CartPole-v1"))


def _random_transitions(model: SAC, count: int) -> TensorDict:
    """``count`` transitions with random observations, actions inside the box and random rewards."""
    observation = torch.randn(count, *model.observation_spec.shape[-1:])
    action = model.action_spec.rand((count,))
    no = torch.zeros(count, 1, dtype=torch.bool)
    following = {"observation": observation + 0.1 * torch.randn_like(observation), "reward": torch.randn(count, 1),
                 "terminated": no, "done": no}
    return TensorDict({"observation": observation, "action": action, "next": following}, batch_size=[count])


def _detached_steps(model: SAC) -> None:
    """Let ``gradient_update`` run outside a Trainer: plain optimizers and backward."""
    optimizers = model.configure_optimizers()
    model.optimizer = lambda index=0: optimizers[index]
    model.manual_backward = lambda loss: loss.backward()


def _actor_gradient_on_stepped_critics(model: SAC, actor_before: dict, sample, seed: int) -> list[torch.Tensor]:
    """The actor's gradient from its parameters before the step, on the critics after it, with the step's draws."""
    reference = _task_sac()
    reference.load_state_dict(model.state_dict())
    reference.actor.load_state_dict(actor_before)
    torch.manual_seed(seed)
    reference.critic_loss(sample)  # draws the next actions, as the step did first
    reference.actor_loss(sample).backward()
    return [p.grad.clone() for p in reference.loss_module.actor_network_params.flatten_keys().values()]


@pytest.mark.parametrize("critic_first", [True, False])
def test_critic_first_steps_the_actor_on_the_critics_of_the_same_step(critic_first: bool) -> None:
    seed_everything(0)
    model = _task_sac(critic_first=critic_first, fixed_alpha=True)
    _detached_steps(model)
    sample = _random_transitions(model, 32)
    actor_before = {k: v.clone() for k, v in model.actor.state_dict().items()}
    critics_before = model.loss_module.qvalue_network_params.clone()
    torch.manual_seed(1)
    model.gradient_update(sample)
    stepped = [p.grad.clone() for p in model.loss_module.actor_network_params.flatten_keys().values()]
    expected = _actor_gradient_on_stepped_critics(model, actor_before, sample, seed=1)
    moved = model.loss_module.qvalue_network_params
    assert any(not torch.equal(critics_before[key], moved[key]) for key in moved.keys(True, True))
    same = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(stepped, expected))
    # Only the critic-first order climbs the critics that this step moved.
    assert same is critic_first
