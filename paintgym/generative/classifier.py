"""A small CNN classifier of square images, with an optional "none of these" class.

Like the GAN and VAE it works on ``(B, channels, size, size)`` float in [0, 1] (``size`` in
:data:`~generative.models.SIZES`); paintgym canvases are brought to that with
:func:`generative.adapt_images`. ``log2(size) - 2`` stages of a 3x3 convolution, ReLU and 2x2
max-pooling take the image to 4x4 (channels doubling from ``width``), then a ``features``-wide
hidden layer (the embedding :meth:`Classifier.features`) and one logit per output.

**The reject class.** A classifier trained on digits alone must still say *something* about a
blank canvas or a scribble, and a softmax often says it confidently; a reward built on it would
pay an agent for painting nothing. With ``reject=True`` (what ``paintgym train-classifier`` does
by default) the model has one more output, "none", trained on blank canvases and random-stroke
paintings. Then:

* :meth:`Classifier.class_log_prob` of a blank canvas is low for every class (its mass is on "none");
* :meth:`Classifier.negative_entropy` spreads the "none" mass evenly over the real classes before
  taking the entropy, so "none" counts as *maximally* uncertain, not as a confident answer: a blank
  canvas scores near the minimum ``-log(classes)``, a clear digit near 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from paintgym.generative.models import MODELS, _check_images, _Model, _stages, check_config

REJECT_NAME = "none"
"""Name of the reject output in confusion matrices and predictions."""


class Classifier(_Model):
    """CNN classifier: images ``(B, channels, size, size)`` in [0, 1] -> logits ``(B, classes [+ 1])``.

    :param size: image side, one of :data:`~generative.models.SIZES`.
    :param channels: 1 (grey) or 3 (RGB).
    :param classes: number of real classes (at least 2).
    :param width: channels of the first convolution (doubling at each halving of the resolution).
    :param features: width of the hidden layer before the logits (:meth:`features`).
    :param names: class names by index (default ``"0"``, ``"1"``, ...).
    :param reject: add a last "none" output for blank and random-stroke canvases (module docstring).
    """

    kind = "classifier"

    def __init__(self, size: int = 32, channels: int = 1, classes: int = 10, width: int = 16, features: int = 64,
                 names: list[str] | None = None, reject: bool = True) -> None:
        super().__init__()
        check_config(size, channels, width=width)
        if not isinstance(classes, int) or classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {classes!r}")
        if not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be a positive integer, got {features!r}")
        names = [str(i) for i in range(classes)] if names is None else [str(name) for name in names]
        if len(names) != classes:
            raise ValueError(f"{len(names)} class names for {classes} classes")
        self.size, self.channels, self.classes, self.width = size, channels, classes, width
        self.feature_dim, self.names, self.reject = features, names, bool(reject)
        layers: list[nn.Module] = []
        ch_in, ch = channels, width
        for _ in range(_stages(size)):  # size -> 4x4
            layers += [nn.Conv2d(ch_in, ch, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            ch_in, ch = ch, ch * 2
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(ch_in * 16, features), nn.ReLU(inplace=True))
        self.head = nn.Linear(features, self.outputs)

    @property
    def outputs(self) -> int:
        """Logits per image: ``classes``, plus one for "none" with ``reject``."""
        return self.classes + int(self.reject)

    @property
    def output_names(self) -> list[str]:
        """Names of the outputs: the class names, then ``"none"`` with ``reject``."""
        return self.names + ([REJECT_NAME] if self.reject else [])

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "channels": self.channels, "classes": self.classes, "width": self.width,
                "features": self.feature_dim, "names": list(self.names), "reject": self.reject}

    def freeze_parts(self) -> dict[str, list[str]]:
        """What ``--freeze`` may freeze (parameter name prefixes): ``encoder`` the convolutions, ``trunk``
        everything but the logits layer (``head``)."""
        convs = [f"body.{i}." for i, layer in enumerate(self.body) if isinstance(layer, nn.Conv2d)]
        return {"encoder": convs, "trunk": ["body."]}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden layer ``(B, features)`` of images ``(B, C, size, size)`` in [0, 1] (an embedding)."""
        _check_images(x, self.channels, self.size)
        return self.body(x * 2.0 - 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, outputs)`` of images ``(B, C, size, size)`` in [0, 1]."""
        return self.head(self.features(x))

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(B, outputs)`` (float32) of every output, "none" last with ``reject``."""
        return F.log_softmax(self(x).float(), dim=1)

    def class_log_prob(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """``log p(class index | x)`` ``(B,)``, in (-inf, 0]; differentiable in ``x``."""
        if not 0 <= index < self.classes:
            raise ValueError(f"class {index} is out of range: this classifier has classes 0..{self.classes - 1}")
        return self.log_probs(x)[:, index]

    def negative_entropy(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_k q_k log q_k`` ``(B,)`` over the real classes, in ``[-log(classes), 0]``; differentiable.

        ``q`` is the prediction with the "none" mass spread evenly over the classes, so that a
        canvas the model rejects counts as maximally uncertain (0 = one class for sure).
        """
        log_p = self.log_probs(x)
        if self.reject:
            spread = log_p[:, -1:] - math.log(self.classes)
            log_q = torch.logaddexp(log_p[:, :-1], spread)
        else:
            log_q = log_p
        return (log_q.exp() * log_q).sum(dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable output ``(B,)`` int64 (``classes`` means "none"), no gradient."""
        with torch.no_grad():
            return self(x).argmax(dim=1)

    def class_index(self, label: int | str) -> int:
        """A class index from an index or a class name; ValueError listing the classes otherwise."""
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise ValueError(f"class must be an index or a class name, got {label!r}")
        if isinstance(label, str):
            if label in self.names:
                return self.names.index(label)
            raise ValueError(f"class {label!r} is not one of this classifier's classes: {', '.join(self.names)}")
        if not 0 <= label < self.classes:
            named = self.names != [str(i) for i in range(self.classes)]
            shown = ", ".join(f"{i}={name}" for i, name in enumerate(self.names[:12]))
            shown = f" ({shown}{', ...' if self.classes > 12 else ''})" if named else ""
            raise ValueError(f"class {label} is out of range: the classifier has {self.classes} classes, "
                             f"0..{self.classes - 1}{shown}")
        return label


MODELS[Classifier.kind] = Classifier  # checkpoints of kind "classifier" rebuild this class
