"""PETS learns Pendulum from a few hundred real frames; MCTS and known-model MPC run through the CLI."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from conftest import CONF_DIR, fit_args, run_fit
from lightning.pytorch import Callback
from tensordict import TensorDict
from torchrl.data import Bounded

from mbrl_lightning.algorithms.pets import PETS
from mbrl_lightning.cli import main
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.planners import CEMPlanner, KnownDynamics, MCTSPlanner
from mbrl_lightning.planners.rewards import pendulum_dynamics, pendulum_reward
from mbrl_lightning.planners.stats import PlanningStats


class EpisodeReturns(Callback):
    """Records every finished training episode's return."""

    def __init__(self) -> None:
        self.returns: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, *_: object) -> None:
        value = trainer.callback_metrics.get("train/episode_return")
        if value is not None and pl_module.frames % 200 == 0:
            self.returns.append(float(value))


# Small enough for the test suite: 4 episodes (one random) and a sixth of the config's planner work
# per action (2 CEM iterations of 50 candidates instead of 4 of 200; the same 15-step horizon, which
# the swing-up needs: at 12 steps the third planned episode stays below -700).
SMALL_PETS = (
    "--model.total_frames", "800", "--model.eval_every_frames", "0",
    "--model.planner.init_args.population", "50", "--model.planner.init_args.elites", "5",
    "--model.planner.init_args.iterations", "2", "--model.model_learning.init_args.updates_per_batch", "150",
)


def _count_planned_actions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every planning call's number of chosen actions, collected while the test runs."""
    planned: list[int] = []
    record = PlanningStats.record

    def counting(self, seconds: float, actions: int, predicted_return: float) -> None:
        planned.append(actions)
        record(self, seconds, actions, predicted_return)

    monkeypatch.setattr(PlanningStats, "record", counting)
    return planned


def test_pets_improves_pendulum_return_within_800_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    returns = EpisodeReturns()
    planned_actions = _count_planned_actions(monkeypatch)
    cli = run_fit(*fit_args("pendulum_pets.yaml", *SMALL_PETS), callbacks=(returns,))
    assert isinstance(cli.model, PETS)
    random_episode, *planned = returns.returns
    assert len(planned) == 3
    # A random Pendulum episode scores about -1200 or worse; planning with a learned model swings up.
    assert random_episode < -900
    assert max(planned) > random_episode + 500
    assert max(planned) > -500
    metrics = cli.trainer.callback_metrics
    assert float(metrics["world_model/val_loss"]) < 0.5
    # Every frame after the 200 random ones was chosen by the planner.
    assert sum(planned_actions) == 800 - 200


def test_pendulum_pets_planner_swings_up_from_near_the_bottom_with_the_true_dynamics() -> None:
    # The config's CEM (its horizon, alpha, warm start), planning through the real physics from the
    # start of Pendulum's evaluation seed 1000005 (theta 2.84, slowly falling). Warm-started from the
    # shifted previous plan, it holds the torque at -2 there for the whole episode (-1,495); started
    # cold every step, it swings up. A smaller population and one particle (the dynamics are exact)
    # keep the test to 100 planned steps.
    settings = yaml.safe_load((CONF_DIR / "pendulum_pets.yaml").read_text())["model"]["init_args"]["planner"]["init_args"]
    settings.update(population=100, elites=10, iterations=3, num_particles=1)
    planner = CEMPlanner(Bounded(-2.0, 2.0, shape=(1,)), **settings)
    planner.dynamics = KnownDynamics(pendulum_dynamics, pendulum_reward)
    torch.manual_seed(0)
    observation = torch.tensor([[-0.9535, 0.3015, -0.9297]])
    angles = []
    for _ in range(100):
        action = planner(TensorDict({"observation": observation}, [1]))["action"]
        observation = pendulum_dynamics(observation, action)
        angles.append(abs(math.atan2(float(observation[0, 1]), float(observation[0, 0]))))
    assert min(angles) < 0.3, f"never within 0.3 rad of upright; closest {min(angles):.2f}"


