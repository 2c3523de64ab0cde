"""Datasets of human pen drawings for the stroke-sequence prior (:mod:`generative.sketch_rnn`).

A dataset is an ``.npz`` file with, for each split ``train``, ``valid`` and ``test``:

* ``{split}_strokes``: ``(N, 3)`` numbers, the rows of every drawing in stroke-3 format
  (:mod:`envs.pen`: ``dx, dy, pen lifted``), drawing after drawing;
* ``{split}_offsets``: ``(D + 1,)`` integers, drawing ``i`` is rows ``offsets[i]:offsets[i + 1]``;
* optionally ``{split}_labels``: ``(D,)`` integer classes (other arrays, e.g. rasters, are ignored).

The shared data (``../shared/data/sketch-strokes``: Aaron Koblin's sheep market, Omniglot, short Kanji,
as prepared for sketch-rnn) has this form; :func:`resolve_data` finds a file there by a short name
(``sheep``, ``omniglot``, ``kanji``). Integer offsets (the shared data's) are **dequantised** for a
density model: uniform noise in ``[-0.5, 0.5)`` is added to each, so that the log-density of the
dequantised drawing bounds the log-probability of the integer one (Theis et al. 2016) and no mixture
component can collapse onto a lattice point. Evaluation uses a fixed noise seed, for the model and the
baseline alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paintgym.canvas.images import DatasetError
from paintgym.canvas.pen import pen_to_strokes
from paintgym.canvas.strokes import STROKE_DIM

SPLITS = ("train", "valid", "test")
DATA_ENV = "PAINTGYM_SKETCH_DATA"
"""Environment variable naming the folder of stroke datasets (default :data:`DEFAULT_DATA_DIR`)."""
DEFAULT_DATA_DIR = Path("../shared/data/sketch-strokes")
"""Where short names are looked up, relative to the working directory (the repository root)."""
SHORT_NAMES = {"sheep": "aaron_sheep_flat", "omniglot": "omniglot_flat", "kanji": "short_kanji_flat"}
"""Short names of the shared datasets."""


class PenDatasetError(DatasetError):
    """A stroke dataset is missing or not in the expected format; the message says what to give."""


def data_dir() -> Path:
    """The folder short dataset names are looked up in (``$PAINTGYM_SKETCH_DATA`` or :data:`DEFAULT_DATA_DIR`)."""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


def resolve_data(data: str | os.PathLike) -> Path:
    """The ``.npz`` file of a dataset path or short name (``sheep``, ``aaron_sheep``, ``aaron_sheep_flat``...).

    :raises PenDatasetError: when nothing is found (one line saying where it looked).
    """
    path = Path(data).expanduser()
    if path.is_file():
        return path
    name = str(data)
    stem = SHORT_NAMES.get(name, name)
    folder = data_dir()
    for candidate in (folder / stem, folder / f"{stem}.npz", folder / f"{stem}_flat.npz"):
        if candidate.is_file():
            return candidate
    if path.suffix or os.sep in name:
        raise PenDatasetError(f"stroke dataset {name!r} does not exist; give an .npz of stroke-3 drawings "
                              f"or one of {', '.join(SHORT_NAMES)} (looked in {folder})")
    raise PenDatasetError(f"no stroke dataset {name!r} in {folder} (set ${DATA_ENV} to the folder holding "
                          f"{', '.join(f'{v}.npz' for v in SHORT_NAMES.values())}, or give a path to an .npz)")


@dataclass
class PenSplit:
    """One split of a dataset: drawings as slices of one row array.

    :param rows: ``(N, 3)`` stroke-3 rows (integer or float), every drawing's, in order.
    :param offsets: ``(D + 1,)`` int64; drawing ``i`` is ``rows[offsets[i]:offsets[i + 1]]``.
    :param labels: ``(D,)`` int64 classes, or None.
    """

    rows: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Points per drawing ``(D,)``."""
        return np.diff(self.offsets)

    @property
    def integer(self) -> bool:
        """Whether the offsets are integers (then they are dequantised)."""
        return bool(np.issubdtype(self.rows.dtype, np.integer))

    def drawing(self, i: int) -> np.ndarray:
        """Drawing ``i`` as a stroke-3 ``(n, 3)`` array (a view)."""
        return self.rows[self.offsets[i]:self.offsets[i + 1]]

    def subset(self, index: np.ndarray) -> PenSplit:
        """The drawings ``index`` as a new split."""
        parts = [self.drawing(int(i)) for i in index]
        rows = np.concatenate(parts) if parts else self.rows[:0]
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        return PenSplit(rows, offsets, None if self.labels is None else self.labels[index])


