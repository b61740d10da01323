"""Planning speed of a config's MPC planner: planned actions per CPU-second and wall ms per action.

    python benchmarks/planning_speed.py --config conf/pendulum_pets.yaml
    python benchmarks/planning_speed.py --config conf/pendulum_pets_random_shooting.yaml --actions 40
    python benchmarks/planning_speed.py --config conf/arm_known_mpc.yaml
    python benchmarks/planning_speed.py --config conf/pendulum_pets.yaml --profile 25   # top functions

The config's algorithm is built as the CLI would build it (planner, world model, propagation, reward
function); a learned world model keeps its random initial weights, with its normalisers fitted to
``--fit_frames`` random frames of the env, so its predictions have the scale of the env's. The planner
then acts on the real env, closed loop, for ``--actions`` planned actions after one untimed warm-up
action, on ``--threads`` CPU threads. One JSON line per config: the rates, the load average while it
ran (other processes on the machine slow it), and ``actions_sha256``, a digest of every planned
action's bytes, so two versions of the planner can be checked for bit-identical plans from one seed.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from json_lines import stdout_to_stderr
from jsonargparse import ArgumentParser
from tensordict import TensorDict

import mbrl_lightning
from mbrl_lightning.algorithms import RLModule
from mbrl_lightning.cli_help import import_algorithms


def build(config: str, overrides: list[str]) -> RLModule:
    """The config's algorithm, built from its ``model`` section (no trainer, no tracking run)."""
    import_algorithms()
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(RLModule, "model")
    section = {"model": yaml.safe_load(Path(config).read_text())["model"]}
    parsed = parser.parse_object(section) if not overrides else parser.parse_args(
        [f"--model={json.dumps(section['model'])}", *overrides])
    return parser.instantiate(parsed).model


def fit_normalisers(module: RLModule, frames: int, seed: int) -> None:
    """Fold ``frames`` random-action transitions of the env into the world model's statistics."""
    world_model = getattr(module, "world_model", None)
    if world_model is None or frames <= 0:
        return
    env = module.env.make(1, seed)
    world_model.observe(env.rollout(frames, break_when_any_done=False).reshape(-1))
    env.close()


def plan_episode(module: RLModule, actions: int, seed: int) -> tuple[list[float], list[float], str]:
    """Plan ``actions`` actions on the real env after one warm-up; CPU and wall seconds of each, and the digest."""
    planner = module.planner
    env = module.env.make(1, seed)
    state = env.reset()
    digest = hashlib.sha256()
    cpu, wall = [], []
    for index in range(actions + 1):
        td = TensorDict({"observation": state["observation"].reshape(1, -1),
                         "step_count": torch.full((1, 1), index)}, [1])
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        action = planner(td)["action"]
        if index:  # the first call builds caches and is not timed
            cpu.append(time.process_time() - started_cpu)
            wall.append(time.perf_counter() - started_wall)
        digest.update(action.contiguous().numpy().tobytes())
        state = env.step(state.set("action", action))["next"]
    env.close()
    return cpu, wall, digest.hexdigest()


def git_commit() -> str:
    """Short commit of the checkout the package is imported from, ``+dirty`` when its ``src`` differs; "" outside git."""
    root = Path(mbrl_lightning.__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip()
    return head + ("+dirty" if head and dirty else "")


def measure(config: str, args: argparse.Namespace) -> dict:
    """One record: the config's planner timed on ``args.actions`` planned actions."""
    torch.manual_seed(args.seed)
    module = build(config, args.overrides)
    fit_normalisers(module, args.fit_frames, args.seed)
    torch.manual_seed(args.seed)
    load_before = os.getloadavg()[0]
    profile = cProfile.Profile() if args.profile else None
    if profile:
        profile.enable()
    cpu, wall, digest = plan_episode(module, args.actions, args.seed)
    if profile:
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(args.profile)
        print(text.getvalue(), file=sys.stderr)
    cpu_total = sum(cpu)
    return {
        "config": config, "overrides": args.overrides, "label": args.label, "commit": git_commit(),
        "planner": type(module.planner).__name__, "actions": len(cpu), "threads": torch.get_num_threads(),
        "actions_per_cpu_second": round(len(cpu) / cpu_total, 3),
        "cpu_ms_per_action": round(1000 * cpu_total / len(cpu), 2),
        "wall_ms_per_action": round(1000 * sum(wall) / len(wall), 2),
        "wall_ms_per_action_min": round(1000 * min(wall), 2),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "actions_sha256": digest, "seed": args.seed, "profiled": bool(args.profile), "torch": torch.__version__,
        "command": " ".join(["python", "benchmarks/planning_speed.py", *sys.argv[1:]]),
    }


def main() -> None:
    """Time each config's planner; print one JSON line per config."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=["conf/pendulum_pets.yaml", "conf/pendulum_pets_random_shooting.yaml"])
    parser.add_argument("--actions", type=int, default=20, help="timed planned actions per config")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit_frames", type=int, default=1000, help="random frames the model's normalisers see")
    parser.add_argument("--label", default="", help="free text kept in the record (e.g. the version measured)")
    parser.add_argument("--profile", type=int, default=0, help="print the N functions of most own time (cProfile) to stderr")
    parser.add_argument("overrides", nargs="*", help="model overrides, e.g. --model.init_args.propagation=random_member (after --)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for config in args.config:
        with stdout_to_stderr():  # stdout carries only the JSON lines
            record = measure(config, args)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
