"""Evaluation, best checkpoint, eval videos, training figures and evaluate.py on a trained run."""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import mlflow
import pytest
import torch
from conftest import REPO_ROOT, fit_args, run_fit
from mlflow.tracking import MlflowClient
from tensordict import TensorDict
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.envs.utils import RandomPolicy

from mbrl_lightning.callbacks.plots import FIGURES, frame_axis_label
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.evaluation import record_episode
from mbrl_lightning.tracking import tracking_uri
from mbrl_lightning.video import read_video, write_video

TINY = ["--model.total_frames", "1024", "--model.learning_starts", "256", "--model.updates_per_batch", "8",
        "--model.eval_every_frames", "512", "--seed_everything", "2"]


def _history(run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in MlflowClient(tracking_uri()).get_metric_history(run_id, key)}


@torch.no_grad()
def _manual_return(policy, seed: int) -> float:
    """One episode of CartPole with plain gymnasium, stepping the policy by hand."""
    env = gym.make("CartPole-v1")
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        while not done:
            td = TensorDict({"observation": torch.as_tensor(observation, dtype=torch.float32)[None]}, [1])
            action = int(policy(td)["action"][0].argmax())
            observation, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
    return total


def test_evaluation_matches_manual_rollout_and_keeps_best_checkpoint() -> None:
    cli = run_fit(*fit_args("cartpole_dqn.yaml", *TINY, "--model.eval_episodes", "4", "--plots.enabled", "true"))
    model = cli.model
    run_id = cli.trainer.logger.run_id
    mlflow.flush_async_logging()
    # The final evaluation ran on the final weights, seeded eval_seed(last), eval_seed(last) + 1, ...
    seed = model.eval_seed(model.evaluations - 1)
    manual = torch.tensor([_manual_return(model.eval_policy, seed + i) for i in range(4)])
    means, stds = _history(run_id, "eval/return_mean"), _history(run_id, "eval/return_std")
    assert set(means) == {512, 1024}
    assert means[1024] == pytest.approx(manual.mean().item())
    assert stds[1024] == pytest.approx(manual.std(unbiased=False).item(), abs=1e-4)
    # best.ckpt holds the state at the best evaluation.
    checkpoint = cli.frame_checkpoint
    best_frame = max(means, key=lambda frame: (means[frame], -frame))
    assert checkpoint.best_frame == best_frame and checkpoint.best_return == pytest.approx(means[best_frame])
    saved = torch.load(checkpoint.best_path, weights_only=True)
    assert saved["mbrl"]["frames"] == best_frame
    artifacts = {a.path for a in MlflowClient(tracking_uri()).list_artifacts(run_id, "checkpoints")}
    assert {"checkpoints/best.ckpt", "checkpoints/last.ckpt"} <= artifacts
    plots = {a.path for a in MlflowClient(tracking_uri()).list_artifacts(run_id, "plots")}
    assert {"plots/score_per_episode.png", "plots/score_per_iteration.png"} <= plots


def test_video_artifact_decodes_to_the_evaluated_episode(tmp_path: Path) -> None:
    cli = run_fit(*fit_args("cartpole_dqn.yaml", *TINY, "--model.eval_episodes", "1", "--video.every_n_frames", "1024"))
    run_id = cli.trainer.logger.run_id
    mlflow.flush_async_logging()
    artifacts = [a.path for a in MlflowClient(tracking_uri()).list_artifacts(run_id, "videos")]
    assert artifacts == ["videos/eval_000001024.mp4"]
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifacts[0], dst_path=str(tmp_path),
                                                tracking_uri=tracking_uri())
    frames = read_video(local)
    # The video is the evaluation's episode: one frame per step it lasted.
    assert len(frames) == _history(run_id, "eval/episode_length")[1024] > 5
    assert frames[0].shape == (400, 608, 3)  # 600 pixels wide, padded to a multiple of 16 for H.264
    assert frames[0].std() > 0  # something is drawn


def test_gif_keeps_distinct_frames(tmp_path: Path) -> None:
    frames = [torch.full((32, 48, 3), 20 * i, dtype=torch.uint8).numpy() for i in range(7)]
    decoded = read_video(write_video(frames, tmp_path / "clip.gif", fps=10))
    assert len(decoded) == 7 and decoded[3].shape == (32, 48, 3)


def test_evaluate_script_by_file_and_run_id(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cli = run_fit(*fit_args("cartpole_dqn.yaml", *TINY, "--model.eval_episodes", "3"))
    model, run_id = cli.model, cli.trainer.logger.run_id
    mlflow.flush_async_logging()
    final = _history(run_id, "eval/return_mean")[1024]
    evaluate = runpy.run_path(str(REPO_ROOT / "scripts" / "evaluate.py"))["main"]
    seed = str(model.eval_seed(model.evaluations - 1))
    # last.ckpt holds the weights of the final evaluation: the same seeds give the same mean.
    for source in (str(cli.frame_checkpoint.last_path), f"runs:/{run_id}"):
        capsys.readouterr()
        assert evaluate(["--ckpt_path", source, "--episodes", "3", "--seed", seed]) == 0
        out = capsys.readouterr().out
        assert f"return mean {final:.2f}" in out, out
    # Without the local files the run's best.ckpt and config come from the MLflow artifact store.
    shutil.rmtree("checkpoints")
    video = tmp_path / "agent.mp4"
    assert evaluate(["--ckpt_path", f"runs:/{run_id}", "--best", "--episodes", "1", "--video", str(video)]) == 0
    out = capsys.readouterr().out
    length = int(out.split("return mean")[1].split("mean length ")[1].split(".")[0])
    assert len(read_video(video)) == length
    assert evaluate(["--ckpt_path", "missing.ckpt"]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err


def test_atari_episode_renders_headless() -> None:
    factory = EnvFactory("ALE/Pong-v5")
    probe = factory.make(num_envs=1)
    policy = RandomPolicy(probe.full_action_spec["action"])
    probe.close()
    episode = record_episode(factory, policy, seed=0, max_steps=20)
    assert len(episode.frames) == episode.length == 20
    assert episode.frames[0].shape == (210, 160, 3) and episode.frames[0].std() > 0


def test_training_figures_count_agent_steps_where_the_budget_does() -> None:
    label = FIGURES["score_per_iteration"][1]
    atari, cartpole = SimpleNamespace(env=SimpleNamespace(frame_skip=4)), SimpleNamespace(env=SimpleNamespace())
    assert frame_axis_label(label, atari) == "agent steps (4 emulator frames each)"
    assert frame_axis_label(label, cartpole) == "real environment frames"
    assert frame_axis_label(FIGURES["score_per_episode"][1], atari) == "training episodes (count)"
