"""A model-based agent that learns through the differentiable renderer (``--agent model-based``).

Huang et al., 2019, "Learning to Paint With Model-based Deep Reinforcement Learning" (ICCV): the
actor maps (canvas, target, step) to a bundle of strokes, the next canvas is rendered
*differentiably*, and the actor is trained by gradient ascent on ``r + gamma * V(next canvas)``
through the renderer, with a learned state-value critic and a target network. They first had to
train a neural renderer; paintgym's renderer (:func:`canvas.render.render`) is analytic and already
differentiable, so the gradient of the reward with respect to every stroke number is exact.

This module generalises their one-step actor loss to an unroll of ``horizon`` steps (model-based
value expansion with a known, exact model): from a state ``s_t`` the actor paints ``horizon`` steps
through the renderer and maximises

    sum_i gamma_s^i r_i  +  gamma^horizon V(s_{t+horizon})

where ``i`` runs over the *strokes* painted (``gamma_s = gamma ** (1 / strokes_per_step)``, so every
stroke of a bundle is rewarded for what it adds and a painting is good at every stroke count, not
only at the end), ``r_i`` is the change of the differentiable reward terms after stroke ``i``
(:attr:`rewards.Reward.differentiable`), and ``V`` is the critic. ``horizon = 1`` is Learning to
Paint's loss. ``horizon = 0`` (the default) unrolls the whole episode when every reward term is
differentiable: no critic is needed at all, and the actor is trained on the exact gradient of the
episode's discounted return (backpropagation through time over the episode, the renderer in the
loop); otherwise it takes Learning to Paint's one step. Reward terms that are not differentiable (a
kNN novelty archive, colour harmony, a stroke count) reach the actor only through the critic, which
learns the whole reward by TD(0) from the env's rewards with a Polyak-averaged target network.

One iteration: the envs are split into ``num_minibatches`` groups; each group paints one episode per
env with the actor, differentiably, and the actor takes one step per ``horizon``-chunk of the episode
(the gradient is cut between chunks), so later groups paint with the actor the earlier ones updated.
Then the same strokes step the :class:`~envs.vector_env.CanvasVectorEnv` (its batched core gives the
logged returns, the reward terms, the stroke log and the finished paintings that learning rewards
train on), and the critic takes one step. Every episode starts on a blank canvas and the iteration
ends on an episode boundary, so a checkpoint between iterations holds no replay buffer and resumes
exactly. (Learning to Paint keeps a replay buffer because its actor-critic learns off-policy; here the
actor's gradient is analytic and on-policy, and fresh episodes every iteration are cheap.)

Data-parallel (``torchrun``, :mod:`experiments.distributed`): each rank paints its share of the envs,
its group ``k`` being the ``k``-th slice of its own envs (so with ``num_minibatches > 1`` a global group
is a different, equally large, set of envs than on one process; with one group the update is the
one-process update). With ``--sync-batchnorm`` (the trainer's default) the actor's batch norms use
the statistics of every rank's batch (:func:`canvas.collective.sync_batchnorm`). DDP's module wrapper
cannot be used: one backward pass
runs through ``horizon`` actor calls of the unrolled episode; so after each backward pass the actor's
flat gradient buffer (and the critic's gradients) are averaged over the ranks with one ``all_reduce``
per update, before clipping -- what DDP's gradient buckets do.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from paintgym.agents.common import FlatGradients, adam_options, autocast, check_amp, load_policy
from paintgym.agents.episodes import EpisodeTracker
from paintgym.agents.networks import Observation, obs_planes
from paintgym.canvas import collective
from paintgym.canvas.render import fitted_colour, paint_, paint_fitted_, render, stroke_coverage
from paintgym.canvas.strokes import MAX_RADIUS, MIN_RADIUS, STROKE_DIM
from paintgym.envs.vector_env import CanvasVectorEnv


@dataclass
class ModelBasedArgs:
    learning_rate: float = 1e-3
    """the Adam learning rate of the actor"""
    critic_learning_rate: float = 1e-3
    """the Adam learning rate of the critic"""
    anneal_lr: bool = True
    """anneal both learning rates linearly to 0 over the run"""
    gamma: float = 0.95
    """the discount factor per env step (per stroke it is gamma ** (1 / strokes_per_step))"""
    horizon: int = 0
    """env steps unrolled through the renderer per actor loss before the critic takes over (0: the whole episode when
    every reward term is differentiable, else 1)"""
    tau: float = 0.01
    """Polyak step of the critic's target network per iteration"""
    exploration_noise: float = 0.0
    """std of gaussian noise added to the actor's strokes while training (0: none)"""
    backprop_observation: bool = False
    """also backpropagate through the actor's view of the canvas (full BPTT), not only through the renderer"""
    num_minibatches: int = 8
    """groups the envs are split into (at most num_envs); each group paints its episodes with the actor as the groups
    before it updated it (more updates per env step: 8 groups of 8 envs beat one group of 64 by 2.7 dB on digits)"""
    max_grad_norm: float = 1.0
    """the maximum global norm of the actor's gradient"""
    colour: str = "target"
    """stroke colours: target (the least-squares fit to the target under the stroke; tasks with targets) or predict"""
    width: int = 16
    """channels of the first convolution of the actor's window CNN and of the critic"""
    hidden: int = 256
    """width of the actor's stroke head and of the critic's features"""
    actor: str = "patch"
    """patch (each stroke fitted to a window around its cell of a coarse-to-fine layout) or free (a CNN of the whole
    canvas places each stroke anywhere: for sketching with --bc-data)"""
    bc_data: str | None = None
    """before training, teach the free actor by behaviour cloning to paint the human drawings of this stroke dataset
    (sheep, omniglot, kanji or an .npz; its train split) in the order they were drawn (None: no pretraining)"""
    bc_steps: int = 3000
    """behaviour-cloning steps (of 64 drawing steps) with --bc-data"""
    bc_drawings: int = 1000
    """drawings (fitting in an episode's strokes) converted to strokes and imitated with --bc-data"""


