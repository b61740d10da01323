"""Replay buffers and the collector stream."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import RandomPolicy

from mbrl_lightning.data import CollectorStream, make_replay_buffer
from mbrl_lightning.envs import EnvFactory
from mbrl_lightning.errors import ConfigurationError


def _transitions(n: int) -> TensorDict:
    return TensorDict({"observation": torch.arange(n, dtype=torch.float32).unsqueeze(-1)}, [n])


@pytest.mark.parametrize("storage", ["memory", "memmap"])
def test_buffer_keeps_the_newest_transitions_and_samples_from_them(storage: str, tmp_path) -> None:
    buffer = make_replay_buffer(capacity=10, batch_size=4, storage=storage, scratch_dir=tmp_path / "rb")
    buffer.extend(_transitions(15))
    assert len(buffer) == 10
    stored = set(buffer[:]["observation"].squeeze(-1).tolist())
    assert stored == set(range(5, 15))
    sample = buffer.sample()
    assert sample.batch_size == torch.Size([4])
    assert set(sample["observation"].squeeze(-1).tolist()) <= stored


def test_buffer_state_round_trips() -> None:
    buffer = make_replay_buffer(capacity=8, batch_size=2)
    buffer.extend(_transitions(11))
    restored = make_replay_buffer(capacity=8, batch_size=2)
    restored.load_state_dict(buffer.state_dict())
    torch.testing.assert_close(restored[:]["observation"], buffer[:]["observation"])
    buffer.extend(_transitions(1))
    restored.extend(_transitions(1))
    torch.testing.assert_close(restored[:]["observation"], buffer[:]["observation"])  # same write cursor


def test_unknown_storage_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="replay_storage='disk'.*'memory', 'memmap'"):
        make_replay_buffer(8, 2, storage="disk")


def test_stream_yields_batches_until_the_budget_is_spent() -> None:
    factory = EnvFactory("CartPole-v1", num_envs=4)
    frames = {"done": 0}
    budget = 100

    stream = CollectorStream(
        make_env=lambda: factory.make(seed=0),
        policy=RandomPolicy(factory.make(num_envs=4).full_action_spec),
        frames_per_batch=32,
        frames_left=lambda: budget - frames["done"],
    )
    shapes = []
    for batch in stream:
        shapes.append(tuple(batch.batch_size))
        frames["done"] += batch.numel()
    assert shapes == [(4, 8)] * 4  # 4 batches of 32 frames cover the budget of 100
    assert list(stream) == []  # a spent budget yields nothing