@dataclass
class PenDataset:
    """Drawings by split, with the dataset's name and its class names (one class per file when several
    files are joined)."""

    name: str
    splits: dict[str, PenSplit]
    names: list[str] = field(default_factory=list)


def _read_split(archive: np.lib.npyio.NpzFile, split: str, path: Path) -> PenSplit:
    keys = set(archive.files)
    need = {f"{split}_strokes", f"{split}_offsets"}
    if not need <= keys:
        raise PenDatasetError(f"{path} is not a stroke dataset: it lacks {', '.join(sorted(need - keys))} "
                              f"(has {', '.join(sorted(keys)) or 'nothing'}); expected {{split}}_strokes (N, 3) "
                              "stroke-3 rows and {split}_offsets (drawings + 1,) for train, valid and test")
    rows, offsets = archive[f"{split}_strokes"], archive[f"{split}_offsets"]
    if rows.ndim != 2 or rows.shape[1] != 3 or not np.issubdtype(rows.dtype, np.number):
        raise PenDatasetError(f"{path}: {split}_strokes must be (N, 3) numbers (dx, dy, pen lifted), "
                              f"got {rows.dtype} {rows.shape}")
    if not np.isfinite(rows).all():
        raise PenDatasetError(f"{path}: {split}_strokes holds NaN or inf")
    if not np.isin(rows[:, 2], (0, 1)).all():
        raise PenDatasetError(f"{path}: the third column of {split}_strokes (pen lifted) must be 0 or 1")
    if (offsets.ndim != 1 or len(offsets) < 1 or not np.issubdtype(offsets.dtype, np.integer)
            or offsets[0] != 0 or offsets[-1] != len(rows) or (np.diff(offsets) < 0).any()):
        raise PenDatasetError(f"{path}: {split}_offsets must be non-decreasing integers from 0 to the "
                              f"number of rows of {split}_strokes ({len(rows)})")
    labels = None
    if f"{split}_labels" in keys:
        labels = archive[f"{split}_labels"].astype(np.int64)
        if labels.shape != (len(offsets) - 1,):
            raise PenDatasetError(f"{path}: {split}_labels must have one label per drawing "
                                  f"({len(offsets) - 1}), got shape {labels.shape}")
    keep = np.diff(offsets) > 0  # empty drawings carry nothing
    result = PenSplit(rows, offsets.astype(np.int64), labels)
    return result if keep.all() else result.subset(np.flatnonzero(keep))


def load_pen_dataset(data: str | os.PathLike) -> PenDataset:
    """Read a stroke dataset (:func:`resolve_data`; several joined by commas, each then one class).

    :raises PenDatasetError: for a missing file or a wrong format (one line).
    """
    parts = [p.strip() for p in str(data).split(",") if p.strip()]
    if not parts:
        raise PenDatasetError("no stroke dataset given; name one, e.g. sheep, or a path to an .npz")
    loaded = []
    for part in parts:
        path = resolve_data(part)
        try:
            archive = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise PenDatasetError(f"cannot read {path} as an .npz stroke dataset ({type(err).__name__}: {err})") \
                from err
        with archive:
            loaded.append((path, {split: _read_split(archive, split, path) for split in SPLITS}))
    if len(loaded) == 1:
        path, splits = loaded[0]
        return PenDataset(path.stem, splits, [])
    names = [path.stem for path, _ in loaded]
    joined = {}
    for split in SPLITS:
        pieces = [splits[split] for _, splits in loaded]
        rows = np.concatenate([p.rows.astype(np.float64) if not all(q.integer for q in pieces) else p.rows
                               for p in pieces])
        offsets = np.concatenate([[0], *[p.offsets[1:] + base for p, base in
                                         zip(pieces, np.cumsum([0] + [len(p.rows) for p in pieces[:-1]]),
                                             strict=True)]])
        labels = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(pieces)])
        joined[split] = PenSplit(rows, offsets.astype(np.int64), labels)
    return PenDataset("+".join(names), joined, names)


