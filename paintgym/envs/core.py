"""The batched canvas core: the state and step of B painting episodes, on one device.

:class:`CanvasCore` is the single implementation behind :class:`envs.CanvasVectorEnv` and
:class:`envs.CanvasEnv`. It works on torch tensors only; the Gymnasium faces convert at the edges.
"""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from paintgym import rewards
from paintgym.canvas import strokes as stroke_model
from paintgym.canvas.fastpath import HAVE_NUMBA, numba
from paintgym.canvas.images import to_uint8
from paintgym.canvas.render import _all_active as _ALL_ACTIVE
from paintgym.canvas.render import paint_, paint_numpy
from paintgym.envs.observations import IncrementalObservation, pack_observation
from paintgym.envs.targets import TargetSource, hash_draw

ACTION_MODES = ("continuous", "discrete")
OBS_MODES = ("image", "dict")
_RANGE_SLACK = 1e-5  # float32 rounding of actions exactly at the bounds is not an error


if HAVE_NUMBA:

    @numba.njit(cache=True, nogil=True)
    def _record_cpu(log, strokes, steps, active, done, max_steps):  # pragma: no cover - compiled
        """The CPU twin of :meth:`CanvasCore._record_torch`, in one call instead of five torch ops."""
        for b in range(steps.shape[0]):
            if active[b]:
                log[b, min(steps[b], max_steps - 1)] = strokes[b]
                steps[b] += 1
                done[b] = steps[b] >= max_steps
            else:
                done[b] = False


def _plain_float32(tensor: torch.Tensor) -> bool:
    """Whether ``tensor.numpy()`` gives its float32 values as they are (no copy, no autograd)."""
    return tensor.dtype == torch.float32 and not tensor.requires_grad and tensor.is_contiguous()


class UnknownOptionError(TypeError, ValueError):
    """An env was given a keyword argument it does not take.

    A ``TypeError`` worded as Python words it (``got an unexpected keyword argument 'x'``), as libraries
    that probe an env's constructor expect (TorchRL's ``GymEnv`` passes ``frameskip`` and drops it on
    that error); a ``ValueError`` too, as paintgym raised before.
    """


def check_options(options: dict[str, Any], owner: str = "CanvasCore.__init__") -> None:
    """Raise :class:`UnknownOptionError` naming any option that :class:`CanvasCore` does not take.

    :param owner: the callable that took ``options``, for the message (e.g. ``"CanvasEnv.__init__"``).
    """
    known = [name for name in inspect.signature(CanvasCore.__init__).parameters if name not in ("self", "num_envs")]
    unknown = [name for name in options if name not in known]
    if unknown:
        quoted = ", ".join(repr(name) for name in unknown)
        what = "an unexpected keyword argument" if len(unknown) == 1 else "unexpected keyword arguments"
        raise UnknownOptionError(f"{owner}() got {what} {quoted}; paintgym envs take: {', '.join(known)}")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return device


