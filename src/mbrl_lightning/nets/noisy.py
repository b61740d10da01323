"""TorchRL's noisy linear layers with the noise written in place and the noisy weights kept between resamples."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.modules import NoisyLinear
from torchrl.modules.models.exploration import NoisyLazyLinear
from torchrl.modules.models.utils import LazyMapping

NOISY_TENSORS = ("weight_mu", "weight_sigma", "weight_epsilon", "bias_mu", "bias_sigma", "bias_epsilon")


class CachedNoisyLinear(NoisyLinear):
    """:class:`~torchrl.modules.NoisyLinear` whose ``mu + sigma * epsilon`` is computed once per resample when no gradient is taken.

    Same parameters, buffers, noise draws and values as TorchRL's layer. Why not TorchRL's as is:
    every forward pass with noise builds the noisy weight anew (two passes over an ``out x in``
    matrix), and the Atari agent acts several times between two resamples with unchanged weights:
    that building was two thirds of its acting pass (``benchmarks/atari_update.py``).

    The kept weight is used only without gradient and only while the tensors it was built from are
    the same (same storage, same in-place version); :meth:`reset_noise` drops it, so writes that
    bypass the version counter (``.data``, as a hard target update does) are safe as long as the
    noise is resampled before the next pass, as each gradient step does.
    """

    _noisy_cache: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None

    def reset_noise(self) -> None:
        """Resample the factorized noise (TorchRL's draws, the outer product written in place) and drop the kept weight."""
        self._noisy_cache = None
        epsilon_in = self._scale_noise(self.in_features)
        epsilon_out = self._scale_noise(self.out_features)
        torch.outer(epsilon_out, epsilon_in, out=self.weight_epsilon)  # TorchRL builds it, then copies it
        if self.bias_mu is not None:
            self.bias_epsilon.copy_(epsilon_out)

    def _noisy(self, index: int) -> torch.Tensor | None:
        """The noisy weight (``index`` 0) or bias (1), kept for passes without gradient while their sources are unchanged."""
        built = (NoisyLinear.weight, NoisyLinear.bias)
        if torch.is_grad_enabled():
            return built[index].fget(self)
        key = tuple((t.data_ptr(), t._version) for t in (getattr(self, name) for name in NOISY_TENSORS) if t is not None)
        if self._noisy_cache is None or self._noisy_cache[0] != key:
            self._noisy_cache = (key, built[0].fget(self), built[1].fget(self))
        return self._noisy_cache[1 + index]

    @property
    def weight(self) -> torch.Tensor:
        """``weight_mu + weight_sigma * weight_epsilon`` with noise on, else ``weight_mu``."""
        return self._noisy(0) if self._should_use_noise() else self.weight_mu

    @property
    def bias(self) -> torch.Tensor | None:
        """``bias_mu + bias_sigma * bias_epsilon`` with noise on, else ``bias_mu``."""
        if self.bias_mu is None or not self._should_use_noise():
            return self.bias_mu
        return self._noisy(1)


class CachedNoisyLazyLinear(NoisyLazyLinear, CachedNoisyLinear):
    """The lazy version (input width inferred on the first call), which TorchRL's ``MLP`` builds for an unknown input width."""

    cls_to_become = CachedNoisyLinear  # once sized (TorchRL's lazy layer becomes a plain NoisyLinear)


# TorchRL's MLP looks up the lazy version of its layer class here when the input width is unknown.
LazyMapping.setdefault(CachedNoisyLinear, CachedNoisyLazyLinear)


def has_noisy_layers(module: torch.nn.Module) -> bool:
    """Whether ``module`` holds a noisy linear layer (TorchRL's or this module's)."""
    return any(isinstance(m, NoisyLinear) for m in module.modules())


@torch.no_grad()
def resample_noise_in(params: TensorDictBase) -> None:
    """Draw fresh factorized noise into the ``weight_epsilon`` / ``bias_epsilon`` buffers held in ``params``.

    For a loss's target network: its parameters are a TensorDict of their own whose noise buffers
    the layers' :meth:`~CachedNoisyLinear.reset_noise` never reaches and target updates do not copy,
    so without this they keep their first draw for the whole run. Rainbow's target network draws
    its own noise at every step. The draws are TorchRL's (``sign(x) * sqrt(|x|)`` of normal samples).
    """
    keys = list(params.keys(True, True))
    for key in keys:
        if not isinstance(key, tuple) or key[-1] != "weight_epsilon":
            continue
        weight = params.get(key)
        epsilon_out, epsilon_in = (scaled_normal(n, device=weight.device) for n in weight.shape)
        torch.outer(epsilon_out, epsilon_in, out=weight)
        bias_key = (*key[:-1], "bias_epsilon")
        if bias_key in keys:
            params.get(bias_key).copy_(epsilon_out)


def scaled_normal(size: int, generator: torch.Generator | None = None, device: torch.device | None = None) -> torch.Tensor:
    """``sign(x) * sqrt(|x|)`` of ``size`` standard normal draws (factorized Gaussian noise, Fortunato et al. 2018)."""
    x = torch.randn(size, generator=generator, device=device)
    return x.sign().mul_(x.abs().sqrt_())
