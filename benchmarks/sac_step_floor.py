"""A bare SAC gradient step in plain PyTorch at the benchmark's sizes: what eager PyTorch costs with no framework.

Not the project's SAC, and not used by it: plain tensors, no TensorDict, TorchRL or Lightning, the
twin critics stacked for ``torch.baddbmm``, fused Adam, one backward pass for the critic, actor and
temperature losses, one ``torch._foreach_lerp_`` for the targets. ``gradient_step.py --algorithms
plain_torch`` times it beside the project's SAC and SB3's, so a record shows how far each is from
this floor under the same load.
"""

from __future__ import annotations

import math
import time

import torch
from torch.nn import functional

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _linear(inputs: int, outputs: int, copies: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight and a bias (stacked ``copies`` times when given) that require gradients."""
    shape = (copies,) if copies else ()
    weight = torch.randn(*shape, outputs, inputs) / math.sqrt(inputs)
    return weight.requires_grad_(), torch.zeros(*shape, outputs).requires_grad_()


class PlainSACStep:
    """SAC's losses and updates for random transitions of ``observation_size``/``action_size`` (tanh-Gaussian actor)."""

    def __init__(self, observation_size: int, action_size: int, hidden: tuple[int, int], batch_size: int,
                 gamma: float = 0.98, tau: float = 0.02, lr: float = 7.3e-4, copies: int = 2) -> None:
        sizes = [observation_size, *hidden]
        self.actor = [_linear(i, o) for i, o in zip(sizes, [*hidden, 2 * action_size])]
        sizes[0] = observation_size + action_size
        self.critics = [_linear(i, o, copies) for i, o in zip(sizes, [*hidden, 1])]
        self.targets = [tensor.detach().clone() for layer in self.critics for tensor in layer]
        self.log_alpha = torch.zeros(1, requires_grad=True)
        self.optimizers = [torch.optim.Adam([t for layer in self.actor for t in layer], lr=lr, fused=True),
                           torch.optim.Adam([t for layer in self.critics for t in layer], lr=lr, fused=True),
                           torch.optim.Adam([self.log_alpha], lr=lr, fused=True)]
        self.gamma, self.tau, self.target_entropy = gamma, tau, -float(action_size)
        self.batch = [torch.randn(batch_size, observation_size), torch.rand(batch_size, action_size) * 2 - 1,
                      torch.randn(batch_size), torch.randn(batch_size, observation_size), torch.zeros(batch_size)]

    def _act(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised tanh-Gaussian action and its log-probability."""
        hidden = observation
        for index, (weight, bias) in enumerate(self.actor):
            hidden = torch.addmm(bias, hidden, weight.t())
            hidden = torch.relu(hidden) if index < len(self.actor) - 1 else hidden
        loc, scale = hidden.chunk(2, -1)
        scale = functional.softplus(scale) + 1e-4
        noise = torch.randn_like(loc)
        preimage = loc + scale * noise
        log_prob = (-0.5 * noise**2 - scale.log() - LOG_SQRT_2PI).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - preimage - functional.softplus(-2 * preimage))).sum(-1)
        return torch.tanh(preimage), log_prob

    def _q(self, layers: list, observation: torch.Tensor, action: torch.Tensor, detach: bool = False) -> torch.Tensor:
        """Every critic copy's value, ``[copies, batch]``."""
        hidden = torch.cat([observation, action], -1)
        hidden = hidden.expand(layers[0][0].shape[0], *hidden.shape)
        for index, (weight, bias) in enumerate(layers):
            weight, bias = (weight.detach(), bias.detach()) if detach else (weight, bias)
            hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))
            hidden = torch.relu(hidden) if index < len(layers) - 1 else hidden
        return hidden.squeeze(-1)

    def step(self) -> None:
        """One critic, actor, temperature and target update."""
        observation, action, reward, next_observation, terminated = self.batch
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_action, next_log_prob = self._act(next_observation)
            targets = [self.targets[i:i + 2] for i in range(0, len(self.targets), 2)]
            next_value = (self._q(targets, next_observation, next_action) - alpha * next_log_prob).min(0)[0]
            target = reward + self.gamma * (1 - terminated) * next_value
        critic_loss = ((self._q(self.critics, observation, action) - target) ** 2).sum(0).mean()
        sampled, log_prob = self._act(observation)
        actor_loss = (alpha * log_prob - self._q(self.critics, observation, sampled, detach=True).min(0)[0]).mean()
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        for optimizer in self.optimizers:
            optimizer.zero_grad()
        (critic_loss + actor_loss + alpha_loss).backward()
        for optimizer in self.optimizers:
            optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.targets, [t.detach() for layer in self.critics for t in layer], self.tau)


def cpu_ms_per_step(observation_size: int, action_size: int, hidden: tuple[int, int], batch_size: int,
                    steps: int, bf16: bool = False, compiled: bool = False) -> tuple[float, float]:
    """CPU and wall milliseconds per step over ``steps`` steps, after 16 untimed ones.

    ``bf16`` runs the step under CPU autocast (products in bf16, weights and Adam float32, as
    Lightning's ``bf16-mixed``); ``compiled`` runs it through ``torch.compile`` (inductor), whose
    compilation happens in the untimed steps.
    """
    torch.manual_seed(0)
    bare = PlainSACStep(observation_size, action_size, hidden, batch_size)
    step = torch.compile(bare.step) if compiled else bare.step

    def one_step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            step()

    for _ in range(16):
        one_step()
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    for _ in range(steps):
        one_step()
    return (time.process_time() - started_cpu) / steps * 1e3, (time.perf_counter() - started_wall) / steps * 1e3
