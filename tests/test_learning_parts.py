"""The parts learning rests on, per algorithm: TD targets (discount, termination), target updates, evaluation.

Each test goes through the module's own configured path (its loss, its value estimator, its update
loop, its evaluation), on crafted data where the right answer is known, so that a broken part
fails here even where a learning test on an easy task would still pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fit_args
from lightning.pytorch import Callback, Trainer
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import ExplorationType, set_exploration_type

from mbrl_lightning.algorithms import base
from mbrl_lightning.algorithms.off_policy import OffPolicyActorCritic
from mbrl_lightning.algorithms.sac import SAC
from mbrl_lightning.algorithms.td3 import TD3
from mbrl_lightning.cli import MBRLCLI
from mbrl_lightning.evaluation import evaluate_policy

GAMMA = 0.5  # far from TorchRL's default 0.99, so a discount that does not reach the loss shows

# One transition of each kind: terminated, truncated by a time limit, and running.
TERMINATED = torch.tensor([True, False, False])
TRUNCATED = torch.tensor([False, True, False])

TD_FAMILIES = {
    "dqn": ("cartpole_dqn.yaml",),
    "dqn_imagination": ("cartpole_dqn_imagination.yaml",),
    "atari_dqn": ("pacman_pixel_entropy.yaml",),
    "ddpg": ("pendulum_ddpg.yaml",),
    "td3": ("pendulum_ddpg.yaml", "--model.class_path", "mbrl_lightning.algorithms.TD3"),
    "ddpg_imagination": ("pendulum_ddpg.yaml", "--model.class_path", "mbrl_lightning.algorithms.ImaginationDDPG"),
    "sac": ("pendulum_sac.yaml",),
    "mbpo": ("pendulum_mbpo.yaml",),
    "ppo": ("cartpole_ppo.yaml",),
    "a2c": ("cartpole_a2c.yaml",),
    "mbppo": ("cartpole_mbppo.yaml",),
}
# AtariSPR's n-step targets have their own test below (they need an episode in the replay).


def _model(config: str, *overrides: str):
    """The module a config builds (nothing trained), with a fixed seed."""
    torch.manual_seed(0)
    return MBRLCLI(fit_args(config, "--experiment_name", "parts", *overrides)).model


def _transitions(module) -> TensorDictBase:
    """Three random transitions: terminated, truncated, running; rewards 1, 2, 3."""
    n = len(TERMINATED)
    spec = module.observation_spec
    if spec.dtype.is_floating_point:  # unbounded boxes have no uniform draw: states near the origin
        observation, next_observation = (torch.rand(n, *spec.shape, dtype=spec.dtype) * 2 - 1 for _ in range(2))
    else:
        observation, next_observation = spec.rand((n,)), spec.rand((n,))
    return TensorDict({
        "observation": observation,
        "action": module.action_spec.rand((n,)),
        "next": {
            "observation": next_observation,
            "reward": torch.tensor([[1.0], [2.0], [3.0]]),
            "terminated": TERMINATED.unsqueeze(-1),
            "truncated": TRUNCATED.unsqueeze(-1),
            "done": (TERMINATED | TRUNCATED).unsqueeze(-1),
        },
    }, [n])


@torch.no_grad()
def _td_target_and_next_value(module, transitions: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
    """The regression target the module's critic loss uses, and the next-state value it bootstraps from."""
    loss = getattr(module, "loss_module", None)
    following = transitions["next"].clone()
    if hasattr(module, "q_actor"):  # the DQN family: TD(0) over the target Q-network
        target = loss.value_estimator.value_estimate(transitions.clone(), target_params=loss.target_value_network_params)
        online_values = module.q_actor(following.clone())["action_value"]
        with loss.target_value_network_params.to_module(loss.value_network):
            target_values = loss.value_network(following.clone())["action_value"]
        chosen = online_values.argmax(-1, keepdim=True) if loss.double_dqn else target_values.argmax(-1, keepdim=True)
        return target.reshape(-1), target_values.gather(-1, chosen).reshape(-1)
    if isinstance(module, SAC):  # SAC, MBPO: the soft target, through the module's own critic term
        return _soft_td_target_and_next_value(module, transitions)
    if isinstance(module, OffPolicyActorCritic):  # DDPG, TD3: TorchRL's critic loss reports its target
        value_loss = loss.value_loss if isinstance(module, TD3) else loss.loss_value
        _, metadata = value_loss(transitions.clone())
        if "next_state_value" in metadata:  # TD3: the smaller target critic at the smoothed target action
            return metadata["target_value"].reshape(-1), metadata["next_state_value"].reshape(-1)
        with loss.target_actor_network_params.to_module(loss.actor_network):
            loss.actor_network(following)
        with loss.target_value_network_params.to_module(loss.value_network):
            next_value = loss.value_network(following)["state_action_value"]
        return metadata["target_value"].reshape(-1), next_value.reshape(-1)
    # On-policy: GAE over one-step trajectories; its value target is the TD(0) target.
    trajectories = module.add_advantages(transitions.unsqueeze(-1))
    return trajectories["value_target"].reshape(-1), module.critic(following)["state_value"].reshape(-1)


