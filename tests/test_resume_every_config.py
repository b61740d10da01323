"""Every experiment YAML in conf/ trains briefly, resumes from its checkpoint, and continues the same MLflow run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import CONF_DIR, fit_args, run_fit
from mlflow.tracking import MlflowClient

from mbrl_lightning.tracking import tracking_uri

# Twins that differ from a resumed config of the same algorithm only in the PyBullet env: what a
# checkpoint saves and restores is the algorithm's, so the twin is left out to keep the suite short
# (test_configs.py still builds every config, test_minitaur.py checks the Minitaur port itself).
COVERED_BY = {
    "ant": "half_cheetah",
    "ant_imagination": "half_cheetah_imagination",
    "minitaur": "half_cheetah",
    "minitaur_imagination": "half_cheetah_imagination",
    "inverted_pendulum_pets": "half_cheetah_pets",
    # Two batches stay in the uniform warm-up, where gSDE does not act; tests/test_gsde.py resumes gSDE exactly.
    "half_cheetah_sac_gsde": "half_cheetah_sac",
}
CONFIGS = [path for path in sorted(CONF_DIR.glob("*.yaml")) if path.stem not in COVERED_BY]
STEPS_PER_BATCH = 2  # agent steps of every env copy per batch: a resume cuts episodes in flight
# Learning updates are cut to one of each kind where an algorithm updates on every batch; the
# other algorithms stay in their warm-up (random actions, no updates) within two batches.
LIGHTER = {
    "cartpole_mbppo": ("--model.epochs", "1", "--model.model_learning.init_args.updates_per_batch", "1", "--model.imagination_iterations", "1"),
    "cartpole_ppo": ("--model.epochs", "1"),
    "arm_known_mpc": ("--model.planner.init_args.population", "20", "--model.planner.init_args.iterations", "1"),
}


def _model_args(config: Path) -> dict:
    return yaml.safe_load(config.read_text())["model"]["init_args"]


def test_every_left_out_config_has_a_resumed_twin_of_the_same_algorithm() -> None:
    algorithm = lambda stem: yaml.safe_load((CONF_DIR / f"{stem}.yaml").read_text())["model"]["class_path"]  # noqa: E731
    for left_out, twin in COVERED_BY.items():
        assert CONF_DIR / f"{twin}.yaml" in CONFIGS and algorithm(left_out) == algorithm(twin), left_out


def _num_envs(config: Path) -> int:
    return int(_model_args(config)["env"]["init_args"].get("num_envs", 1))


def _args(config: Path, batches: int, *extra: str) -> list[str]:
    frames = STEPS_PER_BATCH * _num_envs(config)
    # A small buffer: checkpoints hold the whole preallocated storage, and Atari's is memory-mapped.
    buffer = ("--model.buffer_size", "256") if "buffer_size" in _model_args(config) else ()
    return fit_args(
        config.name, "--model.frames_per_batch", str(frames), "--model.total_frames", str(batches * frames),
        "--model.eval_every_frames", "0", "--checkpoint.every_n_frames", str(frames), "--plots.enabled", "false",
        # The configs' extra callbacks (an attention GIF of 1,000 Atari steps at the end) are not what is tested.
        "--trainer.callbacks", "null", *buffer, *LIGHTER.get(config.stem, ()), *extra,
    )


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_config_resumes_and_continues_its_run(config: Path) -> None:
    first = run_fit(*_args(config, 1))
    run_id = first.trainer.logger.run_id
    frames = first.model.frames
    assert frames == STEPS_PER_BATCH * _num_envs(config)

    resumed = run_fit(*_args(config, 2, "--ckpt_path", "last"))
    assert resumed.trainer.logger.run_id == run_id
    assert resumed.model.frames == 2 * frames
    history = MlflowClient(tracking_uri()).get_metric_history(run_id, "train/env_frames")
    assert sorted(m.step for m in history) == [frames, 2 * frames]
