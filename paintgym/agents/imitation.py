"""Behaviour cloning of a stroke actor on human drawings: a policy initialisation for sketching.

An agent that learns to copy line drawings from a reconstruction reward alone finds a poor local
optimum: a few grey blobs that lower the pixel error of a thin drawing a little, at every stroke
(paintgym's model-based agent reached 11.5 dB on sheep so). Human drawings show what a good stroke
sequence looks like. :func:`clone` supervises an actor to paint them: each demonstration is a
drawing fitted with paintgym strokes in the order the person drew them
(:func:`generative.pen_data.stroke_demonstrations`); its rendering is the target, at step ``t``
the canvas holds the person's first ``t * S`` strokes (teacher forcing, as sketch-rnn is trained),
and the actor is taught to paint one of the strokes still to draw. The training afterwards (the
usual target reward) starts from an actor that draws human strokes along the target's lines.

The loss (:func:`imitation_loss`) is the L1 distance of each predicted stroke's geometry (start,
control and end point, the radius at both ends) and opacity to the *nearest* stroke still to draw,
whichever way round it runs (a stroke drawn backwards paints the same line); and of its colour, for
actors that predict colours. Teaching the person's next stroke instead (their order) was tried
first: which stroke comes next is too uncertain to regress, and the actor learnt one average
stroke for every step and drawing (600 steps, Omniglot: 12.6 dB, every painting one short line).
With this loss and 1,500 steps the free actor is still underfit (README: it rescues the free actor from
collapse, but the patch actor without any prior paints better and more human-like strokes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from paintgym.canvas.render import render
from paintgym.generative.pen_data import Demonstrations

BC_BATCH = 64
"""(drawing, step) pairs per behaviour-cloning step."""
AUGMENT_SCALE = (0.75, 1.0)
"""Each drawing of a batch is shrunk by a factor in this range, turned by up to :data:`AUGMENT_TURN` radians
about the canvas centre and shifted anywhere it stays on the canvas."""
AUGMENT_TURN = 0.2


def augment(strokes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random similarity transforms of whole drawings (:data:`AUGMENT_SCALE`, :data:`AUGMENT_TURN`), so that an
    actor cannot learn a few hundred drawings by heart.

    :param strokes: ``(B, K, 13)`` float in [0, 1], one drawing per row.
    :return: ``(B, K, 13)``, the points moved (clipped to the canvas), the other numbers unchanged.
    """
    b = strokes.shape[0]
    uniform = torch.rand(b, 4, generator=generator).to(strokes.device)
    scale = AUGMENT_SCALE[0] + (AUGMENT_SCALE[1] - AUGMENT_SCALE[0]) * uniform[:, 0]
    turn = AUGMENT_TURN * (2.0 * uniform[:, 1] - 1.0)
    cos, sin = torch.cos(turn) * scale, torch.sin(turn) * scale
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
    points = strokes[..., :6].reshape(b, -1, 2) - 0.5
    moved = points @ rotation.transpose(1, 2)
    visible = (strokes[..., 8:10].amax(-1) > 0).repeat_interleave(3, dim=1)  # (B, 3K)
    low = torch.where(visible[..., None], moved, torch.inf).amin(1)  # (B, 2) the drawing's box
    high = torch.where(visible[..., None], moved, -torch.inf).amax(1)
    room_low, room_high = (-0.5 - low).clamp(max=0.0), (0.5 - high).clamp(min=0.0)
    shift = room_low + (room_high - room_low) * uniform[:, 2:4]
    out = strokes.clone()
    out[..., :6] = (moved + 0.5 + shift[:, None]).clamp(0.0, 1.0).reshape(b, -1, 6)
    return out


