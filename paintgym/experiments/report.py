"""``paintgym report RUN_DIRS... [--out DIR]``: compare finished training runs in one page.

Runs are grouped into **configurations**: runs whose resolved ``config.toml`` is the same except for
:data:`PER_RUN_KEYS` (seed, run directory, progress bar, threads) are seeds of one configuration.
A configuration is named by the options that set it apart from the others (``reward=target:1,
harmony:0.2; agent=reinforce``), or by the name ``paintgym sweep`` gave it (``sweep.json`` in the run
directory). The report folder gets::

    report.md, report.html   the same page: a metrics table, learning curves, contact sheets, the runs
    metrics.csv              one row per configuration: mean and sample std over seeds of every metric
    learning_curves.png      held-out return (and L2 when there are targets) against env steps:
                             the mean over seeds, with a band of one standard deviation
    sheets/NN-NAME.png       final paintings of each configuration, one row per seed (each painting
                             above its held-out target when the task has targets)

The metrics, per run, then mean ± sample standard deviation (``ddof=1``) over the seeds:

* from ``summary.json`` (the trainer's final held-out evaluation): ``eval/l2`` and ``eval/psnr``
  (tasks with targets), ``eval/return`` (the configuration's own reward, so returns of different
  rewards do not compare) and ``eval/term/NAME`` (each term's unweighted episode sum, for the
  terms in that configuration's reward);
* from ``final_episodes.npz`` (the final evaluation's paintings and strokes), the same measures for
  every configuration, whatever its reward, so that they compare on one scale:

  - ``harmony``: :func:`rewards.harmony.harmony_score` of each final painting, averaged (in [0, 1];
    the fraction of the canvas in saturated colour that fits one hue template, so a grey painting scores 0);
  - ``novelty``: the diversity of a run's final paintings: the mean distance over all pairs of
    paintings between their unit-length embeddings by the ``novelty`` reward's fixed random
    convolutional network (:class:`rewards.novelty.RandomConvNet`, seed 0), in [0, 2]; 0 means
    every painting is the same. With targets the paintings follow different targets, so the
    report also gives the targets' own diversity for scale;
  - ``strokes_used``: strokes per painting that visibly changed it: the stroke history is painted
    again stroke by stroke and a stroke counts when it changes at least one pixel of the 8-bit image;
  - ``fd`` (tasks with targets): the Fréchet distance (:func:`generative.frechet.frechet_distance`)
    between the final paintings and their held-out targets in the same features as ``novelty``.

**Features.** By default ``novelty`` and ``fd`` embed paintings with the random network above, which sees
only low-level image statistics. ``--classifier PATH`` (a ``paintgym train-classifier`` run or its
``ckpt.pt``, trained on the targets' domain) uses that classifier's penultimate features instead
(:func:`generative.frechet.classifier_features`): distances that see the digits (or the classes) a painting
shows. A Fréchet distance fitted on ``eval_episodes`` paintings is biased upwards when they are fewer than
the feature dimensions (64 for the classifier, 32 for the random net): compare it between configurations
with the same ``eval_episodes``.

Runs without ``summary.json`` (interrupted, failed or still running) are skipped with a warning and
listed in the report; a folder that is neither a run nor holds one is an error.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import math
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from paintgym.canvas.export import atomic_write_bytes, render_strokes, save_png
from paintgym.canvas.images import to_float, to_uint8
from paintgym.canvas.render import paint_
from paintgym.canvas.video import grid
from paintgym.experiments.artefacts import FINAL_EPISODES, SUMMARY
from paintgym.experiments.config import ConfigError, load_toml, show_value, slug
from paintgym.generative.checkpoint import CheckpointError
from paintgym.generative.classifier import Classifier
from paintgym.generative.frechet import classifier_features, frechet_distance, load_feature_classifier
from paintgym.rewards.harmony import harmony_score
from paintgym.rewards.novelty import EMBED_DIM, RandomConvNet

PER_RUN_KEYS = ("seed", "run_dir", "resume", "progress", "threads")
"""Options that differ between the seeds of one configuration (or do not change its results)."""
SWEEP_LABEL = "sweep.json"
RUN_MARKERS = ("config.toml", "checkpoint.pt", SUMMARY)
"""Files a training run directory holds (any one marks a run, :func:`find_runs`)."""
DERIVED = ("harmony", "novelty", "strokes_used", "fd")
SHEET_EPISODES = 8
"""Paintings per seed on a contact sheet."""


class ReportError(ValueError):
    """Runs cannot be found or read, or the report cannot be written; the message says which and why."""


# ------------------------------------------------------------------------------ measures on paintings
def strokes_used(strokes: np.ndarray | torch.Tensor, size: int, background: float = 1.0) -> torch.Tensor:
    """Strokes per painting that visibly changed it (see the module docstring).

    :param strokes: ``(N, K, 13)`` stroke histories in [0, 1] (layout in :mod:`canvas.strokes`).
    :param size: canvas side the paintings were painted at.
    :param background: the blank canvas's grey level.
    :return: ``(N,)`` int64 counts in [0, K].
    """

    strokes = torch.as_tensor(np.asarray(strokes, dtype=np.float32)) if not isinstance(strokes, torch.Tensor) \
        else strokes.detach().float().cpu()
    if strokes.dim() != 3 or strokes.shape[-1] != 13:
        raise ValueError(f"strokes must have shape (N, K, 13), got {tuple(strokes.shape)}")
    canvas = torch.full((strokes.shape[0], 3, size, size), float(background))
    before = to_uint8(canvas)
    used = torch.zeros(strokes.shape[0], dtype=torch.long)
    for k in range(strokes.shape[1]):  # in painting order: a stroke may be hidden by the ones before it
        paint_(canvas, strokes[:, k:k + 1].contiguous())
        after = to_uint8(canvas)
        used += (after != before).flatten(1).any(dim=1).long()
        before = after
    return used


def embed(paintings: np.ndarray | torch.Tensor, classifier: Classifier | None = None) -> torch.Tensor:
    """Features ``(N, D)`` of ``(N, H, W, 3)`` uint8 paintings: the ``novelty`` reward's random conv net (seed 0,
    ``D = 32``), or ``classifier``'s penultimate layer (module docstring, "Features")."""
    images = to_float(np.asarray(paintings))
    if classifier is not None:
        return classifier_features(classifier, images).cpu()
    with torch.no_grad():
        return RandomConvNet(EMBED_DIM, seed=0)(images)


