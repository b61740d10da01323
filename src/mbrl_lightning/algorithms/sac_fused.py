"""SACLoss's critic and actor terms with all critic copies evaluated as one batched matmul per layer.

TorchRL's ``SACLoss`` evaluates its critic copies through ``torch.vmap`` over a TensorDictModule:
every call swaps stacked parameters into the module, wraps and unwraps batched tensors and builds
TensorDicts. On one CPU thread that bookkeeping is a large share of a gradient step
(``benchmarks/gradient_step.py --algorithms sac sac_sacloss`` times both paths; see
``docs/algorithms/sac.md``). :class:`FusedSACTerms` computes the same two terms from the same
stacked parameters with ``torch.baddbmm`` and calls the actor's own modules on tensors; the target
(TorchRL's value estimator), the reduction (the loss's ``_reduce_loss``) and the distribution
(TorchRL's ``TanhNormal``) stay TorchRL's. ``tests/test_sac_fused.py`` checks both terms and their
gradients against ``SACLoss`` on the same batch, parameters and random draws.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor, nn
from torchrl.modules import ProbabilisticActor, TanhNormal
from torchrl.objectives import SACLoss
from torchrl.objectives.utils import distance_loss

from mbrl_lightning.nets.normalized_input import CLIP, NormalizedInput

# Activations that act on each element alone, so the same module serves stacked copies.
ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.ELU, nn.SiLU, nn.LeakyReLU, nn.GELU, nn.Mish, nn.Softplus, nn.Sigmoid,
               nn.Identity)


class StackedCritics:
    """All critic copies of a Linear-and-activation MLP at once, from SACLoss's stacked parameter TensorDicts.

    The critic is the module ``ValueOperator`` wraps: an ``nn.Sequential`` of ``nn.Linear`` and
    element-wise activations, fed ``cat([observation, action], -1)`` (TorchRL's MLP concatenates its
    inputs so), optionally inside :class:`NormalizedInput`. :meth:`of` returns None for any other net.
    """

    def __init__(self, layers: list[tuple[str, Any]], normalized: NormalizedInput | None) -> None:
        self.layers = layers
        self.normalized = normalized

    @classmethod
    def of(cls, net: nn.Module) -> StackedCritics | None:
        """The stacked evaluator of ``net`` (the critic's body), or None when it is not a plain MLP."""
        normalized, prefix = None, ("module",)
        if isinstance(net, NormalizedInput):
            normalized, net, prefix = net, net.net, ("module", "net")
        if not isinstance(net, nn.Sequential):
            return None
        layers: list[tuple[str, Any]] = []
        for name, child in net.named_children():
            if type(child) is nn.Linear and child.bias is not None:
                layers.append(("linear", (*prefix, name)))
            elif isinstance(child, ELEMENTWISE):
                layers.append(("activation", child))
            else:
                return None
        return cls(layers, normalized)

    def __call__(self, params: TensorDictBase, observation: Tensor, action: Tensor, detach: bool = False) -> Tensor:
        """``Q_i(observation, action)`` of every copy ``i``, shape ``[copies, batch, 1]``."""
        if self.normalized is not None:
            observation = self.normalized.normalizer.normalize(observation).clamp(-CLIP, CLIP)
        hidden = torch.cat([observation, action], -1)
        for kind, layer in self.layers:
            if kind == "activation":
                hidden = layer(hidden)
                continue
            weight, bias = params.get((*layer, "weight")), params.get((*layer, "bias"))
            if detach:
                weight, bias = weight.detach(), bias.detach()
            if hidden.dim() == 2:  # the first layer: every copy reads the same input
                hidden = hidden.expand(weight.shape[0], *hidden.shape)
            hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))
        return hidden


class FusedSACTerms:
    """``SACLoss.qvalue_v2_loss`` and ``SACLoss.actor_loss`` (the first returned value of each) on plain tensors.

    Args:
        loss: the SACLoss whose parameters, temperature, value estimator and settings are used.
        actor_body: the actor's net from observation to ``(loc, scale)`` (or gSDE's ``(loc, scale, features)``).
        distribution_kwargs: the actor's ``TanhNormal`` arguments (the action box).
        critics: the stacked evaluator of the loss's critic.
    """

    def __init__(self, loss: SACLoss, actor_body: nn.Module, distribution_kwargs: dict[str, Any],
                 critics: StackedCritics) -> None:
        self.loss = loss
        self.actor_body = actor_body
        self.distribution_kwargs = distribution_kwargs
        self.critics = critics

    @classmethod
    def of(cls, loss: SACLoss, actor: ProbabilisticActor) -> FusedSACTerms | None:
        """The fused terms of ``loss`` over ``actor``, or None when its settings, actor or critic need SACLoss's path."""
        critics = StackedCritics.of(loss.qvalue_network.module)
        # SAC v1 (a state-value net) and skipping done states take branches the fused terms do not have.
        if critics is None or loss._version != 2 or loss.skip_done_states:
            return None
        # The actor must be SAC's: a module from observation to (loc, scale), then a TanhNormal.
        parts = list(actor.module)
        if len(parts) != 2 or parts[0].in_keys != ["observation"] or parts[1].distribution_class is not TanhNormal:
            return None
        return cls(loss, parts[0].module, parts[1].distribution_kwargs, critics)

    def _sample_action(self, observation: Tensor) -> tuple[Tensor, Tensor]:
        """A reparameterised action of the actor and its log-probability (TorchRL's ``TanhNormal``)."""
        # A gSDE head also returns its features, which the terms do not need.
        loc, scale = self.actor_body(observation)[:2]
        return TanhNormal(loc, scale, **self.distribution_kwargs).rsample_and_log_prob()

    def critic_loss(self, sample: TensorDictBase) -> Tensor:
        """Every critic's regression to ``r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s'))``."""
        loss, keys = self.loss, self.loss.tensor_keys
        with torch.no_grad():
            next_action, next_log_prob = self._sample_action(sample.get(("next", "observation")))
            next_q = self.critics(loss.target_qvalue_network_params, sample.get(("next", "observation")), next_action)
            next_value = (next_q - loss._alpha * next_log_prob.unsqueeze(-1)).min(0)[0]
            # The bootstrap through TorchRL's estimator, as SACLoss hands it the soft value.
            bootstrap = sample.clone(False)
            bootstrap.set(("next", loss.value_estimator.tensor_keys.value), next_value)
            target = loss.value_estimator.value_estimate(bootstrap).squeeze(-1)
        predicted = self.critics(loss.qvalue_network_params, sample.get("observation"), sample.get(keys.action))
        predicted = predicted.squeeze(-1)
        per_sample = distance_loss(predicted, target.expand_as(predicted), loss_function=loss.loss_function).sum(0)
        return loss._reduce_loss(per_sample, tensordict=sample, weights=loss._maybe_get_priority_weight(sample))

    def actor_loss(self, sample: TensorDictBase) -> tuple[Tensor, Tensor]:
        """``alpha log pi(a|s) - min_i Q_i(s, a)`` through detached critics, and the detached log-probabilities."""
        loss = self.loss
        observation = sample.get("observation")
        action, log_prob = self._sample_action(observation)
        q = self.critics(loss.qvalue_network_params, observation, action, detach=True)
        per_sample = loss._alpha * log_prob - q.min(0)[0].squeeze(-1)
        reduced = loss._reduce_loss(per_sample, tensordict=sample, weights=loss._maybe_get_priority_weight(sample))
        return reduced, log_prob.detach()