def test_mcts_agent_trains_on_cartpole_and_plans_with_its_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # 200 random frames, 200 planned ones, one evaluation episode cut at 200 steps (a good agent
    # would otherwise plan 500 steps there); 6 simulations, each valued by 4 rollouts of 8 steps.
    # On random data alone the model's plans fall within 10-20 steps; planning on its own data helps.
    planned = _count_planned_actions(monkeypatch)
    cli = run_fit(*fit_args("cartpole_mcts.yaml", "--model.total_frames", "400", "--model.random_frames", "200",
                            "--model.frames_per_batch", "200", "--model.eval_every_frames", "400",
                            "--model.eval_episodes", "1", "--model.env.init_args.max_episode_steps", "200",
                            "--model.planner.init_args.num_simulations", "6", "--model.value_updates_per_batch", "0",
                            "--model.planner.init_args.rollout_horizon", "8",
                            "--model.planner.init_args.num_rollouts", "4", "--model.model_learning.init_args.updates_per_batch", "50"))
    assert isinstance(cli.model.planner, MCTSPlanner)
    assert cli.model.frames == 400
    metrics = cli.trainer.callback_metrics
    # Random play lasts about 22 steps; searching the learned model keeps the pole up far longer.
    assert float(metrics["eval/return_mean"]) > 60
    # The search chose the 200 frames after the random ones and every action of the evaluation
    # rollout, which runs its 200 steps (its first episode's return is what counts).
    assert sum(planned) == 200 + 200


def test_mcts_agent_learns_its_leaf_value_and_keeps_it_in_checkpoints(tmp_path) -> None:
    # The configured agent (leaves valued by the TD(0) network alone) on a small budget: the network
    # trains on every batch, the planner reads it, and a checkpoint carries its weights.
    cli = run_fit(*fit_args("cartpole_mcts.yaml", "--model.total_frames", "400", "--model.random_frames", "200",
                            "--model.frames_per_batch", "200", "--model.eval_every_frames", "0",
                            "--model.planner.init_args.num_simulations", "4", "--model.model_learning.init_args.updates_per_batch", "20",
                            "--model.value_updates_per_batch", "20", "--model.value_batch_size", "64"))
    model = cli.model
    assert model.planner.value_fn == model.value_learner.value
    # CartPole pays 1 per step: a value network that learned from its TD targets moved up from ~0.
    assert float(cli.trainer.callback_metrics["planner/leaf_value_mean"]) > 0.3
    # Two optimizers (model, value); the value network's Adam has taken 2 x 20 steps.
    value_optimizer = model.optimizer(1).optimizer
    assert all(state["step"] == 40 for state in value_optimizer.state.values())
    state = model.state_dict()
    assert any(key.startswith("value_learner.network.") for key in state)
    assert not any(key.startswith("planner.") for key in state)  # stored once, not under the planner


def test_mcts_agent_refuses_leaves_without_any_value(capsys: pytest.CaptureFixture) -> None:
    assert main(fit_args("cartpole_mcts.yaml", "--model.value_updates_per_batch", "0")) == 2
    assert "rollout_horizon=0 needs model.value_updates_per_batch > 0" in capsys.readouterr().err


def test_known_model_mpc_reaches_arm_targets() -> None:
    cli = run_fit(*fit_args("arm_known_mpc.yaml", "--model.total_frames", "50", "--model.eval_every_frames", "50",
                            "--model.eval_episodes", "4"))
    # Summed tip distance over 50 steps: the arm starts 0.4 to 3 away and must travel first.
    assert float(cli.trainer.callback_metrics["eval/return_mean"]) > -40
    assert cli.model.frames == 50


def test_mcts_planner_on_continuous_actions_is_a_one_line_error(capsys: pytest.CaptureFixture) -> None:
    code = main(fit_args("pendulum_pets.yaml", "--model.planner", "mbrl_lightning.planners.MCTSPlanner"))
    assert code == 2
    assert "discrete actions" in capsys.readouterr().err
    assert main(fit_args("pendulum_pets.yaml", "--model.propagation", "sometimes")) == 2
    assert "propagation" in capsys.readouterr().err
    with pytest.raises(ConfigurationError, match="model.random_frames"):
        PETS(env=EnvFactory("Pendulum-v1"), random_frames=-1)