def _soft_td_target_and_next_value(module: SAC, transitions: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
    """SAC's target and the soft next-state value it bootstraps from, caught where SACLoss hands them on.

    SACLoss reports neither; its value estimator receives the soft value ``min Q' - alpha log pi``
    of a sampled next action (as ``("next", "state_value")``) and returns the target.
    """
    estimator = module.loss_module.value_estimator
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    estimate = estimator.value_estimate

    def recording(tensordict: TensorDictBase, *args, **kwargs) -> torch.Tensor:
        target = estimate(tensordict, *args, **kwargs)
        seen.append((target, tensordict["next", "state_value"]))
        return target

    estimator.value_estimate = recording
    try:
        module.critic_loss(transitions.clone())
    finally:
        del estimator.value_estimate
    (target, next_value), = seen
    return target.reshape(-1), next_value.reshape(-1)


@pytest.mark.parametrize("family", list(TD_FAMILIES))
def test_td_targets_discount_by_gamma_and_bootstrap_only_past_non_terminal_steps(family: str) -> None:
    module = _model(*TD_FAMILIES[family], "--model.gamma", str(GAMMA))
    transitions = _transitions(module)
    target, next_value = _td_target_and_next_value(module, transitions)
    reward = transitions["next", "reward"].reshape(-1)
    # Termination stops bootstrapping; a time-limit truncation does not.
    expected = reward + GAMMA * (~TERMINATED).float() * next_value
    torch.testing.assert_close(target, expected)
    assert (next_value[~TERMINATED].abs() > 1e-4).all(), "the check needs non-zero next-state values"


# AtariSPR at a small screen: n-step 3, discount 0.5, one env copy, expected Q-values (the C51
# target's discounting is checked in test_atari_c51.py).
SPR = ("atari100k.yaml", "--model.env.init_args.screen_size", "48", "--model.replay_storage", "memory",
       "--model.gamma", str(GAMMA), "--model.n_step", "3", "--model.atoms", "1")


def _atari_batch(module, rewards: list[float], ends: list[bool], lives: list[int]) -> TensorDictBase:
    """A ``[1, T]`` collector batch of one env copy: every frame of step ``t`` holds ``t``; an episode ends where ``ends``."""
    steps = len(rewards)
    shape = module.observation_spec.shape
    frames = torch.arange(steps + 1, dtype=torch.uint8)[:, None, None, None].expand(steps + 1, *shape)
    count, counts = 0, []
    for end in ends:
        counts.append(count)
        count = 0 if end else count + 1
    end = torch.tensor(ends)[:, None]
    lives_before = torch.tensor(lives)[:, None]
    lives_after = torch.tensor([*lives[1:], lives[-1]])[:, None]
    return TensorDict({
        "observation": frames[:-1].clone(), "step_count": torch.tensor(counts)[:, None], "lives": lives_before,
        "action": module.action_spec.rand((steps,)),
        "next": {"observation": frames[1:].clone(), "reward": torch.tensor(rewards)[:, None], "done": end,
                 "terminated": end.clone(), "truncated": torch.zeros_like(end), "lives": lives_after},
    }, [steps]).unsqueeze(0)


@torch.no_grad()
def test_spr_n_step_targets_discount_by_gamma_per_step_and_stop_at_terminals_and_lost_lives() -> None:
    module = _model(*SPR)
    # Seven steps with raw scores (the targets see their sign): the game ends after step 3, a life
    # is lost at step 5 (a terminal of the targets, not of the game).
    module.store(_atari_batch(module, rewards=[5.0, 0.0, -3.0, 10.0, 2.0, 0.0, 7.0],
                              ends=[False, False, False, True, False, False, False], lives=[3, 3, 3, 3, 3, 3, 2]))
    steps = torch.tensor([0, 2, 3, 4, 5, 6])
    sample = module.replay_buffer.gather(steps, torch.zeros_like(steps))
    # Each target bootstraps from the frame after its window: step 3's (t=0), step 7's (t=6).
    assert sample["next", "observation"][:, -1, 0, 0].tolist() == [3, 4, 4, 6, 6, 7]
    target, next_value = _td_target_and_next_value(module, sample)
    # t=0: 1 + 0.5*0 + 0.25*(-1), then 0.5^3 V(s3); t=2: -1 + 0.5*1, the game ends; t=3: 1, ends;
    # t=4: 1 + 0.5*0, the life is lost; t=5: 0, lost; t=6: 1, the newest step, then 0.5 V(s7).
    expected = torch.tensor([0.75 + GAMMA**3 * next_value[0], -0.5, 1.0, 1.0, 0.0, 1.0 + GAMMA * next_value[5]])
    torch.testing.assert_close(target, expected)
    assert (next_value.abs() > 1e-4).all(), "the check needs non-zero next-state values"


# ------------------------------------------------------------------------------------- target networks
class TargetNetworkCheck(Callback):
    """After every batch that took gradient steps, compare the target networks with the update rule.

    ``rule="copy"``: the targets equal the online networks (a hard copy on the batch's last step).
    ``rule="soft"``: one step per batch, so ``target = old target + tau * (online - old target)``.
    """

    def __init__(self, rule: str, tau: float = 0.0) -> None:
        self.rule, self.tau, self.checked = rule, tau, 0

    @staticmethod
    def pairs(module) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loss = module.loss_module
        names = [n for n in dir(loss) if n.startswith("target_") and n.endswith("_params") and "network" in n]
        pairs = []
        for name in names:
            online, target = getattr(loss, name.removeprefix("target_")), getattr(loss, name)
            if target is None:  # SACLoss keeps a slot for the state-value net it no longer has
                continue
            for key, value in target.items(True, True):
                if key[-1].endswith("_epsilon"):  # a noisy layer's current noise draw, not a weight
                    continue
                pairs.append((online.get(key), value))
        assert pairs, "the module must have target networks"
        return pairs

    def on_train_batch_start(self, trainer, module, *_) -> None:
        self.before = [(o.detach().clone(), t.detach().clone()) for o, t in self.pairs(module)]

    def on_train_batch_end(self, trainer, module, *_) -> None:
        if len(module.replay_buffer) < module.learning_starts:
            return
        moved = False
        for (online_before, target_before), (online, target) in zip(self.before, self.pairs(module), strict=True):
            if self.rule == "copy":
                torch.testing.assert_close(target, online, rtol=0, atol=0)
            else:
                torch.testing.assert_close(target, target_before + self.tau * (online - target_before))
            moved |= not torch.equal(target, target_before)
        assert moved, "the targets must have moved"
        self.checked += 1


# SAC and MBPO: one gradient step per batch, small nets; MBPO's model trains one epoch on few rollouts.
SMALL_SAC = ("--model.update_to_data", "null", "--model.updates_per_batch", "1",
             "--model.actor_net.init_args.hidden_sizes", "[32]", "--model.critic_net.init_args.hidden_sizes", "[32]")
SMALL_MBPO = ("--model.model_learning.init_args.max_epochs", "1",
              "--model.model_learning.init_args.world_model.init_args.hidden_sizes", "[32]",
              "--model.imagined.starts", "64")
TARGET_FAMILIES = {
    # (config, rule, tau, overrides): batches of 32 frames, updates on every batch. Interval 1 copies
    # after every gradient step, so each batch ends with a copy.
    "dqn": ("cartpole_dqn.yaml", "copy", 0.0, ("--model.updates_per_batch", "2", "--model.target_update_interval", "1")),
    "dqn_imagination": ("cartpole_dqn_imagination.yaml", "copy", 0.0,
                        ("--model.updates_per_batch", "2", "--model.target_update_interval", "1",
                         "--model.model_learning.init_args.updates_per_batch", "1", "--model.imagined.starts", "8")),
    "ddpg": ("pendulum_ddpg.yaml", "soft", 0.05, ("--model.updates_per_batch", "1", "--model.tau", "0.05")),
    "td3": ("pendulum_ddpg.yaml", "soft", 0.05, ("--model.class_path", "mbrl_lightning.algorithms.TD3",
                                                  "--model.updates_per_batch", "1", "--model.tau", "0.05",
                                                  "--model.actor_update_interval", "1")),
    "ddpg_imagination": ("pendulum_ddpg.yaml", "soft", 0.05,
                         ("--model.class_path", "mbrl_lightning.algorithms.ImaginationDDPG",
                          "--model.updates_per_batch", "1", "--model.tau", "0.05")),
    "sac": ("pendulum_sac.yaml", "soft", 0.05, (*SMALL_SAC, "--model.tau", "0.05")),
    "mbpo": ("pendulum_mbpo.yaml", "soft", 0.05, (*SMALL_SAC, *SMALL_MBPO, "--model.tau", "0.05")),
    # SPR's target network is a copy of the online one after every update (target_update_interval 1).
    "atari_spr": (SPR[0], "copy", 0.0, (*SPR[1:], "--model.updates_per_batch", "2", "--model.target_update_interval", "1")),
}


@pytest.mark.parametrize("family", list(TARGET_FAMILIES))
def test_target_networks_follow_their_update_rule_inside_training(family: str) -> None:
    config, rule, tau, overrides = TARGET_FAMILIES[family]
    module = _model(config, *overrides, "--model.frames_per_batch", "32", "--model.learning_starts", "32",
                    "--model.batch_size", "16", "--model.total_frames", "96", "--model.eval_every_frames", "0",
                    "--model.env.init_args.num_envs", "1")
    check = TargetNetworkCheck(rule, tau)
    trainer = Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, callbacks=[check])
    trainer.fit(module)
    assert check.checked == 3


