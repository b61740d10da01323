"""The same config and seed give identical returns and weights (CPU), for every algorithm family."""

from __future__ import annotations

import pytest
import torch
from conftest import fit_args, run_fit
from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking import tracking_uri

# Tiny budgets of the continuous-control families: 4 batches of 64 frames, updates from the second.
OFF_POLICY = ("--model.total_frames", "256", "--model.frames_per_batch", "64", "--model.learning_starts", "64",
              "--model.updates_per_batch", "2", "--model.batch_size", "32", "--model.eval_max_steps", "20")
PLANNED = ("--model.total_frames", "256", "--model.frames_per_batch", "64", "--model.random_frames", "128",
           "--model.model_learning.init_args.updates_per_batch", "2", "--model.eval_max_steps", "20")

# SAC's one gradient step per frame replaced by OFF_POLICY's per-batch count; small nets.
SMALL_SAC = ("--model.update_to_data", "null", "--model.actor_net.init_args.hidden_sizes", "[32]",
             "--model.critic_net.init_args.hidden_sizes", "[32]")
# The HalfCheetah imagination configs on Pendulum, with a small forward model and few imagined rollouts.
SMALL_IMAGINATION = ("--model.env.init_args.env_id", "Pendulum-v1", "--model.model_learning.init_args.updates_per_batch", "2",
                     "--model.model_learning.init_args.world_model.init_args.hidden_sizes", "[32]",
                     "--model.imagination.init_args.rollouts", "4", "--model.imagination.init_args.horizon", "2")

FAMILIES = {
    "dqn": ("cartpole_dqn.yaml", "--model.frames_per_batch", "64", "--model.updates_per_batch", "4",
            "--model.learning_starts", "128", "--model.total_frames", "512"),
    "dqn_imagination": ("cartpole_dqn_imagination.yaml", "--model.frames_per_batch", "64", "--model.updates_per_batch", "4",
                        "--model.learning_starts", "128", "--model.model_learning.init_args.updates_per_batch", "4",
                        "--model.imagined.min_confidence", "0", "--model.total_frames", "512"),
    "ppo": ("cartpole_ppo.yaml", "--model.total_frames", "512", "--model.epochs", "2"),
    "mbppo": ("cartpole_mbppo.yaml", "--model.total_frames", "256", "--model.epochs", "2",
              "--model.imagination_iterations", "2", "--model.model_learning.init_args.updates_per_batch", "4"),
    "dyna_q": ("cliffwalking_dynaq.yaml", "--model.total_frames", "256"),
    "ddpg": ("pendulum_ddpg.yaml", *OFF_POLICY),
    "td3": ("pendulum_ddpg.yaml", "--model.class_path", "mbrl_lightning.algorithms.TD3", *OFF_POLICY),
    "ddpg_imagination": ("pendulum_ddpg.yaml", "--model.class_path", "mbrl_lightning.algorithms.ImaginationDDPG",
                         *OFF_POLICY),
    # SAC samples its actions and next actions; MBPO's model rollouts sample too; the imagination
    # variants draw noisy imagined actions.
    "sac": ("pendulum_sac.yaml", *OFF_POLICY, *SMALL_SAC),
    "imagination_sac": ("half_cheetah_sac_imagination.yaml", *OFF_POLICY, *SMALL_SAC, *SMALL_IMAGINATION),
    "imagination_td3": ("half_cheetah_imagination.yaml", "--model.class_path", "mbrl_lightning.algorithms.ImaginationTD3",
                        *OFF_POLICY, *SMALL_IMAGINATION),
    "mbpo": ("pendulum_mbpo.yaml", *OFF_POLICY, *SMALL_SAC, "--model.model_train_every_frames", "128",
             "--model.model_learning.init_args.max_epochs", "2",
             "--model.model_learning.init_args.world_model.init_args.hidden_sizes", "[32]", "--model.imagined.starts", "64"),
    # Planning from frame 128 on (collection and evaluation): CEM's and the search's sampling included.
    "pets": ("pendulum_pets.yaml", *PLANNED, "--model.planner.init_args.population", "8",
             "--model.planner.init_args.elites", "2", "--model.planner.init_args.iterations", "1",
             "--model.planner.init_args.horizon", "3"),
    "mcts": ("cartpole_mcts.yaml", *PLANNED, "--model.planner.init_args.num_simulations", "2",
             "--model.value_updates_per_batch", "2", "--model.value_batch_size", "32"),
    "atari_spr": ("atari100k.yaml", "--model.total_frames", "128", "--model.frames_per_batch", "16",
                  "--model.learning_starts", "32", "--model.buffer_size", "400", "--model.replay_storage", "memory",
                  "--model.updates_per_batch", "1", "--model.env.init_args.screen_size", "48",
                  "--model.eval_max_steps", "20"),
    "atari_dqn": ("pacman_pixel_entropy.yaml", "--model.total_frames", "256", "--model.frames_per_batch", "16",
                  "--model.learning_starts", "32", "--model.buffer_size", "400", "--model.model_learning.init_args.updates_per_batch", "1",
                  "--model.updates_per_batch", "1", "--model.env.init_args.num_envs", "2",
                  "--model.env.init_args.screen_size", "48", "--model.model_learning.init_args.world_model.init_args.channels", "4",
                  "--model.eval_max_steps", "20", "--trainer.callbacks", "[]"),
}


def _run(config: str, *overrides: str) -> tuple[dict, list[float]]:
    cli = run_fit(*fit_args(config, *overrides, "--model.eval_every_frames", "256", "--model.eval_episodes", "2",
                            "--seed_everything", "7"))
    history = MlflowClient(tracking_uri()).get_metric_history(cli.trainer.logger.run_id, "eval/return_mean")
    weights = {k: v.clone() for k, v in cli.model.state_dict().items()}
    return weights, [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_same_seed_same_returns_and_weights(family: str) -> None:
    first_weights, first_returns = _run(*FAMILIES[family])
    second_weights, second_returns = _run(*FAMILIES[family])
    assert first_returns == second_returns and first_returns
    assert first_weights.keys() == second_weights.keys()
    for name, value in first_weights.items():
        torch.testing.assert_close(second_weights[name], value, rtol=0, atol=0, msg=name)
