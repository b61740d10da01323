"""One rank of a 2-process gloo group training a world model to convergence, for tests/test_ddp.py.

Its own module, apart from ``ddp_probe`` (a Lightning callback): the spawned ranks import only
torch and the world models, not Lightning (about 4 CPU-seconds less per rank).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def converge_on_rank(rank: int, world_size: int, init_file: str, folder: str) -> None:
    """One rank of a gloo group: an MBPO-style world-model training to convergence on rank-sized data.

    Ranks hold different numbers of transitions (rank ``k``: ``300 / (k + 1)``) drawn from different
    generators, average their gradients as DDP does, and write their epoch count, weights and
    normaliser statistics to ``<folder>/converge<rank>.json``.
    """
    from datetime import timedelta
    from functools import partial

    import torch.distributed as dist
    from tensordict import TensorDict

    from mbrl_lightning.world_models import GaussianEnsembleWorldModel, WorldModelLearner

    torch.set_num_threads(1)
    # A mismatched collective (a rank taking more steps) fails within the timeout instead of hanging.
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=60))
    torch.manual_seed(0)  # the same initial weights on every rank, as DDP broadcasts them
    learner = WorldModelLearner(2, 1, world_model=partial(GaussianEnsembleWorldModel, num_members=3, num_elites=2,
                                                          hidden_sizes=(8,)),
                                lr=0.01, batch_size=64, validation_fraction=0.3, early_stopping_patience=2,
                                k_step_horizon=0)
    generator = torch.Generator().manual_seed(rank + 1)
    n = 300 // (rank + 1)
    observation = torch.randn(n, 2, generator=generator)
    flag = torch.zeros(n, 1, dtype=torch.bool)
    learner.store(TensorDict({
        "observation": observation, "action": torch.zeros(n, 1),
        "next": {"observation": 0.9 * observation + 0.3 * torch.randn(n, 2, generator=generator),
                 "reward": torch.zeros(n, 1), "done": flag, "terminated": flag, "truncated": flag},
    }, batch_size=[n]))
    optimizer = learner.make_optimizer()
    steps = [0]

    def step(loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss.backward()
        for parameter in learner.world_model.parameters():
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad)
                parameter.grad /= world_size
        optimizer.step()
        steps[0] += 1

    epochs = learner.train(step)["world_model/epochs"]
    normalizer = learner.world_model.observation_normalizer
    report = {"epochs": epochs, "steps": steps[0], "samples": n,
              "weights": [float(p.detach().double().sum()) for p in learner.world_model.parameters()],
              "normalizer_count": float(normalizer.count), "normalizer_mean": normalizer.mean.tolist()}
    Path(folder, f"converge{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()
