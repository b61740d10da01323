"""A convolutional forward model of stacked frames (the Pacman model of the imagination-entropy design)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torch import nn

from mbrl_lightning.nets.conv import scale_frames
from mbrl_lightning.world_models.contract import DynamicsModel


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection.

    Args:
        channels: input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(x + body(x))``."""
        return F.relu(x + self.body(x))


class ConvWorldModel(DynamicsModel):
    """Predicts the next frame stack from the current stack and the action.

    The one-hot action is broadcast to constant planes and concatenated with the frames; two
    stride-2 convolutions encode to a quarter of the resolution, residual blocks transform, two
    transposed convolutions decode a change that is added to the newest input frame (a residual
    connection: the model learns what changes). The older frames of the next stack are the
    current ones shifted by one, so only the newest frame is predicted. Pixels are in [0, 1], the
    units it trains and validates in (the vector models' normalisers do not apply to pixels); it
    meets the :class:`~mbrl_lightning.world_models.contract.DynamicsModel` contract, so a
    :class:`~mbrl_lightning.world_models.WorldModelLearner` trains and measures it.

    Args:
        in_channels: stacked frames (derived from the env).
        num_actions: discrete actions (derived from the env).
        channels: channels of the first encoder layer (the second has twice as many).
        residual_blocks: residual blocks at the lowest resolution.
    """

    def __init__(self, in_channels: int, num_actions: int, channels: int = 32, residual_blocks: int = 2) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_actions = num_actions
        wide = 2 * channels
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels + num_actions, channels, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, wide, 4, stride=2, padding=1), nn.ReLU(),
        )
        self.blocks = nn.Sequential(*(ResidualBlock(wide) for _ in range(residual_blocks)))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(wide, channels, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(channels, 1, 4, stride=2, padding=1),
        )

    def predict(self, frames: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Next frames in [0, 1], ``[batch, C, H, W]``, from frames (uint8 or [0, 1]) and one-hot actions."""
        frames = scale_frames(frames)
        planes = action.to(frames.dtype)[..., None, None].expand(*action.shape, *frames.shape[-2:])
        hidden = self.blocks(self.encoder(torch.cat([frames, planes], -3)))
        newest = frames[..., -1:, :, :] + self.decoder(hidden)
        # The older frames of the next stack are the current stack shifted: known, not predicted.
        return torch.cat([frames[..., 1:, :, :], newest], -3)

    def predict_all_actions(self, frames: torch.Tensor) -> torch.Tensor:
        """Next frames under every action, ``[batch, num_actions, C, H, W]``: ``predict`` for each one-hot action.

        The first convolution is linear in its input, so its frame part is computed once per
        state and its action-plane part once per action (the planes do not depend on the state),
        instead of once per (state, action) pair: the same numbers, about a fifth less work.
        """
        frames = scale_frames(frames)
        batch, channels, height, width = frames.shape
        first = self.encoder[0]
        frame_part = F.conv2d(frames, first.weight[:, :channels], first.bias, first.stride, first.padding)
        planes = torch.eye(self.num_actions, dtype=frames.dtype, device=frames.device)[..., None, None]
        planes = planes.expand(self.num_actions, self.num_actions, height, width)
        action_part = F.conv2d(planes, first.weight[:, channels:], None, first.stride, first.padding)
        encoded = (frame_part.unsqueeze(1) + action_part).flatten(0, 1)
        hidden = self.blocks(self.encoder[1:](encoded))
        change = self.decoder(hidden).reshape(batch, self.num_actions, 1, height, width)
        newest = frames[:, None, -1:] + change
        older = frames[:, None, 1:].expand(batch, self.num_actions, channels - 1, height, width)
        return torch.cat([older, newest], 2)

    def errors(self, transitions: TensorDictBase) -> torch.Tensor:
        """Per-transition mean squared error of the predicted next stack, shape ``[batch]``."""
        predicted = self.predict(transitions["observation"], transitions["action"])
        target = scale_frames(transitions["next", "observation"])
        return ((predicted - target) ** 2).mean((-3, -2, -1))

    def loss(self, transitions: TensorDictBase) -> TensorDictBase:
        """``loss_observation``: mean squared pixel error of the next stack."""
        return TensorDict(loss_observation=self.errors(transitions).mean())

    @torch.no_grad()
    def validate(self, transitions: TensorDictBase) -> TensorDictBase:
        """``val_loss``: the mean squared pixel error of the next stack on held-out transitions."""
        return TensorDict(val_loss=self.errors(transitions).mean())

    def forward(self, transitions: TensorDictBase) -> TensorDictBase:
        """Write the predicted next stack (floats in [0, 1]) as ``("next", "observation")``."""
        transitions.set(("next", "observation"), self.predict(transitions["observation"], transitions["action"]))
        return transitions