class CanvasCore:
    """State and step of ``num_envs`` painting episodes (options documented on :class:`envs.CanvasEnv`)."""

    def __init__(
        self,
        num_envs: int,
        *,
        canvas_size: int = 64,
        strokes_per_step: int = 1,
        max_steps: int = 32,
        action_mode: str = "continuous",
        obs_mode: str = "image",
        targets: Any = None,
        target_split: str = "train",
        target_augment: int = 0,
        reward: str | rewards.Reward | None = None,
        device: str | torch.device = "cpu",
        background: float = 1.0,
        grid: int = 16,
        brush_sizes: int = 4,
        opacity_levels: int = 4,
        palette: np.ndarray | None = None,
        clip_actions: bool = False,
        condition: bool | int = False,
        noise: int = 0,
    ) -> None:
        for name, value, low in (("num_envs", num_envs, 1), ("canvas_size", canvas_size, 8),
                                 ("strokes_per_step", strokes_per_step, 1), ("max_steps", max_steps, 1),
                                 ("grid", grid, 2), ("brush_sizes", brush_sizes, 1),
                                 ("opacity_levels", opacity_levels, 1)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if action_mode not in ACTION_MODES:
            raise ValueError(f"unknown action_mode {action_mode!r}; choose one of {', '.join(ACTION_MODES)}")
        if obs_mode not in OBS_MODES:
            raise ValueError(f"unknown obs_mode {obs_mode!r}; choose one of {', '.join(OBS_MODES)}")
        if not isinstance(noise, (int, np.integer)) or isinstance(noise, bool) or noise < 0:
            raise ValueError(f"noise must be a number of latent values >= 0 (0: none), got {noise!r}")
        if not isinstance(condition, (bool, int, np.integer)) or (not isinstance(condition, bool) and condition < 0):
            raise ValueError(f"condition must be true/false or a number of classes, got {condition!r}")
        if not 0.0 <= background <= 1.0:
            raise ValueError(f"background must be a grey level in [0, 1], got {background}")
        self.num_envs, self.size = int(num_envs), int(canvas_size)
        self.strokes_per_step, self.max_steps = int(strokes_per_step), int(max_steps)
        self.action_mode, self.obs_mode = action_mode, obs_mode
        self.background, self.clip_actions = float(background), bool(clip_actions)
        self.device = resolve_device(device)
        self.grid, self.brush_sizes, self.opacity_levels = int(grid), int(brush_sizes), int(opacity_levels)
        palette = stroke_model.DEFAULT_PALETTE if palette is None else np.asarray(palette, dtype=np.float32)
        if palette.ndim != 2 or palette.shape[1] != 3 or not ((palette >= 0) & (palette <= 1)).all():
            raise ValueError(f"palette must be (C, 3) RGB values in [0, 1], got shape {palette.shape}")
        self.palette = torch.as_tensor(palette, device=self.device)

        self.targets = None if targets is None else TargetSource.from_spec(targets, self.size, self.device,
                                                                            target_split, target_augment)
        self.reward = rewards.build(reward if reward is not None else ("target" if self.targets else "zero"),
                                    device=self.device).to(self.device)
        if self.reward.needs_target and self.targets is None:
            raise ValueError(f"reward {self.reward.spec()!r} needs target images; pass targets=... "
                             f"(e.g. 'digits') or use paintgym/Reconstruct-v0")
        self.num_classes = self._condition_classes(condition)
        self.noise_dim = int(noise)
        self.condition_in_order = False  # True: env i is asked for class i mod K in every episode (evaluations)

        self.single_action_space = self._action_space()
        self.single_observation_space = self._observation_space()
        if action_mode == "continuous":
            self._nvec = None
        else:
            self._nvec = torch.as_tensor(self.single_action_space.nvec, device=self.device)

        b, s, t, h = self.num_envs, self.strokes_per_step, self.max_steps, self.size
        dev = self.device
        self.canvas = torch.full((b, 3, h, h), self.background, device=dev)  # (B, 3, H, W) float in [0, 1]
        self.stroke_log = torch.zeros(b, t, s, stroke_model.STROKE_DIM, device=dev)  # zero stroke = invisible
        self.steps = torch.zeros(b, dtype=torch.long, device=dev)
        self.env_seeds = torch.zeros(b, dtype=torch.long, device=dev)
        self.episodes = torch.zeros(b, dtype=torch.long, device=dev)
        self.target: torch.Tensor | None = None  # (B, 3, H, W) float in [0, 1]
        self.target_u8: torch.Tensor | None = None  # (B, H, W, 3) uint8, kept for observations
        self.target_index: torch.Tensor | None = None  # (B,) int64 index into the target pool
        # (B,) int64 class each episode is asked to paint (condition), (B, D) uint8 noise latent (noise)
        self.condition: torch.Tensor | None = (torch.zeros(b, dtype=torch.long, device=dev)
                                               if self.num_classes else None)
        self.noise_u8: torch.Tensor | None = (torch.zeros(b, self.noise_dim, dtype=torch.uint8, device=dev)
                                              if self.noise_dim else None)
        self._extra_u8: torch.Tensor | None = None  # (B, H, W, E) uint8 extra image channels when not the target alone
        self._log_rows = torch.arange(b, device=dev) * t  # first row of each env in the flattened log
        # round(255 * step / T) for every step count, in float32: the progress plane of image observations
        levels = np.rint(np.arange(t + 1, dtype=np.float32) / np.float32(t) * np.float32(255.0))
        self._progress_levels = torch.as_tensor(levels.astype(np.uint8), device=dev)
        # numpy views of the persistent CPU buffers, so the numba fast paths skip torch's per-call overhead
        self._cpu_fast = HAVE_NUMBA and dev.type == "cpu"
        self._rows_unknown = False  # set by canvas_changed(): the next step reports no changed rows
        # image observations on the CPU are rebuilt only where strokes landed (the renderer reports where)
        self._image_cache = (IncrementalObservation(b, h, self._extra_channels())
                             if self._cpu_fast and obs_mode == "image" else None)
        self._blank_level = int(to_uint8(torch.full((1, 3, 1, 1), self.background))[0, 0, 0, 0])
        self._bind_views()

    def _condition_classes(self, condition: bool | int) -> int:
        """K, the classes the ``condition`` option draws from (0: off), checked against the reward's."""
        from_reward = self.reward.num_classes
        if condition is False or (not isinstance(condition, bool) and condition == 0):
            if self.reward.uses_condition:
                raise ValueError(f"reward {self.reward.spec()!r} scores the class each episode is asked to paint "
                                 "(class=condition); make the env with condition=True (paintgym train --condition)")
            return 0
        if condition is True:
            if not from_reward:
                raise ValueError("condition=True takes its classes from the reward, but this task has none: give a "
                                 "reward term with class=condition (a classifier, or the critic of a "
                                 "class-conditional GAN), or condition=K for K classes")
            return from_reward
        if condition < 2:
            raise ValueError(f"condition=K needs K >= 2 classes, got {condition}")
        if from_reward and condition != from_reward:
            raise ValueError(f"condition={condition} classes, but the reward's class=condition terms know "
                             f"{from_reward}: classes 0..{condition - 1} must be classes of the reward "
                             f"(condition=True takes the reward's)")
        return int(condition)

    @property
    def code_dim(self) -> int:
        """Width of :meth:`code`: the condition's classes plus the noise's latent values."""
        return self.num_classes + self.noise_dim

    def code(self) -> torch.Tensor:
        """What the episodes are asked for besides a target: ``(B, K + D)`` float32 in [0, 1], the one-hot
        class (``condition``) then the noise latent (``noise``), as the observation shows them."""
        parts = []
        if self.num_classes:
            parts.append(torch.nn.functional.one_hot(self.condition, self.num_classes).float())
        if self.noise_dim:
            parts.append(self.noise_u8.float().div(255.0))
        if not parts:
            return torch.zeros(self.num_envs, 0, device=self.device)
        return torch.cat(parts, dim=1)

    def _bind_views(self) -> None:
        if self._cpu_fast:
            self._np_canvas, self._np_log, self._np_steps = (
                self.canvas.numpy(), self.stroke_log.numpy(), self.steps.numpy())

    def __getstate__(self) -> dict[str, Any]:
        # numpy views would unpickle as copies detached from the tensors: rebuild them instead
        return {k: v for k, v in self.__dict__.items() if k not in ("_np_canvas", "_np_log", "_np_steps")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind_views()

    # ----------------------------------------------------------------------------------- spaces
    def _action_space(self) -> gym.Space:
        s = self.strokes_per_step
        if self.action_mode == "continuous":
            return gym.spaces.Box(-1.0, 1.0, (s * stroke_model.STROKE_DIM,), dtype=np.float32)
        nvec = stroke_model.discrete_nvec(s, self.grid, self.brush_sizes, self.opacity_levels, len(self.palette))
        return gym.spaces.MultiDiscrete(nvec)

    def _extra_channels(self) -> int:
        """Image-observation channels between the canvas and the progress plane: target, condition, noise."""
        return (3 if self.targets is not None else 0) + self.num_classes + self.noise_dim

    def _observation_space(self) -> gym.Space:
        h = self.size
        if self.obs_mode == "image":
            channels = 3 + self._extra_channels() + 1
            return gym.spaces.Box(0, 255, (h, h, channels), dtype=np.uint8)
        spaces = {"canvas": gym.spaces.Box(0, 255, (h, h, 3), dtype=np.uint8)}
        if self.targets is not None:
            spaces["target"] = gym.spaces.Box(0, 255, (h, h, 3), dtype=np.uint8)
        if self.num_classes:
            spaces["condition"] = gym.spaces.Discrete(self.num_classes)
        if self.noise_dim:
            spaces["noise"] = gym.spaces.Box(0.0, 1.0, (self.noise_dim,), dtype=np.float32)
        spaces["progress"] = gym.spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
        return gym.spaces.Dict(spaces)

    # ---------------------------------------------------------------------------------- actions
    def decode(self, actions: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Check and decode a batch of actions.

        :param actions: ``(B, S * 13)`` float in [-1, 1] (continuous) or ``(B, S * 9)`` integers
            (discrete), as numpy or torch.
        :return: strokes ``(B, S, 13)`` float32 on the device, and the number of clipped components
            per env ``(B,)`` when ``clip_actions`` is on (else None).
        :raises ValueError: wrong shape, NaN/inf, or values outside the action space.
        """
        space = self.single_action_space
        expected = (self.num_envs, *space.shape)
        shape = tuple(actions.shape)
        if shape != expected:
            raise ValueError(f"actions must have shape {expected} (num_envs x action size), got {shape}")
        clipped = None
        if self.action_mode == "continuous":
            if not (isinstance(actions, np.ndarray) and self._cpu_fast):  # numpy on the CPU: one numba pass
                actions = torch.as_tensor(actions, device=self.device)
            is_numpy = isinstance(actions, np.ndarray)
            strokes, lowest, highest, finite = stroke_model.decode_continuous(actions, self.strokes_per_step,
                                                                              bounds=True)
            if not (finite is not False and -1.0 - _RANGE_SLACK <= lowest and highest <= 1.0 + _RANGE_SLACK):
                if finite is None:  # NaN fails the range test too
                    finite = bool(np.isfinite(actions).all() if is_numpy else torch.isfinite(actions).all())
                if not finite:
                    raise ValueError("actions contain NaN or inf; every component must be a finite value in [-1, 1]")
                if not self.clip_actions:
                    raise ValueError(f"actions must lie in [-1, 1]; got values in [{float(lowest):.3g}, "
                                     f"{float(highest):.3g}] (pass clip_actions=True to clip them and count the "
                                     "clipped components in info['clipped_actions'])")
            if self.clip_actions:
                outside = (actions < -1.0 - _RANGE_SLACK) | (actions > 1.0 + _RANGE_SLACK)
                clipped = torch.as_tensor(outside.sum(axis=1) if is_numpy else outside.sum(dim=1),
                                          device=self.device)
            return strokes, clipped
        tensor = torch.as_tensor(actions, device=self.device)
        if tensor.is_floating_point():
            if not bool(torch.all(tensor == tensor.round())):
                raise ValueError("discrete actions must be integers (MultiDiscrete components)")
        elif tensor.dtype == torch.bool or tensor.is_complex():
            raise ValueError(f"discrete actions must be integers, got dtype {tensor.dtype}")
        tensor = tensor.long()
        if not bool(torch.all((tensor >= 0) & (tensor < self._nvec))):
            raise ValueError(f"discrete action components must lie in [0, nvec) with nvec={space.nvec.tolist()}")
        strokes = stroke_model.decode_discrete(tensor, self.strokes_per_step, self.grid, self.brush_sizes,
                                               self.opacity_levels, self.palette)
        return strokes, clipped

    # ------------------------------------------------------------------------------ reset, step
    def reset(self, mask: torch.Tensor | None = None, seeds: torch.Tensor | None = None) -> None:
        """Start new episodes where ``mask`` ``(B,)`` bool is True (all envs if None).

        :param seeds: ``(B,)`` int64: envs in ``mask`` restart their seed stream from these.
            Without seeds, each env moves on to its next episode.
        """
        if mask is None:
            mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        if seeds is not None:
            self.env_seeds = torch.where(mask, seeds.to(self.device), self.env_seeds)
            self.episodes = torch.where(mask, torch.zeros_like(self.episodes), self.episodes)
        else:
            self.episodes = self.episodes + mask.long()
        if self._cpu_fast:
            self._np_canvas[mask.numpy()] = self.background  # numpy's boolean fill: ~10x torch's masked_fill_
        else:
            self.canvas.masked_fill_(mask.view(-1, 1, 1, 1), self.background)
        self.stroke_log.masked_fill_(mask.view(-1, 1, 1, 1), 0.0)
        self.steps.masked_fill_(mask, 0)
        if self.targets is not None:
            index = self.targets.draw(self.env_seeds, self.episodes)
            if self.target_index is None:
                self.target_index = index
                self.target_u8, self.target = self.targets.get(index)
            else:  # only the envs that restart get new targets, in place
                self.target_index = torch.where(mask, index, self.target_index)
                self.targets.get_into(self.target_index, mask, self.target_u8, self.target)
        if self.condition is not None:
            drawn = (torch.arange(self.num_envs, device=self.device) if self.condition_in_order
                     else hash_draw(self.env_seeds, self.episodes, salt=1)) % self.num_classes
            self.condition = torch.where(mask, drawn, self.condition)
        if self.noise_u8 is not None:
            salts = torch.arange(2, 2 + self.noise_dim, device=self.device)
            drawn = (hash_draw(self.env_seeds[:, None], self.episodes[:, None], salt=salts) & 0xFF).to(torch.uint8)
            self.noise_u8 = torch.where(mask[:, None], drawn, self.noise_u8)
        if self.code_dim:
            self._extra_u8 = self._extra_planes()
        if self._image_cache is not None:
            self._image_cache.restart(mask.numpy(), self._blank_level, self._image_extra())
        self.reward.reset(self.canvas, self.target, mask, self.condition)

    def step(self, strokes: torch.Tensor, active: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Paint one step of strokes.

        :param strokes: ``(B, S, 13)`` float32 in [0, 1].
        :param active: ``(B,)`` bool, envs that step (others are left untouched, reward 0); None: all.
        :return: reward ``(B,)`` float32, terminated ``(B,)`` bool and each reward term ``{key: (B,)}``.
        """
        prev_canvas = self.canvas.clone() if self.reward.needs_prev_canvas else None
        if self._cpu_fast:
            strokes_np = strokes.numpy() if _plain_float32(strokes) else strokes.detach().float().contiguous().numpy()
            active_np = _ALL_ACTIVE(self.num_envs) if active is None else active.numpy()
            changed_rows = np.empty((self.num_envs, 2), dtype=np.int64)
            paint_numpy(self._np_canvas, strokes_np, active_np,
                        None if self._image_cache is None else self._image_cache.cache, changed_rows)
            changed_rows = None if self._rows_unknown else torch.from_numpy(changed_rows)
            self._rows_unknown = False
            done = np.empty(self.num_envs, dtype=np.bool_)
            _record_cpu(self._np_log, strokes_np, self._np_steps, active_np, done, self.max_steps)
            done = torch.from_numpy(done)
        else:
            paint_(self.canvas, strokes, active)
            done = self._record_torch(strokes, active)
            changed_rows = None
        ctx = rewards.StepContext(canvas=self.canvas, prev_canvas=prev_canvas, target=self.target,
                                  strokes=strokes, step=self.steps, done=done, active=active,
                                  changed_rows=changed_rows, condition=self.condition)
        reward, terms = self.reward.step_terms(ctx)
        return reward, done, terms

    def _record_torch(self, strokes: torch.Tensor, active: torch.Tensor | None) -> torch.Tensor:
        """Log the strokes, advance the step counters of active envs; return which episodes end now."""
        rows = self._log_rows + self.steps.clamp(max=self.max_steps - 1)  # (B,) row of this step in the log
        log = self.stroke_log.view(-1, self.strokes_per_step, stroke_model.STROKE_DIM)  # (B * T, S, 13)
        if active is None:
            log.index_copy_(0, rows, strokes)
            self.steps += 1
            return self.steps >= self.max_steps
        log.index_copy_(0, rows, torch.where(active.view(-1, 1, 1), strokes, log[rows]))
        self.steps += active.long()
        return active & (self.steps >= self.max_steps)

    # ------------------------------------------------------------------------------ observation
    def observation(self) -> torch.Tensor | dict[str, torch.Tensor]:
        """A fresh batch of observations on the device: ``(B, H, W, C)`` uint8, or a dict of them."""
        if self.obs_mode == "dict":
            obs = {"canvas": to_uint8(self.canvas)}
            if self.target_u8 is not None:
                obs["target"] = self.target_u8.clone()
            if self.condition is not None:
                obs["condition"] = self.condition.clone()
            if self.noise_u8 is not None:
                obs["noise"] = self.noise_u8.float().div_(255.0)
            obs["progress"] = self.steps.to(torch.float32).div_(self.max_steps).view(-1, 1)
            return obs
        if self._image_cache is not None:  # numpy indexing: a few microseconds less than torch's per step
            plane = torch.from_numpy(self._progress_levels.numpy()[self._np_steps])
            return self._image_cache(self.canvas, self._image_extra(), plane)
        return pack_observation(self.canvas, self._image_extra(), self._progress_levels[self.steps])

    def _extra_planes(self) -> torch.Tensor:
        """``(B, H, W, E)`` uint8: the target, the condition's one-hot planes (0 or 255) and one constant plane
        per noise value, as the image observation shows them between the canvas and the progress plane."""
        b, h = self.num_envs, self.size
        parts = [] if self.target_u8 is None else [self.target_u8]
        levels = []
        if self.condition is not None:
            levels.append(torch.nn.functional.one_hot(self.condition, self.num_classes).to(torch.uint8) * 255)
        if self.noise_u8 is not None:
            levels.append(self.noise_u8)
        parts.append(torch.cat(levels, dim=1).view(b, 1, 1, -1).expand(b, h, h, -1))
        return torch.cat(parts, dim=-1).contiguous()

    def _image_extra(self) -> torch.Tensor | None:
        """The image observation's channels between canvas and progress ``(B, H, W, E)`` uint8, or None."""
        return self._extra_u8 if self.code_dim else self.target_u8

    def canvas_changed(self, mask: torch.Tensor | None = None) -> None:
        """Call after writing to :attr:`canvas` or the target outside :meth:`step`/:meth:`reset`
        (``mask`` ``(B,)`` bool: the envs changed; None: all): the CPU fast paths keep state derived
        from them (the uint8 observation, the reward's per-row errors) that must be rebuilt."""
        if self._image_cache is not None:
            self._image_cache.invalidate(None if mask is None else mask.cpu().numpy())
        self._rows_unknown = True

    def episode_strokes(self) -> torch.Tensor:
        """The stroke history ``(B, max_steps * S, 13)`` (zero rows after the current step are invisible)."""
        return self.stroke_log.view(self.num_envs, -1, stroke_model.STROKE_DIM).clone()

    def rerender(self, size: int) -> torch.Tensor:
        """Every canvas re-rendered from its stroke history at ``size`` x ``size``: ``(B, 3, size, size)``."""
        if size == self.size:
            return self.canvas.clone()
        canvas = torch.full((self.num_envs, 3, size, size), self.background, device=self.device)
        return paint_(canvas, self.episode_strokes())

    def frames(self, size: int | None = None) -> torch.Tensor:
        """``(B, R, R or 2R, 3)`` uint8: canvases re-rendered at ``size`` (default: canvas size), each
        beside its target when the task has one."""
        size = size or self.size
        frames = to_uint8(self.rerender(size))
        if self.target is not None:
            target = self.target
            if size != self.size:
                target = torch.nn.functional.interpolate(target, size=(size, size), mode="bilinear",
                                                         align_corners=False)
            frames = torch.cat([frames, to_uint8(target)], dim=2)
        return frames
