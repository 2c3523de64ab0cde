"""The Fréchet distance between two sets of images in a feature space (the formula of FID, Heusel et al. 2017).

FID uses Inception-v3's pool features; nothing is downloaded here, so the feature space is a network of
paintgym's: the penultimate layer of a :class:`~generative.classifier.Classifier` trained on the images'
domain (``paintgym train-classifier``), when one is given, or else a fixed random network (the caller's,
e.g. the ``novelty`` reward's random conv net). A classifier's features are what tells digits apart, so
its distances say whether samples look like the data *as the data's classes*; random features measure
only low-level image statistics.

Fitting a ``D``-dimensional Gaussian needs many more than ``D`` images per set; with fewer the estimate is
biased upwards (compare distances only at equal set sizes, and against the floor of two real sets).

>>> import torch
>>> from paintgym.generative.classifier import Classifier
>>> judge = Classifier(size=32, channels=1, classes=10).eval()
>>> canvases = torch.rand(20, 3, 64, 64)                     # any paintgym canvases, (N, 3, H, W) in [0, 1]
>>> classifier_features(judge, canvases).shape                # adapted to the classifier's size and channels
torch.Size([20, 64])
>>> frechet_distance(torch.randn(200, 4), torch.randn(200, 4)) < 1.0
True
"""

from __future__ import annotations

import os

import numpy as np
import torch

from paintgym.generative.checkpoint import load
from paintgym.generative.classifier import Classifier
from paintgym.generative.data import adapt_images

FEATURE_BATCH = 512  # images per forward pass of the feature network


def frechet_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, D)`` and ``(M, D)`` (``N, M >= 2``):
    ``|mu_a - mu_b|^2 + tr(A) + tr(B) - 2 tr((A B)^1/2)``, in float64.

    ``tr((A B)^1/2)`` is the sum of the square roots of the eigenvalues of ``A^1/2 B A^1/2`` (symmetric and
    positive semi-definite), which stays stable for singular covariances (fewer images than dimensions).
    """
    a, b = (np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64) for x in (a, b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"feature sets must be (N, D) and (M, D) with N, M >= 2, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False).reshape(a.shape[1], -1), np.cov(b, rowvar=False).reshape(b.shape[1], -1)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0.0, None)).sum()
    distance = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross
    return max(0.0, float(distance))  # rounding can take two equal sets a hair below 0


def classifier_features(classifier: Classifier, images: torch.Tensor) -> torch.Tensor:
    """The classifier's penultimate features ``(N, classifier.feature_dim)`` float32 of images ``(N, 3 or 1, H, W)``
    in [0, 1] (paintgym canvases of any size: adapted to the classifier's size and channels), in batches,
    without gradient, on the classifier's device."""
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.no_grad():
            chunks = [classifier.features(adapt_images(images[i:i + FEATURE_BATCH].to(device).float(),
                                                       classifier.size, classifier.channels))
                      for i in range(0, len(images), FEATURE_BATCH)]
    finally:
        classifier.train(was_training)
    return torch.cat(chunks) if chunks else torch.zeros(0, classifier.feature_dim, device=device)


def load_feature_classifier(path: str | os.PathLike, device: torch.device | str = "cpu") -> Classifier:
    """A classifier checkpoint (``paintgym train-classifier``'s ``ckpt.pt``, or its run folder) for
    :func:`classifier_features`.

    :raises CheckpointError: (one line) when ``path`` holds no classifier, e.g. a GAN.
    """
    return load(path, device=device, kind="classifier").eval()  # a run folder: its ckpt.pt
