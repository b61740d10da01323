"""Data plumbing: replay buffers and the collector-to-Lightning iterable."""

from mbrl_lightning.data.collector import CollectorStream
from mbrl_lightning.data.frame_replay import FrameStackReplay
from mbrl_lightning.data.replay import TRANSITION_KEYS, make_replay_buffer
from mbrl_lightning.data.vector_collector import VectorEnvCollector

__all__ = ["CollectorStream", "FrameStackReplay", "TRANSITION_KEYS", "VectorEnvCollector", "make_replay_buffer"]
