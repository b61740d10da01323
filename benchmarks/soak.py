"""Long-run stability: resident memory over a long training run with periodic checkpoints, JSON lines.

    python benchmarks/soak.py --config conf/cartpole_dqn.yaml --frames 200000 --every 10000

Prints one line per sample (frames, resident MB, replay-buffer MB) and a summary line with the
growth of resident memory after the replay buffer filled, which should stay near zero. (The
buffer's storage is allocated at once but its pages become resident as it fills.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
from typing import TextIO

from lightning.pytorch import Callback

from mbrl_lightning.cli import MBRLCLI


def resident_mb() -> float:
    """Current resident set size of this process in MB (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


class MemorySampler(Callback):
    """Record resident memory every ``every`` frames and print each sample to ``stream``."""

    def __init__(self, every: int, stream: TextIO) -> None:
        self.every = every
        self.stream = stream
        self.samples: list[dict] = []

    def on_train_batch_end(self, trainer, module, *_) -> None:
        if module.frames // self.every > (module.frames - module.frames_per_batch) // self.every:
            buffer = module.replay_buffer
            buffer_mb = buffer.storage._storage.bytes() / 2**20 if buffer is not None and len(buffer) else 0.0
            sample = {"frames": module.frames, "resident_mb": round(resident_mb(), 1),
                      "replay_buffer_mb": round(buffer_mb, 1), "buffer_len": len(buffer) if buffer is not None else 0}
            self.samples.append(sample)
            print(json.dumps(sample), file=self.stream, flush=True)


def main() -> None:
    """Train once with memory sampling and print the samples and a summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/cartpole_dqn.yaml")
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--every", type=int, default=10_000)
    args = parser.parse_args()
    sampler = MemorySampler(args.every, sys.stdout)  # the JSON lines; training chatter goes to stderr
    with contextlib.redirect_stdout(sys.stderr):
        cli = MBRLCLI(["--config", args.config, "--model.total_frames", str(args.frames), "--experiment_name",
                       "benchmark_soak", "--trainer.enable_progress_bar", "false",
                       "--model.eval_every_frames", str(args.every), "--checkpoint.every_n_frames", str(args.every)])
    cli.trainer.callbacks.append(sampler)
    with contextlib.redirect_stdout(sys.stderr):
        cli.fit()
    buffer = cli.model.replay_buffer
    capacity = buffer.storage.max_size if buffer is not None else 0
    full = [sample for sample in sampler.samples if sample["buffer_len"] >= capacity]
    first, last = sampler.samples[0], sampler.samples[-1]
    print(json.dumps({"summary": True, "config": args.config, "frames": args.frames, "buffer_capacity": capacity,
                      "resident_mb_first": first["resident_mb"],
                      "resident_mb_when_buffer_full": full[0]["resident_mb"] if full else None,
                      "resident_mb_last": last["resident_mb"],
                      "growth_after_buffer_full_mb": round(last["resident_mb"] - full[0]["resident_mb"], 1) if full else None}),
          flush=True)


if __name__ == "__main__":
    main()
