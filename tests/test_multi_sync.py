"""``multi_sync`` collection: every family whose policy can live in a worker acts there with current weights."""

from __future__ import annotations

import pickle

import pytest
import torch
from conftest import fit_args
from tensordict import TensorDict

from mbrl_lightning.cli import MBRLCLI, main
from mbrl_lightning.data.collector_kinds import worker_policy

MULTI_SYNC = ("--model.collector", "multi_sync", "--model.collector_workers", "1", "--plots.enabled", "false",
              "--trainer.callbacks", "null")
# Planners act from the first step, so that their world model decides the actions compared.
PLANNING = ("--model.random_frames", "0")
# One config per algorithm family (the cheapest env that family has in conf/).
FAMILIES = {
    "dqn": ("cartpole_dqn.yaml",),
    "dqn_imagination": ("cartpole_dqn_imagination.yaml",),
    "atari_dqn": ("pacman_pixel_entropy.yaml",),
    "ppo": ("cartpole_ppo.yaml",),
    "a2c": ("cartpole_a2c.yaml",),
    "mbppo": ("cartpole_mbppo.yaml",),
    "ddpg": ("pendulum_ddpg.yaml",),
    "td3": ("half_cheetah_td3.yaml",),
    "ddpg_imagination": ("half_cheetah_imagination.yaml",),
    "sac": ("pendulum_sac.yaml",),
    "imagination_sac": ("half_cheetah_sac_imagination.yaml",),
    "mbpo": ("pendulum_mbpo.yaml",),
    "atari_spr": ("atari100k.yaml", "--model.env.init_args.screen_size", "48", "--model.replay_storage", "memory"),
    "pets": ("pendulum_pets.yaml", *PLANNING),
    "mcts": ("cartpole_mcts.yaml", *PLANNING),
    "known_model_mpc": ("arm_known_mpc.yaml",),
}


def _perturb(module: torch.nn.Module) -> None:
    """What training does to a policy between two batches: every weight and schedule (buffer) changes."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point():
                tensor.mul_(0.5).add_(0.1)
            elif tensor.dtype == torch.bool:  # a phase flag (the off-policy warm-up) flips, as learning starts
                tensor.logical_not_()


def _worker_copy_after_sync(module, train) -> tuple:
    """The learner's policy and a worker's copy of it (pickled before ``train`` runs), weights synced after."""
    policy = worker_policy(module.train_dataloader().setup)
    in_worker = pickle.loads(pickle.dumps(policy))  # what the worker process holds from the start
    train(module)
    # MultiSyncCollector's weight sync: the policy's weights (TensorDict.from_module) written into the copy.
    TensorDict.from_module(policy).to_module(in_worker)
    return policy, in_worker


def _assert_same_actions(module, policy, in_worker) -> None:
    observation = module.env.make(num_envs=2, seed=0).reset()  # step_count 0: planners start cold
    actions = []
    for acting in (policy, in_worker):
        torch.manual_seed(0)
        actions.append(acting(observation.clone())["action"])
    torch.testing.assert_close(actions[1], actions[0], rtol=0, atol=0)


def _module(config: str, *overrides: str):
    return MBRLCLI(fit_args(config, *MULTI_SYNC, *overrides)).model


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_worker_copy_acts_like_the_learner_after_weight_sync(family: str) -> None:
    module = _module(*FAMILIES[family])
    _assert_same_actions(module, *_worker_copy_after_sync(module, _perturb))


def test_the_random_phase_ends_in_the_worker_when_it_ends_in_the_learner() -> None:
    module = _module("pendulum_pets.yaml", "--model.random_frames", "4")
    batch = module.env.make(seed=1).rollout(4, break_when_any_done=False).unsqueeze(0)

    def leave_the_random_phase(module) -> None:
        module.frames = 4
        module.update(batch)  # PETS's own update decides the phase from the frame count

    policy, in_worker = _worker_copy_after_sync(module, leave_the_random_phase)
    _assert_same_actions(module, policy, in_worker)
    # The learner plans now: its actions are the planner's, not random draws.
    observation = module.env.make(num_envs=2, seed=0).reset()
    torch.manual_seed(0)
    planned = module.planner(observation.clone())["action"]
    torch.manual_seed(0)
    torch.testing.assert_close(in_worker(observation.clone())["action"], planned, rtol=0, atol=0)


def test_multi_sync_is_refused_for_a_policy_that_reads_the_module(capsys: pytest.CaptureFixture) -> None:
    assert main(fit_args("cliffwalking_dynaq.yaml", "--model.collector", "multi_sync", "--model.collector_workers", "1")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "model.collector='multi_sync'" in error[0] and "DynaQ" in error[0]


class GreedyCheck:
    """Before each update: the greedy actions of the learner's current weights on the batch's observations."""

    def __init__(self, module) -> None:
        self.agreement: list[bool] = []
        self.shapes: list[tuple[int, ...]] = []
        update = module.update

        def checked(batch):
            self.shapes.append(tuple(batch.batch_size))
            with torch.no_grad():
                greedy = module.eval_policy(batch.select("observation").clone())["action"]
            self.agreement.append(bool((greedy == batch["action"]).all()))
            return update(batch)

        module.update = checked


def test_workers_act_with_the_weights_of_the_batch_before() -> None:
    """Real worker processes: with no exploration, every action of a batch is the learner's greedy one."""
    args = fit_args("cartpole_dqn.yaml", "--model.collector", "multi_sync", "--model.env.init_args.num_envs", "2",
                    "--model.collector_workers", "1",
                    "--model.frames_per_batch", "16", "--model.total_frames", "64", "--model.learning_starts", "16",
                    "--model.updates_per_batch", "4", "--model.eps_init", "0", "--model.eps_end", "0",
                    "--model.eval_every_frames", "0", "--checkpoint.every_n_frames", "0", "--plots.enabled", "false")
    cli = MBRLCLI(args)
    check = GreedyCheck(cli.model)
    cli.fit()
    assert cli.model.frames == 64
    assert check.agreement == [True] * 4
    assert check.shapes == [(2, 8)] * 4, "batches are [env copies, time], as the in-process collectors give them"
