"""The policy/value network for canvas observations: a CoordConv CNN with a Beta or categorical head.

Observations (``image`` mode: canvas, target, condition, noise and progress planes; ``dict`` mode: the
same as separate entries) become ``(B, H, W, C)`` uint8 planes (:func:`obs_planes`), to which the encoder
adds two coordinate planes (x and y in [0, 1]), as Learning to Paint does (Liu et al., 2018,
CoordConv): the policy has to say *where* to paint, and plain convolutions are
translation-equivariant.

The trunk is cheap on purpose (the network, not the renderer, bounds training speed on a CPU): a
patchifying stem (a linear map of ``p x p`` patches, ``p`` = canvas size / 16, at most 4; the
coordinate planes folded into a learned position map, see :class:`CanvasEncoder`), a stride-2 3x3
convolution, a 2x2 patch-merging layer and a linear layer. Actor and critic share the trunk (as CleanRL's Atari
PPO does); the heads are linear:

* continuous actions: two concentrations per component, ``1 + softplus(.)``, for
  :class:`~agents.distributions.BetaActions` (actions always inside ``[-1, 1]``);
* discrete actions: ``sum(nvec)`` logits, one categorical per ``MultiDiscrete`` component
  (:class:`~agents.distributions.MultiCategorical`);
* value: one number.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from paintgym.agents.distributions import BetaActions, MultiCategorical

Observation = torch.Tensor | dict[str, torch.Tensor]


def layer_init(layer: nn.Module, std: float = float(np.sqrt(2)), bias_const: float = 0.0) -> nn.Module:
    """Orthogonal weights with gain ``std`` and constant bias (the PPO implementation details)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


def observation_channels(space: gym.Space) -> tuple[int, int]:
    """``(channels, size)`` of the planes :func:`obs_planes` makes from observations of ``space``."""
    if isinstance(space, gym.spaces.Dict):
        if "canvas" not in space.spaces:
            raise ValueError(f"dict observations need a 'canvas' entry, got {list(space.spaces)}")
        size = space["canvas"].shape[0]
        channels = 3 + (3 if "target" in space.spaces else 0) + (1 if "progress" in space.spaces else 0)
        channels += condition_classes(space) + (space["noise"].shape[0] if "noise" in space.spaces else 0)
        return channels, size
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8:
        height, width, channels = space.shape
        if height != width:
            raise ValueError(f"canvas observations are square, got {height}x{width}")
        return channels, height
    raise ValueError(f"the canvas policy reads paintgym observations ((H, W, C) uint8 or a dict with 'canvas'); "
                     f"got {space}")


def condition_classes(space: gym.Space) -> int:
    """K, the classes of a ``condition`` entry of dict observations of ``space`` (0 without one)."""
    if isinstance(space, gym.spaces.Dict) and "condition" in space.spaces:
        return int(space["condition"].n)
    return 0


def obs_planes(obs: Observation, num_classes: int = 0) -> torch.Tensor:
    """Observations -> ``(B, H, W, C)`` uint8 planes, as the ``image`` observation mode packs them.

    :param obs: ``(B, H, W, C)`` uint8 (image mode, returned as is), or a dict with ``canvas``
        ``(B, H, W, 3)`` uint8, optional ``target`` ``(B, H, W, 3)`` uint8, ``condition`` ``(B,)`` int
        (K one-hot planes of 0 or 255), ``noise`` ``(B, D)`` float in [0, 1] (D constant planes
        ``round(255 * value)``) and ``progress`` ``(B, 1)`` float in [0, 1] (a constant plane
        ``round(255 * progress)``), in this order, as in image mode.
    :param num_classes: K, for a ``condition`` entry (:func:`condition_classes` of the space).
    """
    if not isinstance(obs, dict):
        return obs
    planes = [obs["canvas"]] + ([obs["target"]] if "target" in obs else [])
    b, h, w, _ = obs["canvas"].shape
    levels = []
    if "condition" in obs:
        if num_classes < 1:
            raise ValueError("dict observations with a 'condition' need its number of classes (num_classes)")
        levels.append(nn.functional.one_hot(obs["condition"].long().view(b), num_classes).to(torch.uint8) * 255)
    for key in ("noise", "progress"):
        if key in obs:
            levels.append(obs[key].float().view(b, -1).mul(255.0).round_().to(torch.uint8))
    if levels:
        code = torch.cat(levels, dim=1)
        planes.append(code.view(b, 1, 1, -1).expand(b, h, w, code.shape[1]))
    return torch.cat(planes, dim=-1)


