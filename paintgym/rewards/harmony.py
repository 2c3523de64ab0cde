"""Colour harmony after Cohen-Or et al. (2006), "Color Harmonization", with Matsuda's hue templates.

A hue template is a set of sectors of the hue wheel; an image fits a template when its hues lie in
the sectors. Cohen-Or et al. measure the fit of template ``m`` rotated by ``alpha`` as

    F(X, (m, alpha)) = sum_p  |H(p) - E_(m, alpha)(p)| * S(p)

where ``H(p)`` is the hue of pixel ``p``, ``S(p)`` its saturation and ``E`` the hue of the nearest
sector border (``H(p)`` itself when the hue lies inside a sector), with ``|.|`` the arc length on the
hue wheel. The harmony of an image is the best fit over templates and rotations.

Matsuda's eight templates (sector widths as in the paper; ``T`` is a half wheel):

====  ===========================================================  ================================
name  sectors (centre offset, width)                               look
====  ===========================================================  ================================
i     (0, 18)                                                      one narrow hue
V     (0, 93.6)                                                    one wide hue range
L     (0, 18), (90, 79.2)                                          narrow + wide, a right angle apart
I     (0, 18), (180, 18)                                           two narrow complementary hues
T     (0, 180)                                                     a half wheel
Y     (0, 93.6), (180, 18)                                         wide + narrow complement
X     (0, 93.6), (180, 93.6)                                       two wide complementary ranges
N     —                                                            greyscale
====  ===========================================================  ================================

``N`` needs no sectors: a grey pixel has saturation 0 and costs nothing under every template. That is
why Cohen-Or's cost alone cannot be a reward: an empty or grey canvas would fit perfectly and score
the top. paintgym's score rates the colour actually painted instead (see :class:`HarmonyReward`):
each pixel earns its saturation times how well its hue fits the best template, averaged over the
canvas. A grey canvas scores 0; a canvas covered in saturated hues of one template scores 1.

How it is computed, batched on any device: every pixel's saturation is split between the two hue
bins next to its hue (linear interpolation on a ``bins``-bin wheel, 1° by default), which makes the
cost of every template at every rotation ``alpha = k * 360 / bins`` a circular correlation of that
histogram with the template's distance profile — one FFT for the whole batch, all templates and all
rotations. The result equals the per-pixel sum up to the linear interpolation, which is exact except
for pixels within one bin of a kink of the distance profile (a sector border or the middle of a gap).
On the CPU a numba kernel builds the histogram in one pass over the pixels; the torch path is used
on other devices and agrees with it (tested).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from paintgym.canvas import fastpath
from paintgym.canvas.fastpath import chunk_range, numba
from paintgym.rewards.base import Reward
from paintgym.rewards.registry import register

TEMPLATES: dict[str, tuple[tuple[float, float], ...]] = {
    "i": ((0.0, 18.0),),
    "V": ((0.0, 93.6),),
    "L": ((0.0, 18.0), (90.0, 79.2)),
    "I": ((0.0, 18.0), (180.0, 18.0)),
    "T": ((0.0, 180.0),),
    "Y": ((0.0, 93.6), (180.0, 18.0)),
    "X": ((0.0, 93.6), (180.0, 93.6)),
}
"""Matsuda's hue templates with sectors: name -> ((centre offset in degrees, width in degrees), ...)."""

MAX_DISTANCE = (180.0 - 93.6) / 2.0
"""43.2°: the farthest any hue can be from the X template's sectors (half of its gap), so the best fit
over templates never costs more than this per unit of saturation; it normalises the score to [0, 1]."""

_EPS = 1e-12


def sector_distance(hue: torch.Tensor, template: str) -> torch.Tensor:
    """Arc distance in degrees from hues to the nearest sector of a template at rotation 0.

    :param hue: any shape, degrees (any real value; read modulo 360).
    :param template: a key of :data:`TEMPLATES`.
    :return: same shape, degrees in [0, 180); 0 inside a sector.
    """
    distance = None
    for centre, width in TEMPLATES[template]:  # at most two sectors
        offset = torch.remainder(hue - centre, 360.0)
        arc = torch.minimum(offset, 360.0 - offset)  # [0, 180]
        outside = (arc - width / 2.0).clamp_min(0.0)
        distance = outside if distance is None else torch.minimum(distance, outside)
    return distance


@functools.lru_cache(maxsize=8)
def _profile_spectrum(bins: int, device: torch.device) -> torch.Tensor:
    """``(T, bins // 2 + 1)`` complex: the conjugate FFT of every template's distance profile."""
    hue = torch.arange(bins, dtype=torch.float64) * (360.0 / bins)
    profiles = torch.stack([sector_distance(hue, name) for name in TEMPLATES])  # (T, bins) degrees
    return torch.fft.rfft(profiles).conj().to(torch.complex64).to(device)


