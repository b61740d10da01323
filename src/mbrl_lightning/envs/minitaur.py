"""A gymnasium port of pybullet's Minitaur locomotion env, and the seed's "Ghost Minitaur" variant.

pybullet ships the robot (``pybullet_data/quadruped/minitaur.urdf``) and its motor model
(``pybullet_envs/bullet/minitaur.py`` and ``motor.py``), but its env class imports the retired
``gym``. This port keeps pybullet's robot and motor model as they are, loaded straight from
their files so that ``pybullet_envs/__init__.py`` (and with it ``gym``) is never imported, and
re-implements only the env around them: reset, step, reward, termination and the per-reset
randomisation of masses, battery voltage, damping and foot friction, drawn from the env's own
seeded generator so that episodes are reproducible.
"""

from __future__ import annotations

import importlib
import math
import sys
import types
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet
import pybullet_data
from pybullet_utils import bullet_client

NUM_MOTORS = 8
# pybullet's settings: a 10 ms control step split into 5 substeps for the accurate motor model.
CONTROL_TIME_STEP = 0.01
NUM_SUBSTEPS = 5
SOLVER_ITERATIONS = 300
OBSERVATION_EPS = 0.01
ACTION_EPS = 0.01
SETTLE_STEPS = 100

# Ranges of pybullet's MinitaurEnvRandomizer (relative for masses, absolute otherwise).
BASE_MASS_ERROR = (-0.2, 0.2)
LEG_MASS_ERROR = (-0.2, 0.2)
BATTERY_VOLTAGE = (14.8, 16.8)
MOTOR_VISCOUS_DAMPING = (0.0, 0.01)
FOOT_FRICTION = (0.8, 1.5)

_PACKAGE = "_mbrl_pybullet_minitaur"


def _minitaur_module() -> types.ModuleType:
    """pybullet's ``minitaur`` robot module, imported without running ``pybullet_envs/__init__``."""
    if f"{_PACKAGE}.minitaur" not in sys.modules:
        spec = importlib.util.find_spec("pybullet_envs")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("pybullet is installed without pybullet_envs; reinstall pybullet>=3.2")
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [str(Path(spec.submodule_search_locations[0]) / "bullet")]
        sys.modules[_PACKAGE] = package
    return importlib.import_module(f"{_PACKAGE}.minitaur")


