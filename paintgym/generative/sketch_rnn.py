"""sketch-rnn's decoder (Ha & Eck 2017): a recurrent density model of pen sequences, and a trivial baseline.

The model reads a drawing as a stroke-5 sequence (:mod:`envs.pen`) and predicts each point from the
ones before it. An LSTM (or GRU) of ``hidden`` units reads the previous point
``S_{i-1} = (dx, dy, p1, p2, p3)`` (``S_0 = (0, 0, 1, 0, 0)``), offsets divided by the model's
``scale`` (the standard deviation of the training offsets, as the paper normalises), and a linear layer
gives the parameters of

* a mixture of ``M`` bivariate Gaussians over the next offset ``(dx, dy)``: weights ``pi``, means
  ``mu``, standard deviations ``sigma = exp(.)`` and correlations ``rho = tanh(.)``;
* a categorical over the next pen state: ``p1`` draw on, ``p2`` lift, ``p3`` end of drawing.

Unconditional by default, as the paper's decoder-only model; with ``num_classes = K > 0`` it is
class-conditioned: a learned class embedding is appended to every input and sets the initial state.

**Likelihood.** The log-likelihood of a drawing of ``n`` points is

    log p(drawing) = sum_{i<n} [log sum_j pi_ij N(dx_i, dy_i | mu_ij, sigma_ij, rho_ij) + log q_i(pen_i)]
                     + log q_n(p3)

(every point's offset and pen state, then the end of the drawing). :meth:`SketchRNN.log_likelihood`
returns it per drawing in nats in the data's units (a density over raw offsets: the normalised
density minus ``2 log scale`` per point), so that models of different scales, and the baseline,
compare directly. :func:`loss` is the paper's reconstruction term ``L_R = L_s + L_p`` in normalised
units, each drawing's sum divided by the batch's padded length ``N_max``; the pen term stops at the
end row instead of running over the padding after it (states after the end are certain and carry no
information).

**Baseline.** :class:`GaussianBaseline`: every offset drawn independently from one bivariate Gaussian
(mean and covariance of the training offsets: fitted by moments), every pen state from the frequencies
of draw / lift / end in the training drawings. Its :meth:`~GaussianBaseline.log_likelihood` is in the
same units, so the held-out gap says what the recurrent model learned beyond "offsets of about this size".

>>> model = SketchRNN(hidden=64, mixtures=5, scale=20.0)
>>> seq5, lengths = model.sample(4, temperature=0.5)      # (4, T, 5) raw offsets, (4,) points each
>>> model.log_likelihood(seq5, lengths).shape
torch.Size([4])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from paintgym.canvas import collective
from paintgym.canvas.pen import stroke5_to_stroke3
from paintgym.generative.models import MODELS, _Model

START = (0.0, 0.0, 1.0, 0.0, 0.0)
"""The input before the first point (stroke-5: the pen at the origin, down)."""
CELLS = ("lstm", "gru")
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_SIGMA = (-7.0, 5.0)  # clamp of log standard deviations (normalised units): no infinite densities
_RHO = 1.0 - 1e-4  # |rho| stays below this


# ---------------------------------------------------------------- the baseline


@dataclass
class GaussianBaseline:
    """Offsets i.i.d. from one bivariate Gaussian, pen states i.i.d. from their frequencies.

    :param mean: ``(2,)`` mean offset (data units).
    :param cov: ``(2, 2)`` covariance of the offsets.
    :param pen: ``(3,)`` probabilities of draw, lift and end (each point has draw or lift; each drawing
        one end).
    """

    mean: list[float]
    cov: list[list[float]]
    pen: list[float]

    @classmethod
    def fit(cls, rows: np.ndarray, drawings: int, dequantised: bool = False) -> GaussianBaseline:
        """Fit by moments to stroke-3 ``rows`` ``(N, 3)`` of ``drawings`` drawings.

        :param dequantised: the model sees integer offsets plus uniform noise in [-0.5, 0.5): add its
            variance, 1/12, to the diagonal (the moments of the noisy offsets).
        """
        xy = np.asarray(rows[:, :2], dtype=np.float64)
        mean = xy.mean(axis=0)
        cov = np.cov(xy, rowvar=False, bias=True) + (np.eye(2) / 12.0 if dequantised else 0.0)
        cov = cov + np.eye(2) * 1e-6 * max(float(np.trace(cov)), 1e-12)
        lifts = float(np.asarray(rows[:, 2]).sum())
        counts = np.array([len(rows) - lifts, lifts, drawings], dtype=np.float64)
        return cls(mean.tolist(), cov.tolist(), (counts / counts.sum()).tolist())

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "cov": [list(r) for r in self.cov], "pen": list(self.pen)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GaussianBaseline:
        return cls([float(v) for v in data["mean"]], [[float(v) for v in r] for r in data["cov"]],
                   [float(v) for v in data["pen"]])

    def point_log_likelihood(self, seq5: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` log-density of each row's offset plus log-probability of its pen state (float32)."""
        mean = torch.tensor(self.mean, dtype=torch.float64, device=seq5.device)
        cov = torch.tensor(self.cov, dtype=torch.float64, device=seq5.device)
        normal = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
        log_pen = torch.tensor(self.pen, dtype=torch.float64, device=seq5.device).clamp_min(1e-12).log()
        state = seq5[..., 2:5].argmax(-1)
        offset = normal.log_prob(seq5[..., :2].double())
        return (offset * (state != 2) + log_pen[state]).float()

    def mean_log_likelihood(self) -> float:
        """The baseline's expected log-likelihood per row (point or end) of its own training data, in nats.

        Fitted by moments, its expected offset log-density over the training offsets is minus the Gaussian's
        entropy, ``-(log 2 pi + 1 + log det(cov) / 2)``, whatever their distribution; the pen term is
        ``sum_k f_k log f_k``. So it is about the baseline's held-out ``-nll_per_point``.
        """
        pen = np.clip(np.asarray(self.pen, dtype=np.float64), 1e-12, 1.0)
        offset = -(math.log(2.0 * math.pi) + 1.0 + 0.5 * math.log(np.linalg.det(np.asarray(self.cov))))
        return float((1.0 - pen[2]) * offset + (pen * np.log(pen)).sum())

    def log_likelihood(self, seq5: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Log-likelihood ``(B,)`` (nats, data units) of drawings ``seq5`` ``(B, T, 5)`` of ``lengths`` points:
        every point's offset and pen state, then the end."""
        terms = self.point_log_likelihood(seq5)
        t = torch.arange(seq5.shape[1], device=seq5.device)
        return (terms * (t[None] <= lengths.to(seq5.device)[:, None])).sum(1)


# ---------------------------------------------------------------- the model


class SketchRNN(_Model):
    """sketch-rnn's decoder: stroke-5 sequences -> a mixture density over the next offset and pen state.

    :param hidden: units of the recurrent cell.
    :param mixtures: Gaussians in the offset mixture (M).
    :param cell: ``lstm`` or ``gru``.
    :param scale: offsets are divided by this (data units; the training offsets' standard deviation).
    :param num_classes: classes to condition on (0: unconditional).
    :param embedding: width of the class embedding (class-conditioned models).
    :param names: class names by index.
    :param extent: median longer side of a training drawing's bounding box (data units): how large a
        drawing is, for placing paintgym strokes in data units (the ``strokeprior`` reward).
    :param step_length: median length of a pen-down offset (data units): the spacing at which strokes
        are sampled into pen points.
    :param simplify: the Ramer-Douglas-Peucker tolerance the training drawings look simplified with (data
        units; :func:`generative.pen_data.drawing_statistics`): pen paths from strokes are simplified so too.
    :param baseline: :meth:`GaussianBaseline.to_dict` of the training data, or None.
    """

    kind = "sketch-rnn"

    def __init__(self, hidden: int = 256, mixtures: int = 20, cell: str = "lstm", scale: float = 1.0,
                 num_classes: int = 0, embedding: int = 16, names: list[str] | None = None, extent: float = 1.0,
                 step_length: float = 1.0, simplify: float = 0.0, baseline: dict[str, Any] | None = None) -> None:
        super().__init__()
        for name, value in (("hidden", hidden), ("mixtures", mixtures), ("embedding", embedding)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative integer (0: unconditional), got {num_classes!r}")
        for name, value in (("scale", scale), ("extent", extent), ("step_length", step_length)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not (isinstance(simplify, (int, float)) and math.isfinite(simplify) and simplify >= 0):
            raise ValueError(f"simplify must be a number >= 0, got {simplify!r}")
        names = [str(i) for i in range(num_classes)] if names is None else [str(n) for n in names]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        self.hidden, self.mixtures, self.cell, self.scale = hidden, mixtures, cell, float(scale)
        self.num_classes, self.embedding_dim, self.names = num_classes, embedding, names
        self.extent, self.step_length, self.simplify = float(extent), float(step_length), float(simplify)
        self.baseline = None if baseline is None else GaussianBaseline.from_dict(baseline)
        extra = embedding if num_classes else 0
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(5 + extra, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 6 * mixtures + 3)
        if num_classes:
            self.embed = nn.Embedding(num_classes, embedding)
            self.init = nn.Linear(embedding, hidden * (2 if cell == "lstm" else 1))

    def config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "mixtures": self.mixtures, "cell": self.cell, "scale": self.scale,
                "num_classes": self.num_classes, "embedding": self.embedding_dim, "names": list(self.names),
                "extent": self.extent, "step_length": self.step_length, "simplify": self.simplify,
                "baseline": None if self.baseline is None else self.baseline.to_dict()}

    # ------------------------------------------------------------ the network

    def _labels(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if not self.num_classes:
            if labels is not None:
                raise ValueError("this model is not class-conditioned: it takes no labels")
            return None
        if labels is None:
            raise ValueError(f"this model is class-conditioned ({self.num_classes} classes): pass labels, "
                             "a (B,) integer tensor")
        labels = torch.as_tensor(labels, device=self.device)
        if labels.shape != (batch,) or labels.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"labels must be a ({batch},) integer tensor, got {tuple(labels.shape)} {labels.dtype}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        return labels.long()

    def initial_state(self, batch: int, labels: torch.Tensor | None = None) -> Any:
        """The recurrent state before the first point: zeros, or a function of the class embedding."""
        labels = self._labels(labels, batch)
        if labels is None:
            zeros = torch.zeros(1, batch, self.hidden, device=self.device)
            return (zeros, zeros.clone()) if self.cell == "lstm" else zeros
        state = torch.tanh(self.init(self.embed(labels))).unsqueeze(0)
        return tuple(state.chunk(2, dim=-1)) if self.cell == "lstm" else state

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None,
                state: Any = None) -> tuple[torch.Tensor, Any]:
        """Mixture parameters ``(B, T, 6 M + 3)`` for normalised stroke-5 inputs ``(B, T, 5)``, and the state.

        :param inputs: each row the previous point, offsets divided by :attr:`scale`.
        :param state: the recurrent state to start from (default :meth:`initial_state`).
        """
        batch = inputs.shape[0]
        labels = self._labels(labels, batch)
        if state is None:
            state = self.initial_state(batch, labels)
        x = inputs.to(self.device, torch.float32)
        if labels is not None:
            x = torch.cat([x, self.embed(labels)[:, None].expand(-1, x.shape[1], -1)], dim=-1)
        out, state = self.rnn(x, state)
        return self.head(out), state

    def mixture(self, params: torch.Tensor, temperature: float = 1.0) -> dict[str, torch.Tensor]:
        """Split ``params`` ``(..., 6 M + 3)``: ``log_pi`` ``(..., M)``, ``mu`` and ``sigma`` ``(..., M, 2)``,
        ``rho`` ``(..., M)``, ``log_q`` ``(..., 3)`` (normalised units; ``temperature`` as in the paper:
        logits divided by it, variances multiplied by it)."""
        m = self.mixtures
        shape = params.shape[:-1]
        log_sigma = params[..., 3 * m:5 * m].reshape(*shape, m, 2).clamp(*_LOG_SIGMA)
        return {"log_pi": F.log_softmax(params[..., :m] / temperature, dim=-1),
                "mu": params[..., m:3 * m].reshape(*shape, m, 2),
                "sigma": log_sigma.exp() * math.sqrt(temperature), "log_sigma": log_sigma + 0.5 * math.log(temperature),
                "rho": torch.tanh(params[..., 5 * m:6 * m]) * _RHO,
                "log_q": F.log_softmax(params[..., 6 * m:] / temperature, dim=-1)}

    def _inputs(self, seq5: torch.Tensor) -> torch.Tensor:
        """The inputs ``(B, T, 5)`` that predict ``seq5`` ``(B, T, 5)``: the start row, then ``seq5[:, :-1]``,
        offsets normalised."""
        start = torch.tensor(START, device=seq5.device, dtype=torch.float32).expand(seq5.shape[0], 1, 5)
        inputs = torch.cat([start, seq5[:, :-1].float()], dim=1)
        return torch.cat([inputs[..., :2] / self.scale, inputs[..., 2:]], dim=-1)

    def point_log_likelihood(self, seq5: torch.Tensor, labels: torch.Tensor | None = None,
                             normalised: bool = False) -> torch.Tensor:
        """``(B, T)`` log-density of each row's offset (0 for end rows) plus log-probability of its pen state.

        :param seq5: ``(B, T, 5)`` stroke-5 drawings, raw offsets (data units).
        :param normalised: densities over normalised offsets (the paper's units) instead of raw ones.
        """
        seq5 = seq5.to(self.device, torch.float32)
        params, _ = self(self._inputs(seq5), labels)
        mix = self.mixture(params)
        xy = (seq5[..., :2] / self.scale)[..., None, :]  # (B, T, 1, 2)
        d = (xy - mix["mu"]) / mix["sigma"]
        rho = mix["rho"]
        one_minus = 1.0 - rho * rho
        z = d[..., 0] ** 2 + d[..., 1] ** 2 - 2.0 * rho * d[..., 0] * d[..., 1]
        log_n = -_LOG_2PI - mix["log_sigma"].sum(-1) - 0.5 * torch.log(one_minus) - z / (2.0 * one_minus)
        offset = torch.logsumexp(mix["log_pi"] + log_n, dim=-1)
        if not normalised:
            offset = offset - 2.0 * math.log(self.scale)
        state = seq5[..., 2:5].argmax(-1)
        pen = mix["log_q"].gather(-1, state[..., None]).squeeze(-1)
        return offset * (state != 2) + pen

    def log_likelihood(self, seq5: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor | None = None,
                       normalised: bool = False) -> torch.Tensor:
        """Log-likelihood ``(B,)`` in nats of drawings (the module docstring's formula).

        :param seq5: ``(B, T, 5)`` stroke-5, raw offsets, ``T > max(lengths)`` (row ``lengths[b]`` is the end).
        :param lengths: ``(B,)`` points per drawing (0: an empty drawing, only the end is scored).
        :param labels: ``(B,)`` classes for a class-conditioned model.
        :param normalised: in the paper's units (offsets divided by :attr:`scale`) instead of data units.
        """
        lengths = lengths.to(self.device)
        longest = int(lengths.max()) if lengths.numel() else 0
        if seq5.shape[1] <= longest:
            raise ValueError(f"seq5 has {seq5.shape[1]} rows; it needs the points and an end row ({longest + 1})")
        terms = self.point_log_likelihood(seq5, labels, normalised)
        t = torch.arange(seq5.shape[1], device=self.device)
        return (terms * (t[None] <= lengths[:, None])).sum(1)

    # ------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               max_len: int = 250, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` drawings, point by point.

        :param temperature: ``> 0``; below 1 the model draws its most likely strokes (the paper's tau).
        :param generator: a seeded generator (on any device) for reproducible drawings.
        :param max_len: at most this many points per drawing (a drawing that has not ended is cut there).
        :return: ``seq5`` ``(n, T, 5)`` stroke-5, raw offsets, end rows after each drawing, on the CPU, and
            ``lengths`` ``(n,)`` int64 points per drawing.
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        source = generator.device if generator is not None else torch.device("cpu")

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator, device=source).to(self.device)

        def normal(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=generator, device=source).to(self.device)

        def categorical(log_p: torch.Tensor) -> torch.Tensor:
            cdf = log_p.exp().cumsum(-1)
            return (cdf < uniform(log_p.shape[0], 1) * cdf[:, -1:]).sum(-1).clamp_max(log_p.shape[-1] - 1)

        labels = self._labels(labels, n)
        state = self.initial_state(n, labels)
        x = torch.tensor(START, device=self.device).expand(n, 1, 5).clone()
        rows, ended = [], torch.zeros(n, dtype=torch.bool, device=self.device)
        lengths = torch.full((n,), max_len, dtype=torch.int64, device=self.device)
        for t in range(max_len):
            params, state = self(x, labels, state)
            mix = self.mixture(params[:, 0], temperature)
            j = categorical(mix["log_pi"])
            mu = mix["mu"][torch.arange(n), j]
            sigma = mix["sigma"][torch.arange(n), j]
            rho = mix["rho"][torch.arange(n), j]
            e = normal(n, 2)
            dx = mu[:, 0] + sigma[:, 0] * e[:, 0]
            dy = mu[:, 1] + sigma[:, 1] * (rho * e[:, 0] + torch.sqrt(1.0 - rho * rho) * e[:, 1])
            pen = categorical(mix["log_q"])
            newly = (pen == 2) & ~ended
            lengths = torch.where(newly, torch.full_like(lengths, t), lengths)
            ended = ended | newly
            row = torch.zeros(n, 5, device=self.device)
            row[:, 0], row[:, 1] = dx, dy
            row[torch.arange(n), 2 + pen] = 1.0
            row[ended] = torch.tensor((0.0, 0.0, 0.0, 0.0, 1.0), device=self.device)
            rows.append(row)
            if bool(ended.all()):
                break
            x = row[:, None].clone()
        seq5 = torch.stack(rows, dim=1) if rows else torch.zeros(n, 0, 5, device=self.device)
        if not bool(ended.all()):  # drawings cut at max_len: their end row
            seq5 = torch.cat([seq5, torch.tensor((0.0, 0.0, 0.0, 0.0, 1.0), device=self.device).expand(n, 1, 5)], 1)
        seq5[..., :2] *= self.scale
        return seq5.cpu(), lengths.cpu()


def to_stroke3(seq5: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
    """Drawings of :meth:`SketchRNN.sample` (or :func:`generative.pen_data.collate`) as stroke-3 arrays."""
    return [stroke5_to_stroke3(seq5[i, :int(lengths[i]) + 1]) for i in range(seq5.shape[0])]


# ---------------------------------------------------------------- training


def loss(model: SketchRNN, seq5: torch.Tensor, lengths: torch.Tensor,
         labels: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's reconstruction loss ``L_R`` (normalised units): the negative log-likelihood of each drawing
    (its offsets and pen states, then the end) divided by the padded length ``N_max = T``, averaged over the
    batch. ``seq5`` ``(B, T, 5)`` raw offsets; ``lengths`` ``(B,)``."""
    return -model.log_likelihood(seq5, lengths, labels, normalised=True).mean() / seq5.shape[1]


def train_step(model: SketchRNN, optimizer: torch.optim.Optimizer, seq5: torch.Tensor, lengths: torch.Tensor,
               labels: torch.Tensor | None = None, clip: float = 1.0, total: int | None = None) -> dict[str, float]:
    """One Adam (or other ``optimizer``) step on :func:`loss`, gradients clipped to norm ``clip`` (as the paper).

    Data-parallel (``torchrun``): ``seq5`` is this rank's rows of a global batch of ``total`` drawings (None:
    ``B``, one process), padded to the global batch's length; the loss is weighted by
    :func:`canvas.collective.share_weight` and the gradients are averaged over the ranks in one
    ``all_reduce`` before the clip, so every rank takes the one-process step on the whole batch.

    :return: ``loss`` (``L_R``; averaged over the ranks, the global batch's) and ``grad_norm`` (before clipping).
    """
    model.train()
    value = loss(model, seq5, lengths, labels) * collective.share_weight(len(lengths), total or len(lengths))
    optimizer.zero_grad(set_to_none=True)
    value.backward()
    collective.average_gradients_(model.parameters())
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return {"loss": float(value.detach()), "grad_norm": float(norm)}


@torch.no_grad()
def evaluate(model: SketchRNN, drawings: list[np.ndarray], labels: np.ndarray | None = None,
             integer: bool = False, seed: int = 0, batch_size: int = 256,
             baseline: GaussianBaseline | None = None) -> dict[str, float]:
    """Held-out negative log-likelihood of ``drawings`` (stroke-3 arrays) under ``model`` and the baseline.

    Integer drawings are dequantised with noise from ``seed`` (the same noise for both).

    :return: ``nll`` and ``baseline_nll`` (nats per drawing, data units), ``nll_per_point`` and
        ``baseline_nll_per_point`` (divided by points plus end rows), ``drawings``, ``points``.
    """
    from paintgym.generative.pen_data import collate

    baseline = baseline if baseline is not None else model.baseline
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    order = np.argsort([len(d) for d in drawings], kind="stable")  # similar lengths share a batch: less padding
    total = base_total = 0.0
    points = 0
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        seq5, lengths = collate([drawings[i] for i in index], generator, integer)
        batch_labels = None if labels is None else torch.as_tensor(labels[index], device=model.device)
        total += float(model.log_likelihood(seq5, lengths, batch_labels).double().sum())
        if baseline is not None:
            base_total += float(baseline.log_likelihood(seq5, lengths).double().sum())
        points += int(lengths.sum()) + len(index)
    model.train(was_training)
    count = max(len(drawings), 1)
    result = {"nll": -total / count, "nll_per_point": -total / max(points, 1), "drawings": len(drawings),
              "points": points}
    if baseline is not None:
        result.update(baseline_nll=-base_total / count, baseline_nll_per_point=-base_total / max(points, 1))
    return result


def load_sketch_rnn(path: Any, device: torch.device | str = "cpu") -> SketchRNN:
    """A ``paintgym train-strokes`` checkpoint (or its run folder) as a :class:`SketchRNN` in eval mode.

    :raises CheckpointError: one line, e.g. for a checkpoint of another kind.
    """
    from pathlib import Path

    from paintgym.generative.checkpoint import CHECKPOINT_NAME, CheckpointError, build_model, read_checkpoint

    if not Path(path).expanduser().exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; give the {CHECKPOINT_NAME} of a "
                              "paintgym train-strokes run (or its folder)")
    payload = read_checkpoint(path)
    if payload["kind"] != SketchRNN.kind:
        raise CheckpointError(f"{str(path)!r} holds a {payload['kind']} model, not a stroke-sequence prior; "
                              "give a checkpoint written by paintgym train-strokes")
    return build_model(payload, path).to(device)  # type: ignore[return-value]


MODELS[SketchRNN.kind] = SketchRNN  # checkpoints of kind "sketch-rnn" rebuild this class
