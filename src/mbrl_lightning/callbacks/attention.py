"""A GIF of one evaluation episode with the Q-network's last-conv-layer attention, logged to MLflow."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger
from PIL import Image
from torchrl.envs import ExplorationType, set_exploration_type

from mbrl_lightning.nets.attention import last_conv_attention


class AttentionGif(Callback):
    """Play one greedy episode at the end of training and log ``attention/episode_<frames>.gif``.

    Each GIF frame shows the newest input frame in gray with the attention map of the
    Q-network's last conv layer in red. Works with modules exposing ``q_network`` and
    ``eval_policy`` (e.g. :class:`~mbrl_lightning.algorithms.atari_dqn.AtariDQN`).

    Args:
        max_steps: agent steps recorded at most.
        fps: GIF frames per second.
        scale: upscaling factor of the frames.
    """

    def __init__(self, max_steps: int = 1_000, fps: int = 15, scale: int = 2) -> None:
        self.max_steps = max_steps
        self.fps = fps
        self.scale = scale

    @torch.no_grad()
    def frames(self, pl_module: LightningModule) -> list[Image.Image]:
        """The episode as images with the attention overlay."""
        env = pl_module.env.make(num_envs=1, seed=pl_module.seed)
        try:
            with set_exploration_type(ExplorationType.DETERMINISTIC):
                rollout = env.rollout(self.max_steps, policy=pl_module.eval_policy, auto_cast_to_device=True)
        finally:
            env.close()
        observation = rollout["observation"].reshape(-1, *rollout["observation"].shape[-3:])
        maps = torch.cat([last_conv_attention(pl_module.q_network, chunk.to(pl_module.device)).cpu()
                          for chunk in observation.split(64)])
        images = []
        for frame, attention in zip(observation[:, -1].numpy(), maps.numpy()):
            gray = frame.astype(np.float32)
            rgb = np.stack([np.maximum(gray, 255 * attention), gray * (1 - 0.5 * attention), gray * (1 - 0.5 * attention)], -1)
            image = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
            images.append(image.resize((image.width * self.scale, image.height * self.scale), Image.NEAREST))
        return images

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Record the episode and upload the GIF to the run."""
        logger = trainer.logger
        if not trainer.is_global_zero or not isinstance(logger, MLFlowLogger):
            return
        images = self.frames(pl_module)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"episode_{pl_module.frames}.gif"
            images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / self.fps), loop=0)
            logger.experiment.log_artifact(logger.run_id, str(path), "attention")
