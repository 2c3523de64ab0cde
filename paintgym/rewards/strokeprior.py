"""``strokeprior``: how human-drawn an agent's strokes look, to a stroke-sequence prior (sketch-rnn).

* ``strokeprior(checkpoint=PATH)`` — at the episode's end, the log-likelihood of the episode's strokes
  under a ``paintgym train-strokes`` model, in nats per pen point, measured from the level of the
  trivial Gaussian baseline stored with it (see below).

The strokes are turned into a pen sequence (:func:`envs.pen.strokes_to_pen`) the way the training
drawings were recorded: the canvas is scaled so that a drawing spanning it (less a 10% margin) is as
large as a typical training drawing; points are sampled along each visible stroke a typical pen step
of the data apart (its median), the pen lifted between strokes (unless one starts where the last
ended); and each line is simplified (Ramer-Douglas-Peucker) with the tolerance the training drawings
look simplified with (the shared datasets were: about 1 unit for the sheep, 4 for Omniglot and Kanji;
see :func:`generative.pen_data.drawing_statistics`), so that a straight stroke is one offset, as in
the data. Only the geometry counts: width, opacity and colour do not.

**What it rewards, and what degenerate painting would win.** A sequence's log-likelihood is a sum over
its points, each term usually negative, so the raw log-likelihood is highest for the shortest
sequence: **painting nothing** (only the end of the drawing is scored) would beat every drawing. So
the score is a per-point average, shifted so that 0 is the trivial baseline's level:

    score = sum_i [log p(point_i | earlier points) - b] / max(points, min_points)

with ``b`` the baseline's expected log-likelihood per point on the training data (offsets from one
Gaussian fitted to them, pen states from their frequencies: :meth:`GaussianBaseline.mean_log_likelihood`).
A held-out human drawing scores, on average, the model's held-out gain over the baseline per point
(2.1 nats for the README's sheep model: its held-out drawings score +1.9 as recorded, +2.2 when
painted as strokes and converted back). An **empty painting scores exactly 0**, and a sequence of
fewer than ``min_points`` points is averaged over ``min_points`` (the missing points count as
baseline-level, 0), so a dot or one short line cannot buy a high average with two lucky points; a
painting the prior finds less likely than the baseline would scores below 0.

What is left to exploit: the average rewards *predictability*, not content. With the README's sheep
model, random strokes score -0.3, one long straight line -0.4, scattered dots -8.5, but a small
circle +3.2 and a small joined scribble +2.4 (held-out sheep: +2.2), and a sheep shrunk to a tenth of
the canvas +2.4: small, curly, regular lines — the sheep's wool — are what it likes best. And, used
alone, the reward can teach an agent that not painting (0) is safer than painting badly. Use it
beside a term that asks for content (``target``, ``classifier``), as a style term.

Terminal by default; ``dense=true`` pays the change of the score (of the sequence so far, the end
counted on the last step) every step. As a reward term it is not differentiable: the canvas does not show
the strokes, and the number of pen points and the simplification change in steps as the strokes move.

**The differentiable score** (:meth:`StrokePriorReward.differentiable_score`; the model-based agent's
``--prior``): the same average, of a pen path that moves with the strokes. Each visible stroke becomes
``points`` (4) pen points at equal arc length (:func:`canvas.pen.pen_points`, the sampling that
:func:`canvas.pen.strokes_to_pen` uses), not simplified, read by the prior with teacher forcing; the
points' places are differentiable in the control points (through the curve and the arc-length
parameters: the gradient matches finite differences), their number is fixed. It is another number
than the reward's. With the README's Omniglot prior, human drawings fitted with strokes score +1.71
(the reward: +1.26), the README's patch agent's paintings -0.51 (-0.94), random strokes -2.63 (-0.96);
over these paintings it correlates with the reward at 0.83, within each set far less (0.45 for the human
drawings, none for the agent's). More points per stroke raise every score (6 points: human +2.61, random
-0.92): short offsets along a curve are predictable. Its degenerate optima are the reward's: nothing
painted scores 0; and, maximised through the renderer beside the target reward, it is exploited: the
model-based agent learns short, wide, grey strokes (at weight 0.1 the same ones whatever the target) that
score above human drawings (+2.7 with weights 0.01 and 0.1; humans +1.71) and copy little (README, sketching).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from paintgym.rewards.base import Reward, StepContext
from paintgym.rewards.registry import register


@register
class StrokePriorReward(Reward):
    """Log-likelihood of the episode's strokes under a sketch-rnn prior, in nats per pen point above the level of
    its Gaussian baseline, ``(B,)`` (module docstring); 0 for an empty painting.

    :param checkpoint: a ``train-strokes`` checkpoint (or run folder).
    :param class_: the class of a class-conditioned model, by index or name (written ``class=K``).
    :param dense: pay the change of the score every step instead of the score at the episode's end.
    :param min_points: sequences of fewer pen points are averaged over this many (the rest count 0).
    :param min_opacity: strokes whose larger opacity is at most this are invisible and left out.
    :param margin: the canvas, less this margin on each side, spans a typical training drawing.
    :param spacing: distance between the points sampled along a stroke, as a fraction of the data's median pen
        step.
    :param simplify: Ramer-Douglas-Peucker tolerance of the pen path, as a multiple of the tolerance the
        training drawings look simplified with (0: every sampled point is kept).
    :param points: pen points per stroke of :meth:`differentiable_score` (at least 2).
    :param device: where the model runs (the env's device).
    """

    name = "strokeprior"
    description = ("sketch-rnn log-likelihood of the strokes as pen offsets, per point, 0 = trivial baseline's "
                   "level (differentiable in the strokes: model-based --prior)")
    dense = False

    def __init__(self, checkpoint: str | None = None, class_: int | str | None = None, dense: bool = False,
                 min_points: int = 16, min_opacity: float = 0.0, margin: float = 0.1, spacing: float = 1.0,
                 simplify: float = 1.0, points: int = 4,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        from paintgym.canvas.pen import Placement  # envs imports rewards: import on use
        from paintgym.generative.sketch_rnn import GaussianBaseline, load_sketch_rnn

        if checkpoint is None:
            raise ValueError("give checkpoint=PATH, a stroke prior trained with paintgym train-strokes")
        if not isinstance(min_points, int) or min_points < 1:
            raise ValueError(f"min_points must be a positive integer, got {min_points!r}")
        if not 0.0 <= min_opacity < 1.0 or not 0.0 <= margin < 0.5 or not 0.0 <= simplify or not spacing > 0:
            raise ValueError("min_opacity must lie in [0, 1), margin in [0, 0.5), spacing be positive and "
                             "simplify at least 0")
        self.device = torch.device(device)
        self.checkpoint, self.dense, self.min_points = checkpoint, bool(dense), min_points
        self.min_opacity, self.margin = float(min_opacity), float(margin)
        self.spacing_factor, self.simplify = float(spacing), float(simplify)
        if not isinstance(points, int) or isinstance(points, bool) or points < 2:
            raise ValueError(f"points must be an integer of at least 2, got {points!r}")
        self.points = points
        self.model = load_sketch_rnn(checkpoint, self.device)
        self.model.requires_grad_(False)
        if self.model.baseline is None:
            raise ValueError(f"{checkpoint} has no Gaussian baseline stored; retrain it with paintgym train-strokes")
        self.baseline: GaussianBaseline = self.model.baseline
        self.level = self.baseline.mean_log_likelihood()  # b: 0 of the score, nats per point
        self.label = class_
        self.index = self._class_index(class_)
        self.placement = Placement((1.0 - 2.0 * margin) / self.model.extent)
        self.spacing = self.model.step_length * self.placement.scale * self.spacing_factor  # canvas units
        self.epsilon = self.model.simplify * self.placement.scale * self.simplify
        self._episodes: list[list[np.ndarray]] = []  # per env: the (S, 13) strokes of each step so far
        self._last = torch.zeros(0)  # per env: the score paid so far (dense)

    def _class_index(self, label: int | str | None) -> int | None:
        model = self.model
        if not model.num_classes:
            if label is not None:
                raise ValueError("class= is for class-conditioned stroke priors; this one is unconditional")
            return None
        if label is None:
            raise ValueError(f"this stroke prior is class-conditioned: give class=K, one of "
                             f"{', '.join(model.names)} (or 0..{model.num_classes - 1})")
        if isinstance(label, str) and label in model.names:
            return model.names.index(label)
        if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < model.num_classes:
            return label
        raise ValueError(f"class {label!r} is not one of the prior's classes: {', '.join(model.names)}")

    # ------------------------------------------------------------ scoring stroke sequences

    def pen_sequence(self, strokes: np.ndarray | torch.Tensor) -> np.ndarray:
        """The pen sequence the prior judges for one painting's strokes ``(K, 13)``: stroke-3 ``(N, 3)``, data units."""
        from paintgym.canvas.pen import strokes_to_pen

        return strokes_to_pen(strokes, spacing=self.spacing, placement=self.placement, min_opacity=self.min_opacity,
                              epsilon=self.epsilon)

    def score_sequences(self, sequences: list[np.ndarray], ended: bool | list[bool] = True) -> torch.Tensor:
        """The score ``(B,)`` float32 of stroke-3 pen sequences (data units), with or without their end.

        ``sum_i [log p(point_i | earlier) - b] / max(points, min_points)`` over every point (and the end,
        when ``ended``), ``b`` the baseline's mean log-likelihood per point; 0 for an empty sequence.
        """
        from paintgym.generative.pen_data import collate

        if not any(len(s) for s in sequences):
            return torch.zeros(len(sequences), device=self.device)
        seq5, lengths = collate(sequences)
        with torch.no_grad():
            return self.score_pen5(seq5, lengths, ended)

    def score_pen5(self, seq5: torch.Tensor, lengths: torch.Tensor, ended: bool | list[bool] = True) -> torch.Tensor:
        """The score ``(B,)`` float32 of stroke-5 pen sequences ``(B, T, 5)`` (raw offsets, data units; ``T`` more
        than the longest) of ``lengths`` ``(B,)`` points, differentiable in the offsets: the prior reads them
        with teacher forcing. 0 for an empty sequence."""
        batch = seq5.shape[0]
        end = torch.as_tensor([ended] * batch if isinstance(ended, bool) else list(ended), device=self.device)
        lengths = lengths.to(self.device)
        labels = None if self.index is None else torch.full((batch,), self.index, dtype=torch.int64,
                                                               device=self.device)
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN's RNN backward refuses a model in eval mode
            gain = self.model.point_log_likelihood(seq5, labels) - self.level
        t = torch.arange(seq5.shape[1], device=self.device)[None]
        counted = (t < lengths[:, None]) | ((t == lengths[:, None]) & end[:, None])
        points = counted.sum(1).clamp_min(self.min_points)
        score = (gain * counted).sum(1) / points
        return torch.where(lengths > 0, score, torch.zeros_like(score))

    def differentiable_score(self, strokes: torch.Tensor, ended: bool = True) -> torch.Tensor:
        """The score ``(B,)`` of paintings' strokes ``(B, K, 13)``, differentiable in their control points.

        As :meth:`score_strokes`, but each visible stroke is ``points`` pen points at equal arc length
        (:func:`canvas.pen.pen_points`: their places differentiable, their number fixed) and the path is not
        simplified, so that every point moves with the strokes (see the module docstring).
        """
        from paintgym.canvas.pen import pen_points

        if strokes.dim() != 3:
            raise ValueError(f"strokes must have shape (B, K, 13), got {tuple(strokes.shape)}")
        xy, lifted, _, lengths = pen_points(strokes.to(self.device, torch.float32), self.points,
                                            min_opacity=self.min_opacity)
        batch, n = lifted.shape
        data = xy / self.placement.scale  # data units (the placement's offset cancels in the offsets)
        offsets = torch.cat([torch.zeros_like(data[:, :1]), data.diff(dim=1)], dim=1)  # the first point: (0, 0)
        valid = (torch.arange(n, device=self.device)[None] < lengths[:, None])[..., None]
        pen = torch.stack([~lifted, lifted, torch.zeros_like(lifted)], dim=-1).float()
        end = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0], device=self.device)
        rows = torch.where(valid, torch.cat([offsets * valid, pen], dim=-1), end)
        seq5 = torch.cat([rows, end.expand(batch, 1, 5)], dim=1)
        return self.score_pen5(seq5, lengths, ended)

    def score_strokes(self, strokes: list[np.ndarray | torch.Tensor] | torch.Tensor,
                      ended: bool = True) -> torch.Tensor:
        """The score ``(B,)`` of paintings given as strokes: ``(B, K, 13)`` or a list of ``(K_b, 13)``."""
        return self.score_sequences([self.pen_sequence(s) for s in strokes], ended)

    # ------------------------------------------------------------ the reward interface

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """0 for every painting ``(B,)``: the strokes behind a canvas are not visible in it (see :meth:`step`)."""
        return torch.zeros(canvas.shape[0], device=canvas.device)

    def reset(self, canvas: torch.Tensor, target: torch.Tensor | None, mask: torch.Tensor,
              condition: torch.Tensor | None = None) -> None:
        """Forget the strokes of the episodes that start where ``mask`` ``(B,)`` is True."""
        batch = canvas.shape[0]
        if len(self._episodes) != batch:
            self._episodes = [[] for _ in range(batch)]
            self._last = torch.zeros(batch)
        for i in torch.as_tensor(mask).cpu().nonzero().flatten().tolist():
            self._episodes[i] = []
            self._last[i] = 0.0

    def step(self, ctx: StepContext) -> torch.Tensor:
        """Reward ``(B,)`` float32 of one step: the score at the end (terminal), or its change (dense)."""
        batch = ctx.strokes.shape[0]
        if len(self._episodes) != batch:
            raise RuntimeError(f"reward {self.name!r}: reset() must be called before step()")
        active = torch.ones(batch, dtype=torch.bool) if ctx.active is None else ctx.active.cpu()
        done = ctx.done.cpu() & active
        strokes = ctx.strokes.detach().float().cpu().numpy()
        for i in active.nonzero().flatten().tolist():
            self._episodes[i].append(strokes[i])
        reward = torch.zeros(batch)
        rows = active.nonzero().flatten().tolist() if self.dense else done.nonzero().flatten().tolist()
        if rows:
            sequences = [self.pen_sequence(np.concatenate(self._episodes[i])) for i in rows]
            scores = self.score_sequences(sequences, [bool(done[i]) for i in rows]).cpu()
            if self.dense:
                reward[rows] = scores - self._last[rows]
                self._last[rows] = scores
            else:
                reward[rows] = scores
        return reward.to(ctx.strokes.device)

    def to(self, device: torch.device | str) -> StrokePriorReward:
        super().to(device)
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"checkpoint": self.checkpoint}
        if self.label is not None:
            options["class"] = self.label
        if self.dense:
            options["dense"] = True
        if self.min_points != 16:
            options["min_points"] = self.min_points
        if self.spacing_factor != 1.0:
            options["spacing"] = self.spacing_factor
        if self.simplify != 1.0:
            options["simplify"] = self.simplify
        if self.points != 4:
            options["points"] = self.points
        return options