def imitation_loss(predicted: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                   colour: bool = False) -> torch.Tensor:
    """The mean L1 distance from each predicted stroke to the nearest stroke the person still had to draw.

    The distance of two strokes is summed over their geometry (points, radii) and opacities (and colours
    with ``colour``), whichever way round the demonstrated stroke runs.

    :param predicted: ``(B, S, 13)`` float in [0, 1], the strokes of one step.
    :param teacher: ``(B, K, 13)`` float in [0, 1], the demonstration's strokes.
    :param mask: ``(B, K)`` bool, those not drawn yet (at least one per row).
    :param colour: count the colour (indices 10-12) too.
    :return: a scalar.
    """
    if predicted.dim() != 3 or predicted.shape[-1] != 13 or teacher.shape[::2] != predicted.shape[::2] \
            or mask.shape != teacher.shape[:2]:
        raise ValueError(f"predicted must be (B, S, 13), teacher (B, K, 13) and mask (B, K), got "
                         f"{tuple(predicted.shape)}, {tuple(teacher.shape)} and {tuple(mask.shape)}")
    used = 13 if colour else 10
    backwards = teacher[..., [4, 5, 2, 3, 0, 1, 7, 6, 9, 8, 10, 11, 12]]  # the same line, drawn the other way
    p = predicted[:, :, None, :used]
    distance = torch.minimum((p - teacher[:, None, :, :used]).abs().sum(-1),
                             (p - backwards[:, None, :, :used]).abs().sum(-1))  # (B, S, K)
    distance = distance.masked_fill(~mask[:, None], float("inf"))
    return distance.min(dim=2).values.mean()


def clone(actor: nn.Module, demos: Demonstrations, size: int, max_steps: int, strokes_per_step: int, steps: int,
          learning_rate: float = 1e-3, background: float = 1.0, colour: bool = False,
          generator: torch.Generator | None = None, device: torch.device | str = "cpu",
          average_gradients: Callable[[Any], None] | None = None, max_grad_norm: float = 1.0,
          on_step: Callable[[int, float], None] | None = None, augmented: bool = True) -> list[float]:
    """Teach ``actor`` the demonstrations by ``steps`` Adam steps of teacher forcing (module docstring).

    :param actor: maps ``(canvas (B, 3, H, W), target (B, 3, H, W), progress (B,))`` to strokes ``(B, S, 13)``.
    :param demos: drawings of at most ``max_steps * strokes_per_step`` strokes.
    :param size: canvas side H = W.
    :param max_steps: steps of an episode (progress is ``t / max_steps``).
    :param colour: teach colours too (an actor that predicts them; demonstrations are black).
    :param generator: draws the (drawing, step) pairs (on the CPU).
    :param average_gradients: called with the actor's parameters after each backward pass (data-parallel).
    :param on_step: called with the step (from 1) and its loss.
    :param augmented: move each drawing of a batch by a random similarity transform (:func:`augment`).
    :return: the loss of every step.
    """
    per_episode = max_steps * strokes_per_step
    if int(demos.counts.max()) > per_episode:
        raise ValueError(f"demonstrations of up to {int(demos.counts.max())} strokes cannot be taught in episodes of "
                         f"{per_episode} strokes")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    strokes = demos.strokes[:, :per_episode].to(device)
    if strokes.shape[1] < per_episode:
        strokes = torch.cat([strokes, strokes.new_zeros(len(strokes), per_episode - strokes.shape[1], 13)], 1)
    counts = demos.counts.to(device)
    taught_steps = (demos.counts + strokes_per_step - 1) // strokes_per_step  # steps holding a stroke (N,)
    index = torch.arange(per_episode, device=device)
    optimizer = torch.optim.Adam(actor.parameters(), lr=learning_rate)
    losses = []
    actor.train()
    for step in range(1, steps + 1):
        rows = torch.randint(len(strokes), (BC_BATCH,), generator=generator)
        t = (torch.rand(BC_BATCH, generator=generator) * taught_steps[rows]).long()
        rows, t = rows.to(device), t.to(device)
        teacher = augment(strokes[rows], generator) if augmented else strokes[rows]
        drawn = teacher.clone()
        drawn[..., 8:10] *= (index[None] < (t * strokes_per_step)[:, None]).to(drawn.dtype)[..., None]
        with torch.no_grad():
            canvas = render(drawn, size=size, background=background)
            target = render(teacher, size=size, background=background)
        remaining = (index[None] >= (t * strokes_per_step)[:, None]) & (index[None] < counts[rows][:, None])
        predicted = actor(canvas, target, t.float() / max_steps).float()
        loss = imitation_loss(predicted, teacher, remaining, colour)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if average_gradients is not None:
            average_gradients(actor.parameters())
        nn.utils.clip_grad_norm_(actor.parameters(), max_grad_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    return losses
