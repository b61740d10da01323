"""Frame replay checkpoints cost what changed: the frames stay once on disk, a checkpoint holds positions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import fit_args, run_fit
from lightning.pytorch import Callback
from tensordict import TensorDict

from mbrl_lightning.data import FrameStackReplay
from mbrl_lightning.errors import ConfigurationError

ENVS, STACK, SIZE, CAPACITY = 2, 4, 64, 128  # 64 slots per env copy of 2 x 64 x 64 frames


def _batch(start: int, steps: int) -> TensorDict:
    """``[envs, steps]`` transitions whose frames encode their step (distinct content per row)."""
    step = torch.arange(start, start + steps)
    frames = (step.view(1, -1, 1, 1, 1) * 7 + torch.arange(ENVS).view(-1, 1, 1, 1, 1)) % 251
    observation = frames.expand(ENVS, steps, STACK, SIZE, SIZE).to(torch.uint8).clone()
    return TensorDict({
        "observation": observation,
        "step_count": (step % 50).view(1, -1, 1).expand(ENVS, steps, 1).clone(),
        "action": torch.nn.functional.one_hot(step % 3, 3).expand(ENVS, steps, 3).clone(),
        ("next", "observation"): (observation + 1),
        ("next", "reward"): step.float().view(1, -1, 1).expand(ENVS, steps, 1).clone(),
        ("next", "done"): torch.zeros(ENVS, steps, 1, dtype=torch.bool),
    }, batch_size=[ENVS, steps])


def _kept(folder: Path) -> FrameStackReplay:
    replay = FrameStackReplay(CAPACITY, ENVS, STACK, storage="memmap")
    replay.keep_in(folder)
    return replay


def _everything(replay: FrameStackReplay) -> TensorDict:
    """Every transition whose stack the ring still holds, step-major."""
    first = max(0, replay.written - replay.slots) + replay.frame_stack
    steps = torch.arange(first, replay.written).repeat_interleave(replay.num_envs)
    return replay.gather(steps, torch.arange(replay.num_envs).repeat(len(steps) // replay.num_envs))


def test_a_checkpoint_after_the_buffer_fills_holds_positions_and_restores_exactly_after_a_kill(tmp_path: Path) -> None:
    folder = tmp_path / "replay_buffer"
    replay = _kept(folder)
    for start in range(0, 100, 4):  # 100 steps per env copy: the 64-slot ring has wrapped
        replay.extend(_batch(start, 4))
    replay.restore_point_saved()  # as the checkpoint callback does once last.ckpt is published
    saved = _everything(replay)
    torch.save(replay.state_dict(), tmp_path / "state.pt")
    checkpoint_bytes = (tmp_path / "state.pt").stat().st_size
    frame_bytes = 2 * replay.frames.numel()
    # No copy of the frames: the checkpoint holds positions and per-step data only.
    assert checkpoint_bytes < frame_bytes / 20, (checkpoint_bytes, frame_bytes)
    assert sorted(path.name for path in folder.iterdir()) == [
        "frames.memmap", "journal-100.bin", "next_frames.memmap", "steps.memmap"]

    for start in range(100, 120, 4):  # 20 more steps overwrite 20 of the checkpoint's rows
        replay.extend(_batch(start, 4))
    row_bytes = 8 + 2 * replay.frames[0].numel()
    assert replay.journal.nbytes == 20 * (8 + row_bytes)  # only the overwritten rows, once
    del replay  # killed: nothing but the files and the checkpoint remain

    restored = _kept(folder)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.written == 100
    again = _everything(restored)
    assert (again == saved).all()
    # A resumed run writes on and the next restore point still restores exactly.
    restored.extend(_batch(100, 4))
    newest = _everything(restored)["observation"][-ENVS:, -1]
    assert (newest == _batch(100, 4)["observation"][:, -1, -1]).all()


def test_a_checkpoint_whose_frames_were_overwritten_without_a_journal_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "replay_buffer"
    replay = _kept(folder)
    for start in range(0, 80, 4):
        replay.extend(_batch(start, 4))
    state = replay.state_dict()  # a best.ckpt: no restore point, so later overwrites are not journalled
    for start in range(80, 100, 4):
        replay.extend(_batch(start, 4))
    with pytest.raises(ConfigurationError, match="overwritten after it was saved"):
        _kept(folder).load_state_dict(state)


def test_a_checkpoint_without_its_buffer_folder_says_what_resume_needs(tmp_path: Path) -> None:
    replay = _kept(tmp_path / "replay_buffer")
    replay.extend(_batch(0, 8))
    state = replay.state_dict()
    for path in (tmp_path / "replay_buffer").iterdir():
        path.unlink()
    with pytest.raises(ConfigurationError, match="upload_buffer"):
        _kept(tmp_path / "elsewhere").load_state_dict(state)


class _Snapshot(Callback):
    """The frame replay's transitions at frame ``at`` (after that batch's checkpoint), or at train start."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.transitions = at, None

    def on_train_start(self, trainer, module) -> None:
        if self.at is None:
            self.transitions = _everything(module.replay_buffer)

    def on_train_batch_end(self, trainer, module, *_) -> None:
        if module.frames == self.at:
            self.transitions = _everything(module.replay_buffer)


class _KillAt(Callback):
    """Stop with an error at frame ``at``: no final checkpoint, as after a SIGKILL."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, module, *_) -> None:
        if module.frames >= self.at:
            raise RuntimeError("killed")


# 4 env copies, 16 slots each: the ring wraps after 64 agent steps, a checkpoint every 32.
ATARI = ("--model.buffer_size", "64", "--model.frames_per_batch", "8", "--model.learning_starts", "16",
         "--model.batch_size", "8", "--model.updates_per_batch", "1", "--model.q_net.init_args.hidden_size", "16",
         "--model.eval_every_frames", "0", "--checkpoint.every_n_frames", "32", "--checkpoint.save_best", "false",
         "--trainer.callbacks", "null", "--plots.enabled", "false")


def test_an_atari_run_killed_after_its_ring_wrapped_resumes_exactly_from_its_buffer_folder() -> None:
    full = run_fit(*fit_args("pacman_dqn.yaml", *ATARI, "--model.total_frames", "112"))
    at_checkpoint, kill = _Snapshot(at=96), _KillAt(104)
    with pytest.raises(RuntimeError, match="killed"):
        run_fit(*fit_args("pacman_dqn.yaml", *ATARI, "--model.total_frames", "112"), callbacks=(at_checkpoint, kill))
    (folder,) = [path for path in Path("checkpoints").rglob("replay_buffer") if path.is_dir() and
                 path.parent.name != full.trainer.logger.run_id]
    assert [path.name for path in folder.glob("journal-*.bin")] == ["journal-24.bin"]  # 24 steps per env copy
    assert (folder / "journal-24.bin").stat().st_size > 0  # the kill came after rows of the checkpoint were overwritten

    at_start = _Snapshot()
    resumed = run_fit(*fit_args("pacman_dqn.yaml", *ATARI, "--model.total_frames", "112", "--ckpt_path", "last"),
                      callbacks=(at_start,))
    assert (at_start.transitions == at_checkpoint.transitions).all()
    assert resumed.model.frames == full.model.frames == 112
    assert (_everything(resumed.model.replay_buffer) == _everything(full.model.replay_buffer)).all()
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0, msg=name)
