"""The rows a ring buffer on disk overwrote since its last checkpoint, so that checkpoint can be restored exactly."""

from __future__ import annotations

from pathlib import Path

import torch


class RingJournal:
    """An append-only file of ``(slot, old row)`` records: the pre-images of rows overwritten after step ``since``.

    A ring of memory-mapped files next to the run holds the buffer once; a checkpoint records only
    its write position. Rows written after the checkpoint replace rows that the checkpoint's
    buffer still holds once the ring has wrapped; their old contents are appended here before
    they are overwritten, so restoring the checkpoint writes them back. A checkpoint therefore
    costs what changed since the previous one, not the whole buffer. Each record is written in
    one call after the previous ones: a process killed mid-write leaves at most a torn last record
    whose row was not yet overwritten, and it is ignored.
    """

    def __init__(self, folder: Path, since: int, row_bytes: int) -> None:
        self.path = folder / f"journal-{since}.bin"
        self.since = since
        self.record_bytes = 8 + row_bytes  # int64 slot, then the row's bytes
        self.path.touch()

    def append(self, slots: torch.Tensor, rows: torch.Tensor) -> None:
        """Record the old ``rows`` (``[k, row_bytes]`` uint8) of ``slots`` before they are overwritten."""
        if not len(slots):
            return
        records = torch.cat([slots.to(torch.int64).contiguous().view(torch.uint8).reshape(-1, 8), rows], 1)
        with self.path.open("ab") as file:
            file.write(records.numpy().tobytes())

    def records(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The complete records: ``(slots [k], rows [k, row_bytes])``."""
        content = self.path.read_bytes()
        raw = torch.frombuffer(bytearray(content), dtype=torch.uint8) if content else torch.zeros(0, dtype=torch.uint8)
        count = raw.numel() // self.record_bytes
        records = raw[: count * self.record_bytes].reshape(count, self.record_bytes)
        return records[:, :8].contiguous().view(torch.int64).reshape(-1), records[:, 8:]

    @property
    def nbytes(self) -> int:
        """Bytes on disk."""
        return self.path.stat().st_size if self.path.exists() else 0

    def reset(self) -> None:
        """Forget the records (their rows were written back)."""
        self.path.write_bytes(b"")


def remove_journals(folder: Path, keep: Path | None = None) -> None:
    """Delete the journals in ``folder`` other than ``keep``: only the newest checkpoint's is ever replayed."""
    for journal in folder.glob("journal-*.bin"):
        if journal != keep:
            journal.unlink(missing_ok=True)
