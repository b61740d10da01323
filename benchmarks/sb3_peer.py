"""Stable-Baselines3's SAC with rl-baselines3-zoo's settings, evaluated by this project's protocol.

The peer of ``continuous_control.py --peer sb3_sac`` and ``gradient_step.py``. It needs the
optional ``bench`` extra (``pip install -e .[bench]``). Evaluation runs this project's
:func:`~mbrl_lightning.evaluation.evaluate_policy` on the project's env factory, with the same
episode count, step cap and seeds as an ``RLModule`` of the same seed, through SB3's
deterministic ``predict``. The model and its replay buffer are saved at every evaluation, so a
stopped run can be continued (``--extend``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TextIO

import gymnasium as gym
import torch
from tensordict.nn import TensorDictModule
from torch import nn

from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.evaluation import EVAL_SEED_OFFSET, evaluate_policy

# rl-baselines3-zoo hyperparams/sac.yml, the "pybullet-defaults" block (HalfCheetahBulletEnv-v0,
# AntBulletEnv-v0): gSDE exploration with log_std_init -3, 400-300 nets, 8 steps per 8 frames.
ZOO_PYBULLET_SAC: dict[str, Any] = {
    "learning_rate": 7.3e-4, "buffer_size": 300_000, "batch_size": 256, "ent_coef": "auto", "gamma": 0.98,
    "tau": 0.02, "train_freq": 8, "gradient_steps": 8, "learning_starts": 10_000, "use_sde": True,
    "policy_kwargs": {"log_std_init": -3, "net_arch": [400, 300]},
}
PEER_DIR = Path("mlruns") / "sb3_peer"


class SB3Policy(nn.Module):
    """SB3's deterministic action for a batch of observations, as a module this project's evaluation can run."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.__dict__["model"] = model  # not a submodule: SB3's policy keeps its own parameters

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        """The deterministic action, clipped to the action box as SB3 does."""
        action, _ = self.model.predict(observation.cpu().numpy(), deterministic=True)
        return torch.as_tensor(action, dtype=observation.dtype)


def make_sac(env_id: str, seed: int) -> Any:
    """A fresh SB3 SAC on ``env_id`` with the zoo's pybullet settings, one CPU thread."""
    from stable_baselines3 import SAC

    EnvFactory(env_id)  # registers the pybullet suite with gymnasium
    return SAC("MlpPolicy", gym.make(env_id), seed=seed, device="cpu", verbose=0, **ZOO_PYBULLET_SAC)


def peer_paths(env: str, seed: int) -> tuple[Path, Path]:
    """Where the peer run of (env, seed) keeps its model and its replay buffer."""
    folder = PEER_DIR / f"{env}_sac_seed{seed}"
    return folder / "model.zip", folder / "replay_buffer.pkl"


def run_peer(env: str, env_id: str, seed: int, budgets: list[int], eval_every: int, eval_episodes: int,
             stdout: TextIO, resume: dict | None = None) -> dict:
    """Train SB3's SAC up to ``max(budgets)`` frames, printing a JSON line per evaluation; return the run record."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    # One thread, as fit.py trains (--torch_threads 1) and the benchmark protocol asks: with torch's
    # default of one per core, the peer's OpenMP threads would wait for cores the other runs hold.
    torch.set_num_threads(1)
    model_path, buffer_path = peer_paths(env, seed)
    factory = EnvFactory(env_id)  # also registers the pybullet suite with gymnasium
    torch.manual_seed(seed)
    if resume is not None:
        model = SAC.load(model_path, env=gym.make(env_id), device="cpu")
        model.load_replay_buffer(buffer_path)
    else:
        model = make_sac(env_id, seed)
    policy = TensorDictModule(SB3Policy(model), in_keys=["observation"], out_keys=["action"])
    state = dict((resume or {}).get("peer_state", {"evaluations": 0, "train_seconds": 0.0, "eval_curve": []}))
    state["eval_curve"] = [tuple(point) for point in state["eval_curve"]]

    class Evaluate(BaseCallback):
        """Every ``eval_every`` frames: evaluate, save model and buffer, print the evaluation line."""

        def _on_training_start(self) -> None:
            self.started = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every:
                return True
            state["train_seconds"] += time.perf_counter() - self.started
            result = evaluate_policy(factory, policy, eval_episodes, seed + EVAL_SEED_OFFSET + state["evaluations"],
                                     factory.episode_step_limit)
            state["evaluations"] += 1
            value = result.metrics()["eval/return_mean"]
            state["eval_curve"].append((self.num_timesteps, value))
            model_path.parent.mkdir(parents=True, exist_ok=True)
            self.model.save(model_path)
            self.model.save_replay_buffer(buffer_path)
            print(json.dumps({"evaluation": True, "env": env, "algorithm": "sb3_sac", "overrides": [], "seed": seed,
                              "frames": self.num_timesteps, "return_mean": value,
                              "train_seconds": round(state["train_seconds"], 1),
                              "train_fps": round(self.num_timesteps / max(state["train_seconds"], 1e-9), 1),
                              "peer_state": state}), file=stdout, flush=True)
            self.started = time.perf_counter()
            return True

    started = time.time()
    model.learn(max(budgets) - model.num_timesteps, callback=Evaluate(), reset_num_timesteps=False)
    evals = dict(state["eval_curve"])
    returns = {str(b): next((evals[step] for step in sorted(evals) if step >= b), None) for b in budgets}
    return {"env": env, "algorithm": "sb3_sac", "config": "rl-baselines3-zoo sac.yml pybullet-defaults",
            "overrides": [], "seed": seed, "returns": returns, "eval_curve": sorted(evals.items()),
            "train_fps": round(model.num_timesteps / max(state["train_seconds"], 1e-9), 1),
            "total_seconds": round(time.time() - started + (resume or {}).get("total_seconds", 0.0), 1),
            "peer_state": state}
