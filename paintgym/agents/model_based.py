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

With ``--prior CHECKPOINT`` (a stroke-sequence prior) the actor's loss also has ``-prior_weight`` times the
change, over each chunk, of the prior's differentiable score of the episode's strokes so far
(:meth:`rewards.strokeprior.StrokePriorReward.differentiable_score`: with the whole episode unrolled, its
score at the end). It reaches the strokes directly, not through the canvas, and regularises the actor
only: the env's reward and the critic do not include it. ``prior_score`` logs its mean per episode.

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
import copy
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights

from paintgym.agents.common import FlatGradients, adam, autocast, check_amp, load_policy
from paintgym.agents.episodes import EpisodeTracker
from paintgym.agents.networks import Observation, obs_planes
from paintgym.agents.windows import can_cut_with_numba, cut_windows, cut_windows_numba
from paintgym.canvas import collective
from paintgym.canvas.render import paint_, paint_fitted_, render, render_fitted
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
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"anchors": "fixed"}
    """what runs saved before an option existed did (see ``experiments.algorithms.saved_args``)"""
    anchors: str = "residual"
    """where the strokes of the finer levels go: fixed (a coarse-to-fine layout) or residual (the cells furthest from
    the target, tasks with targets)"""
    reach: float = 1.0
    """how far the patch actor's strokes and windows extend, in cells of the stroke's level: the window is 3 x reach
    cells wide, a stroke starts within reach cells of its anchor, bends and ends within 1.5 x reach cells of its
    start, and its radius is at most 0.6 x reach cells"""
    second_look: bool = False
    """the actor paints each bundle on a scratch canvas, looks at its windows again and corrects the bundle (twice
    the actor's cost)"""
    window_coords: bool = False
    """append x and y coordinate planes to the patch actor's windows (CoordConv: where in its window a pixel lies
    is then an input of the convolutions, not something they infer from the picture alone)"""
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
    prior: str | None = None
    """a stroke-sequence prior (a paintgym train-strokes run): the actor also maximises prior_weight times the
    differentiable strokeprior score of each episode's strokes (None: no such term)"""
    prior_weight: float = 0.1
    """weight of the --prior term in the actor's loss (nats per pen point above the prior's Gaussian baseline)"""


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


def state_planes(canvas: torch.Tensor, target: torch.Tensor | None, progress: torch.Tensor,
                 code: torch.Tensor | None = None) -> torch.Tensor:
    """The networks' input: canvas, target and their difference (when there is a target), the code
    (one constant plane per value) and a progress plane.

    :param canvas: ``(B, 3, H, W)`` float in [0, 1].
    :param target: ``(B, 3, H, W)`` float in [0, 1], or None.
    :param progress: ``(B,)`` float in [0, 1], steps taken / steps per episode.
    :param code: ``(B, E)`` float in [0, 1], the episode's condition and noise (:meth:`envs.core.CanvasCore.code`),
        or None.
    :return: ``(B, 10 or 4 (+ E), H, W)`` float.
    """
    b, _, h, w = canvas.shape
    planes = [canvas] if target is None else [canvas, target, target - canvas]
    if code is not None and code.shape[1]:
        planes.append(code.to(canvas.dtype).view(b, -1, 1, 1).expand(b, code.shape[1], h, w))
    planes.append(progress.view(b, 1, 1, 1).expand(b, 1, h, w))
    return torch.cat(planes, dim=1)


def conv_block(inputs: int, outputs: int, stride: int, batch_norm: bool = True) -> list[nn.Module]:
    """3x3 convolution, batch normalisation (as Learning to Paint's ResNet actor) or, with ``batch_norm``
    off, a per-image normalisation over channels and pixels (``GroupNorm`` with one group), ReLU."""
    norm = nn.BatchNorm2d(outputs) if batch_norm else nn.GroupNorm(1, outputs)
    return [nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False), norm, nn.ReLU(inplace=True)]


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


ANCHORS = ("fixed", "residual")