# ---------------------------------------------------------------- statistics and batches


def drawing_statistics(split: PenSplit) -> dict[str, float]:
    """What the model stores about its data (in data units):

    * ``scale``: the standard deviation of every offset coordinate (x and y together), by which the
      model normalises offsets (as sketch-rnn);
    * ``extent``: the median over drawings of the longer side of the bounding box;
    * ``step_length``: the median length of a pen-down offset (one pen point to the next, drawing);
    * ``simplify``: the 5th percentile of the distance of a pen-down point from the line between its two
      neighbours. Drawings simplified by Ramer-Douglas-Peucker (the shared ones are) have few points
      closer to that line than the tolerance they were simplified with, so this estimates it (about 1 for
      the sheep, 4 for Omniglot and Kanji); for unsimplified drawings it is near 0.
    """
    xy = split.rows[:, :2].astype(np.float64)
    scale = float(xy.std()) or 1.0
    extents = []
    for i in range(len(split)):
        absolute = np.cumsum(split.drawing(i)[:, :2].astype(np.float64), axis=0)
        extents.append((absolute.max(axis=0) - absolute.min(axis=0)).max())
    drawn = np.flatnonzero(split.rows[:-1, 2] == 0) + 1  # rows reached with the pen down
    drawn = drawn[~np.isin(drawn, split.offsets[:-1])]
    steps = np.linalg.norm(xy[drawn], axis=1) if len(drawn) else np.ones(1)
    # inner points of lines: reached with the pen down (row i - 1 not lifted) and left with it down (row i not
    # lifted); u and v their offsets in and out, the deviation |u x (u + v)| / |u + v|
    pen = split.rows[:, 2]
    inner = np.flatnonzero((pen[:-1] == 0) & (np.arange(len(pen) - 1) > 0))
    inner = inner[(pen[inner - 1] == 0) & ~np.isin(inner, split.offsets[:-1])]
    u, chord = xy[inner], xy[inner] + xy[inner + 1]
    length = np.linalg.norm(chord, axis=1)
    ok = length > 0
    deviation = np.abs(chord[ok, 0] * u[ok, 1] - chord[ok, 1] * u[ok, 0]) / length[ok]
    return {"scale": scale, "extent": float(np.median(extents)) if extents else 1.0,
            "step_length": float(np.median(steps)) or 1.0,
            "simplify": float(np.percentile(deviation, 5)) if len(deviation) else 0.0}