def diversity(paintings: np.ndarray | torch.Tensor, classifier: Classifier | None = None) -> float:
    """Mean pairwise distance of unit-length embeddings (:func:`embed`) of paintings, in [0, 2].

    :param paintings: ``(N, H, W, 3)`` uint8 images, ``N >= 2`` (NaN for fewer).
    """

    if len(paintings) < 2:
        return math.nan
    embedded = torch.nn.functional.normalize(embed(paintings, classifier), dim=1)
    distances = torch.cdist(embedded, embedded)
    pairs = torch.triu_indices(len(paintings), len(paintings), offset=1)
    return float(distances[pairs[0], pairs[1]].mean())


def episode_metrics(strokes: np.ndarray, paintings: np.ndarray, targets: np.ndarray | None = None,
                    classifier: Classifier | None = None) -> dict[str, float]:
    """``harmony``, ``novelty``, ``strokes_used`` and (with ``targets``) ``fd`` of one run's final episodes
    (module docstring).

    :param strokes: ``(N, K, 13)`` stroke histories.
    :param paintings: ``(N, H, W, 3)`` uint8 final paintings; ``targets`` their ``(N, H', W', 3)`` targets.
    :param classifier: the feature network of ``novelty`` and ``fd`` (None: the random conv net).
    """

    harmony = harmony_score(to_float(np.asarray(paintings)))
    metrics = {"harmony": float(harmony.mean()), "novelty": diversity(paintings, classifier),
               "strokes_used": float(strokes_used(strokes, paintings.shape[1]).float().mean())}
    if targets is not None and len(paintings) >= 2 and len(targets) >= 2:
        metrics["fd"] = frechet_distance(embed(paintings, classifier), embed(targets, classifier))
    return metrics


