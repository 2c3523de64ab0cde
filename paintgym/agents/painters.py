"""Painters that need no training, and how well a painting matches its target.

A painter turns target images into strokes::

    strokes = painter.paint(targets, num_strokes)
    # targets: (B, 3, H, W) float in [0, 1], square; strokes: (B, N, 13) float in [0, 1]

The strokes (layout in :mod:`canvas.strokes`) are composited in order onto a blank white canvas
(:data:`BACKGROUND`, as in the envs), on the targets' device. Painters are deterministic: the same
seed, targets and batch give the same strokes.

=============  =========================================================================================
``random``     :class:`RandomPainter`: uniform random strokes (what a random policy of the env paints)
``greedy``     :class:`GreedyPainter`: for each stroke, the best of K random shapes, each with the
               colour that fits it best (least squares); never raises the error
``optimise``   :class:`OptimisePainter`: Adam on every number of every stroke at once through the
               differentiable renderer (:func:`canvas.render.render`), started from the greedy painting,
               optionally at half resolution first; the quality ceiling
=============  =========================================================================================

A trained agent paints as :class:`experiments.pretrained.PolicyPainter` (it reads a run directory).
:func:`make_painter` builds one by name. :func:`measure_quality` renders the first ``n`` strokes of
paintings for ``n = 1, 2, 4, ..., N`` and measures L2, PSNR and SSIM to the targets;
:func:`paint_and_measure` paints a set of targets in batches, times the painting and measures it
(``paintgym eval`` and ``bench/quality.py`` are built on it).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from paintgym.canvas.fastpath import HAVE_NUMBA
from paintgym.canvas.render import image_l2, paint_, render, render_prefix_losses, score_strokes
from paintgym.canvas.strokes import STROKE_DIM
from paintgym.rewards.target import psnr, ssim

BACKGROUND = 1.0
"""Grey level of the blank canvas every painter starts from (white, as the envs)."""

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A differentiable score to minimise: ``(canvas, target)``, both ``(B, 3, H, W)`` in [0, 1] -> ``(B,)``."""


class Painter(Protocol):
    """What paints: targets in, strokes out.

    ``incremental`` painters paint stroke by stroke without looking ahead: the first ``n`` strokes of
    an ``N``-stroke painting are their ``n``-stroke painting, so one painting serves every prefix.
    """

    name: str
    incremental: bool

    def paint(self, targets: torch.Tensor, num_strokes: int) -> torch.Tensor:
        """:param targets: ``(B, 3, H, W)`` float in [0, 1], H = W.
        :param num_strokes: N >= 1.
        :return: ``(B, N, 13)`` float32 in [0, 1] on the targets' device."""