def collate(drawings: list[np.ndarray], dequantise: torch.Generator | None = None,
            integer: bool = False, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stroke-3 drawings as one padded stroke-5 batch.

    :param drawings: ``B`` stroke-3 arrays ``(n_i, 3)``.
    :param dequantise: with ``integer``, add uniform noise in [-0.5, 0.5) to every offset, drawn from this
        generator (None: no noise).
    :param length: rows of the batch (default: the longest drawing plus one end row).
    :return: ``seq5`` ``(B, T, 5)`` float32 (the points, then end rows ``(0, 0, 0, 0, 1)``) and the
        number of points of each drawing ``lengths`` ``(B,)`` int64.
    """
    lengths = np.array([len(d) for d in drawings], dtype=np.int64)
    t = int(lengths.max(initial=0)) + 1 if length is None else length
    seq5 = np.zeros((len(drawings), t, 5), dtype=np.float32)
    seq5[:, :, 4] = 1.0
    for i, d in enumerate(drawings):
        n = len(d)
        seq5[i, :n, :2] = d[:, :2]
        seq5[i, :n, 3] = d[:, 2]
        seq5[i, :n, 2] = 1.0 - d[:, 2]
        seq5[i, :n, 4] = 0.0
    batch = torch.from_numpy(seq5)
    if integer and dequantise is not None:
        noise = torch.rand(batch.shape[:2] + (2,), generator=dequantise, device=dequantise.device).cpu() - 0.5
        valid = torch.arange(t)[None, :] < torch.from_numpy(lengths)[:, None]
        batch[..., :2] += noise * valid[..., None]
    return batch, torch.from_numpy(lengths)


# ---------------------------------------------------------------- demonstrations for imitation

RASTER_MARGIN = 0.08
"""Margin of the shared datasets' rasters (each drawing's bounding box spans 84% of the side, centred)."""
RASTER_RADIUS = 0.5 / 28.0
"""Brush radius of the shared datasets' rasters, as a fraction of the side (their lines are 1/28 of it wide)."""
DEMO_TOLERANCE = 0.02
"""Largest distance, as a fraction of the side, between a pen point and the stroke fitted to it in a
demonstration (0.64 px at 32x32): Omniglot symbols then take 9 strokes (median), 85% of them 12 or fewer."""


@dataclass
class Demonstrations:
    """Human drawings as stroke sequences an agent can imitate.

    :param strokes: ``(N, K, 13)`` float32 in [0, 1], each drawing's strokes in drawing order (black, opaque,
        of the rasters' width), padded with invisible strokes (opacity 0) after its last.
    :param counts: ``(N,)`` int64, strokes of each drawing (1..K).
    :param drawn: how many drawings were converted to pick these (the others needed more than ``K`` strokes).
    """

    strokes: torch.Tensor
    counts: torch.Tensor
    drawn: int


def stroke_demonstrations(data: str | os.PathLike, count: int, max_strokes: int, split: str = "train",
                          tolerance: float = DEMO_TOLERANCE, seed: int = 0) -> Demonstrations:
    """``count`` drawings of a stroke dataset that paintgym strokes copy in at most ``max_strokes`` strokes.

    Drawings are taken in a random order (``seed``), fitted with :func:`canvas.pen.pen_to_strokes` placed
    as the shared rasters are (:data:`RASTER_MARGIN`, :data:`RASTER_RADIUS`: so that rendering them gives
    what ``sketch:NAME`` targets look like), and kept when they fit in ``max_strokes`` strokes.

    :raises PenDatasetError: for a missing or malformed dataset, or when no drawing fits.
    """
    if not isinstance(count, int) or count < 1 or not isinstance(max_strokes, int) or max_strokes < 1:
        raise ValueError(f"count and max_strokes must be positive integers, got {count!r} and {max_strokes!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    drawings = load_pen_dataset(data).splits[split]
    order = np.random.default_rng(seed).permutation(len(drawings))
    kept: list[np.ndarray] = []
    drawn = 0
    for i in order:
        if len(kept) == count:
            break
        drawn += 1
        fitted, _ = pen_to_strokes(drawings.drawing(int(i)), margin=RASTER_MARGIN, tolerance=tolerance,
                                   radius=RASTER_RADIUS)
        if 1 <= len(fitted) <= max_strokes:
            kept.append(fitted)
    if not kept:
        raise PenDatasetError(f"no {split} drawing of {data} fits in {max_strokes} strokes; allow more strokes")
    strokes = torch.zeros(len(kept), max_strokes, STROKE_DIM)
    for j, fitted in enumerate(kept):
        strokes[j, :len(fitted)] = torch.from_numpy(fitted)
    counts = torch.tensor([len(f) for f in kept], dtype=torch.int64)
    return Demonstrations(strokes, counts, drawn)
