"""One DQN checkpoint scored under several evaluation protocols, on the same games: one JSON line per protocol.

    python benchmarks/eval_protocols.py --ckpt_path checkpoints/<run_id>/last.ckpt --config conf/pacman.yaml --episodes 16
    python benchmarks/eval_protocols.py --ckpt_path runs:/<run_id> --protocols greedy noise --episodes 16

The Atari-100k papers evaluate noisy-net agents differently: SPR's release with the noise off
(the mean weights) and a uniform action with probability 0.001, BBF with the noise on, drawn
afresh at every step (its ``eval_noise``). Protocols:

- ``greedy``: noise off, epsilon 0 (``conf/pacman.yaml``'s evaluation);
- ``epsilon``: noise off, epsilon 0.001 (SPR's release, Dopamine's ``epsilon_eval``; ``conf/atari100k.yaml``'s);
- ``noise``: noise on, drawn every step, epsilon 0 (BBF's ``eval_noise``);
- ``noise_epsilon``: noise on and epsilon 0.001 (BBF's SPR.gin as a whole).

Every protocol plays the same ``--episodes`` games (env seeds ``--seed`` onwards, so the same
no-op starts), capped at ``--max_steps`` agent steps (default: the model's ``eval_max_steps``).
Each line: ``protocol``, ``score`` (mean raw score), ``score_std``, ``scores``, ``episodes``,
``frames`` (the checkpoint's agent steps), ``checkpoint``, ``run_id``, ``seconds``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from json_lines import stdout_to_stderr

from mbrl_lightning.algorithms import DQN
from mbrl_lightning.callbacks.checkpoint import LAST_CHECKPOINT
from mbrl_lightning.cli import quiet_libraries
from mbrl_lightning.evaluation import evaluate_policy
from mbrl_lightning.loading import load_module
from mbrl_lightning.nets.noisy import has_noisy_layers
from mbrl_lightning.tracking import resolve_checkpoint

# (noise on, epsilon) of each protocol.
PROTOCOLS = {"greedy": (False, 0.0), "epsilon": (False, 0.001), "noise": (True, 0.0), "noise_epsilon": (True, 0.001)}


def main() -> int:
    """Load the checkpoint once, then evaluate it under each protocol; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint file, runs:/<run_id> or last")
    parser.add_argument("--experiment_name", default="mbrl-lightning", help="experiment searched by --ckpt_path last")
    parser.add_argument("--config", default=None, help="config YAML (default: the run's config.yaml from MLflow)")
    parser.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS))
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1_000_003, help="env seed of the first game (the next ones follow)")
    parser.add_argument("--max_steps", type=int, default=None)
    args = parser.parse_args()
    quiet_libraries()
    torch.set_num_threads(1)
    with stdout_to_stderr():
        checkpoint = resolve_checkpoint(args.ckpt_path, args.experiment_name, Path("checkpoints"), LAST_CHECKPOINT)
        module, extras = load_module(checkpoint, args.config)
    if not isinstance(module, DQN):
        print(f"error: --ckpt_path {checkpoint.path}: {type(module).__name__} is not a DQN learner", file=sys.stderr)
        return 2
    max_steps = args.max_steps or module.eval_max_steps
    for protocol in args.protocols:
        # The module's own keys, so the policy is the one training would evaluate with them.
        module.eval_noise, module.eval_epsilon = PROTOCOLS[protocol]
        if module.eval_noise and not has_noisy_layers(module.q_actor):
            print(f"error: protocol {protocol}: the checkpoint's Q-network has no noisy layers", file=sys.stderr)
            return 2
        started = time.time()
        with stdout_to_stderr():
            result = evaluate_policy(module.env, module.eval_policy, args.episodes, args.seed, max_steps)
        scores = result.returns.tolist()
        print(json.dumps({
            "protocol": protocol, "score": round(float(result.returns.mean()), 2),
            "score_std": round(float(result.returns.std(unbiased=False)), 2), "scores": scores,
            "episodes": args.episodes, "max_steps": max_steps, "frames": extras.get("frames"),
            "checkpoint": str(checkpoint.path), "run_id": checkpoint.run_id, "seconds": round(time.time() - started, 1),
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