# ------------------------------------------------------------------------------------- evaluation
EVAL_FAMILIES = {
    "dqn": ("cartpole_dqn.yaml",),
    "dqn_imagination": ("cartpole_dqn_imagination.yaml",),
    "ppo": ("cartpole_ppo.yaml",),
    "a2c": ("cartpole_a2c.yaml",),
    "mbppo": ("cartpole_mbppo.yaml",),
    "ddpg": ("pendulum_ddpg.yaml",),
    "td3": ("pendulum_ddpg.yaml", "--model.class_path", "mbrl_lightning.algorithms.TD3"),
    "ddpg_imagination": ("pendulum_ddpg.yaml", "--model.class_path", "mbrl_lightning.algorithms.ImaginationDDPG"),
    "dyna_q": ("cliffwalking_dynaq.yaml",),
    "atari_dqn": ("pacman_pixel_entropy.yaml", "--model.env.init_args.num_envs", "1"),
    "sac": ("pendulum_sac.yaml",),
    "mbpo": ("pendulum_mbpo.yaml",),
}


class RecordingPolicy(TensorDictModuleBase):
    """Acts with ``policy`` (in the RANDOM exploration mode when ``explore``) and keeps every action."""

    def __init__(self, policy: TensorDictModuleBase, actions: list[torch.Tensor], explore: bool = False) -> None:
        super().__init__()
        self.policy, self.actions, self.explore = policy, actions, explore
        self.in_keys, self.out_keys = policy.in_keys, policy.out_keys

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self.explore:
            with set_exploration_type(ExplorationType.RANDOM):
                out = self.policy(tensordict)
        else:
            out = self.policy(tensordict)
        self.actions.append(out["action"].detach().clone())
        return out