class MinitaurBulletEnv(gym.Env):
    """pybullet's Minitaur quadruped: walk forward along x, spending little motor energy.

    Observation (28): motor angles, velocities and torques (8 each) and the base quaternion.
    Action (8): with the leg model, swing and extension of each leg in [-1, 1] (pybullet's
    default); without it, motor angles. Reward per step: forward progress minus
    ``energy_weight`` times the mechanical energy spent; the episode ends when the base tilts
    past ~32 degrees or drops below 13 cm.

    Args:
        distance_weight: weight of the forward-progress term.
        energy_weight: weight of the energy term.
        drift_weight: weight of the sideways-drift penalty.
        shake_weight: weight of the vertical-shake penalty.
        distance_limit: end the episode beyond this distance from the origin.
        observation_noise_stdev: Gaussian observation noise, relative to the observation bounds.
        leg_model_enabled: actions are leg swing/extension (True) or motor angles (False).
        accurate_motor_model_enabled: simulate pybullet's DC motor model.
        motor_kp: proportional gain of the motor model.
        motor_kd: derivative gain of the motor model.
        motor_overheat_protection: shut down motors that exert large torque for too long.
        randomize: randomise masses, battery voltage, damping and friction at every reset.
        hard_reset: reload the world at every reset (pybullet's default) instead of re-posing.
    """

    metadata = {"render_modes": [], "render_fps": 100}

    def __init__(
        self,
        distance_weight: float = 1.0,
        energy_weight: float = 0.005,
        drift_weight: float = 0.0,
        shake_weight: float = 0.0,
        distance_limit: float = float("inf"),
        observation_noise_stdev: float = 0.0,
        leg_model_enabled: bool = True,
        accurate_motor_model_enabled: bool = True,
        motor_kp: float = 1.0,
        motor_kd: float = 0.02,
        motor_overheat_protection: bool = True,
        randomize: bool = True,
        hard_reset: bool = True,
    ) -> None:
        self._distance_weight = distance_weight
        self._energy_weight = energy_weight
        self._drift_weight = drift_weight
        self._shake_weight = shake_weight
        self._distance_limit = distance_limit
        self._observation_noise_stdev = observation_noise_stdev
        self._leg_model_enabled = leg_model_enabled
        self._accurate_motor_model_enabled = accurate_motor_model_enabled
        self._motor_kp = motor_kp
        self._motor_kd = motor_kd
        self._motor_overheat_protection = motor_overheat_protection
        self._randomize = randomize
        self._hard_reset = hard_reset
        self._time_step = CONTROL_TIME_STEP
        self._action_repeat = 1
        self._solver_iterations = SOLVER_ITERATIONS
        if accurate_motor_model_enabled:
            # The motor model needs a finer time step to stay stable (as in pybullet).
            self._time_step /= NUM_SUBSTEPS
            self._solver_iterations //= NUM_SUBSTEPS
            self._action_repeat *= NUM_SUBSTEPS
        self._client = bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
        self._module = _minitaur_module()
        self.minitaur: Any = None
        self._last_base_position = np.zeros(3)

        upper = self._observation_upper_bound()
        self._observation_bound = upper
        high = (upper + OBSERVATION_EPS).astype(np.float32)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(NUM_MOTORS,), dtype=np.float32)

    def _observation_upper_bound(self) -> np.ndarray:
        motor = sys.modules[f"{_PACKAGE}.motor"]
        return np.concatenate(
            [
                np.full(NUM_MOTORS, math.pi),
                np.full(NUM_MOTORS, motor.MOTOR_SPEED_LIMIT),
                np.full(NUM_MOTORS, motor.OBSERVED_TORQUE_LIMIT),
                np.ones(4),
            ]
        )

    # ----------------------------------------------------------------- gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Place the robot at the origin, randomise its physics, let it settle in the standing pose."""
        super().reset(seed=seed)
        client = self._client
        if self._hard_reset or self.minitaur is None:
            client.resetSimulation()
            client.setPhysicsEngineParameter(numSolverIterations=int(self._solver_iterations))
            client.setTimeStep(self._time_step)
            client.loadURDF(f"{pybullet_data.getDataPath()}/plane.urdf")
            client.setGravity(0, 0, -10)
            self.minitaur = self._module.Minitaur(
                pybullet_client=client,
                urdf_root=pybullet_data.getDataPath(),
                time_step=self._time_step,
                self_collision_enabled=True,
                motor_velocity_limit=np.inf,
                pd_control_enabled=False,
                accurate_motor_model_enabled=self._accurate_motor_model_enabled,
                motor_kp=self._motor_kp,
                motor_kd=self._motor_kd,
                torque_control_enabled=False,
                motor_overheat_protection=self._motor_overheat_protection,
                on_rack=False,
            )
        else:
            self.minitaur.Reset(reload_urdf=False)
        if self._randomize:
            self._randomize_physics()
        self._last_base_position = np.zeros(3)
        for _ in range(SETTLE_STEPS):
            if self._accurate_motor_model_enabled:
                self.minitaur.ApplyAction([math.pi / 2] * NUM_MOTORS)
            client.stepSimulation()
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Apply the action for one 10 ms control step; reward forward progress, charge energy."""
        action = np.asarray(action, dtype=np.float64)
        if self._leg_model_enabled:
            if np.any(np.abs(action) > 1.0 + ACTION_EPS):
                raise ValueError(f"action {action} out of bounds [-1, 1]")
            action = self.minitaur.ConvertFromLegModel(action)
        for _ in range(self._action_repeat):
            self.minitaur.ApplyAction(action)
            self._client.stepSimulation()
        reward, info = self._reward()
        return self._observation(), reward, self._terminated(), False, info

    def close(self) -> None:
        """Disconnect the physics server."""
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    # ----------------------------------------------------------------- internals
    def _randomize_physics(self) -> None:
        rng = self.np_random
        robot = self.minitaur
        base_mass = robot.GetBaseMassFromURDF()
        robot.SetBaseMass(base_mass * (1.0 + rng.uniform(*BASE_MASS_ERROR)))
        leg_masses = np.asarray(robot.GetLegMassesFromURDF())
        robot.SetLegMasses(leg_masses * (1.0 + rng.uniform(*LEG_MASS_ERROR, size=leg_masses.shape)))
        robot.SetBatteryVoltage(rng.uniform(*BATTERY_VOLTAGE))
        robot.SetMotorViscousDamping(rng.uniform(*MOTOR_VISCOUS_DAMPING))
        robot.SetFootFriction(rng.uniform(*FOOT_FRICTION))

    def _observation(self) -> np.ndarray:
        observation = np.asarray(self.minitaur.GetObservation(), dtype=np.float64)
        if self._observation_noise_stdev > 0:
            noise = self.np_random.normal(scale=self._observation_noise_stdev, size=observation.shape)
            observation = observation + noise * self._observation_bound
        # Measured torques and velocities can overshoot the nominal limits by a hair.
        return np.clip(observation, self.observation_space.low, self.observation_space.high).astype(np.float32)

    def _reward(self) -> tuple[float, dict]:
        position = np.asarray(self.minitaur.GetBasePosition())
        forward = position[0] - self._last_base_position[0]
        drift = -abs(position[1] - self._last_base_position[1])
        shake = -abs(position[2] - self._last_base_position[2])
        self._last_base_position = position
        energy = abs(np.dot(self.minitaur.GetMotorTorques(), self.minitaur.GetMotorVelocities())) * self._time_step
        reward = (
            self._distance_weight * forward
            - self._energy_weight * energy
            + self._drift_weight * drift
            + self._shake_weight * shake
        )
        return float(reward), {}

    def _terminated(self) -> bool:
        orientation = self.minitaur.GetBaseOrientation()
        local_up = self._client.getMatrixFromQuaternion(orientation)[6:]
        position = self.minitaur.GetBasePosition()
        fallen = np.dot([0.0, 0.0, 1.0], local_up) < 0.85 or position[2] < 0.13
        return bool(fallen or math.hypot(position[0], position[1]) > self._distance_limit)


class GhostMinitaurBulletEnv(MinitaurBulletEnv):
    """The imagination-entropy design's "Ghost Minitaur": motor angles ``pi * (0.2 a + 0.5)`` for actions ``a`` in [-1, 1].

    The leg model is off, so each action sets one motor's angle within +-36 degrees of the
    standing pose (pi / 2). Other arguments are those of :class:`MinitaurBulletEnv`.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("leg_model_enabled", False)
        super().__init__(**kwargs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Map the action to motor angles around the standing pose, then step."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return super().step(math.pi * (0.2 * action + 0.5))


def register_minitaur() -> None:
    """Register ``MinitaurBulletEnv-v0`` and ``GhostMinitaurBulletEnv-v0`` (1000-step episodes)."""
    for env_id, cls in (("MinitaurBulletEnv-v0", "MinitaurBulletEnv"), ("GhostMinitaurBulletEnv-v0", "GhostMinitaurBulletEnv")):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=f"{__name__}:{cls}", max_episode_steps=1000, reward_threshold=15.0)