def hue_saturation(canvas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HSV hue and saturation of every pixel.

    :param canvas: ``(B, 3, H, W)`` float in [0, 1], RGB.
    :return: hue ``(B, H, W)`` in degrees [0, 360) (0 for grey pixels) and saturation ``(B, H, W)`` in
        [0, 1] (``(max - min) / max``, 0 for black).
    """
    r, g, b = canvas.unbind(1)
    high, argmax = canvas.max(dim=1)
    chroma = high - canvas.min(dim=1).values
    inv = 1.0 / chroma.clamp_min(_EPS)
    sixths = torch.where(argmax == 0, (g - b) * inv, torch.where(argmax == 1, (b - r) * inv + 2.0,
                                                                  (r - g) * inv + 4.0))
    hue = torch.remainder(sixths * 60.0, 360.0)
    return torch.where(chroma > 0, hue, torch.zeros_like(hue)), chroma / high.clamp_min(_EPS)


def hue_histogram_torch(canvas: torch.Tensor, bins: int = 360) -> torch.Tensor:
    """Saturation-weighted hue histogram, torch path (any device).

    :param canvas: ``(B, 3, H, W)`` float in [0, 1].
    :param bins: bins over the hue wheel; bin ``j`` is centred on hue ``j * 360 / bins``.
    :return: ``(B, bins)`` float32: the saturation of each pixel split linearly between the two bins
        next to its hue, summed over pixels.
    """
    batch = canvas.shape[0]
    hue, saturation = hue_saturation(canvas.float())
    position = hue.view(batch, -1) * (bins / 360.0)
    lower = position.floor()
    frac = position - lower
    weight = saturation.view(batch, -1)
    offsets = (torch.arange(batch, device=canvas.device) * bins).view(-1, 1)
    index0 = lower.long().remainder_(bins).add_(offsets)
    index1 = (lower.long() + 1).remainder_(bins).add_(offsets)
    hist = torch.zeros(batch * bins, device=canvas.device)
    hist.index_add_(0, index0.view(-1), (weight * (1.0 - frac)).view(-1))
    hist.index_add_(0, index1.view(-1), (weight * frac).view(-1))
    return hist.view(batch, bins)


if fastpath.HAVE_NUMBA:

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _histogram_one(canvas: np.ndarray, bins: int, out: np.ndarray) -> None:  # pragma: no cover - jit
        """One canvas ``(3, H, W)`` float32 -> its histogram in ``out`` ``(bins,)``."""
        _, height, width = canvas.shape
        scale = bins / 6.0
        hist = np.zeros(bins, dtype=np.float64)
        for y in range(height):
            for x in range(width):
                r = canvas[0, y, x]
                g = canvas[1, y, x]
                bl = canvas[2, y, x]
                high = max(r, g, bl)
                chroma = high - min(r, g, bl)
                if chroma <= 0.0:
                    continue
                # same argmax tie-breaking as torch.max: the first channel wins
                if r >= g and r >= bl:
                    sixths = (g - bl) / chroma
                elif g >= bl:
                    sixths = (bl - r) / chroma + 2.0
                else:
                    sixths = (r - g) / chroma + 4.0
                if sixths < 0.0:
                    sixths += 6.0
                position = sixths * scale
                lower = math.floor(position)
                frac = position - lower
                j = int(lower) % bins
                weight = chroma / high
                hist[j] += weight * (1.0 - frac)
                hist[(j + 1) % bins] += weight * frac
        for j in range(bins):
            out[j] = hist[j]

    @numba.njit(cache=True, nogil=True)
    def _histogram_range(canvas: np.ndarray, bins: int, out: np.ndarray, start: int,
                         stop: int) -> None:  # pragma: no cover - jit
        for b in range(start, stop):
            _histogram_one(canvas[b], bins, out[b])

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _histogram_parallel(canvas: np.ndarray, bins: int, out: np.ndarray, chunks: int) -> None:  # pragma: no cover
        for c in numba.prange(chunks):
            start, stop = chunk_range(c, chunks, canvas.shape[0])
            _histogram_range(canvas, bins, out, start, stop)


def hue_histogram(canvas: torch.Tensor, bins: int = 360) -> torch.Tensor:
    """Saturation-weighted hue histogram ``(B, bins)`` float32 (see :func:`hue_histogram_torch`);
    by the numba kernel for float32 CPU tensors, else by the torch path."""
    if fastpath.use_numba(canvas):
        array = canvas.detach().contiguous().numpy()
        out = np.empty((array.shape[0], bins), dtype=np.float32)
        fastpath.launch(_histogram_range, _histogram_parallel, array.shape[0], array, bins, out)
        return torch.from_numpy(out)
    return hue_histogram_torch(canvas, bins)


def template_costs(hist: torch.Tensor) -> torch.Tensor:
    """Cohen-Or's fit of every template at every rotation, from hue histograms.

    :param hist: ``(B, bins)`` saturation-weighted hue histograms (:func:`hue_histogram`).
    :return: ``(B, T, bins)`` float32 with ``T = len(TEMPLATES)``: entry ``[b, t, k]`` is
        ``sum_p S(p) * distance(H(p), template t rotated by k * 360 / bins)``, in degrees.
    """
    bins = hist.shape[-1]
    spectrum = _profile_spectrum(bins, hist.device)  # (T, bins // 2 + 1)
    # correlation: cost[k] = sum_j hist[j] * profile[j - k]  <=>  FFT(hist) * conj(FFT(profile))
    costs = torch.fft.irfft(torch.fft.rfft(hist.float()).unsqueeze(1) * spectrum, n=bins)
    return costs.clamp_min_(0.0)  # FFT rounding can dip just below 0


def fit_templates(canvas: torch.Tensor, bins: int = 360) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best hue template and rotation for each image.

    :param canvas: ``(B, 3, H, W)`` float in [0, 1], RGB.
    :param bins: hue bins and rotations tried (``360``: every degree).
    :return: harmony ``(B,)`` float32 in [0, 1] (1 = every pixel fully saturated and inside the best
        template; 0 for a canvas without colour; see :class:`HarmonyReward`), the best template's
        index into ``list(TEMPLATES)`` ``(B,)`` int64, and its rotation in degrees ``(B,)`` float32.
    """
    if canvas.dim() != 4 or canvas.shape[1] != 3:
        raise ValueError(f"canvas must have shape (B, 3, H, W), got {tuple(canvas.shape)}")
    batch, pixels = canvas.shape[0], canvas.shape[2] * canvas.shape[3]
    hist = hue_histogram(canvas, bins)  # (B, bins): the saturation of the pixels, by hue
    costs = template_costs(hist)  # (B, T, bins)
    best, flat_index = costs.view(batch, -1).min(dim=1)
    # sum_p S(p) * (1 - d(p) / 43.2): the saturation that fits the template, per pixel of the canvas
    harmony = ((hist.sum(dim=1) - best / MAX_DISTANCE) / pixels).clamp_(0.0, 1.0)
    return harmony, flat_index // bins, (flat_index % bins).float() * (360.0 / bins)


def harmony_score(canvas: torch.Tensor, bins: int = 360) -> torch.Tensor:
    """Colour harmony ``(B,)`` float32 in [0, 1] of canvases ``(B, 3, H, W)`` float in [0, 1]."""
    return fit_templates(canvas, bins)[0]


@register
class HarmonyReward(Reward):
    """Colour harmony of the painting (Cohen-Or et al. 2006; Matsuda's hue templates).

    The score rates the colour actually painted::

        harmony = (1 / pixels) * sum_p S(p) * (1 - d(p) / 43.2°)

    with ``S(p)`` the saturation of pixel ``p`` and ``d(p)`` the arc distance of its hue to the
    sectors of the best template (the seven with sectors, ``bins`` rotations), the one that
    minimises Cohen-Or's cost ``F = sum_p S(p) d(p)``. So it is the fraction of the canvas covered
    in colour that fits one template: 1 for fully saturated hues inside one template over the whole
    canvas; about 0.77 for saturated hues spread uniformly over the wheel; half as much for the same
    colours at half the saturation or on half the canvas; 0 for an empty, white, black or grey
    canvas. (Cohen-Or's cost alone gives a grey canvas the top score: no colour, no misfit; a reward
    that an unpainted canvas maximises teaches nothing about colour.) Its maximiser is a canvas
    painted all over in saturated colours of one template, e.g. one hue: combine it with a
    reconstruction or critic term for paintings of something.

    :param dense: False (default): paid once, at the end of the episode. True: paid every step as the
        change of the harmony (a potential-based reward).
    :param bins: hue resolution and number of rotations tried (360: 1°).
    """

    name = "harmony"
    description = "colour harmony of the painting: fit to the best Matsuda hue template (Cohen-Or 2006)"
    dense = False

    def __init__(self, dense: bool = False, bins: int = 360) -> None:
        super().__init__()
        if not isinstance(dense, bool):
            raise ValueError(f"dense must be true or false, got {dense!r}")
        if not isinstance(bins, int) or bins < 4:
            raise ValueError(f"bins must be an integer >= 4, got {bins!r}")
        self.dense = dense
        self.bins = bins

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return harmony_score(canvas, self.bins)

    def options(self) -> dict[str, object]:
        return {"dense": self.dense, "bins": self.bins}
