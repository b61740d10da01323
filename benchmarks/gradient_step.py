"""Cost of DDPG/TD3/SAC gradient steps inside a real fit, one thread; one JSON line per algorithm.

    python benchmarks/gradient_step.py                                   # DDPG and TD3 on HalfCheetahBullet
    python benchmarks/gradient_step.py --algorithms ddpg --profile 30    # plus cProfile of one update
    python benchmarks/gradient_step.py --algorithms sac sb3_sac --rounds 3   # SAC against SB3's, interleaved
    python benchmarks/gradient_step.py --algorithms sac sac_sacloss sb3_sac --threads 2
    python benchmarks/gradient_step.py --algorithms sac sb3_sac --precision bf16-mixed  # this project's update in bf16
    python benchmarks/gradient_step.py --algorithms plain_torch --precision bf16-mixed --compile  # the floor, compiled

Each run collects ``--learning_starts`` frames, then ``--batches`` batches of 64 frames, each
followed by 64 gradient steps (the defaults of ``conf/half_cheetah.yaml``: 256-128 MLPs, batch 64).
The record holds the median CPU and wall milliseconds per gradient step over the learning batches
(the first one, which warms up, left out), training frames per CPU-second (collection and
learning, one gradient step per frame) and the load average, since other jobs may share the cores.

``sac`` has the settings of ``conf/half_cheetah_sac.yaml`` (400-300 nets, batch 256);
``sac_sacloss`` is the same SAC computing its terms through TorchRL's ``SACLoss`` calls (vmapped
critics) instead of the fused terms (``sac_fused.py``), the path every SAC took before them; and
``sb3_sac`` is Stable-Baselines3's SAC with the same rl-baselines3-zoo settings (``sb3_peer.py``:
gSDE, 8 steps after every 8 frames), over the same number of learning frames in the same process,
its gradient steps timed inside its ``train`` calls; ``plain_torch`` is a bare SAC step in plain
PyTorch at the same sizes (``sac_step_floor.py``, gradient steps only, no collection), the floor
of eager PyTorch on this machine. ``--rounds`` repeats the list, interleaving
the algorithms, so a change of machine load hits all of them alike. ``--precision`` is the
Lightning Trainer's for this project's algorithms and the plain step's autocast (SB3's SAC stays
float32); ``--compile`` runs the plain step through ``torch.compile``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import statistics
import sys
import time

import torch
from json_lines import stdout_to_stderr
from lightning.pytorch import Trainer, seed_everything

from mbrl_lightning.algorithms import DDPG, SAC, TD3
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.nets import MLP

ALGORITHMS = {"ddpg": DDPG, "td3": TD3, "sac": SAC, "sac_sacloss": SAC}
# conf/half_cheetah_sac.yaml's settings (the zoo's), so that sac and sb3_sac do the same work.
SAC_SETTINGS = {"actor_net": lambda i, o: MLP(i, o, hidden_sizes=(400, 300)),
                "critic_net": lambda i, o: MLP(i, o, hidden_sizes=(400, 300)), "batch_size": 256, "gamma": 0.98,
                "tau": 0.02, "actor_lr": 7.3e-4, "critic_lr": 7.3e-4, "alpha_lr": 7.3e-4, "buffer_size": 300_000}
FRAMES_PER_BATCH = 64


def measure(name: str, env_id: str, learning_starts: int, batches: int, profile_lines: int, precision: str) -> dict:
    """Fit ``name`` for ``batches`` learning batches; time every ``update`` call."""
    seed_everything(0)
    model = ALGORITHMS[name](
        EnvFactory(env_id, num_envs=1), learning_starts=learning_starts, frames_per_batch=FRAMES_PER_BATCH,
        updates_per_batch=FRAMES_PER_BATCH, total_frames=learning_starts + FRAMES_PER_BATCH * batches,
        eval_every_frames=0, **(SAC_SETTINGS if name.startswith("sac") else {}),
    )
    if name == "sac_sacloss":
        model.fused_terms = None
    cpu: list[float] = []
    wall: list[float] = []
    stamps: list[float] = []
    profiler = cProfile.Profile()
    update = model.update

    def timed_update(batch):
        learning = len(model.replay_buffer) + batch.numel() >= model.learning_starts
        profiled = learning and profile_lines and len(cpu) == 2
        if profiled:
            profiler.enable()
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        metrics = update(batch)
        if profiled:
            profiler.disable()
        if learning:
            cpu.append(time.process_time() - started_cpu)
            wall.append(time.perf_counter() - started_wall)
            stamps.append(time.process_time())
        return metrics

    model.update = timed_update
    Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, num_sanity_val_steps=0, precision=precision).fit(model)
    if profile_lines:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(profile_lines)
    return {
        "algorithm": name, "env": env_id, "batch_size": model.batch_size,
        "cpu_ms_per_gradient_step": round(statistics.median(cpu[1:]) / FRAMES_PER_BATCH * 1e3, 2),
        "wall_ms_per_gradient_step": round(statistics.median(wall[1:]) / FRAMES_PER_BATCH * 1e3, 2),
        "train_frames_per_cpu_second": round(FRAMES_PER_BATCH * (len(stamps) - 1) / (stamps[-1] - stamps[0]), 1),
        "learning_batches": len(cpu), "load_average": round(os.getloadavg()[0], 2),
        "threads": torch.get_num_threads(), "precision": precision,
    }


def measure_sb3_sac(env_id: str, learning_starts: int, batches: int) -> dict:
    """SB3's SAC with the zoo's settings over ``batches * 64`` learning frames (8 steps per 8 frames).

    The gradient steps are timed inside SB3's ``train`` calls; frames per CPU-second count the
    whole ``learn`` call (collection and training) after the warm-up and a first learning batch.
    """
    from sb3_peer import make_sac

    model = make_sac(env_id, seed=0)
    model.learning_starts = learning_starts
    model.learn(learning_starts + FRAMES_PER_BATCH)  # the warm-up and a first learning batch, untimed
    train = model.train
    timed = {"cpu": 0.0, "wall": 0.0, "steps": 0}

    def timed_train(gradient_steps: int, batch_size: int) -> None:
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        train(gradient_steps, batch_size)
        timed["cpu"] += time.process_time() - started_cpu
        timed["wall"] += time.perf_counter() - started_wall
        timed["steps"] += gradient_steps

    model.train = timed_train
    frames = FRAMES_PER_BATCH * (batches - 1)
    started_cpu = time.process_time()
    model.learn(frames, reset_num_timesteps=False)
    cpu = time.process_time() - started_cpu
    return {
        "algorithm": "sb3_sac", "env": env_id, "batch_size": model.batch_size,
        "cpu_ms_per_gradient_step": round(timed["cpu"] / timed["steps"] * 1e3, 2),
        "wall_ms_per_gradient_step": round(timed["wall"] / timed["steps"] * 1e3, 2),
        "train_frames_per_cpu_second": round(frames / cpu, 1), "learning_batches": batches,
        "load_average": round(os.getloadavg()[0], 2), "threads": torch.get_num_threads(),
    }


def measure_plain_torch(env_id: str, batches: int, precision: str, compiled: bool) -> dict:
    """The bare plain-PyTorch SAC step at ``sac``'s sizes, for as many steps as ``sac`` takes in its timed batches."""
    from sac_step_floor import cpu_ms_per_step

    spec = EnvFactory(env_id).make()
    sizes = int(spec.observation_spec["observation"].shape[-1]), int(spec.action_spec.shape[-1])
    spec.close()
    cpu, wall = cpu_ms_per_step(*sizes, (400, 300), SAC_SETTINGS["batch_size"], FRAMES_PER_BATCH * (batches - 1),
                                bf16=precision == "bf16-mixed", compiled=compiled)
    return {
        "algorithm": "plain_torch", "env": env_id, "batch_size": SAC_SETTINGS["batch_size"],
        "cpu_ms_per_gradient_step": round(cpu, 2), "wall_ms_per_gradient_step": round(wall, 2),
        "load_average": round(os.getloadavg()[0], 2), "threads": torch.get_num_threads(),
        "precision": precision, "compiled": compiled,
    }


