"""PPO, A2C, model-based PPO and its ablations: frames and seconds to solve CartPole-v1, JSON lines.

    python benchmarks/cartpole_on_policy.py --seeds 0 1 2 3 4
    python benchmarks/cartpole_on_policy.py --variants mbppo mbppo-no-curiosity

Each line adds a ``variant`` name to the record of ``solve_cartpole.run_seed``; a summary line per
variant (``"summary": true``) gives the median frames and training seconds over seeds (an unsolved seed
counts as infinitely slow; the median is null when most seeds did not solve).
"""

from __future__ import annotations

import argparse
import json
import statistics

from solve_cartpole import run_seed

VARIANTS: dict[str, tuple[str, list[str]]] = {
    "ppo": ("conf/cartpole_ppo.yaml", []),
    "a2c": ("conf/cartpole_a2c.yaml", []),
    "mbppo": ("conf/cartpole_mbppo.yaml", []),
    "mbppo-no-imagination": ("conf/cartpole_mbppo.yaml", ["--model.imagination=false"]),
    "mbppo-fixed-rollouts": ("conf/cartpole_mbppo.yaml", ["--model.adaptive_rollouts=false"]),
    "mbppo-no-curiosity": ("conf/cartpole_mbppo.yaml", ["--model.curiosity=null"]),
    "mbppo-no-weighting": ("conf/cartpole_mbppo.yaml", ["--model.weight_imagined=false"]),
}


def main() -> None:
    """Run every chosen variant over every seed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    for name in args.variants:
        config, overrides = VARIANTS[name]
        records = []
        for seed in args.seeds:
            record = {"variant": name, **run_seed(config, seed, overrides, experiment=f"benchmark_{name}")}
            records.append(record)
            print(json.dumps(record), flush=True)
        frames = [r["frames_to_solve"] if r["solved"] else float("inf") for r in records]
        seconds = [r["train_seconds_to_solve"] if r["solved"] else float("inf") for r in records]
        print(json.dumps({"variant": name, "summary": True, "seeds": len(records),
                          "solved": sum(r["solved"] for r in records),
                          "median_frames_to_solve": _finite(statistics.median(frames)),
                          "median_train_seconds_to_solve": _finite(statistics.median(seconds))}), flush=True)


def _finite(value: float) -> float | None:
    """JSON has no infinity: a median over mostly unsolved seeds is null."""
    return None if value == float("inf") else value


if __name__ == "__main__":
    main()
