"""Evaluate a trained agent: load a checkpoint, play N deterministic episodes, optionally record a video.

    python scripts/evaluate.py --ckpt_path checkpoints/<run_id>/best.ckpt --episodes 10
    python scripts/evaluate.py --ckpt_path runs:/<run_id> --best --video agent.mp4
    python scripts/evaluate.py --ckpt_path last --experiment_name cartpole_dqn

The model is rebuilt from the run's resolved config (its ``config.yaml`` artifact in MLflow) or
from ``--config``. Episode ``i`` plays on an env seeded ``--seed + i``; the video shows the
first ``--video_episodes`` of those same episodes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from mbrl_lightning.callbacks.checkpoint import BEST_CHECKPOINT, LAST_CHECKPOINT
from mbrl_lightning.cli import quiet_libraries
from mbrl_lightning.errors import ConfigurationError
from mbrl_lightning.evaluation import evaluate_policy, record_episode
from mbrl_lightning.loading import load_module
from mbrl_lightning.tracking import resolve_checkpoint
from mbrl_lightning.video import VIDEO_FORMATS, write_video


def main(argv: list[str] | None = None) -> int:
    """Load, evaluate, print the returns, write the video; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint file, runs:/<run_id> or last")
    parser.add_argument("--best", action="store_true", help="with runs:/<run_id> or last: the run's best.ckpt instead of last.ckpt")
    parser.add_argument("--experiment_name", default="mbrl-lightning", help="experiment searched by --ckpt_path last")
    parser.add_argument("--config", default=None, help="config YAML (default: the run's config.yaml from MLflow)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_steps", type=int, default=None, help="step cap per episode (default: the model's eval_max_steps)")
    parser.add_argument("--video", type=Path, default=None, help="write the first episodes to this .mp4 or .gif")
    parser.add_argument("--video_episodes", type=int, default=1)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args(argv)
    quiet_libraries()
    torch.set_num_threads(1)
    try:
        if args.episodes < 1:
            raise ConfigurationError(f"--episodes={args.episodes}: must be a positive integer.")
        if args.video is not None and args.video.suffix.lstrip(".").lower() not in VIDEO_FORMATS:
            raise ConfigurationError(f"--video {args.video}: the suffix must be one of {', '.join(VIDEO_FORMATS)}.")
        filename = BEST_CHECKPOINT if args.best else LAST_CHECKPOINT
        checkpoint = resolve_checkpoint(args.ckpt_path, args.experiment_name, Path("checkpoints"), filename)
        module, extras = load_module(checkpoint, args.config)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    max_steps = args.max_steps or module.eval_max_steps
    print(f"{type(module).__name__} on {module.env.env_id} | checkpoint {checkpoint.path} "
          f"(run {checkpoint.run_id}, {extras.get('frames', 0):,} frames)")
    result = evaluate_policy(module.env, module.eval_policy, args.episodes, args.seed, max_steps)
    returns = ", ".join(f"{value:g}" for value in result.returns.tolist())
    print(f"returns ({args.episodes} episodes, seeds {args.seed}..{args.seed + args.episodes - 1}): {returns}")
    metrics = result.metrics()
    print(f"return mean {metrics['eval/return_mean']:.2f} ± {metrics['eval/return_std']:.2f} (std), "
          f"mean length {metrics['eval/episode_length']:.1f}")
    if args.video is not None:
        frames = []
        for episode in range(args.video_episodes):
            recorded = record_episode(module.env, module.eval_policy, args.seed + episode, max_steps)
            frames += recorded.frames
            print(f"recorded episode {episode} (seed {args.seed + episode}): return {recorded.episode_return:g}, {recorded.length} frames")
        path = write_video(frames, args.video, args.fps)
        print(f"video: {path} ({len(frames)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
