"""How far the imagination-entropy bonus moves the critic targets of SAC (or TD3), one JSON line.

    python benchmarks/imagination_target_shift.py                       # half_cheetah_sac_imagination.yaml, 12k frames
    python benchmarks/imagination_target_shift.py --config conf/half_cheetah_sac_imagination.yaml --frames 20000

Fits the config for ``--frames`` frames (``--learning_starts`` of them the uniform warm-up),
then draws ``--batches`` replay batches and computes each one's critic target twice with the
same draws of next actions: on the environment's rewards, and on the rewards plus the bonus.
The record holds the mean absolute shift of the targets against their mean absolute value, the
bonus against the mean absolute reward, and the bonus itself.
"""

from __future__ import annotations

import argparse
import json

import torch
from json_lines import stdout_to_stderr

from mbrl_lightning.algorithms import ImaginationSAC
from mbrl_lightning.cli import MBRLCLI


def critic_target(model, sample) -> torch.Tensor:
    """The loss's critic target of ``sample``, with the next actions drawn from a fixed seed."""
    torch.manual_seed(0)
    if isinstance(model, ImaginationSAC):
        return model.loss_module._compute_target_v2(sample.clone())
    return model.loss_module.value_loss(sample.clone())[1]["target_value"]


def main() -> None:
    """Fit briefly, then measure the bonus's shift of the critic targets."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/half_cheetah_sac_imagination.yaml")
    parser.add_argument("--frames", type=int, default=12_000)
    parser.add_argument("--learning_starts", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    with stdout_to_stderr():
        cli = MBRLCLI(["--config", args.config, "--model.total_frames", str(args.frames), "--model.eval_every_frames", "0",
                       "--model.learning_starts", str(args.learning_starts), "--trainer.enable_progress_bar", "false",
                       "--experiment_name", "imagination_target_shift"])
        cli.fit()
        model = cli.model
        shifts, targets, bonuses, rewards = [], [], [], []
        for _ in range(args.batches):
            sample = model.replay_buffer.sample(model.batch_size)
            with_bonus, _ = model.train_batch(sample.clone())
            plain = critic_target(model, sample)
            shifts.append((critic_target(model, with_bonus) - plain).abs().mean())
            targets.append(plain.abs().mean())
            bonuses.append((with_bonus["next", "reward"] - sample["next", "reward"]).mean())
            rewards.append(sample["next", "reward"].abs().mean())
    mean = lambda values: float(torch.stack(values).mean())  # noqa: E731
    print(json.dumps({"config": args.config, "frames": model.frames, "learning_starts": args.learning_starts,
                      "target_shift": mean(shifts) / mean(targets), "bonus_to_reward": mean(bonuses) / mean(rewards),
                      "bonus_mean": mean(bonuses), "reward_abs_mean": mean(rewards), "target_abs_mean": mean(targets),
                      "run_id": cli.trainer.logger.run_id}), flush=True)


if __name__ == "__main__":
    main()
