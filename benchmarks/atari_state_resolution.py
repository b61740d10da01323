"""Does an Atari agent learn to tell states apart in its first updates? A five-minute check of a precision.

    python benchmarks/atari_state_resolution.py --precision bf16-mixed
    python benchmarks/atari_state_resolution.py --precision 32-true --agent_steps 4500 --every 250

Trains ``--config`` (default ``conf/pacman.yaml``, its own learning start) for ``--agent_steps``
under the Trainer's ``--precision``, no evaluations, and every ``--every`` agent steps prints a JSON
line measured in float32 on 126 frame stacks of the recorded random-play fixture
(``tests/fixtures/mspacman_random.npz``): the mean Q-value, its standard deviation over states
(``q_state_std``: how much the agent tells states apart) and over actions, how many different
greedy actions the states get, the mean cosine between the encoder latents of different states
(1.0: all states look alike), the share of latent units that are zero for every state, and the
cosine and per-dimension spread of the self-prediction's target embeddings.

A float32 agent's ``q_state_std`` grows from about 0.001 to 0.5 or more within 1,000 updates and
its latent cosine falls; an agent whose updates lose the differences between states keeps them flat
(docs/algorithms/atari.md, "bf16 on the CPU"). Scores take hours to tell; this takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from json_lines import stdout_to_stderr
from lightning.pytorch import Callback, Trainer, seed_everything

from mbrl_lightning.loading import build_module

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mspacman_random.npz"


def mean_off_diagonal_cosine(vectors: torch.Tensor) -> float:
    """Mean cosine between the rows of different states."""
    unit = F.normalize(vectors.float(), dim=-1)
    cosines = unit @ unit.T
    return float(cosines[~torch.eye(len(vectors), dtype=torch.bool)].mean())


class StateResolution(Callback):
    """Prints the fixture measurements every ``every`` agent steps once learning has started."""

    def __init__(self, stacks: torch.Tensor, every: int, fields: dict, out) -> None:
        self.stacks, self.every, self.fields, self.out = stacks, every, fields, out
        self.last = -1

    def on_train_batch_end(self, trainer, module, *args) -> None:
        frames = module.frames
        if frames < module.learning_starts or frames // self.every == self.last // self.every:
            return
        self.last = frames
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            q = module.action_values(self.stacks)  # expected returns, C51 or not
            latents = module.latent_model.encode(self.stacks).flatten(1)
            embeddings = module.latent_model.target_embedding(self.stacks)
        record = {
            **self.fields, "agent_steps": frames, "q_mean": round(float(q.mean()), 4),
            "q_state_std": round(float(q.std(0).mean()), 5), "q_action_std": round(float(q.std(1).mean()), 5),
            "greedy_actions": int(q.argmax(1).unique().numel()),
            "latent_cosine": round(mean_off_diagonal_cosine(latents), 5),
            "latent_dead": round(float((latents.abs().sum(0) == 0).float().mean()), 3),
            "embedding_cosine": round(mean_off_diagonal_cosine(embeddings), 5),
            "embedding_std": round(float(embeddings.std(0).mean()), 5),
        }
        print(json.dumps(record), file=self.out, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/pacman.yaml")
    parser.add_argument("--precision", default="bf16-mixed", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--agent_steps", type=int, default=4500)
    parser.add_argument("--every", type=int, default=250, help="agent steps between measurements")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seed_everything(args.seed)
    config = yaml.safe_load(Path(args.config).read_text())
    config["model"]["init_args"].update(total_frames=args.agent_steps, eval_every_frames=0)
    frames = torch.from_numpy(np.load(FIXTURE)["frames"])
    stacks = torch.stack([frames[i:i + 4] for i in range(0, len(frames) - 4, 2)])
    fields = {"config": args.config, "precision": args.precision, "seed": args.seed}
    out = os.fdopen(os.dup(1), "w")  # the records' standard output, kept while libraries print to stderr
    with stdout_to_stderr():
        module = build_module(config)
        Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, num_sanity_val_steps=0, precision=args.precision,
                callbacks=[StateResolution(stacks, args.every, fields, out)]).fit(module)


if __name__ == "__main__":
    main()