LOSS_KEYS = ["policy_loss", "value_loss", "actor_grad_norm"]
ACTORS = ("patch", "free")


class CanvasTrunk(nn.Module):
    """CoordConv CNN: ``(B, C, H, W)`` float planes -> ``(B, hidden)`` features.

    Stride-2 3x3 convolutions halve the side until it is at most 4, then a linear layer. Two
    coordinate planes (x and y in [0, 1]) are appended to the input, as in Learning to Paint: the
    network has to say *where* to paint, and plain convolutions are translation-equivariant.

    :param in_channels: C (without the coordinate planes).
    :param size: H = W.
    :param width: channels of the first convolution; each further one doubles it, up to ``4 * width``.
    :param hidden: output features.
    """

    def __init__(self, in_channels: int, size: int, width: int, hidden: int) -> None:
        super().__init__()
        if size < 8:
            raise ValueError(f"the model-based agent needs canvases of at least 8x8 pixels, got {size}")
        ys, xs = torch.meshgrid(torch.linspace(0.0, 1.0, size), torch.linspace(0.0, 1.0, size), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)  # (1, 2, H, W)
        layers: list[nn.Module] = []
        channels, side, out = in_channels + 2, size, width
        while side > 4:
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            channels, side, out = out, (side + 1) // 2, min(2 * out, 4 * width)
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(channels * side * side, hidden), nn.ReLU(inplace=True))
        self.out_features = hidden

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        coords = self.coords.expand(planes.shape[0], -1, -1, -1)
        return self.fc(self.convs(torch.cat([planes, coords], dim=1)).flatten(1))


def state_planes(canvas: torch.Tensor, target: torch.Tensor | None, progress: torch.Tensor) -> torch.Tensor:
    """The networks' input: canvas, target and their difference (when there is a target), and a
    progress plane.

    :param canvas: ``(B, 3, H, W)`` float in [0, 1].
    :param target: ``(B, 3, H, W)`` float in [0, 1], or None.
    :param progress: ``(B,)`` float in [0, 1], steps taken / steps per episode.
    :return: ``(B, 10 or 4, H, W)`` float.
    """
    b, _, h, w = canvas.shape
    planes = [canvas] if target is None else [canvas, target, target - canvas]
    planes.append(progress.view(b, 1, 1, 1).expand(b, 1, h, w))
    return torch.cat(planes, dim=1)


def conv_block(inputs: int, outputs: int, stride: int) -> list[nn.Module]:
    """3x3 convolution, batch normalisation, ReLU (as Learning to Paint's ResNet actor)."""
    return [nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True)]


def stroke_layout(count: int) -> torch.Tensor:
    """Where each stroke of an episode starts out, coarse to fine: ``(count, 3)`` rows ``(x, y, level)``.

    Level ``l`` splits the canvas into ``2^l x 2^l`` cells; the first stroke is anchored at the
    centre of the canvas (level 0), the next four at the centres of its quadrants (level 1), the
    next sixteen at level 2, and so on. Within a level the cells come in bit-reversed Morton order,
    so that any prefix of a level is spread over the whole canvas.
    """
    rows: list[tuple[float, float, int]] = []
    level = 0
    while len(rows) < count:
        side = 1 << level
        bits = 2 * level
        cells = []
        for y in range(side):
            for x in range(side):
                morton = 0
                for b in range(level):
                    morton |= ((x >> b) & 1) << (2 * b) | ((y >> b) & 1) << (2 * b + 1)
                key = int(f"{morton:0{bits}b}"[::-1], 2) if bits else 0
                cells.append((key, (x + 0.5) / side, (y + 0.5) / side))
        rows += [(x, y, level) for _, x, y in sorted(cells)]
        level += 1
    return torch.tensor(rows[:count], dtype=torch.float32)


