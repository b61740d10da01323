"""A latent world model for Atari: self-predictive representations (SPR, Schwarzer et al. 2021)."""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torch import nn

from mbrl_lightning.curiosity.imagination_entropy import action_spread
from mbrl_lightning.errors import require
from mbrl_lightning.nets.conv import renormalize
from mbrl_lightning.world_models.contract import DynamicsModel


Projection = Literal["linear", "q_head"]


class HeadProjection(nn.Module):
    """Flatten, then a network's ``head_projection`` (its Q head's first layers): SPR's ``q_l1`` projection.

    The network is held in a list, not registered: its weights are the network's, trained and
    checkpointed with it.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self._network = [network]

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """The projection of ``[batch, C, H, W]`` latents."""
        return self._network[0].head_projection(latent.flatten(1))


class LatentTransitionModel(DynamicsModel):
    """Predicts the encoder's future latents from the current one and the actions, K steps ahead.

    The latent is the Q-network torso's last feature map (``[64, 7, 7]`` at 84x84). The transition
    is SPR's: the one-hot action as constant planes, concatenated with the latent, two 3x3
    convolutions with ReLU, the output renormalised. Each predicted latent goes through the
    projection (flatten, linear) and the prediction head (linear); the target is the projection
    of the target encoder's latent of the real future observation, and the loss is
    ``1 - cosine similarity`` summed over the K steps still in the episode. The target encoder and
    projection are an exponential moving average of the online ones with ``target_momentum``;
    at 0 (SPR with augmentation) they are the online ones under ``no_grad``, so nothing is copied.

    The same model imagines in latent space: :meth:`imagine_all_actions` predicts the next latent
    under every action in one batched pass, :meth:`imagination_entropy` is the spread of those
    embeddings over actions, and :meth:`curiosity` the taken action's prediction error.

    It meets the :class:`~mbrl_lightning.world_models.contract.DynamicsModel` contract; its
    ``forward`` writes ``("next", "latent")`` (it predicts latents, not pixels). :meth:`bind`
    gives it the encoder (a network with ``feature_map``, such as
    :class:`~mbrl_lightning.nets.AtariQNet`); the encoder's weights stay the network's.

    Args:
        latent_channels: channels of the encoder's feature map (derived from the network).
        num_actions: discrete actions (derived from the env).
        hidden_channels: channels of the transition's hidden convolution.
        projection_size: width of the projection and the prediction head (``linear`` projection only).
        prediction_steps: K, future latents predicted per sample (SPR: 5).
        target_momentum: EMA momentum of the target encoder and projection (SPR with augmentation: 0).
        renormalize_targets: min-max scale the target latents to [0, 1] before their projection, as
            the predicted latents are (SPR: true; false projects the raw latent, a scale the
            predictions never have).
        projection: ``linear``, a layer of its own, or ``q_head``, the bound network's
            ``head_projection`` (SPR's ``q_l1``: the Q head's first layers without noise, and a
            prediction head as wide; needs a network such as :class:`~mbrl_lightning.nets.AtariQNet`).
    """

    def __init__(
        self, latent_channels: int, num_actions: int, hidden_channels: int = 64, projection_size: int = 512,
        prediction_steps: int = 5, target_momentum: float = 0.0, renormalize_targets: bool = True,
        projection: Projection = "linear",
    ) -> None:
        super().__init__()
        require(prediction_steps >= 1, "model.latent_model.prediction_steps", prediction_steps, "must be a positive integer")
        require(projection in ("linear", "q_head"), "model.latent_model.projection", projection,
                "allowed values are 'linear', 'q_head'")
        require(0.0 <= target_momentum < 1.0, "model.latent_model.target_momentum", target_momentum, "must lie in [0, 1)")
        self.num_actions = num_actions
        self.prediction_steps = prediction_steps
        self.target_momentum = target_momentum
        self.renormalize_targets = renormalize_targets
        self.transition = nn.Sequential(
            nn.Conv2d(latent_channels + num_actions, hidden_channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden_channels, latent_channels, 3, padding=1), nn.ReLU(),
        )
        self.projection_kind = projection
        # A q_head projection and its prediction head are made by bind, which knows the network.
        if projection == "linear":
            self.projection: nn.Module = nn.Sequential(nn.Flatten(), nn.LazyLinear(projection_size))
            self.prediction = nn.Linear(projection_size, projection_size)
        self._encoder: list[nn.Module] = []  # a list: the encoder's weights are registered by its own network
        self.target_encoder: nn.Module | None = None
        self.target_projection: nn.Module | None = None

    def bind(self, encoder: nn.Module, example: torch.Tensor) -> None:
        """Use ``encoder.feature_map`` as the online encoder; size the projection with one ``example`` batch."""
        self._encoder[:] = [encoder]
        if self.projection_kind == "q_head":
            require(hasattr(encoder, "head_projection"), "model.latent_model.projection", "q_head",
                    f"needs a q_net with head_projection (such as AtariQNet), not {type(encoder).__name__}; use 'linear'")
            self.projection = HeadProjection(encoder)
        with torch.no_grad():
            width = self.projection(encoder.feature_map(example)).shape[-1]
        if self.projection_kind == "q_head":
            self.prediction = nn.Linear(width, width)
        if self.target_momentum > 0:
            self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
            self.target_projection = (HeadProjection(self.target_encoder) if self.projection_kind == "q_head"
                                      else copy.deepcopy(self.projection).requires_grad_(False))

    # ----------------------------------------------------------------- parts
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """The online encoder's latent of frame stacks ``[batch, C, H, W]``."""
        return self._encoder[0].feature_map(frames)

    def step(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The next latent after one-hot ``action`` ``[batch, num_actions]``."""
        planes = action.to(latent.dtype)[..., None, None].expand(*action.shape, *latent.shape[-2:])
        return renormalize(self.transition(torch.cat([latent, planes], 1)))

    def embed(self, latent: torch.Tensor) -> torch.Tensor:
        """Projection then prediction head: what is compared with the target."""
        return self.prediction(self.projection(latent))

    @torch.no_grad()
    def target_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        """The target projection of the target encoder's latent of ``frames`` (no gradient)."""
        if self.target_encoder is None:
            latent, projection = self.encode(frames), self.projection
        else:
            latent, projection = self.target_encoder.feature_map(frames), self.target_projection
        return projection(renormalize(latent) if self.renormalize_targets else latent)

    @torch.no_grad()
    def update_target(self) -> None:
        """Move the target encoder and projection towards the online ones (nothing at momentum 0)."""
        if self.target_encoder is None:
            return
        for target, online in ((self.target_encoder, self._encoder[0]), (self.target_projection, self.projection)):
            targets = list(target.parameters())
            if targets:  # a q_head projection's weights are the network's, moved with the encoder's
                torch._foreach_lerp_(targets, list(online.parameters()), 1.0 - self.target_momentum)

    @torch.no_grad()
    def copy_to_target(self) -> None:
        """Make the target encoder and projection the online ones again (after a reset; nothing at momentum 0)."""
        if self.target_encoder is None:
            return
        self.target_encoder.load_state_dict(self._encoder[0].state_dict())
        self.target_projection.load_state_dict(self.projection.state_dict())

    # ----------------------------------------------------------------- self-prediction
    def prediction_errors(self, latent: torch.Tensor, transitions: TensorDictBase) -> torch.Tensor:
        """``sum_k mask_k (1 - cos(predicted_k, target_k))`` per sample, ``[batch]``, from the online ``latent``.

        ``transitions`` holds ``future_action`` ``[batch, K', A]``, ``future_observation``
        ``[batch, K', C, H, W]`` and ``future_mask`` ``[batch, K']`` with ``K' >= K``.
        """
        steps = self.prediction_steps
        actions = transitions["future_action"][:, :steps]
        predicted, state = [], renormalize(latent)
        for k in range(steps):
            state = self.step(state, actions[:, k])
            predicted.append(state)
        online = self.embed(torch.stack(predicted, 1).flatten(0, 1))
        future = transitions["future_observation"][:, :steps]
        target = self.target_embedding(future.flatten(0, 1))
        similarity = F.cosine_similarity(online, target, dim=-1).view(-1, steps)
        return ((1.0 - similarity) * transitions["future_mask"][:, :steps].to(similarity.dtype)).sum(1)

    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """``loss_self_prediction``: the mean of :meth:`prediction_errors` (through the encoder as well)."""
        return TensorDict(loss_self_prediction=self.prediction_errors(self.encode(transitions["observation"]), transitions).mean())

    @torch.no_grad()
    def validate(self, transitions: TensorDictBase) -> TensorDictBase:
        """``val_loss``: the mean summed cosine error of the K predictions on held-out sequences."""
        return TensorDict(val_loss=self.loss(transitions)["loss_self_prediction"])

    def forward(self, transitions: TensorDictBase) -> TensorDictBase:
        """Write the predicted next latent as ``("next", "latent")``."""
        transitions.set(("next", "latent"), self.step(renormalize(self.encode(transitions["observation"])), transitions["action"]))
        return transitions

    # ----------------------------------------------------------------- imagination in latent space
    @torch.no_grad()
    def imagine_all_actions(self, frames: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings of the next latent under every action, ``[batch, num_actions, projection]``: one pass."""
        latent = renormalize(self.encode(frames))
        batch = latent.shape[0]
        actions = torch.eye(self.num_actions, device=latent.device).repeat(batch, 1)
        futures = self.embed(self.step(latent.repeat_interleave(self.num_actions, 0), actions))
        return F.normalize(futures, dim=-1).view(batch, self.num_actions, -1)

    @torch.no_grad()
    def imagination_entropy(self, frames: torch.Tensor) -> torch.Tensor:
        """Spread over actions of the imagined next embeddings, ``[batch]`` (seed 004's score, in latent space)."""
        return action_spread(self.imagine_all_actions(frames))

    @torch.no_grad()
    def curiosity(self, transitions: TensorDictBase) -> torch.Tensor:
        """Forward-model error in latent space, ``1 - cos`` of the taken action's prediction and the real next latent."""
        latent = renormalize(self.encode(transitions["observation"]))
        predicted = self.embed(self.step(latent, transitions["action"]))
        target = self.target_embedding(transitions["next", "observation"])
        return 1.0 - F.cosine_similarity(predicted, target, dim=-1)
