"""Default CartPole and Pendulum configs end at their target, so the final policy is the best one."""

from __future__ import annotations

import pytest
import yaml
from conftest import CONF_DIR, fit_args, run_fit

# config -> the evaluation return that ends its run (CartPole's maximum; SB3's Pendulum example's -200).
TARGETS = {
    "cartpole_a2c.yaml": 500, "cartpole_dqn.yaml": 500, "cartpole_dqn_imagination.yaml": 500,
    "cartpole_mbppo.yaml": 500, "cartpole_mcts.yaml": 500, "cartpole_ppo.yaml": 500,
    "pendulum_ddpg.yaml": -200, "pendulum_mbpo.yaml": -200, "pendulum_sac.yaml": -200,
    "pendulum_pets.yaml": -200, "pendulum_pets_random_shooting.yaml": -200,
}
# Pendulum SAC collecting 100 random frames per batch and never learning: only the stop can end it early.
RANDOM_SAC = ["--model.total_frames", "600", "--model.frames_per_batch", "100", "--model.learning_starts", "10000",
              "--model.eval_every_frames", "200", "--model.eval_episodes", "1",
              "--checkpoint.every_n_frames", "0", "--seed_everything", "0"]


@pytest.mark.parametrize("config", sorted(TARGETS))
def test_default_config_stops_at_its_target(config: str) -> None:
    callbacks = yaml.safe_load((CONF_DIR / config).read_text())["trainer"]["callbacks"]
    stops = [c["init_args"]["threshold"] for c in callbacks if c["class_path"].endswith("StopAtReturn")]
    assert stops == [TARGETS[config]]


def test_pendulum_run_ends_at_the_first_evaluation_reaching_the_target() -> None:
    # An untrained actor's 200-step episode scores far below -200; a target that no episode can miss
    # ends the 600-frame run at its first evaluation.
    stopped = run_fit(*fit_args("pendulum_sac.yaml", *RANDOM_SAC, "--trainer.callbacks.threshold", "-100000"))
    assert stopped.model.frames == 200 and stopped.model.evaluations == 1
    (stop,) = [c for c in stopped.trainer.callbacks if type(c).__name__ == "StopAtReturn"]
    assert stop.reached_frame == 200 and -100000 <= stop.reached_return < -200