class PatchStrokeActor(nn.Module):
    """(canvas, target, progress) -> strokes ``(B, S, 13)``; each stroke fitted to its own window.

    Stroke ``k`` of an episode has an anchor cell of :func:`stroke_layout` (coarse to fine). The
    actor cuts a window of ``window`` cells around the anchor out of the canvas, the target and their
    difference, resamples it to ``patch x patch`` pixels (so a cell looks the same at every level),
    and a small CNN shared by every stroke maps the window, with a thumbnail of the whole painting
    and the progress, to the stroke in the window's own coordinates. One network thus learns one
    thing -- fit a stroke to what a window shows -- from every stroke of every painting, at every
    place and scale, as Paint Transformer's patch-wise predictor does.
    """

    levels = 8
    window = 3.0  # window side, in cells of the stroke's level
    patch = 16  # window side in pixels, after resampling
    thumb = 8  # side of the thumbnail of the whole canvas

    def __init__(self, has_target: bool, size: int, strokes_per_step: int, width: int, hidden: int,
                 max_steps: int = 1) -> None:
        super().__init__()
        self.strokes_per_step, self.max_steps = strokes_per_step, max_steps
        self.register_buffer("layout", stroke_layout(strokes_per_step * max_steps), persistent=False)
        channels = 9 if has_target else 3
        c1, c2 = width, 2 * width
        self.cnn = nn.Sequential(*conv_block(channels, c1, 1), *conv_block(c1, c2, 2), *conv_block(c2, c2, 2),
                                 *conv_block(c2, c2, 2))  # 16 -> 8 -> 4 -> 2
        self.glance = nn.Sequential(nn.Linear(channels * self.thumb * self.thumb, hidden // 2), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Linear(c2 * 4 + hidden // 2 + self.levels + 1, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, STROKE_DIM))
        nn.init.normal_(self.head[-1].weight, std=0.01)
        with torch.no_grad():
            self.head[-1].bias.zero_()
            self.head[-1].bias[8:10] = 2.0  # opacities start near 0.9
        cell = 0.5 ** torch.arange(self.levels + 4, dtype=torch.float32)
        radius = ((0.6 * cell - MIN_RADIUS) / (MAX_RADIUS - MIN_RADIUS)).clamp(0.05, 1.0)
        self.register_buffer("cell", cell, persistent=False)
        self.register_buffer("max_radius", radius, persistent=False)
        offsets = (torch.arange(self.patch, dtype=torch.float32) + 0.5) / self.patch - 0.5  # window coordinates
        self.register_buffer("offsets", offsets, persistent=False)

    def forward(self, canvas: torch.Tensor, target: torch.Tensor | None, progress: torch.Tensor) -> torch.Tensor:
        b, s, p = canvas.shape[0], self.strokes_per_step, self.patch
        step = (progress.float() * self.max_steps).round().long().clamp_(0, self.max_steps - 1)
        index = step[:, None] * s + torch.arange(s, device=step.device)
        anchor = self.layout[index]  # (B, S, 3)
        level = anchor[..., 2].long()
        cell = self.cell[level]  # (B, S)
        span = (self.window * cell)[..., None]  # window side as a fraction of the canvas
        xs = anchor[..., 0:1] + self.offsets * span  # (B, S, P)
        ys = anchor[..., 1:2] + self.offsets * span
        grid = torch.stack([xs[:, :, None, :].expand(-1, -1, p, -1), ys[:, :, :, None].expand(-1, -1, -1, p)], -1)
        grid = (grid * 2.0 - 1.0).view(b, s * p, p, 2)  # the S windows stacked along the height

        def window(image: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B * S, 3, P, P)
            cut = nn.functional.grid_sample(image, grid.to(image.dtype), align_corners=False, padding_mode="border")
            return cut.view(b, 3, s, p, p).transpose(1, 2).reshape(b * s, 3, p, p)

        # sampling and pooling are linear, so the difference plane and the [-1, 1] scaling are formed on the
        # small windows and thumbnails, not on the whole canvas at every step
        windows = self._planes(window(canvas), None if target is None else window(target))
        # channels-last: oneDNN's (and cuDNN's) fast layout for many small images; 15-20% faster inference on CPU
        local = self.cnn(windows.contiguous(memory_format=torch.channels_last)).flatten(1).view(b, s, -1)
        thumb = self._planes(*(None if image is None else nn.functional.adaptive_avg_pool2d(image, self.thumb)
                               for image in (canvas, target))).flatten(1)
        one_hot = nn.functional.one_hot(level.clamp(max=self.levels - 1), self.levels).to(local.dtype)
        head_in = torch.cat([local, self.glance(thumb)[:, None].expand(-1, s, -1), one_hot,
                             progress.view(b, 1, 1).expand(-1, s, 1).to(local.dtype)], dim=-1)
        out = self.head(head_in).float()
        cell = cell.unsqueeze(-1)
        start = anchor[..., :2] + torch.tanh(out[..., 0:2]) * cell
        bend = start.repeat(1, 1, 2) + torch.tanh(out[..., 2:6]) * (1.5 * cell)
        points = torch.cat([start, bend], dim=-1).clamp(0.0, 1.0)
        radii = torch.sigmoid(out[..., 6:8]) * self.max_radius[level].unsqueeze(-1)
        return torch.cat([points, radii, torch.sigmoid(out[..., 8:13])], dim=-1)


    @staticmethod
    def _planes(canvas: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Canvas, target and their difference (when there is a target), scaled to [-1, 1]: ``(N, 9 or 3, h, w)``."""
        planes = [canvas] if target is None else [canvas, target, target - canvas]
        return torch.cat(planes, dim=1) * 2.0 - 1.0


class FreeStrokeActor(nn.Module):
    """(canvas, target, progress) -> strokes ``(B, S, 13)`` placed anywhere on the canvas (``--actor free``).

    A CoordConv CNN (:class:`CanvasTrunk`) reads the whole canvas, target, their difference and the
    progress, and an MLP head gives every number of the step's strokes through a sigmoid. Trained by the
    target reward alone, actors of this kind collapse into a few image-independent blobs (see
    :class:`PatchStrokeActor`); it is the actor for imitating human drawings (``--bc-data``), which place
    their strokes in an order no fixed layout of cells follows. It starts painting thin, nearly
    opaque strokes around the centre.
    """

    def __init__(self, has_target: bool, size: int, strokes_per_step: int, width: int, hidden: int) -> None:
        super().__init__()
        self.strokes_per_step = strokes_per_step
        self.trunk = CanvasTrunk(10 if has_target else 4, size, width, hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, strokes_per_step * STROKE_DIM))
        nn.init.normal_(self.head[-1].weight, std=0.01)
        with torch.no_grad():
            bias = self.head[-1].bias.view(strokes_per_step, STROKE_DIM)
            bias.zero_()
            bias[:, 6:8] = -3.0  # radii start at 5% of the range: 2% of the side
            bias[:, 8:10] = 2.0  # opacities near 0.9

    def forward(self, canvas: torch.Tensor, target: torch.Tensor | None, progress: torch.Tensor) -> torch.Tensor:
        out = self.head(self.trunk(state_planes(canvas, target, progress.to(canvas.dtype))))
        return torch.sigmoid(out.float()).view(canvas.shape[0], self.strokes_per_step, STROKE_DIM)


class StateCritic(nn.Module):
    """(canvas, target, progress) -> the value ``(B,)`` of the rest of the episode."""

    def __init__(self, has_target: bool, size: int, width: int, hidden: int) -> None:
        super().__init__()
        self.trunk = CanvasTrunk(10 if has_target else 4, size, width, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, canvas: torch.Tensor, target: torch.Tensor | None, progress: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(state_planes(canvas, target, progress))).float().squeeze(-1)


def observation_state(obs: Observation, has_target: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Env observations -> ``(canvas, target or None, progress)`` as :class:`StrokeActor` takes them.

    :param obs: ``(B, H, W, C)`` uint8 image observations (canvas, [target,] progress plane) or the
        dict form (see :func:`agents.networks.obs_planes`).
    """
    planes = obs_planes(obs).permute(0, 3, 1, 2).float().div_(255.0)  # (B, C, H, W)
    canvas = planes[:, 0:3]
    target = planes[:, 3:6] if has_target else None
    return canvas, target, planes[:, -1, 0, 0]


class ModelBased:
    """The model-based agent on a :class:`CanvasVectorEnv` created with ``return_tensors=True,
    autoreset_mode="disabled"`` and continuous actions (see the module docstring); the
    :class:`~agents.common.Algorithm` interface, and :meth:`paint` for whole episodes without an env.

    :param env: the training env.
    :param args: hyperparameters.
    :param amp: bfloat16 autocast for the networks on CUDA (the renderer stays in float32).
    """

    name = "model-based"

    def __init__(self, env: CanvasVectorEnv, args: ModelBasedArgs, amp: bool = False) -> None:
        if not env.return_tensors or env.autoreset_mode.name != "DISABLED":
            raise ValueError("the model-based agent needs CanvasVectorEnv(..., return_tensors=True, "
                             "autoreset_mode='disabled')")
        core = env.core
        if core.action_mode != "continuous":
            raise ValueError("the model-based agent paints continuous strokes: use --action-mode continuous")
        if args.horizon < 0:
            raise ValueError(f"horizon must be 0 (automatic) or a number of steps, got {args.horizon}")
        if args.num_minibatches < 1:
            raise ValueError(f"num_minibatches must be at least 1, got {args.num_minibatches}")
        self.groups = min(args.num_minibatches, env.num_envs)
        if not 0.0 < args.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {args.gamma}")
        check_amp(env.device, amp)
        self.env, self.args, self.device, self.amp = env, args, env.device, amp
        self.max_steps, self.strokes_per_step = core.max_steps, core.strokes_per_step
        self.has_target = core.targets is not None
        if args.colour not in ("target", "predict"):
            raise ValueError(f"unknown colour {args.colour!r}; choose target or predict")
        self.fit_colour = args.colour == "target" and self.has_target
        opaque = [key for key, _, term in core.reward.terms if not term.differentiable]
        # auto: the exact gradient of the whole episode, unless a term can only reach the actor through the critic
        self.horizon = min(args.horizon or (1 if opaque else self.max_steps), self.max_steps)
        self.uses_critic = self.horizon < self.max_steps or bool(opaque)
        if opaque and self.horizon >= self.max_steps:
            raise ValueError(f"reward term(s) {', '.join(opaque)} are not differentiable, so they reach the actor only "
                             f"through the critic: set --horizon below --max-steps ({self.max_steps}), e.g. 1")

        if args.actor not in ACTORS:
            raise ValueError(f"unknown actor {args.actor!r}; choose one of {', '.join(ACTORS)}")
        if args.bc_data is not None:
            self._check_imitation(args)
        if args.actor == "free":
            actor: nn.Module = FreeStrokeActor(self.has_target, core.size, self.strokes_per_step, args.width,
                                               args.hidden)
        else:
            actor = PatchStrokeActor(self.has_target, core.size, self.strokes_per_step, args.width, args.hidden,
                                     max_steps=self.max_steps)
        critic = StateCritic(self.has_target, core.size, args.width, args.hidden)
        self.agent = nn.ModuleDict({"actor": actor, "critic": critic}).to(self.device)
        self.actor, self.critic = self.agent["actor"], self.agent["critic"]
        self.critic_target = StateCritic(self.has_target, core.size, args.width, args.hidden).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        options = adam_options(self.device)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.learning_rate, **options)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=args.critic_learning_rate, **options)
        self.actor_gradients = FlatGradients(self.actor.parameters())

        self.steps_per_iteration = env.num_envs * self.max_steps  # one episode per env
        self.tracker = EpisodeTracker(env)
        self.metric_keys = [*self.tracker.metric_keys, *LOSS_KEYS, "learning_rate"]
        if args.bc_data is not None:
            self.metric_keys.append("bc_loss")
        self.noise = torch.Generator(device=self.device)
        self.obs: Observation | None = None

    def start(self, obs: Observation) -> None:
        """Continue from the env's current observations (the trainer has reset the env)."""
        self.obs = obs

    def _check_imitation(self, args: ModelBasedArgs) -> None:
        """Raise ``ValueError`` (one line) for ``--bc-data`` options that cannot work."""
        from paintgym.generative.pen_data import resolve_data

        if args.actor != "free":
            raise ValueError("--bc-data teaches the free actor (the patch actor places stroke k in a fixed cell, "
                             "where a person's k-th stroke seldom is): add --actor free")
        if not self.has_target:
            raise ValueError("--bc-data teaches an actor to copy drawings: use a task with targets, e.g. "
                             "--targets sketch:omniglot")
        if args.bc_steps < 1 or args.bc_drawings < 1:
            raise ValueError(f"bc_steps and bc_drawings must be at least 1, got {args.bc_steps} and "
                             f"{args.bc_drawings}")
        resolve_data(args.bc_data)  # a missing dataset fails now, not after the env is built

    def imitate(self) -> float:
        """Behaviour cloning of the actor on human drawings (``--bc-data``, :func:`agents.imitation.clone`);
        returns the mean loss of the last tenth of the steps. Run once, at the first iteration."""
        from paintgym.agents.imitation import clone
        from paintgym.generative.pen_data import stroke_demonstrations

        args, core = self.args, self.env.core
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
        seed = int(torch.randint(2**31, (1,), generator=generator))
        demos = stroke_demonstrations(args.bc_data, args.bc_drawings, self.max_steps * self.strokes_per_step,
                                      seed=seed)
        losses = clone(self.actor, demos, core.size, self.max_steps, self.strokes_per_step, args.bc_steps,
                       learning_rate=args.learning_rate, background=core.background, colour=not self.fit_colour,
                       generator=generator, device=self.device, average_gradients=collective.average_gradients_,
                       max_grad_norm=args.max_grad_norm)
        tail = losses[-max(1, len(losses) // 10):]
        return sum(tail) / len(tail)

    # ------------------------------------------------------------------------------ one iteration
    def train_iteration(self, iteration: int, num_iterations: int) -> dict[str, float]:
        if self.obs is None:
            raise RuntimeError("call start(obs) before training")
        args = self.args
        if args.anneal_lr:
            fraction = 1.0 - (iteration - 1.0) / num_iterations
            self.actor_optimizer.param_groups[0]["lr"] = fraction * args.learning_rate
            self.critic_optimizer.param_groups[0]["lr"] = fraction * args.critic_learning_rate
        if args.exploration_noise > 0:  # the noise stream follows the global seed, so resumes are exact
            self.noise.manual_seed(int(torch.randint(2**62, (1,))))
        bc_loss = self.imitate() if args.bc_data is not None and iteration == 1 else None
        core = self.env.core
        blank = core.canvas.clone()  # every episode starts on the blank canvas (iterations end on episode ends)
        group_states, group_strokes = [], []
        policy_loss, grad_norm = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        for envs in torch.arange(self.env.num_envs, device=self.device).tensor_split(self.groups):
            canvas = blank[envs]
            target = None if core.target is None else core.target[envs]
            states, painted = [], []
            for start in range(0, self.max_steps, self.horizon):
                stop = min(self.max_steps, start + self.horizon)
                canvas = canvas.detach()  # the gradient is cut between chunks; the critic values what follows
                gain, canvas, discount = self._unroll(canvas, target, start, stop, states, painted)
                if stop < self.max_steps:  # bootstrap: the critic's value of the rest, differentiable in the canvas
                    with autocast(self.device, self.amp):
                        gain = gain + discount * self.critic(canvas, target, self._progress(stop, canvas))
                loss = -gain.mean()
                self.actor_gradients.zero_grad()
                loss.backward()
                collective.average_gradients_(self.actor_gradients.flat)  # data-parallel: one all_reduce
                grad_norm += self.actor_gradients.clip_grad_norm_(args.max_grad_norm)
                self.actor_optimizer.step()
                policy_loss += loss.detach()
            group_states.append(torch.stack(states))
            group_strokes.append(torch.stack(painted))
        # the env paints every group's strokes, step by step (logged returns, terms, learning rewards)
        strokes = torch.cat(group_strokes, dim=1)  # (T, B, S, 13)
        env_rewards = [self._env_step(strokes[step]) for step in range(self.max_steps)]
        updates = self.groups * -(-self.max_steps // self.horizon)
        value_loss = None
        if self.uses_critic:
            value_loss = self._update_critic(torch.cat(group_states, dim=1), env_rewards, core.target)
        values = torch.stack([policy_loss / updates, grad_norm / updates]).tolist()  # one transfer
        metrics = {"policy_loss": values[0], "actor_grad_norm": values[1],
                   "learning_rate": self.actor_optimizer.param_groups[0]["lr"]}
        if value_loss is not None:  # no critic, no column value (a NaN would read as a diverged loss)
            metrics["value_loss"] = float(value_loss)
        if bc_loss is not None:
            metrics["bc_loss"] = bc_loss
        return {**self.tracker.summary(), **metrics}

    def _progress(self, step: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((like.shape[0],), step / self.max_steps, device=like.device)

    def _unroll(self, canvas: torch.Tensor, target: torch.Tensor | None, start: int, stop: int,
                states: list[torch.Tensor], painted: list[torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Paint steps ``start .. stop - 1`` through the renderer; append each step's canvas before it to
        ``states`` and its strokes as painted (detached) to ``painted``.

        :return: the discounted sum of the differentiable rewards of every stroke ``(B,)``, the
            last canvas (attached to the graph) and the discount of the step after ``stop``.
        """
        reward = self.env.core.reward
        per_stroke = self.args.gamma ** (1.0 / self.strokes_per_step)
        gain = torch.zeros(canvas.shape[0], device=canvas.device)
        discount = 1.0
        for step in range(start, stop):
            seen = canvas if self.args.backprop_observation else canvas.detach()
            states.append(canvas.detach())
            with autocast(self.device, self.amp):
                strokes = self.actor(seen, target, self._progress(step, seen))
            if self.args.exploration_noise > 0:
                noise = torch.randn(strokes.shape, generator=self.noise, device=strokes.device)
                strokes = (strokes + self.args.exploration_noise * noise).clamp(0.0, 1.0)
            step_gain, canvas, strokes = paint_and_score(reward, canvas, target, strokes, per_stroke,
                                                         final=step == self.max_steps - 1, fit_colour=self.fit_colour)
            gain = gain + discount * step_gain
            discount *= self.args.gamma
            painted.append(strokes.detach())
        return gain, canvas, discount

    def _env_step(self, strokes: torch.Tensor) -> torch.Tensor:
        """Paint the same strokes in the env (logged returns and terms, learning rewards); reset it at
        the episode's end. Returns the env's reward ``(B,)``."""
        env = self.env
        actions = strokes.flatten(1).mul(2.0).sub_(1.0).clamp_(-1.0, 1.0)
        with torch.no_grad():
            obs, reward, terminated, truncated, info = env.step(actions)
            self.tracker.record(reward, info["reward_terms"])
            done = terminated | truncated
            if done.any():  # all envs finish together; the finished canvases are still in the core here
                self.tracker.finish(done)
                obs, _ = env.reset(options={"reset_mask": done})
        self.obs = obs
        return reward

    def _update_critic(self, canvases: torch.Tensor, env_rewards: list[torch.Tensor],
                       target: torch.Tensor | None) -> torch.Tensor:
        """One TD(0) step of the critic on every state of the iteration (``canvases`` ``(T, B, 3, H, W)``,
        the canvas before each step), then the target network's Polyak step. Returns the loss."""
        steps, batch = canvases.shape[:2]
        progress = (torch.arange(steps + 1, device=self.device, dtype=torch.float32) / self.max_steps)
        progress = progress.view(-1, 1).expand(-1, batch)
        targets = None if target is None else target.unsqueeze(0).expand(steps, *target.shape).flatten(0, 1)
        rewards = torch.stack(env_rewards)  # (T, B)
        with torch.no_grad(), autocast(self.device, self.amp):
            # V(s_{t+1}) from the target network; the episode's last step has nothing after it
            next_values = torch.zeros(steps, batch, device=self.device)
            if steps > 1:
                next_target = None if target is None else targets[batch:]
                next_values[:-1] = self.critic_target(canvases[1:].flatten(0, 1), next_target,
                                                      progress[1:steps].flatten()).view(steps - 1, batch)
            returns = rewards + self.args.gamma * next_values
        with autocast(self.device, self.amp):
            values = self.critic(canvases.flatten(0, 1), targets, progress[:steps].flatten())
        loss = 0.5 * (values - returns.flatten()).square().mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        collective.average_gradients_(self.critic.parameters())
        nn.utils.clip_grad_norm_(self.critic.parameters(), 10.0)
        self.critic_optimizer.step()
        with torch.no_grad():
            for online, slow in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
                slow.lerp_(online, self.args.tau)
        return loss.detach()

    # ---------------------------------------------------------------------------- acting, saving
    @contextlib.contextmanager
    def _acting(self) -> Any:
        """Evaluation mode (batch-norm running statistics) for acting, then back to training mode."""
        training = self.actor.training
        self.actor.eval()
        try:
            yield
        finally:
            self.actor.train(training)

    @torch.no_grad()
    def act(self, obs: Observation, deterministic: bool = True) -> torch.Tensor:
        """Actions ``(B, S * 13)`` in [-1, 1] for a batch of observations (the actor is deterministic)."""
        canvas, target, progress = observation_state(obs, self.has_target)
        with autocast(self.device, self.amp), self._acting():
            strokes = self.actor(canvas, target, progress).float().contiguous()
        if self.fit_colour:  # the colours the strokes get on the canvas they land on (a scratch copy)
            paint_fitted_(canvas.contiguous(), strokes, target)
        return strokes.flatten(1).mul_(2.0).sub_(1.0)

    @torch.no_grad()
    def paint(self, targets: torch.Tensor | None, count: int | None = None) -> torch.Tensor:
        """Paint whole episodes without an env (the fast path for evaluation and inference).

        The actor sees float canvases, as in training (the env shows it uint8 observations), and
        the renderer's no-grad kernel paints (:func:`canvas.render.paint_`).

        :param targets: ``(B, 3, H, W)`` float in [0, 1] at the env's canvas size, or None for a
            task without targets (then ``count`` canvases are painted).
        :return: strokes ``(B, max_steps * S, 13)`` float32 in [0, 1], in painting order.
        """
        core = self.env.core
        if targets is None:
            if self.has_target:
                raise ValueError("this agent paints to targets; pass them")
            batch = int(count or 1)
        else:
            if targets.dim() != 4 or targets.shape[1:] != (3, core.size, core.size):
                raise ValueError(f"targets must have shape (B, 3, {core.size}, {core.size}), "
                                 f"got {tuple(targets.shape)}")
            batch, targets = targets.shape[0], targets.to(self.device, torch.float32)
        canvas = torch.full((batch, 3, core.size, core.size), core.background, device=self.device)
        painted = []
        for step in range(self.max_steps):
            with autocast(self.device, self.amp), self._acting():
                strokes = self.actor(canvas, targets, self._progress(step, canvas)).float().contiguous()
            if self.fit_colour:
                paint_fitted_(canvas, strokes, targets)
            else:
                paint_(canvas, strokes)
            painted.append(strokes)
        return torch.cat(painted, dim=1)

    def state_dict(self) -> dict[str, Any]:
        return {"agent": self.agent.state_dict(), "critic_target": self.critic_target.state_dict(),
                "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(), "args": asdict(self.args)}

    def load_state_dict(self, state: dict[str, Any], policy_only: bool = False) -> None:
        load_policy(self.agent, state["agent"])
        if policy_only:
            self.agent.eval()
            return
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])


def differentiable_potential(reward: Any, canvas: torch.Tensor, target: torch.Tensor | None,
                             final: bool = False) -> torch.Tensor:
    """The weighted score of a composite reward's differentiable terms, differentiable in ``canvas``.

    Dense terms count at every stroke (their reward is the change of this potential); terminal
    terms only when ``final`` (the episode's last stroke), so the change there pays their score.

    :param reward: a :class:`rewards.Composite`.
    :param canvas: ``(B, 3, H, W)`` float in [0, 1].
    :param target: ``(B, 3, H, W)`` float in [0, 1], or None.
    :return: ``(B,)`` float32.
    """
    total = torch.zeros(canvas.shape[0], device=canvas.device)
    for _key, weight, term in reward.terms:
        if term.differentiable and (term.dense or final):
            total = total + weight * term.score(canvas, target)
    return total


def paint_and_score(reward: Any, canvas: torch.Tensor, target: torch.Tensor | None, strokes: torch.Tensor,
                    per_stroke: float, final: bool = False, fit_colour: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite a bundle of strokes one at a time with the differentiable renderer, and sum what each
    stroke adds to the differentiable reward terms, discounted per stroke.

    ``gain = sum_s per_stroke^s * (phi(canvas_{s+1}) - phi(canvas_s))`` with ``phi`` the
    :func:`differentiable_potential` (terminal terms count after the last stroke when ``final``).

    :param reward: a :class:`rewards.Composite`.
    :param canvas: ``(B, 3, H, W)`` float in [0, 1], the canvas before the bundle.
    :param target: ``(B, 3, H, W)`` float in [0, 1], or None.
    :param strokes: ``(B, S, 13)`` float in [0, 1].
    :param per_stroke: the discount between two strokes.
    :param final: the bundle ends the episode.
    :param fit_colour: replace each stroke's colour by :func:`canvas.render.fitted_colour` on the canvas it
        is painted on (needs ``target``).
    :return: ``gain`` ``(B,)``, the canvas after the bundle (both differentiable in ``strokes`` and
        ``canvas``) and the strokes as painted ``(B, S, 13)``.
    """
    potential = differentiable_potential(reward, canvas, target)
    gain = torch.zeros(canvas.shape[0], device=canvas.device)
    discount, count, painted = 1.0, strokes.shape[1], []
    for s in range(count):  # stroke by stroke: each is rewarded for what it adds
        if fit_colour:
            alpha = stroke_coverage(strokes[:, s], canvas.shape[-1])
            colour = fitted_colour(alpha, canvas, target)
            canvas = canvas + (colour[:, :, None, None] - canvas) * alpha[:, None]
            painted.append(torch.cat([strokes[:, s, :10], colour], dim=-1))
        else:
            canvas = render(strokes[:, s:s + 1], canvas)
            painted.append(strokes[:, s])
        after = differentiable_potential(reward, canvas, target, final=final and s == count - 1)
        gain = gain + discount * (after - potential)
        potential, discount = after, discount * per_stroke
    return gain, canvas, torch.stack(painted, dim=1)
