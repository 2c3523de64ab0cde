"""Stable-Baselines3's PPO on paintgym, through :class:`agents.sb3_vec_env.SB3VecEnv` (``--agent sb3-ppo``).

The trainer drives SB3 one iteration at a time (``learn(n_steps * n_envs, reset_num_timesteps=False)``
collects one rollout and trains on it), so logging, evaluation and checkpoints are the same as for
the native agents. Hyperparameters carry the native PPO's names and are passed to SB3 as
``n_steps = rollout_episodes * max_steps``, ``batch_size = n_steps * n_envs / num_minibatches``,
``n_epochs = update_epochs``, ``clip_range = clip_coef``, ``clip_range_vf = clip_coef`` (if
``clip_vloss``); the optimiser is the native agents' (:func:`agents.common.adam_options`). SB3 uses
a diagonal Gaussian for continuous actions and clips samples to [-1, 1].

Networks (``--policy``): ``paintgym`` puts this package's CoordConv encoder
(:class:`agents.networks.CanvasEncoder`) under SB3's linear heads, for any canvas size and both
observation modes; ``CnnPolicy`` is SB3's own NatureCNN (image observations, canvases of 36 px and up).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO as SB3PPOModel
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecTransposeImage

from paintgym.agents.common import adam_options, encoder_widths, minibatch_size
from paintgym.agents.networks import CanvasEncoder, Observation, observation_channels
from paintgym.agents.sb3_vec_env import SB3VecEnv
from paintgym.canvas.images import to_float
from paintgym.canvas.render import paint_
from paintgym.envs.vector_env import CanvasVectorEnv

POLICIES = ("paintgym", "CnnPolicy")
LOSS_KEYS = ["policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac"]
_SB3_KEYS = {"policy_loss": "train/policy_gradient_loss", "value_loss": "train/value_loss",
             "entropy": "train/entropy_loss", "approx_kl": "train/approx_kl", "clipfrac": "train/clip_fraction"}


@dataclass
class SB3PPOArgs:
    learning_rate: float = 1e-3
    """the learning rate of the Adam optimiser (constant)"""
    rollout_episodes: int = 1
    """episodes each env plays per rollout (SB3's n_steps = rollout_episodes * max_steps)"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 0.95
    """the lambda of generalised advantage estimation"""
    num_minibatches: int = 8
    """the number of minibatches each rollout is split into (sets SB3's batch_size)"""
    update_epochs: int = 8
    """the number of passes over each rollout (SB3's n_epochs)"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient (SB3's clip_range)"""
    clip_vloss: bool = True
    """clip the value loss (SB3's clip_range_vf = clip_coef)"""
    ent_coef: float = 0.0
    """the coefficient of the entropy bonus"""
    vf_coef: float = 0.5
    """the coefficient of the value loss"""
    max_grad_norm: float = 0.5
    """the maximum global norm of the gradient"""
    target_kl: float | None = None
    """stop an update's epochs early when the approximate KL exceeds this (None: never)"""
    policy: str = "paintgym"
    """the network: paintgym (the CoordConv encoder of agents.networks) or CnnPolicy (SB3's NatureCNN)"""
    hidden: int = 256
    """width of the shared features (policy=paintgym)"""
    width: int = 16
    """channels of the CNN's first layer, the next two have twice as many (policy=paintgym)"""


class CanvasFeatures(BaseFeaturesExtractor):
    """SB3 features extractor around :class:`CanvasEncoder`.

    SB3 hands it preprocessed observations: channel-first floats in [0, 1] (``(B, C, H, W)``), or a
    dict of ``canvas``/``target`` ``(B, 3, H, W)``, ``condition`` ``(B, K)`` (one-hot), ``noise``
    ``(B, D)`` and ``progress`` ``(B, 1)`` (the vectors become constant planes, as in image mode).
    """

    def __init__(self, observation_space: gym.Space, hidden: int = 256, width: int = 16) -> None:
        super().__init__(observation_space, features_dim=hidden)
        if isinstance(observation_space, gym.spaces.Dict):
            size = observation_space["canvas"].shape[-1]
            channels = observation_channels(observation_space)[0]
        else:
            channels, size = observation_space.shape[0], observation_space.shape[-1]
        self.encoder = CanvasEncoder(channels, size, encoder_widths(width), hidden)

    def forward(self, obs: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(obs, dict):
            image = torch.cat([obs[key] for key in ("canvas", "target") if key in obs], dim=1)
            vectors = [obs[key].flatten(1) for key in ("condition", "noise", "progress") if key in obs]
            if vectors:
                b, _, h, w = image.shape
                code = torch.cat(vectors, dim=1)
                image = torch.cat([image, code.view(b, -1, 1, 1).expand(b, code.shape[1], h, w)], dim=1)
            obs = image
        return self.encoder(obs.permute(0, 2, 3, 1))  # the encoder reads channel-last planes


class _EpisodeStats(BaseCallback):
    """Collects finished episodes from the adapter's infos (returns, reward terms, final L2) and hands
    finished paintings to rewards that learn."""

    def __init__(self, env: CanvasVectorEnv) -> None:
        super().__init__()
        self.core = env.core
        self.keys = list(self.core.reward.keys)
        self.rows: list[list[float]] = []
        self.reward_stats: dict[str, float] = {}

    def _on_step(self) -> bool:
        dones, infos = self.locals["dones"], self.locals["infos"]
        if not dones.any():
            return True
        index = np.flatnonzero(dones)
        l2 = [np.nan] * len(index)
        if self.core.targets is not None or self.core.reward.learns:
            canvas, target = self._final_paintings(infos, index)
            if target is not None:
                l2 = (canvas - target).square().flatten(1).mean(dim=1).tolist()
            if self.core.reward.learns:
                with torch.enable_grad():
                    self.reward_stats.update(self.core.reward.update(canvas, target))
        for j, i in enumerate(index):
            episode, terms = infos[i]["episode"], infos[i]["episode_terms"]
            self.rows.append([episode["r"], *[terms[key] for key in self.keys], l2[j]])
        return True

    def _final_paintings(self, infos: list[dict[str, Any]], index: np.ndarray
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Finished canvases re-rendered from their strokes (exact) and targets from the final observations."""
        core = self.core
        strokes = torch.as_tensor(np.stack([infos[i]["strokes"] for i in index]), device=core.device)  # (N, L, 13)
        blank = torch.full((len(index), 3, core.size, core.size), core.background, device=core.device)
        canvas = paint_(blank, strokes.contiguous())
        if core.targets is None:
            return canvas, None
        # SB3's VecTransposeImage made the final observations channel-first: target = channels 3..5
        finals = [infos[i]["terminal_observation"] for i in index]
        target = np.stack([final["target"] if isinstance(final, dict) else final[3:6] for final in finals])
        return canvas, to_float(np.moveaxis(target, 1, -1), core.device)

    def summary(self) -> dict[str, float]:
        keys = ["return", *[f"term/{key}" for key in self.keys], "l2"]
        out: dict[str, float] = {"episodes": float(len(self.rows))}
        if self.rows:
            out.update(zip(keys, np.asarray(self.rows, dtype=np.float64).mean(axis=0).tolist(), strict=True))
        else:
            out.update({key: float("nan") for key in keys})
        if self.core.targets is None:
            out.pop("l2")
        out.update({f"reward/{name}": value for name, value in self.reward_stats.items()})
        self.rows, self.reward_stats = [], {}
        return out


class SB3PPO:
    """SB3's PPO as an algorithm the trainer drives (the :class:`~agents.common.Algorithm` interface; see
    the module docstring).

    :param env: a :class:`CanvasVectorEnv` with ``return_tensors=False`` and SAME_STEP autoreset.
    :param args: hyperparameters.
    :param seed: seeds SB3 (its numpy and torch generators).
    """

    name = "sb3-ppo"

    def __init__(self, env: CanvasVectorEnv, args: SB3PPOArgs, seed: int = 0, amp: bool = False) -> None:
        if amp:
            raise ValueError("--amp is not available for --agent sb3-ppo (SB3 trains in float32)")
        if args.policy not in POLICIES:
            raise ValueError(f"unknown policy {args.policy!r} for sb3-ppo; choose one of {', '.join(POLICIES)}")
        is_dict = isinstance(env.single_observation_space, gym.spaces.Dict)
        if args.policy == "CnnPolicy" and (is_dict or env.core.size < 36):
            raise ValueError("SB3's CnnPolicy (NatureCNN) needs image observations of at least 36x36; "
                             "use --policy paintgym for dict observations or smaller canvases")
        if args.rollout_episodes < 1 or args.update_epochs < 1:
            raise ValueError("rollout_episodes and update_epochs must be at least 1")
        self.env, self.args = env, args
        self.venv = SB3VecEnv(env)
        n_steps = args.rollout_episodes * env.core.max_steps
        self.steps_per_iteration = n_steps * env.num_envs
        batch_size = minibatch_size(self.steps_per_iteration, args.num_minibatches)
        # the same optimiser as the native agents (SB3 builds it before moving the policy to the device)
        policy_kwargs: dict[str, Any] = {"optimizer_kwargs": adam_options(torch.device("cpu"))}
        if args.policy == "paintgym":
            policy_kwargs.update(features_extractor_class=CanvasFeatures, net_arch=[],
                                 features_extractor_kwargs={"hidden": args.hidden, "width": args.width})
        self.model = SB3PPOModel(
            "MultiInputPolicy" if is_dict else "CnnPolicy", self.venv, learning_rate=args.learning_rate,
            n_steps=n_steps, batch_size=batch_size,
            n_epochs=args.update_epochs, gamma=args.gamma, gae_lambda=args.gae_lambda, clip_range=args.clip_coef,
            clip_range_vf=args.clip_coef if args.clip_vloss else None, normalize_advantage=args.norm_adv,
            ent_coef=args.ent_coef, vf_coef=args.vf_coef, max_grad_norm=args.max_grad_norm,
            target_kl=args.target_kl, policy_kwargs=policy_kwargs, device=env.device, seed=seed, verbose=0)
        # losses are read from the logger, not printed; built directly, since configure() makes a folder in /tmp
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.stats = _EpisodeStats(env)
        self.metric_keys = [*self._episode_keys(), *LOSS_KEYS, "explained_variance", "learning_rate"]

    def _episode_keys(self) -> list[str]:
        keys = ["episodes", "return", *[f"term/{key}" for key in self.stats.keys]]
        return keys + (["l2"] if self.env.core.targets is not None else [])

    def start(self, obs: np.ndarray | dict[str, np.ndarray]) -> None:
        """Continue from the env's current observations (the trainer has reset the env)."""
        if isinstance(self.model.env, VecTransposeImage):  # SB3 wrapped the adapter: channel-first images
            obs = self.model.env.transpose_observations(obs)
        self.model._last_obs = obs  # SB3's learn() would otherwise reset the env itself
        self.model._last_episode_starts = np.ones(self.env.num_envs, dtype=bool)

    def train_iteration(self, iteration: int, num_iterations: int) -> dict[str, float]:
        self.model.learn(self.steps_per_iteration, callback=self.stats, reset_num_timesteps=False, log_interval=None)
        logged = self.model.logger.name_to_value
        metrics = {key: float(logged.get(name, np.nan)) for key, name in _SB3_KEYS.items()}
        metrics["entropy"] = -metrics["entropy"]  # SB3 logs the entropy loss (minus the entropy)
        metrics["explained_variance"] = float(logged.get("train/explained_variance", np.nan))
        metrics["learning_rate"] = float(logged.get("train/learning_rate", self.args.learning_rate))
        self.model.logger.dump(self.model.num_timesteps)  # clears the values for the next iteration
        return {**self.stats.summary(), **metrics}

    @torch.no_grad()
    def act(self, obs: Observation, deterministic: bool = True) -> torch.Tensor:
        """Actions for tensor observations (evaluation runs on a native env); SB3 works in numpy."""
        if isinstance(obs, dict):
            obs_np: Any = {key: value.cpu().numpy() for key, value in obs.items()}
        else:
            obs_np = obs.cpu().numpy()
        actions, _ = self.model.policy.predict(obs_np, deterministic=deterministic)
        return torch.as_tensor(actions, device=self.env.device)

    def state_dict(self) -> dict[str, Any]:
        """Policy, optimiser and step count: with the trainer's checkpoint, enough to continue exactly.

        SB3 draws actions from torch's global generator and shuffles minibatches with numpy's, both
        in the trainer's RNG state; its other state is re-derived at the episode boundary an
        iteration ends on (:meth:`start` sets the last observations and episode starts; the
        adapter's episode sums are zero there), and the learning rate and clip range are constant,
        so SB3's training progress does not enter the update.
        """
        return {"policy": self.model.policy.state_dict(), "optimizer": self.model.policy.optimizer.state_dict(),
                "num_timesteps": self.model.num_timesteps, "args": asdict(self.args)}

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.model.policy}

    def freeze_parts(self) -> dict[str, list[str]]:
        """``encoder``: the features extractor's convolutions; ``trunk``: the features extractor and SB3's MLP
        extractor (empty with --policy paintgym): everything but the action and value heads."""
        extractor = "policy.features_extractor."
        if self.args.policy == "paintgym":
            encoder = [f"{extractor}encoder.{name}" for name in CanvasEncoder.CONVOLUTIONS]
        else:  # NatureCNN
            encoder = [f"{extractor}cnn."]
        return {"encoder": encoder, "trunk": [extractor, "policy.mlp_extractor."]}

    def restart_training(self) -> None:
        policy = self.model.policy
        trainable = [p for p in policy.parameters() if p.requires_grad]
        policy.optimizer = policy.optimizer_class(trainable, lr=policy.optimizer.param_groups[0]["lr"],
                                                  **policy.optimizer_kwargs)

    def load_state_dict(self, state: dict[str, Any], policy_only: bool = False) -> None:
        try:
            self.model.policy.load_state_dict(state["policy"])
        except RuntimeError as err:
            raise ValueError(f"the saved SB3 policy does not fit this network ({' '.join(str(err).split())[:200]}); "
                             "it was trained with another --policy, --width or --hidden") from err
        if policy_only:
            self.model.policy.set_training_mode(False)
            return
        self.model.policy.optimizer.load_state_dict(state["optimizer"])
        self.model.num_timesteps = int(state["num_timesteps"])