def residual_anchors(anchor: torch.Tensor, canvas: torch.Tensor, target: torch.Tensor,
                     levels: list[int]) -> torch.Tensor:
    """Move the anchors of the partly painted levels to the cells where the painting is furthest from its target.

    A level of :func:`stroke_layout` is partly painted when an episode has fewer strokes at that level
    than the level has cells, so the fixed layout would leave some of its cells without a stroke
    whatever the picture (at 64 px and 32 strokes: 11 of level 3's 64 cells). There, a bundle's
    strokes of level ``l`` take the cells of level ``l`` with the largest squared residual, largest
    first; the levels every cell of which gets a stroke keep the fixed layout. A choice, not a
    gradient: the strokes are fitted to whatever window they are given.

    :param anchor: ``(B, S, 3)`` rows ``(x, y, level)`` of :func:`stroke_layout`.
    :param canvas: ``(B, 3, H, W)`` float in [0, 1].
    :param target: ``(B, 3, H, W)`` float in [0, 1].
    :param levels: the partly painted levels, whose anchors follow the residual (a list known when the
        actor is built, so that choosing costs no device-to-host transfer).
    :return: ``(B, S, 3)``, the same levels.
    """
    level = anchor[..., 2].long()
    count = level.shape[1]
    # rank of each stroke among the bundle's earlier strokes of its level: the r-th takes the r-th worst cell
    earlier = torch.ones(count, count, dtype=torch.bool, device=level.device).tril(-1)
    rank = ((level[:, :, None] == level[:, None, :]) & earlier).sum(-1)
    residual = torch.sub(target.detach(), canvas.detach()).float().square_().sum(1, keepdim=True)  # (B, 1, H, W)
    xs, ys = anchor[..., 0], anchor[..., 1]
    for value in levels:
        side = 1 << value
        worst = nn.functional.adaptive_avg_pool2d(residual, side).flatten(1)  # (B, side * side)
        top = worst.topk(min(count, side * side), dim=1).indices
        cell = top.gather(1, rank.clamp(max=top.shape[1] - 1))
        chosen = level == value
        xs = torch.where(chosen, (cell % side + 0.5) / side, xs)
        ys = torch.where(chosen, (cell // side + 0.5) / side, ys)
    return torch.stack([xs, ys, anchor[..., 2]], dim=-1)


class PatchStrokeActor(nn.Module):
    """(canvas, target, progress[, code]) -> strokes ``(B, S, 13)``; each stroke fitted to its own window.

    Stroke ``k`` of an episode has an anchor cell of :func:`stroke_layout` (coarse to fine). The
    actor cuts a window of ``window`` cells around the anchor out of the canvas, the target and their
    difference, resamples it to ``patch x patch`` pixels (so a cell looks the same at every level),
    and a small CNN shared by every stroke maps the window, with a thumbnail of the whole painting
    and the progress, to the stroke in the window's own coordinates. One network thus learns one
    thing -- fit a stroke to what a window shows -- from every stroke of every painting, at every
    place and scale, as Paint Transformer's patch-wise predictor does. On free-painting tasks with a
    ``condition`` or ``noise`` the episode's code (``code_dim`` values in [0, 1]) joins the head's input, so
    one actor paints a different picture per class and per latent.

    With a target the window CNN uses batch normalisation; without one (free painting) it normalises
    each window alone: there every window of the first step is the same blank, so batch statistics
    zero the features in training, while acting (running statistics) the blank gives other features:
    an actor trained to paint ten classes painted one for all of them.

    With ``anchors="residual"`` (and a target) the strokes of the partly painted levels take the cells
    furthest from the target (:func:`residual_anchors`). With ``second_look`` the actor paints its
    bundle on a scratch canvas (no gradient), cuts the same windows again, and a second head maps
    what it sees, with the bundle's raw numbers, to a correction added to them (zero at the start).
    """

    levels = 8
    window = 3.0  # window side, in cells of the stroke's level
    patch = 16  # window side in pixels, after resampling
    thumb = 8  # side of the thumbnail of the whole canvas

    def __init__(self, has_target: bool, size: int, strokes_per_step: int, width: int, hidden: int,
                 max_steps: int = 1, anchors: str = "fixed", second_look: bool = False,
                 fit_colour: bool = False, code_dim: int = 0, reach: float = 1.0, window_coords: bool = False) -> None:
        super().__init__()
        if not reach > 0:
            raise ValueError(f"reach must be > 0 (cells of a stroke's level), got {reach!r}")
        if anchors not in ANCHORS:
            raise ValueError(f"unknown anchors {anchors!r}; choose one of {', '.join(ANCHORS)}")
        self.strokes_per_step, self.max_steps, self.code_dim = strokes_per_step, max_steps, code_dim
        # residual anchors need a target to measure the residual against
        self.residual_anchors = anchors == "residual" and has_target
        self.fit_colour = fit_colour and has_target
        layout = stroke_layout(strokes_per_step * max_steps)
        self.register_buffer("layout", layout, persistent=False)
        strokes_at_level = torch.bincount(layout[:, 2].long()).tolist()
        self.partial_levels = [level for level, strokes in enumerate(strokes_at_level) if strokes < 4**level]
        partial = torch.isin(layout[:, 2].long(), torch.tensor(self.partial_levels, dtype=torch.long))
        self.residual_steps = {step for step in range(max_steps) if partial[step * strokes_per_step:
                                                                          (step + 1) * strokes_per_step].any()}
        channels = 9 if has_target else 3
        c1, c2, bn = width, 2 * width, has_target
        grid = (torch.arange(self.patch, dtype=torch.float32) + 0.5) / self.patch * 2.0 - 1.0
        ys, xs = torch.meshgrid(grid, grid, indexing="ij")  # x and y in [-1, 1] across the window, as the images
        self.register_buffer("coords", torch.stack([xs, ys])[None] if window_coords else None, persistent=False)
        inputs = channels + (2 if window_coords else 0)
        self.cnn = nn.Sequential(*conv_block(inputs, c1, 1, bn), *conv_block(c1, c2, 2, bn),
                                 *conv_block(c2, c2, 2, bn), *conv_block(c2, c2, 2, bn))  # 16 -> 8 -> 4 -> 2
        self.looks = 2 if second_look else 1
        norms = [layer.num_features for layer in self.cnn if isinstance(layer, nn.BatchNorm2d)]
        stats = None
        if norms:  # every batch norm's running mean and variance (concatenated) per look and episode step
            stats = torch.stack([torch.zeros(sum(norms)), torch.ones(sum(norms))]).repeat(self.looks, max_steps, 1, 1)
        self.register_buffer("running_step_stats", stats)
        self.register_buffer("step_stats_tracked", torch.zeros(self.looks, max_steps, dtype=torch.bool)
                             if norms else None)
        self.glance = nn.Sequential(nn.Linear(channels * self.thumb * self.thumb, hidden // 2), nn.ReLU(inplace=True))
        features = c2 * 4 + hidden // 2 + self.levels + 1 + code_dim
        self.head = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, STROKE_DIM))
        nn.init.normal_(self.head[-1].weight, std=0.01)
        with torch.no_grad():
            self.head[-1].bias.zero_()
            self.head[-1].bias[8:10] = 2.0  # opacities start near 0.9
        self.second_look = None
        if second_look:  # (the same window features of the canvas with the bundle painted, the bundle) -> correction
            self.second_look = nn.Sequential(nn.Linear(features + STROKE_DIM, hidden), nn.ReLU(inplace=True),
                                             nn.Linear(hidden, STROKE_DIM))
            nn.init.zeros_(self.second_look[-1].weight)  # starts as no correction
            nn.init.zeros_(self.second_look[-1].bias)
        cell = reach * 0.5 ** torch.arange(self.levels + 4, dtype=torch.float32)  # a stroke's reach at each level
        radius = ((0.6 * cell - MIN_RADIUS) / (MAX_RADIUS - MIN_RADIUS)).clamp(0.05, 1.0)
        self.register_buffer("cell", cell, persistent=False)
        self.register_buffer("max_radius", radius, persistent=False)
        offsets = (torch.arange(self.patch, dtype=torch.float32) + 0.5) / self.patch - 0.5  # window coordinates
        self.register_buffer("offsets", offsets, persistent=False)

    def forward(self, canvas: torch.Tensor, target: torch.Tensor | None, progress: torch.Tensor,
                code: torch.Tensor | None = None, step: int | None = None) -> torch.Tensor:
        """Strokes ``(B, S, 13)`` in [0, 1]. ``step``: the episode step every canvas is at, when the caller knows
        it (it equals ``progress * max_steps``); then the residual is measured only at the steps whose bundle has
        strokes of a partly painted level."""
        s = self.strokes_per_step
        if (0 if code is None else code.shape[1]) != self.code_dim:
            raise ValueError(f"this actor was built for a code of {self.code_dim} values (condition classes + noise), "
                             f"got {None if code is None else tuple(code.shape)}")
        steps = (progress.float() * self.max_steps).round().long().clamp_(0, self.max_steps - 1)
        index = steps[:, None] * s + torch.arange(s, device=steps.device)
        anchor = self.layout[index]  # (B, S, 3)
        if self.residual_anchors and (step is None or step in self.residual_steps):
            anchor = residual_anchors(anchor, canvas, target, self.partial_levels)
        raw = self.head(self._look(canvas, target, progress, anchor, code, steps, step)).float()
        if self.second_look is not None:
            # paint the bundle on a scratch copy (no gradient: only the correction's inputs) and look again
            with torch.no_grad():
                scratch, first = canvas.detach().float().contiguous().clone(), self._strokes(raw, anchor).contiguous()
                if self.fit_colour:
                    paint_fitted_(scratch, first, target)
                else:
                    paint_(scratch, first)
            again = self._look(scratch, target, progress, anchor, code, steps, step, look=1)
            raw = raw + self.second_look(torch.cat([again, raw.to(again.dtype)], dim=-1)).float()
        return self._strokes(raw, anchor)

    def _look(self, canvas: torch.Tensor, target: torch.Tensor | None, progress: torch.Tensor,
              anchor: torch.Tensor, code: torch.Tensor | None, steps: torch.Tensor, step: int | None,
              look: int = 0) -> torch.Tensor:
        """The head's input for each stroke, ``(B, S, features)``: its window, a thumbnail, its level, the progress
        and the episode's code (condition and noise, when the actor takes one). ``steps`` ``(B,)``: each
        canvas's episode step; ``step``: the step of every canvas when the caller knows it; ``look``: 1 for
        the second look."""
        b, s = canvas.shape[0], anchor.shape[1]
        level = anchor[..., 2].long()
        span = (self.window * self.cell[level])[..., None]  # window side as a fraction of the canvas
        xs = anchor[..., 0:1] + self.offsets * span  # (B, S, P) sample columns and rows
        ys = anchor[..., 1:2] + self.offsets * span
        if can_cut_with_numba(canvas, target, xs, ys):
            cut = cut_windows_numba(canvas, target, xs, ys)  # (B * S, 3 or 6, P, P): canvas[, target]
            cuts = [cut[:, :3], None if target is None else cut[:, 3:]]
        else:
            cut, cuts = None, [None if image is None else cut_windows(image, xs, ys) for image in (canvas, target)]
        if self.training or torch.is_grad_enabled() or (step is None and self.running_step_stats is not None):
            # sampling and pooling are linear, so the difference plane and the [-1, 1] scaling are formed on the
            # small windows and thumbnails, not on the whole canvas at every step
            windows = self._planes(*cuts)
            if self.coords is not None:
                windows = torch.cat([windows, self.coords.to(windows.dtype).expand(windows.shape[0], -1, -1, -1)], 1)
            # channels-last: oneDNN's (and cuDNN's) fast layout for many small images; 15-20% faster on the CPU
            local = self._run_cnn(windows.contiguous(memory_format=torch.channels_last),
                                  steps.repeat_interleave(s), step, look)
        else:  # acting: the planes and the batch norms are folded into the convolutions (inference_cnn)
            windows = cut if cut is not None else torch.cat([part for part in cuts if part is not None], 1)
            local = self.inference_cnn(step, look)(windows.contiguous(memory_format=torch.channels_last))
        local = local.flatten(1).view(b, s, -1)
        thumb = self._planes(*(None if image is None else nn.functional.adaptive_avg_pool2d(image, self.thumb)
                               for image in (canvas, target))).flatten(1)
        one_hot = nn.functional.one_hot(level.clamp(max=self.levels - 1), self.levels).to(local.dtype)
        parts = [local, self.glance(thumb)[:, None].expand(-1, s, -1), one_hot,
                 progress.view(b, 1, 1).expand(-1, s, 1).to(local.dtype)]
        if self.code_dim:
            parts.append(code.to(local.dtype)[:, None].expand(-1, s, -1))
        return torch.cat(parts, dim=-1)

    def _run_cnn(self, windows: torch.Tensor, steps: torch.Tensor, step: int | None, look: int) -> torch.Tensor:
        """The window CNN on the planes of the windows ``(N, C, P, P)``; ``steps`` ``(N,)``: each window's episode step.

        Its batch norms normalise with the batch's statistics in training, as ever, and keep a running average
        of them per episode step (``running_step_stats``, when the caller says the ``step``). The windows of
        the first steps (big strokes on a blank canvas) look nothing like those of the last (small strokes on
        a nearly finished painting), and each training batch holds one step's windows, so one running average
        over every step (what a batch norm keeps) matches no step: in evaluation each window is normalised
        with its own step's statistics (+0.3 dB at 64 px and 32 strokes, the same network).
        """
        if self.running_step_stats is None:
            return self.cnn(windows)
        record = self.training and step is not None
        stats = None if self.training else self.step_statistics(look)[steps]  # (N, 2, channels of every norm)
        seen, first = [], 0
        x = windows
        for layer in self.cnn:
            if not isinstance(layer, nn.modules.batchnorm._BatchNorm):
                x = layer(x)
                continue
            width = layer.num_features
            if self.training:
                before = (layer.running_mean.clone(), layer.running_var.clone()) if record else None
                x = layer(x)
                if before is not None:  # the batch's statistics, read off the norm's own update (global ones when
                    # synchronised over ranks): running = (1 - m) running + m batch
                    m = layer.momentum if layer.momentum is not None else 1.0 / float(layer.num_batches_tracked)
                    with torch.no_grad():
                        seen.append(torch.stack([(layer.running_mean - (1 - m) * before[0]) / m,
                                                 (layer.running_var - (1 - m) * before[1]) / m]))
            else:
                mean, var = stats[:, 0, first:first + width], stats[:, 1, first:first + width]
                scale = layer.weight * torch.rsqrt(var + layer.eps)  # (N, C)
                x = x * scale[..., None, None].to(x.dtype) + (layer.bias - mean * scale)[..., None, None].to(x.dtype)
            first += width
        if record:
            with torch.no_grad():
                batch = torch.cat(seen, dim=-1)
                tracked = self.step_stats_tracked[look, step]
                old = self.running_step_stats[look, step]
                self.running_step_stats[look, step] = torch.where(tracked, old.lerp(batch, 0.1), batch)
                self.step_stats_tracked[look, step] = True
        return x

    def step_statistics(self, look: int = 0) -> torch.Tensor:
        """Each episode step's batch-norm statistics ``(max_steps, 2, channels of every norm)`` (mean, variance);
        a step training never measured (a run saved before they were kept) takes the batch norms' own."""
        norms = [layer for layer in self.cnn if isinstance(layer, nn.modules.batchnorm._BatchNorm)]
        overall = torch.stack([torch.cat([n.running_mean for n in norms]), torch.cat([n.running_var for n in norms])])
        tracked = self.step_stats_tracked[look][:, None, None]
        return torch.where(tracked, self.running_step_stats[look], overall)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # runs saved before the per-step statistics existed: keep them untracked (the batch norms' own are used)
        if self.running_step_stats is not None and prefix + "running_step_stats" not in state_dict:
            state_dict = {**state_dict, prefix + "running_step_stats": self.running_step_stats,
                          prefix + "step_stats_tracked": torch.zeros_like(self.step_stats_tracked)}
        super()._load_from_state_dict(state_dict, prefix, *args)

    def inference_cnn(self, step: int | None = None, look: int = 0) -> nn.Module:
        """The window CNN for acting: raw windows (canvas[, target], ``(N, 3 or 6, P, P)`` in [0, 1]) in, the
        same features as ``self.cnn(self._planes(...))`` in evaluation mode (to float rounding).

        Its batch norms are folded into the convolutions (:func:`fold_batch_norms`), and so are the input
        planes: the difference plane and the [-1, 1] scaling are linear in the raw windows, so the first
        convolution reads the raw windows with combined weights (a third less work on 9 planes, and no
        planes to form). The constant part of the scaling, and the coordinate planes (``window_coords``), become a
        bias per output pixel, exact at the borders, where zero padding cuts it. With batch norms, the statistics
        folded in are those of episode step ``step`` (and ``look``; :meth:`_run_cnn`), which must then be given.
        Built once per step and reused until a weight or statistic changes.
        """
        if step is None and self.running_step_stats is not None:
            raise ValueError("this actor's batch norms keep statistics per episode step: pass step")
        # a weight update, a statistic update, a load or a move changes a tensor's version or its storage
        per_step = self.running_step_stats is not None
        step = step if per_step else None  # (group norms: nothing per step)
        stats = [self.running_step_stats, self.step_stats_tracked] if per_step else []
        key = tuple((t.data_ptr(), t._version) for t in (*self.cnn.parameters(), *self.cnn.buffers(), *stats))
        cache = self.__dict__.setdefault("_inference_cache", {})
        cached = cache.get((step, look))
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.no_grad():
            folded = fold_batch_norms(self.cnn, self.step_statistics(look)[step] if per_step else None)
        first = folded[0]
        coords = 0 if self.coords is None else self.coords.shape[1]
        planes = first.in_channels - coords
        raw = 3 if planes == 3 else 6
        with torch.no_grad():
            # planes = mix @ raw - 1 per plane: (2c - 1) or (2c - 1, 2t - 1, 2 (t - c) - 1)
            mix = 2.0 * torch.eye(raw, device=first.weight.device)
            if planes == 9:
                eye = 2.0 * torch.eye(3, device=first.weight.device)
                mix = torch.cat([mix, torch.cat([-eye, eye], dim=1)])
            conv = nn.Conv2d(raw, first.out_channels, first.kernel_size, first.stride, first.padding, bias=False)
            conv = conv.to(first.weight.device, first.weight.dtype)
            conv.weight.copy_(torch.einsum("oikl,ir->orkl", first.weight[:, :planes], mix.to(first.weight.dtype)))
            constant = torch.full((1, planes, self.patch, self.patch), -1.0, device=first.weight.device,
                                  dtype=first.weight.dtype)
            if coords:
                constant = torch.cat([constant, self.coords.to(constant)], dim=1)
            bias = nn.functional.conv2d(constant, first.weight, first.bias, first.stride, first.padding)
        module = _PixelBiasedCNN(conv, bias, folded[1:])
        cache[(step, look)] = (key, module)
        return module

    def _strokes(self, raw: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """The head's raw output ``(B, S, 13)`` -> strokes ``(B, S, 13)`` in [0, 1] around their anchors."""
        level = anchor[..., 2].long()
        cell = self.cell[level].unsqueeze(-1)
        start = anchor[..., :2] + torch.tanh(raw[..., 0:2]) * cell
        bend = start.repeat(1, 1, 2) + torch.tanh(raw[..., 2:6]) * (1.5 * cell)
        points = torch.cat([start, bend], dim=-1).clamp(0.0, 1.0)
        radii = torch.sigmoid(raw[..., 6:8]) * self.max_radius[level].unsqueeze(-1)
        return torch.cat([points, radii, torch.sigmoid(raw[..., 8:13])], dim=-1)

    @staticmethod
    def _planes(canvas: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Canvas, target and their difference (when there is a target), scaled to [-1, 1]: ``(N, 9 or 3, h, w)``."""
        planes = [canvas] if target is None else [canvas, target, target - canvas]
        return torch.cat(planes, dim=1) * 2.0 - 1.0


class _PixelBiasedCNN(nn.Module):
    """A convolution, a bias per output channel and pixel ``(1, C, h, w)``, then the rest of a CNN."""

    def __init__(self, first: nn.Conv2d, bias: torch.Tensor, rest: nn.Sequential) -> None:
        super().__init__()
        self.first, self.rest = first, rest
        self.register_buffer("bias", bias.contiguous(memory_format=torch.channels_last), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.first(x).add_(self.bias.to(x.dtype)))


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

    def forward(self, canvas: torch.Tensor, target: torch.Tensor | None, progress: torch.Tensor,
                code: torch.Tensor | None = None, step: int | None = None) -> torch.Tensor:
        """Strokes ``(B, S, 13)`` in [0, 1]; ``step`` is accepted as the patch actor's is (this actor needs no hint)."""
        if code is not None and code.shape[1]:
            raise ValueError("the free actor takes no condition or noise; use the patch actor (--actor patch)")
        out = self.head(self.trunk(state_planes(canvas, target, progress.to(canvas.dtype))))
        return torch.sigmoid(out.float()).view(canvas.shape[0], self.strokes_per_step, STROKE_DIM)


def fold_batch_norms(layers: nn.Sequential, statistics: torch.Tensor | None = None) -> nn.Sequential:
    """An inference copy of :func:`conv_block` layers with each batch norm folded into its convolution.

    In evaluation mode a batch norm is an affine map per channel, so it folds into the convolution's
    weights and bias (the same outputs up to rounding, one pass less over every activation).
    :meth:`PatchStrokeActor.inference_cnn` builds on it and caches the result until a weight changes.

    :param statistics: ``(2, channels of every norm)``: the mean and variance to fold in instead of each
        batch norm's running ones (the norms' channels one after another).
    """
    folded: list[nn.Module] = []
    first = 0
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d) and folded and isinstance(folded[-1], nn.Conv2d):
            width = layer.num_features
            if statistics is None:
                folded[-1] = fuse_conv_bn_eval(folded[-1], layer)
            else:
                conv = copy.deepcopy(folded[-1])
                conv.weight, conv.bias = fuse_conv_bn_weights(
                    conv.weight, conv.bias, statistics[0, first:first + width], statistics[1, first:first + width],
                    layer.eps, layer.weight, layer.bias)
                folded[-1] = conv
            first += width
        else:
            folded.append(layer)
    return nn.Sequential(*folded)


class StateCritic(nn.Module):
    """(canvas, target, progress[, code]) -> the value ``(B,)`` of the rest of the episode."""

    def __init__(self, has_target: bool, size: int, width: int, hidden: int, code_dim: int = 0) -> None:
        super().__init__()
        self.trunk = CanvasTrunk((10 if has_target else 4) + code_dim, size, width, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, canvas: torch.Tensor, target: torch.Tensor | None, progress: torch.Tensor,
                code: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.trunk(state_planes(canvas, target, progress, code))).float().squeeze(-1)


def observation_state(obs: Observation, has_target: bool, num_classes: int = 0, code_dim: int = 0
                      ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Env observations -> ``(canvas, target or None, progress, code or None)`` as the actor takes them.

    :param obs: ``(B, H, W, C)`` uint8 image observations (canvas, [target,] [condition, noise,] progress
        plane) or the dict form (see :func:`agents.networks.obs_planes`).
    :param num_classes: K of the observations' condition (0: none).
    :param code_dim: K plus the noise's values: the code ``(B, code_dim)`` in [0, 1] (None when 0).
    """
    planes = obs_planes(obs, num_classes).permute(0, 3, 1, 2).float().div_(255.0)  # (B, C, H, W)
    canvas = planes[:, 0:3]
    target = planes[:, 3:6] if has_target else None
    first = 6 if has_target else 3
    code = planes[:, first:first + code_dim, 0, 0] if code_dim else None
    return canvas, target, planes[:, -1, 0, 0], code


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
        self.num_classes, self.code_dim = core.num_classes, core.code_dim
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
        if not 0.0 <= args.prior_weight < float("inf"):
            raise ValueError(f"prior_weight must be a number >= 0, got {args.prior_weight}")
        self._prior: Any = None  # the --prior reward, loaded when training starts (a run paints without it)
        if args.actor == "free" and self.code_dim:
            raise ValueError("--actor free takes no --condition or --noise; use the patch actor")
        if args.actor == "free" and args.reach != 1.0:
            raise ValueError("--reach sets how far the patch actor's strokes go; the free actor places them anywhere")
        if args.actor == "free":
            actor: nn.Module = FreeStrokeActor(self.has_target, core.size, self.strokes_per_step, args.width,
                                               args.hidden)
        else:
            actor = PatchStrokeActor(self.has_target, core.size, self.strokes_per_step, args.width, args.hidden,
                                     max_steps=self.max_steps, anchors=args.anchors, second_look=args.second_look,
                                     fit_colour=self.fit_colour, code_dim=self.code_dim, reach=args.reach,
                                     window_coords=args.window_coords)
        critic = StateCritic(self.has_target, core.size, args.width, args.hidden, self.code_dim)
        self.agent = nn.ModuleDict({"actor": actor, "critic": critic}).to(self.device)
        self.actor, self.critic = self.agent["actor"], self.agent["critic"]
        self.critic_target = StateCritic(self.has_target, core.size, args.width, args.hidden,
                                         self.code_dim).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self._optimisers()

        self.steps_per_iteration = env.num_envs * self.max_steps  # one episode per env
        self.tracker = EpisodeTracker(env)
        self.metric_keys = [*self.tracker.metric_keys, *LOSS_KEYS, "learning_rate"]
        if args.bc_data is not None:
            self.metric_keys.append("bc_loss")
        if args.prior is not None:
            self.metric_keys.append("prior_score")
        self.noise = torch.Generator(device=self.device)
        self.obs: Observation | None = None

    def _optimisers(self) -> None:
        """Fresh Adam optimisers over the actor's and the critic's parameters that require gradients."""
        self.actor_optimizer = adam(self.actor, self.args.learning_rate, self.device)
        self.critic_optimizer = adam(self.critic, self.args.critic_learning_rate, self.device)
        self.actor_gradients = FlatGradients(self.actor.parameters())

    def start(self, obs: Observation) -> None:
        """Continue from the env's current observations (the trainer has reset the env)."""
        self.obs = obs

    @property
    def prior(self) -> Any:
        """The ``strokeprior`` reward of ``--prior``, whose
        :meth:`~rewards.strokeprior.StrokePriorReward.differentiable_score` regularises the actor, or None.
        Loaded on first use, so that a run's policy loads and paints without the prior's checkpoint."""
        if self._prior is None and self.args.prior is not None:
            from paintgym.rewards.strokeprior import StrokePriorReward

            prior = StrokePriorReward(checkpoint=self.args.prior, device=self.device)
            if prior.model.num_classes:
                raise ValueError(f"--prior takes an unconditional stroke prior; {self.args.prior} is class-conditioned")
            self._prior = prior
        return self._prior

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
        prior = self.prior
        core = self.env.core
        blank = core.canvas.clone()  # every episode starts on the blank canvas (iterations end on episode ends)
        code_all = core.code()  # (B, E) the episodes' condition and noise
        group_states, group_strokes = [], []
        policy_loss, grad_norm = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        prior_total = torch.zeros((), device=self.device)
        for envs in torch.arange(self.env.num_envs, device=self.device).tensor_split(self.groups):
            canvas = blank[envs]
            target = None if core.target is None else core.target[envs]
            code = code_all[envs] if self.code_dim else None
            condition = None if core.condition is None else core.condition[envs]
            states, painted = [], []
            prior_before = torch.zeros(canvas.shape[0], device=self.device)  # the prior's score of no strokes
            for start in range(0, self.max_steps, self.horizon):
                stop = min(self.max_steps, start + self.horizon)
                canvas = canvas.detach()  # the gradient is cut between chunks; the critic values what follows
                attached: list[torch.Tensor] = []
                gain, canvas, discount = self._unroll(canvas, target, start, stop, states, painted, code, condition,
                                                      attached)
                if stop < self.max_steps:  # bootstrap: the critic's value of the rest, differentiable in the canvas
                    with autocast(self.device, self.amp):
                        gain = gain + discount * self.critic(canvas, target, self._progress(stop, canvas), code)
                loss = -gain.mean()
                if prior is not None:  # the change of the prior's score of the episode's strokes so far
                    episode = torch.cat([*painted[:start], *attached], dim=1)
                    score = prior.differentiable_score(episode, ended=stop == self.max_steps)
                    loss = loss - args.prior_weight * (score - prior_before).mean()
                    prior_before = score.detach()
                self.actor_gradients.zero_grad()
                loss.backward()
                collective.average_gradients_(self.actor_gradients.flat)  # data-parallel: one all_reduce
                grad_norm += self.actor_gradients.clip_grad_norm_(args.max_grad_norm)
                self.actor_optimizer.step()
                policy_loss += loss.detach()
            if prior is not None:
                prior_total += prior_before.sum()
            group_states.append(torch.stack(states))
            group_strokes.append(torch.stack(painted))
        # the env paints every group's strokes, step by step (logged returns, terms, learning rewards)
        strokes = torch.cat(group_strokes, dim=1)  # (T, B, S, 13)
        env_rewards = [self._env_step(strokes[step]) for step in range(self.max_steps)]
        updates = self.groups * -(-self.max_steps // self.horizon)
        value_loss = None
        if self.uses_critic:
            value_loss = self._update_critic(torch.cat(group_states, dim=1), env_rewards, core.target,
                                             code_all if self.code_dim else None)
        values = torch.stack([policy_loss / updates, grad_norm / updates,
                              prior_total / self.env.num_envs]).tolist()  # one transfer
        metrics = {"policy_loss": values[0], "actor_grad_norm": values[1],
                   "learning_rate": self.actor_optimizer.param_groups[0]["lr"]}
        if value_loss is not None:  # no critic, no column value (a NaN would read as a diverged loss)
            metrics["value_loss"] = float(value_loss)
        if bc_loss is not None:
            metrics["bc_loss"] = bc_loss
        if prior is not None:
            metrics["prior_score"] = values[2]
        return {**self.tracker.summary(), **metrics}

    def _progress(self, step: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((like.shape[0],), step / self.max_steps, device=like.device)

    def _unroll(self, canvas: torch.Tensor, target: torch.Tensor | None, start: int, stop: int,
                states: list[torch.Tensor], painted: list[torch.Tensor], code: torch.Tensor | None = None,
                condition: torch.Tensor | None = None, attached: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Paint steps ``start .. stop - 1`` through the renderer; append each step's canvas before it to
        ``states`` and its strokes as painted (detached) to ``painted`` and, with their graph, to ``attached``
        (when given). ``code`` ``(B, E)``: the episodes' condition and noise as the actor sees them;
        ``condition`` ``(B,)`` int64: their classes, for the reward.

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
                strokes = self.actor(seen, target, self._progress(step, seen), code, step=step)
            if self.args.exploration_noise > 0:
                noise = torch.randn(strokes.shape, generator=self.noise, device=strokes.device)
                strokes = (strokes + self.args.exploration_noise * noise).clamp(0.0, 1.0)
            step_gain, canvas, strokes = paint_and_score(reward, canvas, target, strokes, per_stroke,
                                                         final=step == self.max_steps - 1, fit_colour=self.fit_colour,
                                                         condition=condition)
            gain = gain + discount * step_gain
            discount *= self.args.gamma
            painted.append(strokes.detach())
            if attached is not None:
                attached.append(strokes)
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
                       target: torch.Tensor | None, code: torch.Tensor | None = None) -> torch.Tensor:
        """One TD(0) step of the critic on every state of the iteration (``canvases`` ``(T, B, 3, H, W)``,
        the canvas before each step; ``code`` ``(B, E)`` the episodes' condition and noise), then the target
        network's Polyak step. Returns the loss."""
        steps, batch = canvases.shape[:2]
        codes = None if code is None else code.unsqueeze(0).expand(steps, *code.shape).flatten(0, 1)
        progress = (torch.arange(steps + 1, device=self.device, dtype=torch.float32) / self.max_steps)
        progress = progress.view(-1, 1).expand(-1, batch)
        targets = None if target is None else target.unsqueeze(0).expand(steps, *target.shape).flatten(0, 1)
        rewards = torch.stack(env_rewards)  # (T, B)
        with torch.no_grad(), autocast(self.device, self.amp):
            # V(s_{t+1}) from the target network; the episode's last step has nothing after it
            next_values = torch.zeros(steps, batch, device=self.device)
            if steps > 1:
                next_target = None if target is None else targets[batch:]
                next_code = None if codes is None else codes[batch:]
                next_values[:-1] = self.critic_target(canvases[1:].flatten(0, 1), next_target,
                                                      progress[1:steps].flatten(), next_code).view(steps - 1, batch)
            returns = rewards + self.args.gamma * next_values
        with autocast(self.device, self.amp):
            values = self.critic(canvases.flatten(0, 1), targets, progress[:steps].flatten(), codes)
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
        canvas, target, progress, code = observation_state(obs, self.has_target, self.num_classes, self.code_dim)
        # envs stepped together are all at one episode step: saying which lets the actor act with that step's
        # folded network instead of normalising every window by its own step (the same strokes, faster)
        steps = (progress.float() * self.max_steps).round().clamp_(0, self.max_steps - 1)
        step = int(steps[0]) if steps.numel() and bool((steps == steps[0]).all()) else None
        with autocast(self.device, self.amp), self._acting():
            strokes = self.actor(canvas, target, progress, code, step=step).float().contiguous()
        if self.fit_colour:  # the colours the strokes get on the canvas they land on (a scratch copy)
            paint_fitted_(canvas.contiguous(), strokes, target)
        return strokes.flatten(1).mul_(2.0).sub_(1.0)

    @torch.no_grad()
    def paint(self, targets: torch.Tensor | None, count: int | None = None,
              code: torch.Tensor | None = None) -> torch.Tensor:
        """Paint whole episodes without an env (the fast path for evaluation and inference).

        The actor sees float canvases, as in training (the env shows it uint8 observations), and
        the renderer's no-grad kernel paints (:func:`canvas.render.paint_`).

        :param targets: ``(B, 3, H, W)`` float in [0, 1] at the env's canvas size, or None for a
            task without targets (then ``count`` canvases are painted).
        :param code: ``(B, E)`` float in [0, 1], each painting's condition (one-hot) and noise, as
            :meth:`envs.core.CanvasCore.code` gives them; needed when the task has a condition or noise.
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
        if self.code_dim:
            if code is None or tuple(code.shape) != (batch, self.code_dim):
                raise ValueError(f"this agent paints to a condition and/or noise: pass code of shape ({batch}, "
                                 f"{self.code_dim}) (one-hot class, then noise values in [0, 1])")
            code = code.to(self.device, torch.float32)
        else:
            code = None
        canvas = torch.full((batch, 3, core.size, core.size), core.background, device=self.device)
        painted = []
        for step in range(self.max_steps):
            with autocast(self.device, self.amp), self._acting():
                strokes = self.actor(canvas, targets, self._progress(step, canvas), code, step=step)
                strokes = strokes.float().contiguous()
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

    def networks(self) -> dict[str, nn.Module]:
        return {"agent": self.agent}

    def freeze_parts(self) -> dict[str, list[str]]:
        """``encoder``: the actor's window CNN and the critic's convolutions; ``trunk``: everything but the
        actor's last (stroke) layer and the critic's value layer."""
        return {"encoder": ["agent.actor.cnn.", "agent.critic.trunk.convs."],
                "trunk": ["agent.actor.cnn.", "agent.actor.glance.", "agent.actor.head.0.", "agent.critic.trunk."]}

    def restart_training(self) -> None:
        self.critic_target.load_state_dict(self.critic.state_dict())  # the target restarts from the critic
        self._optimisers()

    def load_state_dict(self, state: dict[str, Any], policy_only: bool = False) -> None:
        load_policy(self.agent, state["agent"])
        if policy_only:
            self.agent.eval()
            return
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])


def differentiable_potential(reward: Any, canvas: torch.Tensor, target: torch.Tensor | None,
                             final: bool = False, condition: torch.Tensor | None = None) -> torch.Tensor:
    """The weighted score of a composite reward's differentiable terms, differentiable in ``canvas``.

    Dense terms count at every stroke (their reward is the change of this potential); terminal
    terms only when ``final`` (the episode's last stroke), so the change there pays their score.

    :param reward: a :class:`rewards.Composite`.
    :param canvas: ``(B, 3, H, W)`` float in [0, 1].
    :param target: ``(B, 3, H, W)`` float in [0, 1], or None.
    :param condition: ``(B,)`` int64, the classes the paintings are asked for (terms with ``class=condition``).
    :return: ``(B,)`` float32.
    """
    total = torch.zeros(canvas.shape[0], device=canvas.device)
    for _key, weight, term in reward.terms:
        if term.differentiable and (term.dense or final):
            total = total + weight * term.rate(canvas, target, condition)
    return total


def paint_and_score(reward: Any, canvas: torch.Tensor, target: torch.Tensor | None, strokes: torch.Tensor,
                    per_stroke: float, final: bool = False, fit_colour: bool = False,
                    condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    :param condition: ``(B,)`` int64, the classes the paintings are asked for (terms with ``class=condition``).
    :return: ``gain`` ``(B,)``, the canvas after the bundle (both differentiable in ``strokes`` and
        ``canvas``) and the strokes as painted ``(B, S, 13)``.
    """
    potential = differentiable_potential(reward, canvas, target, condition=condition)
    gain = torch.zeros(canvas.shape[0], device=canvas.device)
    discount, count, painted = 1.0, strokes.shape[1], []
    for s in range(count):  # stroke by stroke: each is rewarded for what it adds
        if fit_colour:
            canvas, colour = render_fitted(strokes[:, s:s + 1], canvas, target)
            painted.append(torch.cat([strokes[:, s, :10], colour[:, 0]], dim=-1))
        else:
            canvas = render(strokes[:, s:s + 1], canvas)
            painted.append(strokes[:, s])
        after = differentiable_potential(reward, canvas, target, final=final and s == count - 1, condition=condition)
        gain = gain + discount * (after - potential)
        potential, discount = after, discount * per_stroke
    return gain, canvas, torch.stack(painted, dim=1)
