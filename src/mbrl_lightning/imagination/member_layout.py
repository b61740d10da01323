"""Where each particle sits in the member-major batch an ensemble runs on (planning rollouts compute it once per rollout)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MemberLayout:
    """The grouping of ``imagination.trajectory_sampling.predict_by_member``, as two index vectors.

    Rows of member ``members[g]`` fill group ``g`` of a ``[groups, width, ...]`` batch in row order
    (zero-padded groups in ``predict_by_member`` get row 0 here: a network row never reads another
    row, so the padding's values cannot reach a real row). ``predict_by_member`` rebuilds this
    grouping with a sort and scatters at every step; under ``fixed_member`` it never changes within
    a rollout, so it is built once and each step costs one gather in and one gather out.

    Attributes:
        members: the members used, ascending (the groups).
        width: rows per group (the largest member's share).
        take: ``[groups * width]`` row feeding each slot of the member-major batch.
        put: ``[n]`` slot of the member-major batch holding each row's prediction.
    """

    members: Tensor
    width: int
    take: Tensor
    put: Tensor

    @staticmethod
    def of(member: Tensor) -> MemberLayout:
        """The layout of rows whose members are ``member [n]`` (the same order ``predict_by_member`` uses)."""
        n = member.shape[0]
        members, group = torch.unique(member, return_inverse=True)
        order = torch.argsort(group, stable=True)
        counts = torch.bincount(group, minlength=len(members))
        sorted_group = group[order]
        slot = torch.arange(n, device=member.device) - (torch.cumsum(counts, 0) - counts)[sorted_group]
        width = int(counts.max())
        position = sorted_group * width + slot
        take = torch.zeros(len(members) * width, dtype=torch.long, device=member.device)
        take[position] = order
        put = torch.empty(n, dtype=torch.long, device=member.device)
        put[order] = position
        return MemberLayout(members, width, take, put)

    def group(self, rows: Tensor) -> Tensor:
        """``[n, ...]`` rows to the member-major ``[groups, width, ...]`` batch."""
        return rows.index_select(0, self.take).view(len(self.members), self.width, *rows.shape[1:])

    def ungroup(self, grouped: Tensor) -> Tensor:
        """A member-major ``[groups, width, d]`` prediction back to ``[n, d]`` rows."""
        return grouped.reshape(-1, grouped.shape[-1]).index_select(0, self.put)
