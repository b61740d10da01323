"""Convolutional Q-networks for stacked Atari frames: Nature CNN torso, dueling and noisy heads."""

from __future__ import annotations

import torch
from torch import nn
from torchrl.modules import MLP, ConvNet, DuelingCnnDQNet

from mbrl_lightning.nets.noisy import CachedNoisyLinear

# Mnih et al. (2015): three conv layers, 32/64/64 channels, kernels 8/4/3, strides 4/2/1.
NATURE_CNN = {"num_cells": [32, 64, 64], "kernel_sizes": [8, 4, 3], "strides": [4, 2, 1], "activation_class": nn.ReLU}


def renormalize(latent: torch.Tensor, dims: int = 3) -> torch.Tensor:
    """Min-max scale each sample's latent (its last ``dims`` dims: ``[C, H, W]``) to [0, 1], as SPR and MuZero do."""
    flat = latent.flatten(-dims)
    low, high = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    return ((flat - low) / (high - low).clamp_min(1e-5)).view_as(latent)


def scale_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to floats in [0, 1]; float input passes unchanged (world-model predictions)."""
    # In place on the new float copy: one 4-byte-per-pixel tensor allocated instead of two.
    return frames.float().div_(255.0) if frames.dtype == torch.uint8 else frames


class AtariQNet(nn.Module):
    """Q-values of ``num_actions`` actions from ``[..., channels, height, width]`` uint8 frames.

    The torso is the Nature CNN; the head is dueling (value + mean-centred advantage, Wang et al.
    2016, TorchRL's ``DuelingCnnDQNet``) or a plain MLP. Noisy linear layers (Fortunato et al.
    2018) replace the head's layers when ``noisy`` is set; their noise is resampled by the
    algorithm once per gradient step. Layer sizes after the torso are inferred on the first call.
    With ``renormalize`` the head reads the torso's output min-max scaled to [0, 1] per sample
    (SPR's and BBF's network: the Q-values and the latent model's predictions then see one scale).
    With ``atoms`` > 1 the net is distributional (C51, Bellemare et al. 2017, as in Rainbow and
    SPR): it gives each action's log-probabilities over ``atoms`` fixed returns (the algorithm
    holds that support), ``[..., atoms, num_actions]``, dueling per atom as in Rainbow.

    Args:
        in_channels: stacked frames (derived from the env).
        num_actions: discrete actions (derived from the env).
        hidden_size: width of the hidden layer of each head.
        dueling: value and advantage streams instead of one Q head.
        noisy: noisy linear layers in the head (exploration without epsilon).
        atoms: 1 for expected Q-values; more for a categorical return distribution per action (set by the algorithm).
        renormalize: min-max scale the torso's output to [0, 1] before the head (SPR: true).
    """

    def __init__(
        self, in_channels: int, num_actions: int, hidden_size: int = 512, dueling: bool = True, noisy: bool = False,
        atoms: int = 1, renormalize: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.renormalize = renormalize
        self.num_actions = num_actions
        self.atoms = atoms
        mlp_kwargs = {"num_cells": [hidden_size], "activation_class": nn.ReLU}
        if noisy:
            mlp_kwargs["layer_class"] = CachedNoisyLinear  # MLP makes it lazy (CachedNoisyLazyLinear)
        if dueling:
            self.network: nn.Module = DuelingCnnDQNet(num_actions * atoms, atoms, cnn_kwargs=dict(NATURE_CNN),
                                                      mlp_kwargs=mlp_kwargs)
        else:
            self.network = nn.Sequential(ConvNet(**NATURE_CNN), MLP(out_features=num_actions * atoms, **mlp_kwargs))

    @property
    def features(self) -> nn.Module:
        """The convolutional torso (its last conv layer is what attention maps look at)."""
        return self.network.features if isinstance(self.network, DuelingCnnDQNet) else self.network[0]

    @property
    def head(self) -> list[nn.Module]:
        """The layers after the torso: the value and advantage streams, or the one Q head."""
        if isinstance(self.network, DuelingCnnDQNet):
            return [self.network.value, self.network.advantage]
        return [self.network[1]]

    @property
    def last_conv(self) -> nn.Conv2d:
        """The last convolution of the torso."""
        return [m for m in self.features.modules() if isinstance(m, nn.Conv2d)][-1]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Q-values ``[..., num_actions]`` (or log-probabilities ``[..., atoms, num_actions]``), float32 under autocast.

        Float32 outputs: see :func:`float32_output`.
        """
        features = self.features(prepare_frames(frames))
        if self.renormalize:
            features = renormalize(features, dims=1)  # the flattened map: the same scale as over [C, H, W]
        if isinstance(self.network, DuelingCnnDQNet):
            # DuelingCnnDQNet.forward's combination, with each stream's output layer in float32.
            advantage = self._per_atom(float32_output(self.network.advantage, features))
            value = self._per_atom(float32_output(self.network.value, features))
            q = value + advantage - advantage.mean(dim=-1, keepdim=True)
        else:
            q = self._per_atom(float32_output(self.network[1], features))
        # Over the atoms: each action's distribution of returns (Rainbow's dueling C51 head).
        return q if self.atoms == 1 else q.log_softmax(dim=-2)

    def _per_atom(self, output: torch.Tensor) -> torch.Tensor:
        """A head's flat output as ``[..., atoms, columns]`` (unchanged for expected Q-values)."""
        return output if self.atoms == 1 else output.unflatten(-1, (self.atoms, -1))

    def head_projection(self, features: torch.Tensor) -> torch.Tensor:
        """The head's first layers on flat torso ``features``, without noise or activation: SPR's ``q_l1`` projection.

        Dueling: the value and the advantage stream's first layers, concatenated (``2 * hidden_size``
        wide, SPR's ``q_l1_type`` value and advantage); plain: the Q head's first layer. Noisy layers
        project with their mean weights, as SPR's and BBF's projections do.
        """
        firsts = [stream[0] for stream in self.head]
        return torch.cat([_noiseless_linear(layer, features) for layer in firsts], -1)

    def feature_map(self, frames: torch.Tensor) -> torch.Tensor:
        """The torso's last activations before flattening, ``[batch, 64, h, w]`` (the latent of self-prediction)."""
        hidden = prepare_frames(frames)
        for layer in list(self.features)[:-1]:  # the last layer flattens
            hidden = layer(hidden)
        return hidden

    def reset_noise(self) -> None:
        """Resample the noise of noisy layers (no-op without them)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_noise"):
                module.reset_noise()


def _noiseless_linear(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``layer(inputs)`` with a noisy layer's mean weights (``weight_mu``), a plain one's own."""
    weight = getattr(layer, "weight_mu", None)
    if weight is None:
        return layer(inputs)
    return nn.functional.linear(inputs, weight, layer.bias_mu)