# ---------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One finished run: its configuration, final metrics and final episodes."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, float]  # summary.json's eval/* and global_step, train_seconds, and DERIVED
    curves: dict[str, dict[int, float]]  # "eval/return", "eval/l2": {env step: value}
    strokes: np.ndarray | None = None  # (N, K, 13)
    paintings: np.ndarray | None = None  # (N, H, W, 3) uint8
    targets: np.ndarray | None = None
    label: str | None = None  # the name paintgym sweep gave its configuration

    @property
    def seed(self) -> Any:
        return self.config.get("seed", "?")

    @property
    def identity(self) -> dict[str, Any]:
        return {key: value for key, value in self.config.items() if key not in PER_RUN_KEYS}


def _is_run(path: Path) -> bool:
    return any((path / name).is_file() for name in RUN_MARKERS)


def find_runs(paths: list[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Run directories in ``paths`` (each a run, or a folder searched for runs at any depth).

    :return: finished runs (with ``summary.json``) and unfinished ones, each sorted, without repeats.
    :raises ReportError: for a path that does not exist, is a file, or holds no run.
    """
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ReportError(f"{path} does not exist; give run directories or a folder of runs (a sweep's --out)")
        if not path.is_dir():
            raise ReportError(f"{path} is a file; give run directories or a folder of runs")
        if _is_run(path):
            found.append(path)
            continue
        inside = sorted({marker.parent for name in RUN_MARKERS for marker in path.rglob(name)})
        if not inside:
            raise ReportError(f"{path} is not a training run (no {', '.join(RUN_MARKERS)}) and holds none")
        found.extend(inside)
    unique = list(dict.fromkeys(path.resolve() for path in found))
    finished = [path for path in unique if (path / SUMMARY).is_file()]
    return finished, [path for path in unique if path not in finished]


def _read_curves(path: Path) -> dict[str, dict[int, float]]:
    curves: dict[str, dict[int, float]] = {"eval/return": {}, "eval/l2": {}}
    if not path.is_file():
        return curves
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for key, points in curves.items():
                if row.get(key) not in (None, ""):
                    value = float(row[key])
                    if math.isfinite(value):
                        points[int(row["step"])] = value  # the final evaluation repeats the last step
    return curves


def load_run(path: str | os.PathLike, classifier: Classifier | None = None) -> Run:
    """Read a finished run directory (``config.toml``, ``summary.json``, ``metrics.csv``, ``final_episodes.npz``).

    :param classifier: the feature network of ``novelty`` and ``fd`` (None: the random conv net).

    :raises ReportError: when the run is not finished or its files cannot be read.
    """

    path = Path(path)
    if not (path / SUMMARY).is_file():
        raise ReportError(f"{path} has no {SUMMARY}: the run is not finished; continue it with "
                          f"paintgym train --resume {path}")
    try:
        config = load_toml(path / "config.toml")
        summary = json.loads((path / SUMMARY).read_text())
    except (ConfigError, OSError, json.JSONDecodeError) as err:
        raise ReportError(f"cannot read run {path}: {err}") from None
    metrics = {key: float(value) for key, value in summary.items() if isinstance(value, (int, float))}
    run = Run(path, config, metrics, _read_curves(path / "metrics.csv"))
    episodes = path / FINAL_EPISODES
    if episodes.is_file():
        try:
            with np.load(episodes) as data:
                run.strokes, run.paintings = data["strokes"], data["paintings"]
                run.targets = data["targets"] if "targets" in data.files else None
        except (OSError, ValueError, KeyError) as err:
            raise ReportError(f"cannot read {episodes}: {err}") from None
        run.metrics.update(episode_metrics(run.strokes, run.paintings, run.targets, classifier))
        if run.targets is not None:
            run.metrics["target_novelty"] = diversity(run.targets, classifier)
    else:
        warnings.warn(f"{path} has no final_episodes.npz (trained before it was written?): no harmony, novelty "
                      "or strokes used for it", stacklevel=2)
    label = path / SWEEP_LABEL
    if label.is_file():
        try:
            run.label = str(json.loads(label.read_text())["config"])
        except (OSError, ValueError, KeyError, TypeError):
            run.label = None
    return run


# -------------------------------------------------------------------------------- configurations
@dataclass
class Group:
    """The seeds of one configuration."""

    name: str
    options: str  # the options that set it apart, "key=value; ..."
    runs: list[Run] = field(default_factory=list)

    def stats(self, key: str) -> tuple[float, float, int]:
        """Mean, sample std (NaN for one value) and count of metric ``key`` over the runs that have it."""
        values = np.array([run.metrics[key] for run in self.runs if math.isfinite(run.metrics.get(key, math.nan))])
        if values.size == 0:
            return math.nan, math.nan, 0
        return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan, int(values.size)


def group_runs(runs: list[Run]) -> list[Group]:
    """Group runs into configurations (in order of first appearance) and name them."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(json.dumps(run.identity, sort_keys=True, default=str), []).append(run)
    members = list(groups.values())
    identities = [group[0].identity for group in members]
    keys = list(dict.fromkeys(key for identity in identities for key in identity))
    differing = [key for key in keys if len({json.dumps(ident.get(key), default=str) for ident in identities}) > 1]
    if not differing:  # one configuration: name it by what was trained
        differing = [key for key in ("agent", "reward") if key in keys]
    out = []
    for group, identity in zip(members, identities, strict=True):
        options = "; ".join(f"{key}={show_value(identity.get(key))}" for key in differing)
        out.append(Group(options, options, sorted(group, key=lambda run: (str(run.seed), str(run.path)))))
    labels = [{run.label for run in group.runs} for group in out]
    if all(len(names) == 1 and None not in names for names in labels):
        names = [next(iter(names)) for names in labels]
        if len(set(names)) == len(names):  # sweep names are readable and unique: use them
            for group, name in zip(out, names, strict=True):
                group.name = name
    return out


def metric_keys(groups: list[Group]) -> list[str]:
    """The table's metrics, in reading order: L2, PSNR, return, reward terms, harmony, novelty, strokes."""
    present = {key for group in groups for run in group.runs for key in run.metrics}
    terms = sorted(key for key in present if key.startswith("eval/term/"))
    order = ["eval/l2", "eval/psnr", "eval/return", *terms, *DERIVED, "global_step", "train_seconds"]
    return [key for key in order if key in present]


HEADERS = {"eval/l2": "L2 ↓", "eval/psnr": "PSNR dB ↑", "eval/return": "return", "harmony": "harmony",
           "novelty": "novelty (diversity)", "strokes_used": "strokes used", "fd": "FD to targets ↓",
           "global_step": "env steps",
           "train_seconds": "train s"}


def _header(key: str) -> str:
    return HEADERS.get(key, key.removeprefix("eval/"))


def _cell(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.4g}" if not math.isfinite(std) else f"{mean:.4g} ± {std:.2g}"


# ------------------------------------------------------------------------------------------ pictures
def plot_learning_curves(groups: list[Group], path: Path) -> Path:
    """Held-out return (and L2 when any run has targets) per configuration against env steps: the mean
    over seeds and a band of one standard deviation, at the steps every seed evaluated."""


    panels = [("eval/return", "held-out return")]
    if any(run.curves["eval/l2"] for group in groups for run in group.runs):
        panels.append(("eval/l2", "held-out L2 (lower is better)"))
    figure = Figure(figsize=(6.5 * len(panels), 4.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    colours = [f"C{i % 10}" for i in range(len(groups))]
    for ax, (key, title) in zip(axes, panels, strict=True):
        for group, colour in zip(groups, colours, strict=True):
            curves = [run.curves[key] for run in group.runs if run.curves[key]]
            if not curves:
                continue
            steps = sorted(set.intersection(*(set(curve) for curve in curves)))
            if not steps:
                continue
            values = np.array([[curve[step] for step in steps] for curve in curves])  # (seeds, steps)
            mean = values.mean(axis=0)
            ax.plot(steps, mean, "o-", color=colour, markersize=3, label=f"{group.name} (n={len(curves)})")
            if len(curves) > 1:
                std = values.std(axis=0, ddof=1)
                ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        ax.set(xlabel="env steps", title=title)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncol=min(2, len(handles)), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.06 * math.ceil(len(handles) / 2) if handles else 0, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def contact_sheet(group: Group, tile: int = 64, episodes: int = SHEET_EPISODES) -> np.ndarray | None:
    """``(H, W, 3)`` uint8: per seed, a caption and a row of its first final paintings re-rendered
    from their strokes at ``tile`` pixels (each above its target when there are targets); None when
    no run has its final episodes."""


    rows = []
    for run in group.runs:
        if run.strokes is None:
            continue
        count = min(episodes, run.strokes.shape[0])
        tiles = render_strokes(run.strokes[:count], tile)  # (count, tile, tile, 3)
        if run.targets is not None:
            targets = np.stack([cv2.resize(image, (tile, tile), interpolation=cv2.INTER_LINEAR)
                                for image in run.targets[:count]])
            gap = np.full((count, 2, tile, 3), 255, dtype=np.uint8)
            tiles = np.concatenate([tiles, gap, targets], axis=1)  # painting above its target
        row = grid(tiles, columns=episodes)
        caption = np.full((16, row.shape[1], 3), 255, dtype=np.uint8)
        cv2.putText(caption, f"seed {run.seed}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([caption, row]))
    if not rows:
        return None
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return np.concatenate(rows)


# ------------------------------------------------------------------------------------- the document
class Page:
    """A document of headings, paragraphs, lists, tables and images, written as Markdown and HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def image(self, alt: str, src: str) -> None:
        self.blocks.append(("img", (alt, src)))

    def markdown(self) -> str:
        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        out = []
        for kind, body in self.blocks:
            if kind == "h":
                out.append(f"{'#' * body[0]} {body[1]}")
            elif kind == "p":
                out.append(body)
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in body))
            elif kind == "table":
                header, rows = body
                lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
                out.append("\n".join(lines))
            else:
                out.append(f"![{body[0]}]({body[1].replace(' ', '%20')})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        esc = html.escape
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
               "table{border-collapse:collapse;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;"
               "text-align:left}th{background:#f4f4f4}img{max-width:100%}</style>", "</head><body>"]
        for kind, body in self.blocks:
            if kind == "h":
                out.append(f"<h{body[0]}>{esc(body[1])}</h{body[0]}>")
            elif kind == "p":
                out.append(f"<p>{esc(body)}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in body) + "</ul>")
            elif kind == "table":
                header, rows = body
                out.append("<table><tr>" + "".join(f"<th>{esc(text)}</th>" for text in header) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{esc(text)}</td>" for text in row) + "</tr>" for row in rows]
                out.append("</table>")
            else:
                out.append(f'<p><img alt="{esc(body[0])}" src="{esc(body[1])}"></p>')
        out.append("</body></html>")
        return "\n".join(out) + "\n"


@dataclass
class Report:
    """What :func:`write_report` wrote and what it compared."""

    out: Path
    groups: list[Group]
    skipped: list[Path]
    files: dict[str, Path]


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ReportError(f"cannot write the report to {out}: {err.strerror or err}; choose a writable --out") \
            from None


def write_report(paths: list[str | os.PathLike], out: str | os.PathLike, title: str = "paintgym report",
                 runs_found: tuple[list[Path], list[Path]] | None = None, progress: bool = True,
                 classifier: str | os.PathLike | None = None) -> Report:
    """Compare the finished runs under ``paths`` and write the report files into ``out``.

    :param paths: run directories or folders holding runs (see :func:`find_runs`).
    :param out: the report folder (created; earlier report files in it are replaced).
    :param title: the page's title.
    :param runs_found: already found (finished, unfinished) run directories, instead of searching ``paths``.
    :param progress: show a progress bar while the runs are read.
    :param classifier: a classifier run or checkpoint whose features ``novelty`` and ``fd`` use (module docstring).
    :raises ReportError: for paths without runs, no finished run, unreadable runs or an unwritable ``out``, or
        a ``classifier`` that is not a classifier checkpoint.
    """

    finished, unfinished = runs_found if runs_found is not None else find_runs(paths)
    out = Path(out)
    _writable(out)
    for path in unfinished:
        warnings.warn(f"skipping {path}: not finished (no {SUMMARY}); continue it with paintgym train --resume "
                      f"{path}", stacklevel=2)
    if not finished:
        raise ReportError(f"no finished run (with {SUMMARY}) among {', '.join(map(str, paths))}")

    judge = None
    if classifier is not None:
        try:
            judge = load_feature_classifier(classifier)
        except CheckpointError as err:
            raise ReportError(f"--classifier: {err}") from None
    runs = [load_run(path, judge) for path in tqdm(finished, desc="report: reading runs", unit="run", leave=False,
                                                   disable=not progress)]
    groups = group_runs(runs)
    keys = metric_keys(groups)
    files: dict[str, Path] = {}

    # metrics.csv: full precision, one row per configuration
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["configuration", "options", "runs", "seeds", *[f"{key}_{s}" for key in keys
                                                                     for s in ("mean", "std")]])
    for group in groups:
        stats = [group.stats(key)[:2] for key in keys]
        writer.writerow([group.name, group.options, len(group.runs), " ".join(str(run.seed) for run in group.runs),
                         *["" if not math.isfinite(v) else repr(v) for pair in stats for v in pair]])
    files["metrics.csv"] = atomic_write_bytes(out / "metrics.csv", buffer.getvalue().encode())
    files["learning_curves.png"] = plot_learning_curves(groups, out / "learning_curves.png")
    sheets_dir = out / "sheets"
    for stale in sheets_dir.glob("*.png") if sheets_dir.is_dir() else []:
        stale.unlink()  # sheets of an earlier report of other configurations
    sheets: dict[int, str] = {}
    for index, group in enumerate(groups):
        tile = max(64, min(128, int(group.runs[0].config.get("canvas_size", 64))))
        sheet = contact_sheet(group, tile)
        if sheet is not None:
            name = f"sheets/{index + 1:02d}-{slug(group.name, 60)}.png"
            files[name] = save_png(out / name, sheet)
            sheets[index] = name

    page = Page()
    page.heading(1, title)
    page.paragraph(f"{len(groups)} configuration(s), {len(runs)} finished run(s); generated "
                   f"{datetime.now():%Y-%m-%d %H:%M}. Each value is the mean ± sample standard deviation over "
                   "seeds of the final held-out evaluation (eval_episodes paintings per run).")
    page.heading(2, "Final metrics")
    table_keys = [key for key in keys if key not in ("global_step", "train_seconds")]
    header = ["configuration", "seeds", *[_header(key) for key in table_keys]]
    rows = [[group.name, str(len(group.runs)), *[_cell(*group.stats(key)[:2]) for key in table_keys]]
            for group in groups]
    page.table(header, rows)
    if any(group.name != group.options for group in groups):
        page.paragraph("Configurations and the options that set them apart:")
        page.items([f"{group.name}: {group.options}" for group in groups])
    space = f"the classifier {classifier}" if classifier is not None else \
        "the novelty reward's fixed random conv net (seed 0)"
    notes = [
        "L2 / PSNR: mean squared error (images in [0, 1]) and PSNR of the final paintings to their held-out targets.",
        "return: the held-out episode return under the configuration's own reward (rewards differ in scale, "
        "so returns compare only between seeds); term/NAME: that term's unweighted episode sum.",
        "harmony: colour-harmony score (rewards/harmony.py, Cohen-Or's hue templates weighted by saturation) of "
        "the final paintings, in [0, 1]; grey paintings score 0.",
        f"novelty (diversity): mean pairwise distance of the final paintings' unit-length embeddings by {space}, "
        "in [0, 2]; 0 = all paintings alike.",
        f"FD to targets: Fréchet distance between the final paintings and their held-out targets in {space}'s "
        "features (lower: the paintings are distributed as the targets are; biased upwards with fewer paintings "
        "than feature dimensions, so compare at equal eval_episodes).",
        "strokes used: strokes per painting that changed at least one pixel of the 8-bit image when painted in "
        "order (out of max_steps x strokes_per_step).",
    ]
    page.paragraph("What the columns mean:")
    target_div = [run.metrics["target_novelty"] for run in runs if "target_novelty" in run.metrics]
    if target_div:
        notes.append(f"For scale: the held-out targets' own diversity is {np.mean(target_div):.4g} "
                     "(a painter that follows its targets closely has about that novelty).")
    page.items(notes)
    page.heading(2, "Learning curves")
    page.paragraph("Held-out evaluations during training: mean over seeds, band = ± one standard deviation.")
    page.image("learning curves", "learning_curves.png")
    page.heading(2, "Final paintings")
    for index, group in enumerate(groups):
        page.heading(3, group.name)
        if index in sheets:
            kind = "each painting above its held-out target" if group.runs[0].targets is not None else "paintings"
            page.paragraph(f"First {SHEET_EPISODES} final evaluation episodes per seed ({kind}).")
            page.image(f"final paintings of {group.name}", sheets[index])
        else:
            page.paragraph("No final_episodes.npz in these runs.")
    page.heading(2, "Runs")
    run_rows = []
    for group in groups:
        for run in group.runs:
            run_rows.append([group.name, str(run.seed), os.path.relpath(run.path, out.resolve()),
                             f"{run.metrics.get('global_step', math.nan):.0f}",
                             f"{run.metrics.get('train_seconds', math.nan):.0f}",
                             _cell(run.metrics.get("eval/l2", math.nan), math.nan),
                             _cell(run.metrics.get("eval/return", math.nan), math.nan)])
    page.table(["configuration", "seed", "run directory", "env steps", "train s", "L2", "return"], run_rows)
    if unfinished:
        page.paragraph("Skipped (not finished, no summary.json):")
        page.items([os.path.relpath(path, out.resolve()) for path in unfinished])
    files["report.md"] = atomic_write_bytes(out / "report.md", page.markdown().encode())
    files["report.html"] = atomic_write_bytes(out / "report.html", page.html(title).encode())
    return Report(out, groups, unfinished, files)


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paintgym report", description="Compare finished training runs: a metrics table per configuration "
        "(mean ± std over seeds), learning curves and contact sheets, as Markdown, HTML and CSV.",
        epilog="examples:\n  paintgym report runs/reward_sweep\n"
               "  paintgym report runs/ppo-a runs/ppo-b runs/ppo-c --out runs/compare",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, or folders holding runs "
                        "(a sweep's output); unfinished runs are skipped with a warning")
    parser.add_argument("--out", metavar="DIR", help="report folder (default: FOLDER/report for one folder of "
                        "runs, else ./report)")
    parser.add_argument("--title", default="paintgym report", help="the page title")
    parser.add_argument("--classifier", metavar="PATH", help="a paintgym train-classifier run or ckpt.pt: novelty and "
                        "the Fréchet distance to the targets use its penultimate features instead of random ones")
    return parser


def default_out(paths: list[str]) -> Path:
    """``FOLDER/report`` when ``paths`` is one folder of runs (not itself a run), else ``./report``."""
    if len(paths) == 1 and Path(paths[0]).is_dir() and not _is_run(Path(paths[0])):
        return Path(paths[0]) / "report"
    return Path("report")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``paintgym report``; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out) if args.out else default_out(args.runs)
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = write_report(args.runs, out, title=args.title, classifier=args.classifier)
        except ReportError as err:
            error = err
    for warning in caught:
        print(f"paintgym report: warning: {warning.message}", file=sys.stderr)
    if error is not None:
        print(f"paintgym report: error: {error}", file=sys.stderr)
        return 2
    runs = sum(len(group.runs) for group in report.groups)
    print(f"compared {len(report.groups)} configuration(s) from {runs} run(s); report: {report.out / 'report.html'} "
          f"(report.md, metrics.csv, learning_curves.png, sheets/)")
    return 0
