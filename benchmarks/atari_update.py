"""Where an Atari agent's training time goes: milliseconds per agent step, split into acting and learning.

    python benchmarks/atari_update.py --config conf/pacman.yaml --threads 1 2          # one JSON line per thread count
    python benchmarks/atari_update.py --config conf/pacman.yaml --threads 1 --profile 25  # plus torch.profiler's top ops
    python benchmarks/atari_update.py --config conf/pacman.yaml --threads 1 --phases 30   # plus CPU ms by phase of a step

Each run fits the config for ``--learning_starts`` agent steps of random play, then ``--steps``
learning agent steps, and times every ``update`` call (store, bonus, gradient steps) and the interval between
two ``update`` calls (one whole training step: collection and logging included); evaluation is off. ``agent_steps_per_second`` is the
learning phase's rate (median step), ``cpu_ms_per_agent_step`` the process's CPU time per agent step
(all threads; less sensitive to other jobs than wall time); ``load_average_start`` and ``load_average`` are the machine's
1-minute load before and after, since other jobs may share the cores; ``omp_wait_policy`` the environment's
``OMP_WAIT_POLICY`` (``PASSIVE``: idle OpenMP threads sleep instead of spinning); ``code`` is the commit of the ``mbrl_lightning``
checkout that ran (``+``: with uncommitted changes).

``--phases N`` adds ``phase_cpu_ms``: after the timed steps, N more gradient steps taken phase by
phase as ``gradient_update`` takes them (replay sample, augmentation and scaling, loss forward,
backward, clipping, Adam, target update, priorities and target encoder), the divergence check and
two acting forward passes (the first right after the update, the second as the rest of a collected batch), each the median CPU milliseconds over the steps (the first 3 left out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from json_lines import stdout_to_stderr
from torch.profiler import ProfilerActivity, profile
from torchrl.envs import ExplorationType, set_exploration_type

import mbrl_lightning
from mbrl_lightning.cli import MBRLCLI

PROFILED_BATCHES = 8  # learning batches under torch.profiler (from the third on)


def code_version() -> str:
    """The commit of the checkout whose ``mbrl_lightning`` ran, ``+`` when it has uncommitted changes."""
    folder = Path(mbrl_lightning.__file__).parent
    git = ["git", "-C", str(folder)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True).stdout.strip()
    return (commit or "unknown") + ("+" if dirty else "")


def phase_times(model, steps: int) -> dict[str, float]:
    """Median CPU milliseconds of each phase of ``steps`` gradient steps, the divergence check and an acting pass."""
    times: dict[str, list[float]] = {}
    optimizer = model.optimizer(0)
    with set_exploration_type(ExplorationType.RANDOM):
        for _ in range(steps):
            stamps = [time.process_time()]

            def phase(name: str) -> None:
                stamps.append(time.process_time())
                times.setdefault(name, []).append((stamps[-1] - stamps[-2]) * 1e3)

            model.q_network.reset_noise()
            sample = model.replay_buffer.sample(model.batch_size)
            phase("sample")
            sample, _ = model.train_batch(sample)
            phase("augment_and_scale")
            terms = model.losses(sample)
            loss = torch.stack(list(terms.values())).sum()
            phase("forward")
            optimizer.zero_grad()
            model.manual_backward(loss)
            phase("backward")
            if model.max_grad_norm is not None:
                model.clip_gradient_norm(optimizer, model.max_grad_norm)
            phase("clip")
            optimizer.step()
            phase("adam")
            model.target_updater.step()
            phase("target_update")
            if "index" in sample.keys():
                model.replay_buffer.update_priority(sample["index"], model.replay_priority(sample))
            if getattr(model, "latent_model", None) is not None:
                model.latent_model.update_target()
            phase("priorities")
            model.check_finite({key: float(value) for key, value in terms.items()})
            phase("divergence_check")
            observation = model.replay_buffer.sample(1).select("observation")
            stamps.append(time.process_time())
            with torch.no_grad():
                model.exploration_policy(observation)
                phase("act_forward")
                # The other acting passes of a collected batch: no update in between (noisy weights kept).
                model.exploration_policy(observation)
            phase("act_forward_again")
    return {name: round(statistics.median(values[3:] or values), 2) for name, values in times.items()}


def measure(config: str, threads: int, learning_starts: int, steps: int, profile_rows: int, phase_steps: int,
            overrides: list[str]) -> dict:
    """Fit ``config`` briefly with ``threads`` threads; return milliseconds per agent step by phase."""
    # The CLI sets the thread count (--torch_threads, default 1) before it builds anything.
    args = ["--config", config, "--torch_threads", str(threads), "--trainer.enable_progress_bar", "false", "--trainer.callbacks", "[]",
            "--model.learning_starts", str(learning_starts), "--model.total_frames", str(learning_starts + steps),
            "--model.eval_every_frames", "0", "--checkpoint.every_n_frames", str(10 * (learning_starts + steps)),
            "--experiment_name", "benchmark_atari_update", *overrides]
    cli = MBRLCLI(args)
    assert torch.get_num_threads() == threads
    model = cli.model
    update = model.update
    timings: dict[str, list[float]] = {"update": [], "start": [], "cpu": []}
    profiler = profile(activities=[ProfilerActivity.CPU]) if profile_rows else None

    def timed_update(batch):
        learning = len(model.replay_buffer) + batch.numel() >= learning_starts
        count = len(timings["start"])
        if profiler is not None and learning and count == 2:
            profiler.__enter__()
        started = time.perf_counter()
        metrics = update(batch)
        if learning:
            # Between two update calls lies one whole training step: collection, update, logging.
            timings["start"].append(started)
            timings["cpu"].append(time.process_time())
            timings["update"].append(time.perf_counter() - started)
        if profiler is not None and learning and count == 2 + PROFILED_BATCHES:
            profiler.__exit__(None, None, None)
        return metrics

    model.update = timed_update
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    cli.fit()
    phases = phase_times(model, phase_steps) if phase_steps else None
    if profiler is not None:
        if len(timings["start"]) <= 2 + PROFILED_BATCHES:
            profiler.__exit__(None, None, None)
        print(profiler.key_averages().table(sort_by="cpu_time_total", row_limit=profile_rows), file=sys.stderr)
    frames = model.frames_per_batch
    step_ms = statistics.median(b - a for a, b in zip(timings["start"][1:], timings["start"][2:])) / frames * 1e3
    update_ms = statistics.median(timings["update"][1:]) / frames * 1e3
    cpu = timings["cpu"]
    cpu_ms = (cpu[-1] - cpu[1]) / (len(cpu) - 2) / frames * 1e3
    return {
        "config": config, "overrides": overrides, "code": code_version(), "threads": threads, "agent_steps_per_batch": frames,
        "gradient_steps_per_agent_step": model.updates_per_batch / frames,
        "ms_per_agent_step": round(step_ms, 2), "cpu_ms_per_agent_step": round(cpu_ms, 2), "ms_learning_per_agent_step": round(update_ms, 2),
        "ms_acting_per_agent_step": round(step_ms - update_ms, 2),
        "agent_steps_per_second": round(1e3 / step_ms, 2), "learning_batches": len(timings["start"]),
        "seconds": round(time.perf_counter() - started, 1), "load_average_start": round(load_start, 2),
        "load_average": round(os.getloadavg()[0], 2), "interop_threads": torch.get_num_interop_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), **({"phase_cpu_ms": phases} if phases else {}),
    }


def main() -> None:
    """Measure the config at each thread count; print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/pacman.yaml")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--learning_starts", type=int, default=400)
    parser.add_argument("--steps", type=int, default=200, help="learning agent steps timed")
    parser.add_argument("--profile", type=int, default=0, help="print this many torch.profiler rows (stderr)")
    parser.add_argument("--phases", type=int, default=0, help="time this many more gradient steps phase by phase")
    parser.add_argument("overrides", nargs="*", help="extra fit.py overrides, after --")
    args = parser.parse_args()
    for threads in args.threads:
        with stdout_to_stderr():
            record = measure(args.config, threads, args.learning_starts, args.steps, args.profile, args.phases, args.overrides)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
