"""``style`` and ``content``: painting in the style of an image (Gatys et al., 2016), in CNN features.

* ``style(image=PATH)`` — how close the painting's texture statistics are to a style image's: the
  Gram matrices of feature maps (channel-by-channel correlations, which keep texture and colour and
  forget where things are), compared layer by layer.
* ``content(image=PATH)`` — how close the painting's feature maps themselves are to an image's
  (where things are); without ``image`` the task's target. ``target:1, style(image=starry.png):0.5``
  paints a photo in a painting's style, with either agent or ``paintgym optimise``.

**Features.** No downloaded weights may be needed, so there is no VGG. Two choices:

* ``features=random`` (default): a fixed random network (Ustyuzhaninov et al., 2017, showed that
  random filters of several sizes carry texture well): filters of 3, 5, 7 and 11 pixels at the
  image's full and half resolution, ReLU, each (scale, size) group a layer. Seeded: the same
  network in every run, on every machine.
* ``features=PATH``: the convolutional trunk of a model trained in paintgym — a ``train-classifier``
  classifier, a ``train-vae`` encoder or a ``train-gan`` critic; every activation of its trunk is a
  layer. Canvases are adapted to its size and channels (grey for a grey model, which then sees no colour).

What maximises it: ``style`` is highest for an image whose feature statistics equal the style
image's — the style image itself or any re-arrangement of its texture; not an empty canvas, whose
flat features have other correlations (tested). ``content`` is highest for the image itself.
Both are differentiable in the canvas, so the model-based agent and the optimiser take their gradients.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from paintgym import generative
from paintgym.canvas.images import load_images, to_float
from paintgym.rewards.base import Reward
from paintgym.rewards.registry import register

RANDOM_KERNELS = (3, 5, 7, 11)
"""Filter sizes of the random feature network (pixels)."""
RANDOM_FILTERS = 32
"""Filters per size and scale."""
RANDOM_SEED = 0x57E1E
"""Seeds the random filters: part of the reward's definition."""


class RandomFeatures(nn.Module):
    """Fixed random multi-scale filters: ``(B, 3, H, W)`` in [0, 1] -> a list of ``(B, C, h, w)`` maps.

    For each scale (full, half resolution) and each kernel size in :data:`RANDOM_KERNELS`, a
    convolution with :data:`RANDOM_FILTERS` zero-mean Gaussian filters (unit norm), then ReLU.
    """

    def __init__(self, scales: int = 2) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(RANDOM_SEED)
        self.scales = scales
        self.convs = nn.ModuleList()
        for kernel in RANDOM_KERNELS:
            conv = nn.Conv2d(3, RANDOM_FILTERS, kernel, padding=kernel // 2, padding_mode="reflect")
            weight = torch.randn(conv.weight.shape, generator=generator)
            weight -= weight.mean(dim=(1, 2, 3), keepdim=True)  # zero mean: respond to structure and colour contrast
            conv.weight.data.copy_(weight / weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
            conv.bias.data.copy_(0.1 * torch.randn(conv.bias.shape, generator=generator))
            self.convs.append(conv)
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        x = images * 2.0 - 1.0
        for scale in range(self.scales):
            if scale:
                x = F.avg_pool2d(x, 2)
            maps += [F.relu(conv(x)) for conv in self.convs]
        return maps


class TrainedFeatures(nn.Module):
    """Every activation of a trained model's convolutional trunk: ``(B, 3, H, W)`` -> a list of maps.

    :param model: a paintgym classifier (``body``), VAE (``features``) or GAN (its critic's ``net[0]``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        kind = getattr(model, "kind", "")
        trunk = {"classifier": lambda: model.body, "vae": lambda: model.features,
                 "gan": lambda: model.critic.net[0]}.get(kind)
        if trunk is None:
            raise ValueError(f"features= must be a classifier, VAE or GAN checkpoint, got a {kind or 'unknown'} model")
        self.model, self.trunk = model.eval().requires_grad_(False), trunk()
        self.size, self.channels = model.size, model.channels

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = generative.adapt_images(images, self.size, self.channels) * 2.0 - 1.0
        maps = []
        for layer in self.trunk:
            if isinstance(layer, (nn.Flatten, nn.Linear)):  # the trunk's convolutional part ends here
                break
            x = layer(x)
            if isinstance(layer, (nn.ReLU, nn.LeakyReLU)):
                maps.append(x.clone())  # the next in-place activation must not overwrite it
        return maps


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``(B, C, C)`` of feature maps ``(B, C, h, w)``, divided by ``C * h * w``."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def feature_network(features: str, device: torch.device) -> nn.Module:
    """``random`` or the path of a trained model's checkpoint -> a network returning a list of maps."""
    if features == "random":
        return RandomFeatures().to(device)
    return TrainedFeatures(generative.load(features, device=device)).to(device)


def _reference(image: str, device: torch.device) -> torch.Tensor:
    """The image at ``image`` as ``(1, 3, 256, 256)`` float in [0, 1] (the networks see any size)."""
    return to_float(torch.from_numpy(load_images(image, 256)[:1])).to(device)


class _FeatureReward(Reward):
    dense = False
    differentiable = True

    def __init__(self, image: str | None, features: str, size: int, dense: bool, device: torch.device | str) -> None:
        super().__init__()
        if not isinstance(size, int) or size < 16:
            raise ValueError(f"size must be an integer >= 16 (the side the features look at), got {size!r}")
        self.image, self.features, self.size, self.dense = image, features, size, bool(dense)
        self.device = torch.device(device)
        self.net = feature_network(features, self.device)

    def _maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.shape[-1] != self.size:
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True,
                                   align_corners=False)
        return self.net(images)

    def to(self, device: torch.device | str) -> _FeatureReward:
        super().to(device)
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"features": self.features, "size": self.size}
        if self.image is not None:
            options["image"] = self.image
        if self.dense:
            options["dense"] = True
        return options


