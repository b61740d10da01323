"""World models learn CartPole dynamics; ensembles know where they lack data; k-step error grows."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.world_models import GaussianEnsembleWorldModel, LinearWorldModel, MLPWorldModel, WorldModel
from mbrl_lightning.world_models.normalization import RunningNormalizer
from mbrl_lightning.world_models.training import k_step_errors, validation_metrics, world_model_step


@pytest.fixture(scope="module")
def cartpole_data() -> tuple[TensorDictBase, TensorDictBase, TensorDictBase]:
    """Random-policy CartPole trajectories: [envs, time] for k-step checks, flat train and held-out sets."""
    torch.manual_seed(0)
    trajectories = EnvFactory("CartPole-v1", num_envs=16).make(seed=0).rollout(200, break_when_any_done=False)
    flat = trajectories.reshape(-1)
    order = torch.randperm(flat.numel())
    return trajectories, flat[order[600:]], flat[order[:600]]


def _train(model: WorldModel, train: TensorDictBase, steps: int, lr: float = 3e-3) -> None:
    model.observe(train)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def optimize(loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(steps):
        world_model_step(model, train[torch.randint(train.numel(), (256,))], optimize)


def _one_step_error(model: WorldModel, data: TensorDictBase) -> float:
    with torch.no_grad():
        predicted = model(data.select("observation", "action").clone())["next", "observation"]
    scale = model.observation_normalizer.std.float()
    return (((predicted - data["next", "observation"]) / scale) ** 2).mean().item()


@pytest.mark.parametrize("model_class", [MLPWorldModel, GaussianEnsembleWorldModel])
def test_one_step_error_falls_by_a_large_factor(model_class, cartpole_data) -> None:
    torch.manual_seed(1)
    _, train, held_out = cartpole_data
    model = model_class(4, 2)
    model.observe(train)
    before = _one_step_error(model, held_out)
    _train(model, train, steps=400)
    after = _one_step_error(model, held_out)
    assert after < before / 50, (before, after)
    metrics = validation_metrics(model, held_out)
    assert metrics["world_model/confidence"] > 0.8


def test_linear_model_learns_but_less_than_the_mlp(cartpole_data) -> None:
    torch.manual_seed(2)
    _, train, held_out = cartpole_data
    linear, mlp = LinearWorldModel(4, 2), MLPWorldModel(4, 2)
    for model in (linear, mlp):
        _train(model, train, steps=400)
    linear_error = _one_step_error(linear, held_out)
    assert linear_error < 0.05  # CartPole is close to linear for small angles
    assert _one_step_error(mlp, held_out) < linear_error


def test_ensemble_disagrees_more_far_from_the_data(cartpole_data) -> None:
    torch.manual_seed(3)
    _, train, _ = cartpole_data
    model = GaussianEnsembleWorldModel(4, 2, num_members=5, num_elites=5)
    _train(model, train, steps=400)
    seen = train[:512]
    far = seen.clone()
    far["observation"] = far["observation"] + 6 * model.observation_normalizer.std.float()
    with torch.no_grad():
        near_spread = model.disagreement(seen["observation"], seen["action"]).mean()
        far_spread = model.disagreement(far["observation"], far["action"]).mean()
    assert far_spread > 3 * near_spread, (near_spread, far_spread)


def test_elites_are_the_best_members_on_data_apart_from_the_reported_loss(cartpole_data) -> None:
    torch.manual_seed(4)
    _, train, held_out = cartpole_data
    model = GaussianEnsembleWorldModel(4, 2, num_members=4, num_elites=2)
    _train(model, train, steps=50)
    with torch.no_grad():
        model.network[0].weight[1].mul_(0)  # cripple member 1
        metrics = model.validate(held_out)
        selection_errors = model.member_errors(held_out[0::2])
        report_errors = model.member_errors(held_out[1::2])
    assert 1 not in model.elite_indices.tolist()
    elites = model.elite_indices
    assert set(elites.tolist()) == set(torch.topk(selection_errors, 2, largest=False).indices.tolist())
    # The reported loss comes from the rows that did not pick the elites.
    torch.testing.assert_close(metrics["val_loss"], report_errors[elites].mean())
    assert not torch.isclose(metrics["val_loss"], model.member_errors(held_out)[elites].mean())


def test_k_step_error_grows_with_horizon(cartpole_data) -> None:
    torch.manual_seed(5)
    trajectories, train, _ = cartpole_data
    model = MLPWorldModel(4, 2)
    _train(model, train, steps=300)
    errors = k_step_errors(model, trajectories[:, :60], horizon=8)
    assert errors.shape == (8,)
    assert errors[-1] > 3 * errors[0]
    assert (errors[1:] >= errors[:-1]).float().mean() >= 0.85


def test_running_normalizer_matches_batch_statistics() -> None:
    data = torch.randn(1000, 3) * torch.tensor([1.0, 10.0, 0.1]) + torch.tensor([5.0, -2.0, 0.0])
    normalizer = RunningNormalizer(3)
    for chunk in data.split(77):
        normalizer.update(chunk)
    torch.testing.assert_close(normalizer.mean.float(), data.mean(0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(normalizer.std.float(), data.std(0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(normalizer.denormalize(normalizer.normalize(data)), data, rtol=1e-4, atol=1e-4)


def test_running_normalizer_never_returns_stale_cached_statistics() -> None:
    normalizer = RunningNormalizer(2)
    normalizer.update(torch.tensor([[0.0, 0.0], [2.0, 4.0]]))
    first = normalizer.normalize(torch.tensor([[2.0, 4.0]]))
    normalizer.update(torch.tensor([[10.0, 20.0]]))  # the statistics move: the cache must follow
    torch.testing.assert_close(normalizer.stats(torch.float32)[1], normalizer.std.float())
    assert not torch.equal(normalizer.normalize(torch.tensor([[2.0, 4.0]])), first)
    other = RunningNormalizer(2)
    other.normalize(torch.zeros(1, 2))  # caches the empty statistics
    other.load_state_dict(normalizer.state_dict())
    torch.testing.assert_close(other.normalize(torch.tensor([[2.0, 4.0]])), normalizer.normalize(torch.tensor([[2.0, 4.0]])))


def test_the_learner_trains_and_measures_a_conv_model_on_each_new_batch_before_training() -> None:
    from mbrl_lightning.world_models import ConvWorldModel, WorldModelLearner

    torch.manual_seed(0)
    frames = torch.randint(0, 256, (2, 9, 2, 16, 16), dtype=torch.uint8)
    batch = TensorDict({
        "observation": frames[:, :-1], "action": torch.nn.functional.one_hot(torch.randint(3, (2, 8)), 3),
        "next": {"observation": frames[:, 1:], "reward": torch.zeros(2, 8, 1),
                 "terminated": torch.zeros(2, 8, 1, dtype=torch.bool), "done": torch.zeros(2, 8, 1, dtype=torch.bool)},
    }, batch_size=[2, 8])
    learner = WorldModelLearner(2, 3, world_model=partial(ConvWorldModel, channels=4, residual_blocks=1),
                                batch_size=8, updates_per_batch=3, validation_fraction=0.0, k_step_horizon=0)
    optimizer = learner.make_optimizer()
    learner.store(batch.reshape(-1))
    with torch.no_grad():
        untrained = learner.world_model.errors(batch.reshape(-1)).mean().item()
    metrics = learner.fit(batch, partial(_step, optimizer))
    assert metrics["world_model/val_loss"] == pytest.approx(untrained)
    assert metrics["world_model/confidence"] == pytest.approx(math.exp(-untrained))
    assert {"world_model/train_loss", "loss/world_model_observation"} <= metrics.keys()
    with torch.no_grad():
        assert learner.world_model.errors(batch.reshape(-1)).mean().item() < untrained


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