def check_request(targets: torch.Tensor, num_strokes: int) -> None:
    """Raise ``ValueError`` (one line, saying what to pass) for targets or a stroke count no painter takes."""
    if isinstance(num_strokes, bool) or not isinstance(num_strokes, int) or num_strokes < 1:
        raise ValueError(f"the number of strokes must be an integer >= 1, got {num_strokes!r}")
    if targets.dim() != 4 or targets.shape[1] != 3 or targets.shape[2] != targets.shape[3]:
        raise ValueError(f"targets must be square images (B, 3, H, H), got shape {tuple(targets.shape)}")
    if targets.shape[0] == 0:
        raise ValueError("there are no targets to paint; give at least one image")
    if targets.shape[-1] < 2:
        raise ValueError(f"targets must be at least 2x2 pixels, got {targets.shape[-1]}x{targets.shape[-1]}")


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch of square images: area averaging to shrink, bicubic to enlarge (batched, any device).

    :param images: ``(B, C, H, H)`` float in [0, 1].
    :return: ``(B, C, size, size)`` float in [0, 1]; ``images`` itself when already at ``size``.
    """
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if images.shape[-1] > size:
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False).clamp_(0.0, 1.0)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` if it is an integer of at least ``low``; else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


# ------------------------------------------------------------------------------------------ random
class RandomPainter:
    """Uniformly random strokes: every one of the 13 numbers uniform in [0, 1], as a random policy of the env.

    :param seed: seed of the strokes.
    """

    name = "random"
    incremental = True

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def paint(self, targets: torch.Tensor, num_strokes: int) -> torch.Tensor:
        """Strokes ``(B, N, 13)`` that ignore the targets (which only give B and the device)."""
        check_request(targets, num_strokes)
        generator = _generator(self.seed, targets.device)
        # drawn stroke-major, so the first n strokes are the same whatever N is
        strokes = torch.rand((num_strokes, targets.shape[0], STROKE_DIM), generator=generator, device=targets.device)
        return strokes.transpose(0, 1).contiguous()


# ------------------------------------------------------------------------------------------ greedy
def candidate_strokes(batch: int, count: int, generator: torch.Generator, device: torch.device | str,
                      local_fraction: float = 0.5, reach: float = 0.25, min_opacity: float = 0.5) -> torch.Tensor:
    """Random stroke shapes to choose from (their colour is left to :func:`canvas.render.score_strokes`).

    Start points are uniform on the canvas; for the first ``local_fraction`` of the candidates the
    control and end points lie within ``reach`` (a fraction of the side) of the start point, for the
    rest they are uniform too (long strokes across the canvas). Radii are uniform, opacities uniform
    in ``[min_opacity, 1]``. (Uniform shapes alone score about 0.3 dB lower at 32 strokes on the
    dev images; fully opaque strokes about 0.5 dB lower.)

    :return: ``(batch, count, 13)`` float32 in [0, 1]; the colour numbers are uniform placeholders.
    """
    strokes = torch.rand((batch, count, STROKE_DIM), generator=generator, device=device)
    local = round(count * local_fraction)
    if local:
        start = strokes[:, :local, 0:2].repeat(1, 1, 2)
        strokes[:, :local, 2:6] = (start + (strokes[:, :local, 2:6] - 0.5) * (2.0 * reach)).clamp_(0.0, 1.0)
    strokes[..., 8:10] = min_opacity + (1.0 - min_opacity) * strokes[..., 8:10]
    return strokes


_MIN_GAIN = 1e-6  # the least drop of the summed squared error, per value, that counts as a greedy stroke helping


class GreedyPainter:
    """Stroke by stroke, the best of ``candidates`` random shapes, each with its least-squares colour.

    For each stroke and image, :func:`candidate_strokes` draws K shapes, :func:`canvas.render.score_strokes`
    gives each its best colour and the change of the squared error, and the candidate that lowers
    the error most is painted. Where no candidate lowers it (by more than float32 rounding:
    ``1e-6`` per pixel and channel), the stroke is made invisible (opacity 0; exports leave it
    out), so the error never rises with more strokes.

    :param candidates: K, shapes tried per stroke.
    :param seed: seed of the candidates.
    :param progress: show a progress bar over the strokes.
    """

    name = "greedy"
    incremental = True

    def __init__(self, candidates: int = 64, seed: int = 0, progress: bool = False) -> None:
        self.candidates = check_int("candidates", candidates, 1)
        self.seed = int(seed)
        self.progress = bool(progress)

    def paint(self, targets: torch.Tensor, num_strokes: int) -> torch.Tensor:
        """Strokes ``(B, N, 13)`` on the targets' device (see the class docstring)."""
        check_request(targets, num_strokes)
        targets = targets.detach().float().contiguous()
        batch, device = targets.shape[0], targets.device
        generator = _generator(self.seed, device)
        canvas = torch.full_like(targets, BACKGROUND)
        strokes = torch.empty((batch, num_strokes, STROKE_DIM), device=device)
        rows = torch.arange(batch, device=device)
        with torch.no_grad():
            for n in _steps(num_strokes, self.progress, "greedy", "stroke"):
                candidates = candidate_strokes(batch, self.candidates, generator, device)
                colours, deltas = score_strokes(canvas, targets, candidates)
                best = deltas.argmin(dim=1)
                stroke = candidates[rows, best]
                stroke[:, 10:13] = colours[rows, best]
                helps = deltas[rows, best] < -_MIN_GAIN * targets[0].numel()  # beyond float32 rounding
                stroke[:, 8:10] *= helps.to(stroke.dtype)[:, None]  # nothing helps: invisible
                strokes[:, n] = stroke
                paint_(canvas, stroke[:, None].contiguous())
        return strokes