@register
class StyleReward(_FeatureReward):
    """Style similarity ``(B,)`` in ``(-inf, 0]`` of canvases to a style image (Gatys et al., 2016).

    ``-mean over layers of ||G(canvas) - G(style)||^2 / ||G(style)||^2``, with ``G`` the Gram
    matrices (:func:`gram`) of the feature maps; each layer's error is relative to the style's, so
    layers count alike whatever their scale.

    :param image: the style image (a file; a folder or dataset uses its first image).
    :param features: ``random`` (fixed random multi-scale filters) or a trained model's checkpoint.
    :param size: side the canvas and style image are resized to before the features.
    :param dense: pay the change of the score every step instead of the score at the episode's end.
    :param device: where the features run (the env's device).
    """

    name = "style"
    description = "Gram-matrix style similarity to an image (Gatys 2016), in random or trained CNN features"

    def __init__(self, image: str | None = None, features: str = "random", size: int = 64, dense: bool = False,
                 device: torch.device | str = "cpu") -> None:
        if image is None:
            raise ValueError("give image=PATH, the style image")
        super().__init__(image, features, size, dense, device)
        with torch.no_grad():
            self._style = [gram(m) for m in self._maps(_reference(image, self.device))]
        self._scale = [g.square().sum().clamp_min(1e-12) for g in self._style]

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and canvas.requires_grad):
            errors = [(gram(m) - s).square().sum(dim=(1, 2)) / scale
                      for m, s, scale in zip(self._maps(canvas), self._style, self._scale, strict=True)]
            return -torch.stack(errors).mean(dim=0).float()

    def to(self, device: torch.device | str) -> StyleReward:
        super().to(device)
        self._style = [g.to(self.device) for g in self._style]
        self._scale = [s.to(self.device) for s in self._scale]
        return self


@register
class ContentReward(_FeatureReward):
    """Content similarity ``(B,)`` in ``(-inf, 0]`` of canvases to an image, or to the target, in features.

    ``-mean over layers of mean((F(canvas) - F(image))^2) / mean(F(image)^2)``.

    :param image: the content image; None: the task's target (then the task needs targets).
    :param features: ``random`` or a trained model's checkpoint (as ``style``).
    :param size: side the canvas and image are resized to before the features.
    :param dense: pay the change of the score every step instead of the score at the episode's end.
    :param device: where the features run.
    """

    name = "content"
    description = "feature-space similarity to an image or to the target (content term of style transfer)"

    def __init__(self, image: str | None = None, features: str = "random", size: int = 64, dense: bool = False,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(image, features, size, dense, device)
        self.needs_target = image is None
        self._content: list[torch.Tensor] | None = None
        if image is not None:
            with torch.no_grad():
                self._content = self._maps(_reference(image, self.device))

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if self._content is None and target is None:
            raise ValueError("content without image= compares with the target: use a task with targets "
                             "(paintgym/Reconstruct-v0) or give image=PATH")
        with torch.set_grad_enabled(torch.is_grad_enabled() and canvas.requires_grad):
            if self._content is not None:
                reference = self._content
            else:
                with torch.no_grad():
                    reference = self._maps(target)
            errors = [(m - r).square().flatten(1).mean(dim=1) / r.square().flatten(1).mean(dim=1).clamp_min(1e-12)
                      for m, r in zip(self._maps(canvas), reference, strict=True)]
            return -torch.stack(errors).mean(dim=0).float()

    def to(self, device: torch.device | str) -> ContentReward:
        super().to(device)
        if self._content is not None:
            self._content = [c.to(self.device) for c in self._content]
        return self
