"""Short runs of every algorithm family end with the exact weights and returns recorded before a refactor.

The values in ``fixtures/fingerprints.json`` were recorded from commit 0d3ee79 (before the
model-based spine was factored out, when the world-model settings were flat arguments of each
algorithm: the same values as the ``model_learning`` blocks here). Every model is built with explicit constructor arguments,
so changes of the YAML defaults in ``conf/`` cannot move them. A run's fingerprint is the
multiset of its state-dict tensors' SHA-256 digests (names may change with a refactor, values may
not) and its evaluation returns to full float precision. The weights' last bits depend on the
CPU's kernels (the same code on an AMD EPYC and an Intel Xeon ends with equal returns and other
digests), so the digests are kept per CPU vendor and compared where the vendor has a record; the
returns are compared everywhere.

Re-record (only when a change of behaviour is intended, and say so in the commit):
``PYTHONPATH=src python tests/test_fingerprints.py --record`` (this CPU vendor's digests; the
others' are kept and must then be recorded on their machines too).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from mbrl_lightning.algorithms import DDPG, DQN, TD3, ImaginationDDPG, RLModule
from mbrl_lightning.algorithms.dqn_imagination import ImaginationDQN
from mbrl_lightning.algorithms.mbppo import ModelBasedPPO
from mbrl_lightning.algorithms.pets import PETS
from mbrl_lightning.algorithms.ppo import PPO
from mbrl_lightning.curiosity import RND, AdaptiveBeta, ImaginationEntropy
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.imagination import ImaginedReplay
from mbrl_lightning.nets import MLP
from mbrl_lightning.planners import CEMPlanner
from mbrl_lightning.planners.rewards import no_termination, pendulum_reward
from mbrl_lightning.world_models import GaussianEnsembleWorldModel, MLPWorldModel, WorldModelLearner

FIXTURE = Path(__file__).parent / "fixtures" / "fingerprints.json"
SEED = 7
EVAL = {"eval_episodes": 2, "eval_max_steps": 50}


def _net(hidden: tuple[int, ...]) -> Callable[[int, int], torch.nn.Module]:
    return lambda inputs, outputs: MLP(inputs, outputs, hidden_sizes=hidden)


def _learner(world_model: type, weight_decay: float = 0.0, batch_size: int = 32,
             **model_args: object) -> Callable[[int, int], WorldModelLearner]:
    return partial(
        WorldModelLearner, world_model=partial(world_model, **model_args), lr=1e-3, weight_decay=weight_decay,
        batch_size=batch_size, updates_per_batch=4, validation_fraction=0.1, validation_size=200, k_step_horizon=3,
        buffer_size=1_000,
    )


def _cartpole() -> EnvFactory:
    return EnvFactory("CartPole-v1", num_envs=2)


def _pendulum() -> EnvFactory:
    return EnvFactory("Pendulum-v1", num_envs=1)


def _dqn_args() -> dict:
    return dict(
        q_net=_net((32, 32)), lr=1e-3, gamma=0.99, batch_size=32, buffer_size=1_000, replay_storage="memory",
        learning_starts=64, updates_per_batch=4, double_dqn=False, loss_function="l2", target_update_interval=8,
        target_tau=None, eps_init=1.0, eps_end=0.05, eps_anneal_frames=200, max_grad_norm=10.0,
        total_frames=256, frames_per_batch=32, eval_every_frames=128, collector="lean", **EVAL,
    )


def _dqn() -> RLModule:
    return DQN(_cartpole(), **_dqn_args())


def _dqn_imagination() -> RLModule:
    return ImaginationDQN(
        _cartpole(), model_learning=_learner(MLPWorldModel, hidden_sizes=(32, 32)),
        imagined=ImaginedReplay(buffer_size=500, starts=16, horizon=2, fraction=0.5, min_confidence=0.0,
                                propagation="random_member"),
        imagined_targets=True, **_dqn_args(),
    )


def _ppo_args() -> dict:
    return dict(
        policy_net=_net((32,)), value_net=_net((32,)), lr=1e-3, anneal_lr=True, gamma=0.98, gae_lambda=0.8,
        epochs=2, minibatch_size=32, max_grad_norm=0.5, entropy_coeff=0.01, critic_coeff=0.5, clip_epsilon=0.2,
        normalize_advantage=True, critic_loss="l2", total_frames=192, frames_per_batch=64, eval_every_frames=128,
        collector="lean", **EVAL,
    )


def _ppo() -> RLModule:
    return PPO(_cartpole(), **_ppo_args())


def _mbppo() -> RLModule:
    return ModelBasedPPO(
        _cartpole(), model_learning=_learner(MLPWorldModel, hidden_sizes=(32, 32)),
        curiosity=lambda o, a: RND(o, a, feature_size=8, hidden_sizes=(16,)),
        beta=AdaptiveBeta(value=0.05, max_value=0.5), imagination=True, imagination_horizon=4, min_rollouts=4, max_rollouts=16,
        confidence_threshold=0.05, adaptive_rollouts=True, imagination_discount=0.8, weight_imagined=True,
        done_threshold=0.5, propagation="random_member", curiosity_lr=1e-3, curiosity_updates_per_batch=2,
        intrinsic_on_imagined=True, imagination_iterations=2, **_ppo_args(),
    )


def _actor_critic_args() -> dict:
    return dict(
        actor_net=_net((32,)), critic_net=_net((32,)), actor_lr=1e-3, critic_lr=1e-3, gamma=0.98, tau=0.01,
        batch_size=32, buffer_size=1_000, replay_storage="memory", learning_starts=64, warmup="policy",
        updates_per_batch=4, update_to_data=None, exploration="gaussian", noise_init=0.3, noise_end=0.05, noise_anneal_frames=500, max_grad_norm=None,
        total_frames=160, frames_per_batch=32, eval_every_frames=160, collector="lean", **EVAL,
    )


def _ddpg() -> RLModule:
    return DDPG(_pendulum(), loss_function="l2", actor_update_interval=1, **_actor_critic_args())


def _td3() -> RLModule:
    return TD3(_pendulum(), policy_noise=0.2, noise_clip=0.5, num_critics=2, loss_function="l2",
               actor_update_interval=2, **_actor_critic_args())


def _ddpg_imagination() -> RLModule:
    imagination = partial(ImaginationEntropy, rollouts=4, horizon=2, entropy_beta=1.0, curiosity_beta=0.5,
                          squash="tanh")
    return ImaginationDDPG(
        _pendulum(), imagination=imagination, model_learning=_learner(MLPWorldModel, hidden_sizes=(32,)),
        imagination_noise=0.1, loss_function="l2", actor_update_interval=1, **_actor_critic_args(),
    )


def _pets() -> RLModule:
    return PETS(
        _pendulum(), planner=lambda spec: CEMPlanner(spec, horizon=4, population=16, elites=4, iterations=2,
                                                     alpha=0.1, num_particles=2),
        model_learning=_learner(GaussianEnsembleWorldModel, num_members=2, num_elites=2, hidden_sizes=(16,),
                                weight_decay=5e-5, batch_size=16),
        propagation="fixed_member", sample_noise=True, reward_fn=pendulum_reward, termination_fn=no_termination,
        random_frames=32, buffer_size=1_000, total_frames=64, frames_per_batch=16, eval_every_frames=64, collector="lean", eval_episodes=1,
        eval_max_steps=10,
    )


RUNS: dict[str, Callable[[], RLModule]] = {
    "dqn": _dqn, "dqn_imagination": _dqn_imagination, "ppo": _ppo, "mbppo": _mbppo, "ddpg": _ddpg,
    "td3": _td3, "ddpg_imagination": _ddpg_imagination, "pets": _pets,
}


class _EvalReturns(Callback):
    """Keeps the evaluation returns of a run, in order."""

    def __init__(self) -> None:
        self.returns: list[float] = []
        self._seen = 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if pl_module.evaluations > self._seen:
            self._seen = pl_module.evaluations
            self.returns.append(float(trainer.callback_metrics["eval/return_mean"]))


def _digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().contiguous()
    header = f"{data.dtype}{tuple(data.shape)}".encode()
    return hashlib.sha256(header + data.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def cpu_vendor() -> str:
    """The CPU's vendor id (``GenuineIntel``, ``AuthenticAMD``, ...), or the platform's processor name."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def fingerprint(name: str) -> dict:
    """Train run ``name`` from seed 7; return its tensors' digests (sorted) and evaluation returns."""
    seed_everything(SEED)
    model = RUNS[name]()
    returns = _EvalReturns()
    trainer = Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, callbacks=[returns])
    trainer.fit(model)
    return {"frames": model.frames, "eval_returns": returns.returns,
            "tensors": sorted(_digest(value) for value in model.state_dict().values())}


@pytest.mark.parametrize("name", list(RUNS))
def test_weights_and_returns_match_the_recorded_run(name: str) -> None:
    recorded = json.loads(FIXTURE.read_text())[name]
    now = fingerprint(name)
    assert now["frames"] == recorded["frames"]
    assert now["eval_returns"] == recorded["eval_returns"]
    tensors = recorded["tensors_by_cpu"].get(cpu_vendor())
    if tensors is not None:
        missing = sorted(set(tensors) - set(now["tensors"]))
        assert now["tensors"] == tensors, f"{len(missing)} recorded tensors differ or are gone"


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    torch.set_num_threads(1)
    FIXTURE.parent.mkdir(exist_ok=True)
    old = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else {}
    records = {}
    for name in RUNS:
        now = fingerprint(name)
        by_cpu = {**old.get(name, {}).get("tensors_by_cpu", {}), cpu_vendor(): now.pop("tensors")}
        records[name] = {**now, "tensors_by_cpu": by_cpu}
    FIXTURE.write_text(json.dumps(records, indent=1) + "\n")