def _patch_size(size: int) -> int:
    """The stem's patch side: about size / 16, at most 4, and dividing the canvas side."""
    for patch in range(min(4, max(1, size // 16)), 0, -1):
        if size % patch == 0:
            return patch
    return 1


class CanvasEncoder(nn.Module):
    """CoordConv CNN: ``(B, H, W, C)`` planes (uint8 in [0, 255], or float in [0, 1]) -> ``(B, hidden)``.

    The stem is a ``p x p`` convolution with stride ``p``, computed as what it is — a linear map of
    non-overlapping patches — which on a CPU is a plain matrix product in both directions (a strided
    convolution's weight gradient is not). The input stays channel-last and uint8 until it is cut
    into patches, so the strided copy moves a quarter of the float bytes, and the ``1 / 255`` of
    uint8 planes goes into the small stem weight rather than over the large patches. The stem's
    output is channel-last, and the convolutions take it so (a view, no transpose; oneDNN's
    channel-last kernels are the faster ones for the first convolution's backward pass).

    The second downsampling is a 2x2 patch merge (a linear map of each 2x2 neighbourhood, as in Swin
    transformers) rather than a second stride-2 3x3 convolution: faster on a CPU for a slightly
    higher held-out L2 (measurements in bench/README.md).

    The coordinate planes (x and y in [0, 1]) enter only the linear stem, so
    ``stem(cat[patches, coord_patches]) = stem_image(patches) + stem_coords(coord_patches)`` and the
    second term, independent of the input, is a learned position map computed once per forward
    pass: the same function as concatenating the planes to every observation, at no cost.

    :param in_channels: C.
    :param size: H = W (at least 8).
    :param channels: widths of the stem, the stride-2 3x3 convolution and the 2x2 patch merge.
    :param hidden: width of the output features.
    """

    CONVOLUTIONS = ("stem.", "stem_coords.", "convs.", "merge.")
    """Name prefixes of the layers before the last linear one (``fc``): the convolutional part, ``--freeze encoder``."""

    def __init__(self, in_channels: int, size: int, channels: tuple[int, int, int] = (16, 32, 32),
                 hidden: int = 256) -> None:
        super().__init__()
        if size < 8:
            raise ValueError(f"the canvas encoder needs canvases of at least 8x8 pixels, got {size}")
        self.patch, self.side = _patch_size(size), size // _patch_size(size)
        c0, c1, c2 = channels
        ys, xs = torch.meshgrid(torch.linspace(0.0, 1.0, size), torch.linspace(0.0, 1.0, size), indexing="ij")
        coords = torch.stack([xs, ys], dim=-1)[None]  # (1, H, W, 2)
        self.register_buffer("coord_patches", self.patches(coords)[0], persistent=False)  # (N, p * p * 2)
        joint = layer_init(nn.Linear(self.patch * self.patch * (in_channels + 2), c0))  # initialised as one layer
        self.stem = nn.Linear(self.patch * self.patch * in_channels, c0)
        self.stem_coords = nn.Linear(self.patch * self.patch * 2, c0, bias=False)
        with torch.no_grad():
            weight = joint.weight.view(c0, self.patch * self.patch, in_channels + 2)
            self.stem.weight.copy_(weight[..., :in_channels].reshape(c0, -1))
            self.stem.bias.copy_(joint.bias)
            self.stem_coords.weight.copy_(weight[..., in_channels:].reshape(c0, -1))
        self.convs = nn.Sequential(layer_init(nn.Conv2d(c0, c1, 3, stride=2, padding=1)), nn.ReLU())
        self.merge = layer_init(nn.Linear(4 * c1, c2))  # 2x2 patch merging: a linear map of 2x2 neighbourhoods
        side = (self.side + 1) // 2
        side = (side + 1) // 2
        self.fc = nn.Sequential(layer_init(nn.Linear(c2 * side * side, hidden)), nn.ReLU())
        self.out_features = hidden

    def patches(self, planes: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` planes -> ``(B, N, p * p * C)`` non-overlapping patches, row-major, in the
        planes' dtype (uint8 stays uint8: a quarter of the bytes to move)."""
        b, _, _, c = planes.shape
        p, g = self.patch, self.side
        return planes.reshape(b, g, p, g, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, g * g, p * p * c)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        scale = 1.0 / 255.0 if planes.dtype == torch.uint8 else 1.0
        return self.encode(self.patches(planes).float(), scale)

    def encode(self, patches: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """``(B, N, p * p * C)`` float patches (:meth:`patches`) times ``scale`` -> ``(B, hidden)`` features.

        Patches of uint8 planes are in [0, 255] with ``scale = 1 / 255``, which goes into the small
        stem weight rather than over the large patches.
        """
        b, g = patches.shape[0], self.side
        weight = self.stem.weight * scale if scale != 1.0 else self.stem.weight
        position = self.stem_coords(self.coord_patches) + self.stem.bias  # (N, c0): the CoordConv term, the bias
        stem = nn.functional.linear(patches, weight).add_(position).relu_()  # (B, N, c0), in place
        h = self.convs(stem.view(b, g, g, -1).permute(0, 3, 1, 2))  # NCHW shape, channel-last memory
        h = h.permute(0, 2, 3, 1)  # (B, S, S, c1), a view
        s = h.shape[1]
        if s % 2:  # odd side: zero padding, as a stride-2 convolution's
            h, s = nn.functional.pad(h, (0, 0, 0, 1, 0, 1)), s + 1
        h = h.reshape(b, s // 2, 2, s // 2, 2, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, (s // 2) ** 2, -1)
        return self.fc(torch.relu(self.merge(h)).flatten(1))


class ActorCritic(nn.Module):
    """Policy and value for paintgym observations and action spaces (CleanRL's ``Agent``).

    :param observation_space: the env's ``single_observation_space`` (image ``Box`` or ``Dict``).
    :param action_space: the env's ``single_action_space``: ``Box(-1, 1, (A,))`` or ``MultiDiscrete``.
    :param channels: CNN widths (see :class:`CanvasEncoder`).
    :param hidden: width of the shared features.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space,
                 channels: tuple[int, int, int] = (16, 32, 32), hidden: int = 256) -> None:
        super().__init__()
        in_channels, size = observation_channels(observation_space)
        self.num_classes = condition_classes(observation_space)
        self.encoder = CanvasEncoder(in_channels, size, channels, hidden)
        if isinstance(action_space, gym.spaces.Box):
            unit = np.all(action_space.low == -1.0) and np.all(action_space.high == 1.0)
            if not unit or len(action_space.shape) != 1:
                raise ValueError(f"continuous actions must be a Box(-1, 1, (A,)), got {action_space}")
            self.discrete = False
            self.action_dim = int(action_space.shape[0])
            self.actor = layer_init(nn.Linear(hidden, 2 * self.action_dim), std=0.01)
        elif isinstance(action_space, gym.spaces.MultiDiscrete):
            nvec = torch.as_tensor(np.asarray(action_space.nvec).reshape(-1), dtype=torch.long)
            self.discrete = True
            self.action_dim = int(nvec.numel())
            self.register_buffer("valid", torch.arange(int(nvec.max()))[None, :] < nvec[:, None], persistent=False)
            self.actor = layer_init(nn.Linear(hidden, self.action_dim * int(nvec.max())), std=0.01)
        else:
            raise ValueError(f"unsupported action space {action_space}; paintgym's are Box(-1, 1) and MultiDiscrete")
        self.critic = layer_init(nn.Linear(hidden, 1), std=1.0)

    def freeze_parts(self) -> dict[str, list[str]]:
        """What ``--freeze`` may freeze (parameter name prefixes): ``encoder`` the CNN's convolutional part,
        ``trunk`` the whole encoder (its last linear layer too): everything but the actor and critic heads."""
        return {"encoder": ["encoder." + name for name in CanvasEncoder.CONVOLUTIONS], "trunk": ["encoder."]}

    def features(self, obs: Observation) -> torch.Tensor:
        """``(B, hidden)`` shared features of a batch of observations."""
        return self.encoder(obs_planes(obs, self.num_classes))

    def get_value(self, obs: Observation) -> torch.Tensor:
        """``(B,)`` float32 state values."""
        return self.critic(self.features(obs)).float().squeeze(-1)

    def distribution(self, features: torch.Tensor) -> BetaActions | MultiCategorical:
        """The action distribution for ``(B, hidden)`` features (computed in float32)."""
        out = self.actor(features).float()
        if self.discrete:
            return MultiCategorical(out.view(out.shape[0], self.action_dim, -1), self.valid)
        return BetaActions.from_concentrations(nn.functional.softplus(out).add_(1.0))  # alpha, then beta

    def get_action_and_value(self, obs: Observation, action: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or score) actions: ``action (B, A)``, ``log_prob (B,)``, ``entropy (B,)``, ``value (B,)``.

        Continuous actions are float in ``[-1, 1]``; discrete ones int64 in ``[0, nvec)``.
        """
        return self.heads(self.features(obs), action)

    def heads(self, features: torch.Tensor, action: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`get_action_and_value` from ``(B, hidden)`` features (e.g. of :meth:`CanvasEncoder.encode`)."""
        dist = self.distribution(features)
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.critic(features).float().squeeze(-1)

    @torch.no_grad()
    def act(self, obs: Observation, deterministic: bool = True) -> torch.Tensor:
        """``(B, A)`` actions for acting: the distribution's mode, or a sample."""
        dist = self.distribution(self.features(obs))
        return dist.mode() if deterministic else dist.sample()

    def extra_repr(self) -> str:
        kind = "discrete" if self.discrete else "continuous (Beta)"
        return f"actions={kind} x {self.action_dim}"


class PatchedObservations:
    """A rollout's observations cut into the encoder's patches once, for the many minibatches of an update.

    ``PatchedObservations(agent, obs).get_action_and_value(index, action)`` is
    ``agent.get_action_and_value(obs[index], action)``, faster: the observations are cut into
    patches once per update (uint8 stays uint8), and each minibatch's rows are gathered and converted
    to floats into two buffers that every minibatch reuses, where cutting and converting per
    minibatch allocates fresh megabyte tensors each time (a speed-up on a CPU; measurements in
    bench/README.md).

    :param agent: the network that reads the observations.
    :param obs: the rollout's observations, one flat ``(N, ...)`` batch.
    """

    def __init__(self, agent: ActorCritic, obs: Observation) -> None:
        self.agent = agent
        self.patches = agent.encoder.patches(obs_planes(obs, agent.num_classes)).contiguous()  # (N, G * G, P)
        self.scale = 1.0 / 255.0 if self.patches.dtype == torch.uint8 else 1.0
        self._rows: torch.Tensor | None = None
        self._floats: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> torch.Tensor:
        """``(M, G * G, P)`` float patches of rows ``index``, unscaled (:attr:`scale`); overwritten by the
        next call, so use them (forward and backward) before selecting the next minibatch."""
        shape = (index.numel(), *self.patches.shape[1:])
        if self._rows is None or self._rows.shape != shape:
            self._rows = self.patches.new_empty(shape)
            self._floats = self._rows.float() if self.patches.dtype != torch.float32 else None
        torch.index_select(self.patches, 0, index, out=self._rows)
        return self._rows if self._floats is None else self._floats.copy_(self._rows)

    def get_action_and_value(self, index: torch.Tensor, action: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`ActorCritic.get_action_and_value` of observations ``index`` ``(M,)`` and ``action`` ``(M, A)``."""
        features = self.agent.encoder.encode(self.select(index), self.scale)
        return self.agent.heads(features, action)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def describe(module: nn.Module) -> dict[str, Any]:
    """A short description for the run record."""
    return {"class": type(module).__name__, "parameters": count_parameters(module)}