def _actions_with_global_seed(seed: int, act) -> torch.Tensor:
    torch.manual_seed(seed)
    np.random.seed(seed)
    actions: list[torch.Tensor] = []
    act(actions)
    return torch.stack(actions)


@pytest.mark.parametrize("family", list(EVAL_FAMILIES))
def test_evaluation_acts_deterministically(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exploration draws from the global generators; the module's evaluation must not."""
    module = _model(*EVAL_FAMILIES[family], "--model.eval_episodes", "3", "--model.eval_max_steps", "30")

    def evaluate(actions: list[torch.Tensor]) -> None:
        recording = lambda env, policy, *args: evaluate_policy(env, RecordingPolicy(policy, actions), *args)
        monkeypatch.setattr(base, "evaluate_policy", recording)
        module.evaluations = 0  # the same evaluation env seeds every time
        module.evaluate()

    def explore(actions: list[torch.Tensor]) -> None:
        policy = RecordingPolicy(module.exploration_policy, actions, explore=True)
        with torch.no_grad():
            evaluate_policy(module.env, policy, 3, module.eval_seed(0), 30)

    assert torch.equal(_actions_with_global_seed(0, evaluate), _actions_with_global_seed(1, evaluate))
    # Not vacuous: the exploration policy on the same env seeds acts differently under the two seeds.
    assert not torch.equal(_actions_with_global_seed(0, explore), _actions_with_global_seed(1, explore))


class StartRecordingPolicy(TensorDictModuleBase):
    """Acts with ``policy`` and keeps the observations of each evaluation's first step."""

    def __init__(self, policy: TensorDictModuleBase, starts: list[torch.Tensor]) -> None:
        super().__init__()
        self.policy, self.starts, self.first = policy, starts, True
        self.in_keys, self.out_keys = policy.in_keys, policy.out_keys

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self.first:
            self.starts.append(tensordict["observation"].clone())
            self.first = False
        return self.policy(tensordict)


@pytest.mark.parametrize("same_starts", [False, True])
def test_eval_same_starts_replays_the_start_states_of_the_first_evaluation(
    same_starts: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _model("cartpole_dqn.yaml", "--model.eval_episodes", "3", "--model.eval_max_steps", "5",
                    "--model.eval_same_starts", str(same_starts).lower())
    starts: list[torch.Tensor] = []
    recording = lambda env, policy, *args: evaluate_policy(env, StartRecordingPolicy(policy, starts), *args)
    monkeypatch.setattr(base, "evaluate_policy", recording)
    for _ in range(3):
        module.evaluate()
    assert module.evaluations == 3
    repeats = [torch.equal(starts[0], later) for later in starts[1:]]
    # Three copies per evaluation, each on its own seed: never one start state repeated across them.
    assert len(set(starts[0][:, 0].tolist())) == 3
    assert repeats == [same_starts, same_starts]


@torch.no_grad()
def test_noisy_net_evaluation_acts_on_the_mean_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """AtariSPR explores by noisy layers alone (no epsilon): its evaluation must switch their noise off."""
    module = _model(*SPR, "--model.eval_episodes", "2", "--model.eval_max_steps", "30")
    network = module.q_network
    noisy = [m for m in network.modules() if hasattr(m, "weight_sigma")]
    assert noisy, "the config must have noisy layers"

    def evaluate() -> torch.Tensor:
        actions: list[torch.Tensor] = []
        recording = lambda env, policy, *args: evaluate_policy(env, RecordingPolicy(policy, actions), *args)
        monkeypatch.setattr(base, "evaluate_policy", recording)
        module.evaluations = 0
        module.evaluate()
        return torch.stack(actions)

    def explore() -> torch.Tensor:
        actions: list[torch.Tensor] = []
        evaluate_policy(module.env, RecordingPolicy(module.exploration_policy, actions, explore=True), 2,
                        module.eval_seed(0), 30)
        return torch.stack(actions)

    quiet_eval, quiet_explore = evaluate(), explore()
    for layer in noisy:  # loud noise, freshly drawn: what exploration acts with changes
        layer.weight_sigma.mul_(100)
        layer.bias_sigma.mul_(100)
    torch.manual_seed(1)
    network.reset_noise()
    assert torch.equal(evaluate(), quiet_eval)
    assert not torch.equal(explore(), quiet_explore), "the check needs noise that changes the actions"


PLANNER_FAMILIES = {
    "pets": ("pendulum_pets.yaml", "--model.planner.init_args.population", "8", "--model.planner.init_args.elites",
             "2", "--model.planner.init_args.iterations", "1", "--model.planner.init_args.horizon", "3"),
    "mcts": ("cartpole_mcts.yaml", "--model.planner.init_args.num_simulations", "2"),
    "known_model_mpc": ("arm_known_mpc.yaml", "--model.planner.init_args.population", "8",
                        "--model.planner.init_args.elites", "2", "--model.planner.init_args.horizon", "3"),
}


@pytest.mark.parametrize("family", list(PLANNER_FAMILIES))
def test_evaluation_plans_every_action_even_while_collection_acts_randomly(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mbrl_lightning.planners.stats import PlanningStats

    episodes, steps = 3, 4
    module = _model(*PLANNER_FAMILIES[family], "--model.eval_episodes", str(episodes),
                    "--model.eval_max_steps", str(steps))
    planned = []
    record = PlanningStats.record
    monkeypatch.setattr(PlanningStats, "record", lambda self, seconds, actions, value: (
        planned.append(actions), record(self, seconds, actions, value))[1])
    module.evaluate()  # at frame 0: PETS and MCTS still collect with random actions here
    assert sum(planned) == episodes * steps