def float32_output(mlp: nn.Sequential, features: torch.Tensor) -> torch.Tensor:
    """``mlp(features)`` with its hidden layers as autocast decides and its output layer in float32.

    Q-values share a large common part (about 5 after a few hundred updates on MsPacman) and differ
    between states by about 0.03, which is bf16's spacing at 5: computed in bf16 the state-dependent
    part of the TD error is rounding noise, and a bf16-mixed agent stopped telling states apart
    (docs/algorithms/atari.md). The output layer is a few thousand multiply-adds; in float32 it costs nothing.
    """
    layers = list(mlp)
    hidden = features
    for layer in layers[:-1]:
        hidden = layer(hidden)
    if not torch.is_autocast_enabled(hidden.device.type):
        return layers[-1](hidden)
    with torch.autocast(hidden.device.type, enabled=False):
        return layers[-1](hidden.float())


def prepare_frames(frames: torch.Tensor) -> torch.Tensor:
    """Frames in [0, 1]; batches of stacks in channels-last layout (float channels-last input passes unchanged)."""
    if frames.dim() == 4:
        # oneDNN's channels-last convolutions: a TD step (forward and backward, batch 32, one
        # CPU thread) took 46 ms instead of 82 ms in NCHW. Same values, another memory layout.
        # uint8 frames change layout before the float conversion (which keeps it): a quarter of the bytes moved.
        frames = frames.contiguous(memory_format=torch.channels_last)
    return scale_frames(frames)