def main() -> None:
    """Measure each algorithm and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", choices=[*sorted(ALGORITHMS), "sb3_sac", "plain_torch"], default=["ddpg", "td3"])
    parser.add_argument("--rounds", type=int, default=1, help="measure the list this many times, interleaved")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--env", default="HalfCheetahBulletEnv-v0")
    parser.add_argument("--learning_starts", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=12, help="learning batches of 64 frames and 64 steps")
    parser.add_argument("--profile", type=int, default=0, help="print this many cProfile lines (stderr)")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"],
                        help="the Trainer's precision for this project's algorithms (and plain_torch's autocast)")
    parser.add_argument("--compile", action="store_true", help="plain_torch through torch.compile (inductor)")
    args = parser.parse_args()
    logging.getLogger("torchrl").setLevel(logging.WARNING)  # its handler writes to stdout
    for name in args.algorithms * args.rounds:
        torch.set_num_threads(args.threads)
        # Library output goes to stderr, pybullet's C-level "argv[0]=" lines included.
        with stdout_to_stderr():
            if name == "sb3_sac":
                record = measure_sb3_sac(args.env, args.learning_starts, args.batches)
            elif name == "plain_torch":
                record = measure_plain_torch(args.env, args.batches, args.precision, args.compile)
            else:
                record = measure(name, args.env, args.learning_starts, args.batches, args.profile, args.precision)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