def _steps(count: int, progress: bool, desc: str, unit: str) -> Any:
    if not progress:
        return range(count)
    return tqdm(range(count), desc=desc, unit=unit, leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------- optimise
class OptimisePainter:
    """Adam on all the numbers of all the strokes at once, through the differentiable renderer.

    The strokes start as the greedy painting (``init="greedy"``, :class:`GreedyPainter` with
    ``candidates``, painted at ``init_size`` or the targets' size if smaller) or as random strokes
    (``init="random"``). Then ``steps`` Adam steps minimise ``loss(render(strokes), targets)``
    summed over the batch; after each step the strokes are clipped back into [0, 1] (projected
    gradient descent; logits through a sigmoid scored 0.45 dB lower at 64x64 and 32 strokes on the
    dev images, and could not bring back a stroke the greedy start made invisible). The first
    ``coarse_to_fine`` of the steps render at half the targets' side (targets area-averaged), where
    steps are about 2.5x cheaper (the same PSNR as all steps at full size, in 70% of the time); the
    rest at full size. The learning rate follows a cosine from ``lr`` to ``lr / 10``. Each image
    keeps the strokes with its lowest loss at full size seen along the way (the start included), so
    the result is never worse than the start.

    Off the renderer's numba path (on a GPU), batches whose autograd graph would not fit in
    ``memory_mb`` render in groups of strokes under activation checkpointing (one more forward pass
    per step, far less memory); the numba path keeps only its inputs for the backward pass.

    :param steps: Adam steps.
    :param lr: Adam learning rate (stroke numbers live in [0, 1]).
    :param betas: Adam's decay rates of its running mean and mean square of the gradient.
    :param init: ``greedy`` or ``random``.
    :param candidates: K of the greedy start.
    :param coarse_to_fine: fraction of the steps at half resolution, in [0, 1).
    :param init_size: largest side the greedy start is painted at (strokes do not depend on the resolution).
    :param loss: a differentiable ``(canvas, target) -> (B,)`` to minimise; None: mean squared error.
    :param seed: seed of the start.
    :param memory_mb: autograd memory allowed before checkpointing.
    :param prefix_weight: weight of the loss of each prefix painting (the first 1, 2, 4, ... strokes)
        beside the whole painting's (weight 1): above 0 the optimiser keeps every prefix a good
        painting too (an any-time painting, whose prefixes are measured as paintings of fewer strokes).
    :param keep_first: the first strokes kept as they start: painted once onto the canvas the others are refined
        on, so that a step neither paints nor differentiates them. The first strokes of a coarse-to-fine
        painting (an agent's) are the largest, so the dearest to paint, and gain least from refinement: at 64 px
        and 32 strokes, keeping the agent's first stroke gives the same PSNR at 32 strokes with steps 15-20%
        cheaper, keeping its first five 0.1-0.2 dB less with steps 40% cheaper (less at 1 to 8 strokes, whose
        strokes are then mostly kept).
    :param progress: show a progress bar over the steps.

    ``init`` may also be another painter (anything with ``paint(targets, num_strokes)``, e.g. a
    trained agent's :class:`experiments.pretrained.PolicyPainter`): its painting is then refined. That is how a trained
    agent's painting is refined through the renderer (``paintgym eval RUN --refine K``).
    """

    name = "optimise"

    def __init__(self, steps: int = 200, lr: float = 0.03, init: str | Painter = "greedy", candidates: int = 64,
                 coarse_to_fine: float = 0.5, init_size: int = 64, loss: Loss | None = None, seed: int = 0,
                 memory_mb: int = 2048, prefix_weight: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                 keep_first: int = 0, progress: bool = False) -> None:
        self.steps = check_int("steps", steps, 0)
        self.keep_first = check_int("keep_first", keep_first, 0)
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        if not (init in ("greedy", "random") or callable(getattr(init, "paint", None))):
            raise ValueError(f"init must be 'greedy', 'random' or a painter, got {init!r}")
        if not (prefix_weight >= 0 and math.isfinite(prefix_weight)):
            raise ValueError(f"prefix_weight must be a number >= 0, got {prefix_weight!r}")
        self.prefix_weight = float(prefix_weight)
        self.incremental = self.prefix_weight > 0  # its prefixes are optimised as paintings too
        if not 0.0 <= coarse_to_fine < 1.0:
            raise ValueError(f"coarse_to_fine is the fraction of steps at half resolution, in [0, 1); "
                             f"got {coarse_to_fine!r}")
        self.lr, self.init, self.coarse_to_fine = float(lr), init, float(coarse_to_fine)
        self.candidates = check_int("candidates", candidates, 1)
        self.init_size = check_int("init_size", init_size, 8)
        self.loss = loss if loss is not None else image_l2
        self.seed, self.progress = int(seed), bool(progress)
        self.memory_mb = check_int("memory_mb", memory_mb, 16)

    def start(self, targets: torch.Tensor, num_strokes: int) -> torch.Tensor:
        """The strokes the optimisation starts from: ``(B, N, 13)`` in [0, 1]."""
        if not isinstance(self.init, str):
            return self.init.paint(targets, num_strokes).to(targets.device, torch.float32)
        if self.init == "random":
            return RandomPainter(self.seed).paint(targets, num_strokes)
        small = resize_images(targets, min(self.init_size, targets.shape[-1]))
        return GreedyPainter(self.candidates, self.seed).paint(small, num_strokes)

    def schedule(self, size: int) -> list[int]:
        """The canvas side of every step: ``round(steps * coarse_to_fine)`` at ``size // 2``, the rest at ``size``."""
        coarse = round(self.steps * self.coarse_to_fine) if size >= 16 else 0
        return [size // 2] * coarse + [size] * (self.steps - coarse)

    def paint(self, targets: torch.Tensor, num_strokes: int) -> torch.Tensor:
        """Strokes ``(B, N, 13)`` on the targets' device (see the class docstring)."""
        check_request(targets, num_strokes)
        targets = targets.detach().float().contiguous()
        size = targets.shape[-1]
        start = self.start(targets, num_strokes)
        keep = min(self.keep_first, num_strokes)
        if keep == num_strokes:
            return start
        kept, start = start[:, :keep], start[:, keep:]  # from here on, start and params are the refined strokes
        params = start.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([params], lr=self.lr, betas=self.betas)
        schedule = self.schedule(size)
        scaled = {side: resize_images(targets, side) for side in {*schedule, size}}
        with torch.no_grad():  # the canvas the refined strokes are painted on, at every size
            bases = {side: render(kept, torch.full_like(image, BACKGROUND)) if keep else None
                     for side, image in scaled.items()}
            best_loss = self._loss_without_grad(start, targets, bases[size], keep)
        best = start.clone()
        bar = _steps(len(schedule), self.progress, "optimise", "step")
        for step, side in zip(bar, schedule, strict=True):
            for group in optimiser.param_groups:  # cosine from lr to lr / 10
                group["lr"] = self.lr * (0.1 + 0.45 * (1.0 + math.cos(math.pi * step / max(len(schedule), 1))))
            with torch.enable_grad():
                losses = self._objective(params, scaled[side], bases[side], keep)
                optimiser.zero_grad(set_to_none=True)
                losses.sum().backward()
            with torch.no_grad():
                if side == size:  # the loss of the strokes before this step, at full size
                    better = losses.detach() < best_loss
                    best[better] = params[better]
                    best_loss = torch.where(better, losses.detach(), best_loss)
                optimiser.step()
                params.clamp_(0.0, 1.0)
            if self.progress and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{float(best_loss.mean()):.4g}")
        with torch.no_grad():
            final = params.detach()
            better = self._loss_without_grad(final, targets, bases[size], keep) < best_loss
            best[better] = final[better]
        return torch.cat([kept, best], dim=1)

    def _objective(self, strokes: torch.Tensor, targets: torch.Tensor, canvas: torch.Tensor | None = None,
                   kept: int = 0) -> torch.Tensor:
        """The loss of the painting ``(B,)``, plus ``prefix_weight`` times that of each prefix painting; ``strokes``
        follow ``kept`` strokes already painted on ``canvas`` (the prefixes they make alone are constants)."""
        count = kept + strokes.shape[1]
        ends = [n - kept for n in prefix_counts(count) if kept < n < count] if self.prefix_weight > 0 else []
        return render_prefix_losses(strokes, targets, [*ends, count - kept], [self.prefix_weight] * len(ends) + [1.0],
                                    canvas=canvas, loss=None if self.loss is image_l2 else self.loss,
                                    render_group=self._render, background=BACKGROUND)

    def _loss_without_grad(self, strokes: torch.Tensor, targets: torch.Tensor, canvas: torch.Tensor | None = None,
                           kept: int = 0) -> torch.Tensor:
        with torch.no_grad():
            return self._objective(strokes.detach(), targets, canvas, kept)

    def _render(self, strokes: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
        """``render`` of ``strokes`` onto ``canvas``, in checkpointed groups of strokes when memory asks for it."""
        batch, count = strokes.shape[:2]
        size = canvas.shape[-1]
        # the numba path keeps only its inputs for the backward; the torch path about 1 KB per pixel and stroke
        per_stroke = batch * size * size * 1024
        group = max(1, (self.memory_mb << 20) // per_stroke)
        if group >= count or (HAVE_NUMBA and strokes.device.type == "cpu"):
            return render(strokes, canvas)
        for first in range(0, count, group):
            canvas = checkpoint(render, strokes[:, first:first + group], canvas, use_reentrant=False)
        return canvas


# Adam from an agent's painting, with shorter memories than Adam's defaults (0.9, 0.999): a few dozen steps from a
# start a few pixels off want the latest gradients. 20 steps (64 px, 32 strokes, the dev images): 21.68 dB against
# 21.27 with lr 0.02 and the default betas; +0.4 dB at 10 to 30 steps, +0.24 at 50, -0.36 at 2 (betas (0.3, 0.7) to
# (0.5, 0.95) and lr 0.03 to 0.04 within 0.05 dB of each other; lr 0.02 was best with the default betas).
REFINE_LR = 0.03
REFINE_BETAS = (0.5, 0.9)
REFINE_PREFIX_WEIGHT = 0.2  # keeps every prefix a good painting, for 0.4 dB at 32 strokes (20-50 steps, 64 px)


def refined(painter: Painter, steps: int, prefix_weight: float = REFINE_PREFIX_WEIGHT,
            coarse_to_fine: float = 0.0, keep_first: int = 0) -> OptimisePainter:
    """``painter``'s paintings improved by ``steps`` Adam steps through the renderer, every prefix kept a good
    painting too (``prefix_weight``; 0: the whole painting alone, refined once per stroke count asked for), the
    first ``coarse_to_fine`` of the steps at half size (cheaper steps: at 64 px and 32 strokes, 20 steps with
    0.75 of them at 32 px paint about as fast as 10 full-size steps, 0.4 dB better), the first ``keep_first``
    strokes kept as painted (:class:`OptimisePainter`); named ``NAME+refineSTEPS`` (``-coarseF`` and ``-keepN``
    added when ``coarse_to_fine`` and ``keep_first`` are not 0)."""
    optimiser = OptimisePainter(steps=steps, lr=REFINE_LR, init=painter, coarse_to_fine=coarse_to_fine,
                                prefix_weight=prefix_weight, betas=REFINE_BETAS, keep_first=keep_first)
    coarse = f"-coarse{coarse_to_fine:g}" if coarse_to_fine else ""
    keep = f"-keep{keep_first}" if keep_first else ""
    optimiser.name = f"{getattr(painter, 'name', 'painter')}+refine{steps}{coarse}{keep}"
    return optimiser


# ---------------------------------------------------------------------------------------- registry
PAINTERS: dict[str, type] = {"random": RandomPainter, "greedy": GreedyPainter, "optimise": OptimisePainter}
"""Painters by name. A trained agent paints as :class:`experiments.pretrained.PolicyPainter`."""


def painter_options(name: str) -> dict[str, Any]:
    """Keyword options of painter ``name`` and their defaults (None where there is none)."""
    parameters = inspect.signature(_painter_class(name).__init__).parameters
    return {key: (None if p.default is inspect.Parameter.empty else p.default)
            for key, p in parameters.items() if key != "self"}


def _painter_class(name: str) -> type:
    cls = PAINTERS.get(name)
    if cls is None:
        raise ValueError(f"unknown painter {name!r}; available: {', '.join(PAINTERS)}")
    return cls


def make_painter(name: str, **options: Any) -> Painter:
    """A painter by name, e.g. ``make_painter("greedy", candidates=128, seed=1)``.

    :raises ValueError: an unknown name (the message lists what exists) or a bad option value.
    :raises TypeError: an option the painter does not take (the message lists those it takes).
    """
    cls = _painter_class(name)
    known = painter_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        listed = ", ".join(f"{key}={value!r}" for key, value in known.items())
        raise TypeError(f"painter {name!r} has no option {', '.join(unknown)}; its options: {listed}")
    return cls(**options)


# ----------------------------------------------------------------------------------------- quality
def prefix_counts(num_strokes: int, extra: tuple[int, ...] | list[int] = ()) -> list[int]:
    """Stroke counts to measure a painting of N strokes at: ``1, 2, 4, ...`` below N, N, and ``extra`` up to N."""
    check_int("num_strokes", num_strokes, 1)
    counts = {1 << i for i in range(num_strokes.bit_length()) if 1 << i <= num_strokes}
    counts |= {num_strokes} | {n for n in extra if 1 <= n <= num_strokes}
    return sorted(counts)


@dataclass
class Quality:
    """Per-image quality of paintings after the first ``n`` strokes, for each ``n`` in :attr:`counts`.

    :param counts: the stroke counts ``n``, increasing.
    :param l2: ``(B, len(counts))`` mean squared error per image, images in [0, 1] (CPU).
    :param psnr: ``(B, len(counts))`` PSNR in dB.
    :param ssim: ``(B, len(counts))`` SSIM in [-1, 1] (:func:`rewards.target.ssim`).
    :param prior: ``(B, len(counts))`` how human-drawn the strokes look to a stroke prior (the ``strokeprior``
        reward's score, :meth:`rewards.strokeprior.StrokePriorReward.score_strokes`), or None when not measured.
    """

    counts: list[int]
    l2: torch.Tensor
    psnr: torch.Tensor
    ssim: torch.Tensor
    prior: torch.Tensor | None = None

    def means(self) -> dict[int, dict[str, float]]:
        """``{n: {"l2": ..., "psnr": ..., "ssim": ...[, "prior": ...]}}``: means over images (PSNR: mean of
        per-image dB)."""
        keys = ("l2", "psnr", "ssim") if self.prior is None else ("l2", "psnr", "ssim", "prior")
        values = {key: getattr(self, key).mean(dim=0).tolist() for key in keys}
        return {n: {key: values[key][i] for key in values} for i, n in enumerate(self.counts)}


@torch.no_grad()
def measure_quality(strokes: torch.Tensor, targets: torch.Tensor, counts: list[int] | None = None,
                    background: float = BACKGROUND) -> Quality:
    """Render the first ``n`` strokes of each painting on a blank canvas and compare it with its target.

    :param strokes: ``(B, N, 13)`` float in [0, 1].
    :param targets: ``(B, 3, H, H)`` float in [0, 1]; the strokes are rendered at their size.
    :param counts: the ``n`` to measure at (each in ``1..N``); None: :func:`prefix_counts` of N.
    :param background: grey level of the blank canvas.
    """
    check_request(targets, max(1, strokes.shape[1]))
    if strokes.dim() != 3 or strokes.shape[0] != targets.shape[0] or strokes.shape[-1] != STROKE_DIM:
        raise ValueError(f"strokes must be (B, N, {STROKE_DIM}) for {targets.shape[0]} targets, "
                         f"got {tuple(strokes.shape)}")
    total = strokes.shape[1]
    counts = prefix_counts(total) if counts is None else sorted(set(counts))
    if not counts or counts[0] < 1 or counts[-1] > total:
        raise ValueError(f"stroke counts must lie in 1..{total}, got {counts}")
    targets = targets.detach().float().contiguous()
    strokes = strokes.detach().float().to(targets.device)
    canvas = torch.full_like(targets, background)
    l2s, ssims, done = [], [], 0
    for n in counts:  # each prefix adds its new strokes to the canvas of the previous one
        paint_(canvas, strokes[:, done:n].contiguous())
        done = n
        l2s.append(image_l2(canvas, targets).cpu())
        ssims.append(ssim(canvas, targets).cpu())
    l2 = torch.stack(l2s, dim=1)
    return Quality(counts, l2, psnr(l2), torch.stack(ssims, dim=1))


@dataclass
class PaintingRun:
    """Paintings of one painter at one stroke count, timed and measured.

    :param painter: the painter's name.
    :param num_strokes: N, strokes per painting.
    :param strokes: ``(B, N, 13)`` float32 in [0, 1] (CPU).
    :param seconds: time spent painting (not measuring).
    :param quality: at the prefixes ``1, 2, 4, ..., N`` (and any asked for).
    :param incremental: whether the first n strokes are the painter's n-stroke painting (:class:`Painter`).
    """

    painter: str
    num_strokes: int
    strokes: torch.Tensor
    seconds: float
    quality: Quality
    incremental: bool

    @property
    def images_per_second(self) -> float:
        return self.strokes.shape[0] / self.seconds if self.seconds > 0 else math.inf


def paint_and_measure(painter: Painter, targets: torch.Tensor, num_strokes: int, counts: list[int] | None = None,
                      batch_size: int = 32, on_batch: Callable[[int], None] | None = None,
                      warm_up: bool = True) -> PaintingRun:
    """Paint ``targets`` in batches of ``batch_size`` images, time the painting, and measure it.

    :param targets: ``(B, 3, H, H)`` float in [0, 1] on the device to paint on.
    :param num_strokes: N.
    :param counts: stroke counts to measure at besides ``1, 2, 4, ..., N``.
    :param on_batch: called with the number of images of each batch once it is painted (progress bars).
    :param warm_up: first paint one image with one stroke, untimed (compiled kernels load on first use).
    """
    check_request(targets, num_strokes)
    check_int("batch_size", batch_size, 1)
    if warm_up:
        painter.paint(targets[:1], 1)
    strokes, seconds = [], 0.0
    for first in range(0, targets.shape[0], batch_size):
        batch = targets[first:first + batch_size]
        _synchronize(batch.device)
        started = time.perf_counter()
        painted = painter.paint(batch, num_strokes)
        _synchronize(batch.device)
        seconds += time.perf_counter() - started
        strokes.append(painted.detach().float().cpu())
        if on_batch is not None:
            on_batch(batch.shape[0])
    strokes = torch.cat(strokes)
    quality = measure_quality(strokes, targets, prefix_counts(num_strokes, counts or ()))
    return PaintingRun(painter.name, num_strokes, strokes, seconds, quality, bool(painter.incremental))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
