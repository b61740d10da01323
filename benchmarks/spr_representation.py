"""Is AtariSPR's self-prediction collapsing? The spread of its embeddings over different MsPacman states.

    python benchmarks/spr_representation.py --ckpt_path checkpoints/<run_id>/last.ckpt --config conf/pacman.yaml

A low self-prediction loss can mean good predictions or a collapsed representation (every state
mapped to the same embedding, which predicts itself trivially). This reads a checkpoint, embeds
126 frame stacks of the recorded random-play fixture (``tests/fixtures/mspacman_random.npz``)
with the target projection that the loss compares against, and prints one JSON line: the mean
and minimum cosine between the embeddings of different states (1.0: collapsed), the same for the
encoder's latents, the mean per-dimension standard deviation over states, and the effective rank
of the centred embeddings (exp of the entropy of the normalised singular values; Roy and Vetterli
2007), which falls when the embeddings shrink to a few directions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mbrl_lightning.loading import load_module
from mbrl_lightning.tracking.checkpoints import read_checkpoint

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mspacman_random.npz"


def off_diagonal_cosines(vectors: torch.Tensor) -> torch.Tensor:
    """Cosines between every pair of different rows."""
    unit = F.normalize(vectors, dim=-1)
    cosines = unit @ unit.T
    return cosines[~torch.eye(len(vectors), dtype=torch.bool)]


def effective_rank(vectors: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of the centred rows."""
    singular = torch.linalg.svdvals(vectors - vectors.mean(0))
    p = singular / singular.sum()
    return float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", type=Path, required=True)
    parser.add_argument("--config", default="conf/pacman.yaml")
    args = parser.parse_args()
    module, extras = load_module(read_checkpoint(args.ckpt_path), args.config)
    frames = torch.from_numpy(np.load(FIXTURE)["frames"])
    stacks = torch.stack([frames[i:i + 4] for i in range(0, len(frames) - 4, 2)])
    model = module.latent_model
    with torch.no_grad():
        embeddings = model.target_embedding(stacks)
        latents = model.encode(stacks).flatten(1)
    embedding_cosines, latent_cosines = off_diagonal_cosines(embeddings), off_diagonal_cosines(latents)
    print(json.dumps({
        "checkpoint": str(args.ckpt_path), "config": args.config, "agent_steps": extras.get("frames"),
        "states": len(stacks), "embedding_cosine_mean": round(float(embedding_cosines.mean()), 4),
        "embedding_cosine_min": round(float(embedding_cosines.min()), 4),
        "latent_cosine_mean": round(float(latent_cosines.mean()), 4),
        "embedding_std_per_dimension": round(float(F.normalize(embeddings, dim=-1).std(0).mean()), 5),
        "embedding_effective_rank": round(effective_rank(F.normalize(embeddings, dim=-1)), 1),
        "embedding_size": embeddings.shape[1],
    }), flush=True)


if __name__ == "__main__":
    main()
