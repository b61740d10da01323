"""Data-efficient DQN for Atari-100k with a latent world model: the recipe of SPR (Schwarzer et al. 2021)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch
from tensordict import TensorDictBase

from mbrl_lightning.algorithms.atari_dqn import AtariDQN
from mbrl_lightning.algorithms.base import Metrics
from mbrl_lightning.algorithms.hard_update import EveryNHardUpdate
from mbrl_lightning.algorithms.resets import ResetSchedule, reinitialise_, shrink_and_perturb_
from mbrl_lightning.allocator import retain_freed_memory
from mbrl_lightning.data.nstep_frame_replay import NStepFrameReplay, OneStepView
from mbrl_lightning.envs.atari import AtariEnvFactory
from mbrl_lightning.errors import require
from mbrl_lightning.nets.augment import random_intensity, random_shift
from mbrl_lightning.nets.conv import prepare_frames
from mbrl_lightning.world_models.latent import LatentTransitionModel

LatentModelFactory = Callable[[int, int], LatentTransitionModel]
Augmentation = Literal["shift", "shift_intensity", "none"]
FRAME_KEYS = ("observation", ("next", "observation"), "future_observation")


class LatentCapture:
    """Forward hook that keeps the torso outputs that carry a gradient (the TD pass's) in ``latents``."""

    def __init__(self, latents: list[torch.Tensor]) -> None:
        self.latents = latents

    def __call__(self, module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if output.requires_grad:
            self.latents.append(output)


class AtariSPR(AtariDQN):
    """Dueling, noisy, n-step, prioritized DQN with random-shift augmentation and self-predictive latents.

    Every part of SPR's recipe is a key, so an ablation is a YAML change:

    - ``n_step``: multi-step targets (:class:`~mbrl_lightning.data.nstep_frame_replay.NStepFrameReplay`,
      ``gamma ** m`` through TorchRL's TD(0) ``steps_to_next_obs``);
    - ``priority_exponent`` / ``importance_exponent_init`` / ``importance_exponent_end``: proportional
      prioritized replay; the importance exponent anneals linearly over ``importance_anneal_frames``
      (not ``total_frames``: extending a run must not change its schedule), priorities become the
      absolute TD errors after each step;
    - ``augmentation`` / ``shift_pad``: DrQ's random shift of every replayed frame stack, and with
      ``shift_intensity`` SPR's random intensity after it (each stack times ``1 + 0.05 * clamp(N(0, 1), -2, 2)``);
    - ``latent_model`` / ``self_prediction_weight``: the
      :class:`~mbrl_lightning.world_models.latent.LatentTransitionModel`, whose K-step cosine loss is
      added (times the weight) to the TD loss of the same step, through the shared encoder;
    - ``entropy_beta`` / ``curiosity_beta``: seed 004's bonuses, computed by the latent model (one
      batched pass over all actions per collected batch), squashed as in :class:`AtariDQN`;
    - ``reset_every_frames`` / ``resets_until_frames`` / ``reset_shrink`` / ``reset_perturb``: SR-SPR's
      resets (D'Oro et al. 2023): the Q head and the latent model's projection and prediction head
      drawn afresh (their Adam moments forgotten), the encoder and the transition model shrunk and
      perturbed towards a fresh draw; off at 0;
    - ``adam_eps``, and DQN's ``double_dqn``, ``target_tau`` / ``target_update_interval``,
      ``updates_per_batch`` (the replay ratio) and the q_net's ``dueling`` / ``noisy``.

    A ``model_learning`` block still trains the pixel ``ConvWorldModel`` alongside (for predicted
    frames and pictures) on uniform one-step samples of the same buffer.

    Args:
        env: the Atari environment factory.
        latent_model: class called as ``latent_model(latent_channels, num_actions)``; None: no latent model.
        self_prediction_weight: weight of the K-step self-prediction loss, a sum over the steps (SPR: 2 at
            K=5, its 5 on the mean of ``2 - 2 cos``; the same per-step weight is 5 at K=2).
        n_step: steps of the multi-step return (SPR: 10).
        priority_exponent: alpha of prioritized replay in [0, 1] (SPR: 0.5; 0 samples uniformly).
        importance_exponent_init: beta at the start (SPR: 0.4).
        importance_exponent_end: beta after ``importance_anneal_frames`` (SPR: 1).
        importance_anneal_frames: agent steps over which beta rises (SPR: its budget, 100k).
        augmentation: ``shift`` (DrQ random shift), ``shift_intensity`` (the shift, then SPR's intensity) or ``none``.
        shift_pad: the shift's largest offset in pixels (DrQ: 4).
        adam_eps: Adam's epsilon (SPR and DER: 1.5e-4).
        entropy_beta: weight of latent imagination entropy (0: off).
        curiosity_beta: weight of latent forward-model curiosity (0: off).
        reset_every_frames: agent steps between resets (0: none; SR-SPR: 40,000 gradient steps).
        resets_until_frames: no reset that leaves less than ``reset_every_frames`` before this (SR-SPR: 100k).
        reset_shrink: weight of the current encoder and transition weights in a reset (SR-SPR: 0.8).
        reset_perturb: weight of a fresh draw of them (SR-SPR: 0.2).
        **kwargs: :class:`AtariDQN` settings.
    """

    def __init__(
        self,
        env: AtariEnvFactory,
        latent_model: LatentModelFactory | None = LatentTransitionModel,
        self_prediction_weight: float = 2.0,
        n_step: int = 10,
        priority_exponent: float = 0.5,
        importance_exponent_init: float = 0.4,
        importance_exponent_end: float = 1.0,
        importance_anneal_frames: int = 100_000,
        augmentation: Augmentation = "shift",
        shift_pad: int = 4,
        adam_eps: float = 1.5e-4,
        entropy_beta: float = 0.0,
        curiosity_beta: float = 0.0,
        reset_every_frames: int = 0,
        resets_until_frames: int = 100_000,
        reset_shrink: float = 0.8,
        reset_perturb: float = 0.2,
        **kwargs: Any,
    ) -> None:
        # The pixel model is built only for an explicit model_learning block: the bonuses are latent here.
        super().__init__(env=env, entropy_beta=0.0, curiosity_beta=0.0, **kwargs)
        require(augmentation in ("shift", "shift_intensity", "none"), "model.augmentation", augmentation,
                "allowed values are 'shift', 'shift_intensity', 'none'")
        require(shift_pad >= 0, "model.shift_pad", shift_pad, "must be 0 or more")
        require(self_prediction_weight >= 0, "model.self_prediction_weight", self_prediction_weight, "must be 0 or more")
        require(adam_eps > 0, "model.adam_eps", adam_eps, "must be positive")
        require(entropy_beta >= 0, "model.entropy_beta", entropy_beta, "must be 0 or more")
        require(curiosity_beta >= 0, "model.curiosity_beta", curiosity_beta, "must be 0 or more")
        require(latent_model is not None or not (entropy_beta or curiosity_beta or self_prediction_weight),
                "model.latent_model", None, "is needed by self_prediction_weight, entropy_beta and curiosity_beta; set them to 0")
        require(0 <= importance_exponent_init <= importance_exponent_end, "model.importance_exponent_end",
                importance_exponent_end, f"must be at least model.importance_exponent_init={importance_exponent_init}")
        for key, value in (("model.reset_shrink", reset_shrink), ("model.reset_perturb", reset_perturb)):
            require(0.0 <= value <= 1.0, key, value, "must lie in [0, 1]")
        self.resets = ResetSchedule(reset_every_frames, resets_until_frames)
        require(not reset_every_frames or reset_every_frames > self.learning_starts, "model.reset_every_frames",
                reset_every_frames, f"must be 0 or more than model.learning_starts={self.learning_starts}")
        require(not reset_every_frames or all(hasattr(self.q_network, part) for part in ("features", "head")),
                "model.reset_every_frames", reset_every_frames,
                "needs a q_net with a 'features' torso and a 'head' (such as AtariQNet); set it to 0")
        self.reset_mix = (reset_shrink, reset_perturb)
        self.entropy_beta = entropy_beta
        self.curiosity_beta = curiosity_beta
        self.self_prediction_weight = self_prediction_weight
        self.augmentation = augmentation
        self.shift_pad = shift_pad
        self.adam_eps = adam_eps
        require(importance_anneal_frames >= 1, "model.importance_anneal_frames", importance_anneal_frames,
                "must be a positive integer")
        self.importance_exponents = (importance_exponent_init, importance_exponent_end)
        self.importance_anneal_frames = importance_anneal_frames
        self.latent_model: LatentTransitionModel | None = None
        if latent_model is not None:
            network = self.q_network
            self.latent_model = latent_model(network.last_conv.out_channels, self.num_actions)
            self.latent_model.bind(network, self.observation_spec.zero().unsqueeze(0))
            # The TD loss's pass over the observations computes the latent self-prediction starts from:
            # keep it (the one output of the torso that carries a gradient) instead of encoding twice.
            # The hook holds the list, not the module: the policy that carries it then pickles
            # into a multi_sync worker without the whole module.
            self._captured_latents: list[torch.Tensor] = []
            list(network.features)[-2].register_forward_hook(LatentCapture(self._captured_latents))
        steps = self.latent_model.prediction_steps if self.latent_model is not None and self_prediction_weight else 0
        self.replay_buffer = NStepFrameReplay(
            self.hparams.buffer_size, env.num_envs, env.frame_stack, storage=self.hparams.replay_storage,
            n_step=n_step, gamma=self.hparams.gamma, priority_exponent=priority_exponent,
            importance_exponent=importance_exponent_init, sequence_length=steps,
        )
        if self.model_learner is not None:
            self.model_learner.learn_from(OneStepView(self.replay_buffer))
        if self.hparams.target_tau == 1.0:
            # A soft update with tau 1 is a copy: TorchRL's lerp reads both networks to write one
            # (4 ms of CPU per step here). A hard update with interval 1 copies at every step.
            self.target_updater = EveryNHardUpdate(self.loss_module, value_network_update_interval=1)

    def setup(self, stage: str) -> None:
        """Keep freed memory in the heap (:func:`~mbrl_lightning.allocator.retain_freed_memory`), then the base setup."""
        retain_freed_memory()  # the frames, activations and gradients of every step are made anew
        super().setup(stage)

    def configure_optimizers(self) -> torch.optim.Optimizer | list[torch.optim.Optimizer]:
        """One Adam (``adam_eps``) for the Q-network and the latent model; the pixel model's when there is one."""
        parameters = [*self.q_actor.parameters()]
        if self.latent_model is not None:
            parameters += [p for p in self.latent_model.parameters() if p.requires_grad]
        # The fused CPU kernel: one pass over all parameters instead of six elementwise ops per tensor
        # (Adam's per-tensor ops took 8% of a step's CPU time in torch.profiler).
        optimizer = torch.optim.Adam(parameters, lr=self.lr, eps=self.adam_eps, fused=self.device.type in ("cpu", "cuda"))
        return optimizer if self.model_learner is None else self.with_model_optimizer([optimizer])

    # ----------------------------------------------------------------- data
    @torch.no_grad()
    def bonus_scores(self, transitions: TensorDictBase) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Latent imagination entropy (None when its weight is 0) and latent curiosity of new transitions."""
        self._fresh_error = None  # the pixel model, if any, measures itself
        entropy = self.latent_model.imagination_entropy(transitions["observation"]) if self.entropy_beta else None
        return entropy, self.latent_model.curiosity(transitions)

    def train_batch(self, sample: TensorDictBase) -> tuple[TensorDictBase, Metrics]:
        """Randomly shift every frame stack of the sample (each stack its own shift), then scale them to floats once."""
        for key in FRAME_KEYS:
            if key in sample.keys(True):
                frames = sample[key]
                stacks = frames.reshape(-1, *frames.shape[-3:])
                if self.augmentation != "none":
                    stacks = random_shift(stacks, self.shift_pad)
                # Scaled here, in the convolutions' channels-last layout, rather than by each network pass that reads them.
                stacks = prepare_frames(stacks)
                if self.augmentation == "shift_intensity":
                    stacks = random_intensity(stacks)
                sample[key] = stacks.view(frames.shape)
        return sample, {}

    # ----------------------------------------------------------------- learning
    def before_updates(self, batch: TensorDictBase) -> Metrics:
        """Reset when due (learning has started and the batch is stored), then the base's work."""
        if self.resets.due(self.frames):
            self.reset_networks()
        return super().before_updates(batch)

    def update(self, batch: TensorDictBase) -> Metrics:
        """Anneal the importance exponent with the frames spent, then the AtariDQN update."""
        priorities = self.replay_buffer.priorities
        if priorities is not None:
            start, end = self.importance_exponents
            priorities.beta = start + (end - start) * min(1.0, self.frames / self.importance_anneal_frames)
        metrics = super().update(batch)
        if priorities is not None:
            metrics["train/importance_exponent"] = priorities.beta
        if self.resets.every:
            metrics["train/resets"] = float(self.resets.done)
        return metrics

    def reset_networks(self) -> None:
        """SR-SPR's reset: fresh Q head, projection and prediction head; encoder and transition shrunk and perturbed.

        The fresh draws come from a generator seeded by the run's seed and the reset's number, so
        every DDP rank (each with its own torch seed) draws the same weights and the replicas stay equal.
        """
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed * 1_000_003 + self.resets.done)
            self._reset_networks()

    def _reset_networks(self) -> None:
        """The reset itself, under the caller's random state."""
        optimizer = self.optimizer(0)
        optimizer = getattr(optimizer, "optimizer", optimizer)  # the torch optimizer inside Lightning's wrapper
        shrink_perturb, fresh = [self.q_network.features], list(self.q_network.head)
        if self.latent_model is not None:
            shrink_perturb.append(self.latent_model.transition)
            fresh += [self.latent_model.projection, self.latent_model.prediction]
        shrink_and_perturb_(shrink_perturb, *self.reset_mix)
        reinitialise_(fresh, optimizer)
        # The targets start from the reset network, as BBF resets its target with the online one
        # (init_ copies them; its warning is for a second initialisation by mistake, this is on purpose).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Updated already initialized")
            self.target_updater.init_()
        if self.latent_model is not None:
            self.latent_model.copy_to_target()

    def losses(self, sample: TensorDictBase) -> dict[str, torch.Tensor]:
        """The (importance-weighted) TD loss and ``self_prediction_weight`` times the self-prediction loss."""
        if self.latent_model is not None:
            self._captured_latents.clear()
        terms = super().losses(sample)
        if self.latent_model is not None and self.self_prediction_weight:
            captured = self._captured_latents
            latent = captured[0] if len(captured) == 1 else self.latent_model.encode(sample["observation"])
            captured.clear()
            errors = self.latent_model.prediction_errors(latent, sample)
            weight = sample.get("priority_weight", None)
            # Weighted as TorchRL reduces the TD loss with importance weights: sum(w * loss) / sum(w).
            loss = errors.mean() if weight is None else (errors * weight).sum() / weight.sum()
            terms["loss/self_prediction"] = self.self_prediction_weight * loss
        return terms

    def replay_priority(self, sample: TensorDictBase) -> torch.Tensor:
        """Each sampled transition's new priority, from the ``td_error`` its loss wrote.

        The absolute TD error (DQNLoss writes it squared) or, with a return distribution, the
        sample's cross-entropy to its target (what the C51 loss writes; Rainbow's priority).
        """
        error = sample["td_error"]
        return error.sqrt() if self.atoms == 1 else error

    def gradient_update(self, sample: TensorDictBase) -> dict[str, torch.Tensor]:
        """The step, then priorities from its errors (:meth:`replay_priority`) and the target encoder."""
        metrics = super().gradient_update(sample)
        if "index" in sample.keys():
            self.replay_buffer.update_priority(sample["index"], self.replay_priority(sample))
        if self.latent_model is not None:
            self.latent_model.update_target()
        return metrics

    def checkpointed_state(self) -> dict[str, Any]:
        """The replay priorities, besides the other parts."""
        parts = super().checkpointed_state()
        if self.replay_buffer.priorities is not None:
            parts["priorities"] = self.replay_buffer.priorities
        if self.resets.every:  # only then: older checkpoints have no schedule to restore
            parts["resets"] = self.resets
        return parts
