"""What a PETS config's planner scores on Pendulum with a perfect model: the ceiling of its learned one.

    python benchmarks/pendulum_true_dynamics.py --config conf/pendulum_pets.yaml --episodes 10

The config's planner (its horizon, population, iterations, warm start) plans through Pendulum's
true physics (``planners.rewards.pendulum_dynamics``) with one particle (the model is exact) on
the starts ``scripts/evaluate.py`` uses (env seeds ``0..episodes-1``, or ``--seed`` onwards). One
JSON line: the per-start returns and their mean.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging

import torch
import yaml
from torchrl.data import Bounded

from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.evaluation import evaluate_policy
from mbrl_lightning.planners import KnownDynamics
from mbrl_lightning.planners.rewards import pendulum_dynamics, pendulum_reward


def main() -> None:
    """Plan ``--episodes`` Pendulum episodes through the true dynamics; print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/pendulum_pets.yaml")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="env seed of the first start")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("torchrl").setLevel(logging.WARNING)  # its INFO lines go to stdout, among the JSON
    torch.manual_seed(0)
    config = yaml.safe_load(open(args.config))
    planner_block = config["model"]["init_args"]["planner"]
    settings = {**planner_block.get("init_args", {}), "num_particles": 1}
    module, name = planner_block["class_path"].rsplit(".", 1)
    planner = getattr(importlib.import_module(module), name)(Bounded(-2.0, 2.0, shape=(1,)), **settings)
    planner.dynamics = KnownDynamics(pendulum_dynamics, pendulum_reward)
    result = evaluate_policy(EnvFactory("Pendulum-v1"), planner, args.episodes, args.seed, 200)
    returns = [round(value, 1) for value in result.returns.tolist()]
    command = f"python benchmarks/pendulum_true_dynamics.py --config {args.config} --episodes {args.episodes} --seed {args.seed}"
    print(json.dumps({"config": args.config, "dynamics": "true", "planner": settings, "seed": args.seed,
                      "returns": returns, "return_mean": round(sum(returns) / len(returns), 1), "command": command}))


if __name__ == "__main__":
    main()
