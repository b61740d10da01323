"""SAC's fused terms compute SACLoss's critic and actor losses and gradients; nets they cannot stack use SACLoss."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import seed_everything
from tensordict import TensorDict
from test_ddpg import _fit
from test_sac import _task_sac
from torchrl.envs.utils import set_exploration_type
from torchrl.modules import MLP as TorchRLMLP

from mbrl_lightning.algorithms import SAC
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.nets import MLP

BATCH = 64


def _pendulum_sac(**settings) -> SAC:
    """SAC on Pendulum (actions in [-2, 2], so the tanh-Gaussian is rescaled), small nets, three critics."""
    net = lambda inputs, outputs: MLP(inputs, outputs, hidden_sizes=(24, 16))  # noqa: E731
    settings = {"actor_net": net, "critic_net": net, **settings}
    return SAC(EnvFactory("Pendulum-v1"), num_critics=3, learning_starts=0, total_frames=100, eval_every_frames=0,
               **settings)


def _transitions(model: SAC, generator: torch.Generator) -> TensorDict:
    """A batch of made-up transitions, a quarter of them terminal, with rewards of either sign."""
    observation = lambda: 2 * torch.randn(BATCH, 3, generator=generator)  # noqa: E731
    terminated = torch.arange(BATCH).reshape(BATCH, 1) % 4 == 0
    return TensorDict({
        "observation": observation(), "action": 4 * torch.rand(BATCH, 1, generator=generator) - 2,
        ("next", "observation"): observation(), ("next", "reward"): torch.randn(BATCH, 1, generator=generator),
        ("next", "terminated"): terminated, ("next", "done"): terminated.clone(),
        ("next", "truncated"): torch.zeros(BATCH, 1, dtype=torch.bool),
    }, [BATCH])


def _terms_and_gradients(model: SAC, sample: TensorDict, seed: int) -> list[torch.Tensor]:
    """Critic loss, actor loss, log-probabilities, then the gradient of their sum for every trained tensor."""
    torch.manual_seed(seed)
    with set_exploration_type(model.loss_module.deterministic_sampling_mode):
        critic, actor = model.critic_loss(sample.clone()), model.actor_loss(sample.clone())
    trained = [*model.loss_module.actor_network_params.flatten_keys().values(),
               *model.critic_parameters().flatten_keys().values()]
    return [critic, actor, model._log_prob, *torch.autograd.grad(critic + actor, trained)]


@pytest.mark.parametrize(("observation_norm", "loss_function"), [(False, "l2"), (True, "smooth_l1")])
def test_the_fused_terms_equal_sacloss_terms_and_gradients(observation_norm: bool, loss_function: str) -> None:
    seed_everything(0)
    model = _pendulum_sac(observation_norm=observation_norm, loss_function=loss_function, gamma=0.9)
    assert model.fused_terms is not None
    generator = torch.Generator().manual_seed(1)
    if observation_norm:
        model.observation_normalizer.update(3 * torch.randn(500, 3, generator=generator) + 1)
    with torch.no_grad():  # targets apart from the critics, a temperature away from 1
        model.loss_module.target_qvalue_network_params.apply_(lambda target: target.add_(0.05))
        model.loss_module.log_alpha.fill_(-0.7)
    sample = _transitions(model, generator)
    fused = _terms_and_gradients(model, sample, seed=5)
    fused_terms, model.fused_terms = model.fused_terms, None
    reference = _terms_and_gradients(model, sample, seed=5)
    assert len(fused) == len(reference) == 3 + 6 + 6  # three terms, the actor's and the stacked critics' tensors
    for index, (got, expected) in enumerate(zip(fused, reference)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=f"term or gradient {index}")
    assert all(gradient.abs().sum() > 0 for gradient in reference[3:])


def test_a_short_fit_through_the_fused_terms_ends_where_sacloss_ends() -> None:
    weights = []
    for fused in (True, False):
        seed_everything(0)
        model = _task_sac(total_frames=100)
        initial = {key: value.clone() for key, value in model.state_dict().items()}
        if not fused:
            model.fused_terms = None
        _fit(model)
        weights.append(model.state_dict())
        assert model.gradient_steps == 40 and (model.fused_terms is not None) == fused
    assert weights[0].keys() == weights[1].keys()
    for key, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][key], rtol=1e-4, atol=1e-5, msg=key)
    moved = [key for key, value in weights[0].items() if not torch.equal(value, initial[key])]
    assert "loss_module.log_alpha" in moved and len(moved) > 10, moved


def test_nets_the_fused_terms_cannot_stack_use_sacloss() -> None:
    seed_everything(0)
    normed = lambda inputs, outputs: TorchRLMLP(  # noqa: E731
        in_features=inputs, out_features=outputs, num_cells=[8], norm_class=torch.nn.LayerNorm,
        norm_kwargs={"normalized_shape": 8})
    model = _pendulum_sac(critic_net=normed)
    assert model.fused_terms is None
    sample = _transitions(model, torch.Generator().manual_seed(1))
    assert torch.isfinite(model.critic_loss(sample)) and torch.isfinite(model.actor_loss(sample))
