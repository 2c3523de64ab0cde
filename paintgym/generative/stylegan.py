"""StyleGAN-lite: a mapping network and a modulated-convolution generator (Karras et al. 2019, 2020), small.

StyleGAN's core idea, kept: the latent ``z`` does not enter the network as its input. A **mapping
network** (an MLP) turns it into a style vector ``w``; every layer of the **synthesis network**, which
starts from a learned constant 4x4 tensor, reads its own copy of ``w``. A layer uses ``w`` to
**modulate** its 3x3 convolution: an affine map of ``w`` gives one scale ``s_i`` per input channel,
the weights become ``w'_oik = s_i w_oik``, and are then **demodulated**,
``w''_oik = w'_oik / sqrt(sum_ik w'_oik^2 + eps)``, so that each output channel has unit expected
scale (StyleGAN2's replacement of AdaIN). Per-pixel noise (a learned strength per layer) adds
stochastic detail; 1x1 modulated "toRGB" layers (no demodulation) at every resolution are summed,
upsampled, into the image (StyleGAN2's skip generator).

Because each layer has its own ``w``, two latents can be **mixed**: layers before a crossover read
``w(z_1)``, the rest ``w(z_2)``: coarse layers (4x4, 8x8) set the layout, fine ones the stroke and
texture (:func:`style_mix`, :func:`mixing_grid`). Training mixes latents in this way in a fraction
``mixing_prob`` of batches (StyleGAN's mixing regularisation).

Left out, as too large for these sizes: equalised learning rates (the same Adam settings then suit
the DCGAN and this generator: ``train-gan`` trains either), path-length regularisation, lazy R1
(this is trained by WGAN-GP, :mod:`generative.losses`) and progressive growing. The modulation is
computed the "non-fused" way (scale the activations, convolve with the shared weight, scale the
outputs), which equals the grouped convolution with per-sample weights and is faster on a CPU.

Like :class:`~generative.models.Generator` it maps ``z`` ``(B, latent_dim)`` to images
``(B, channels, size, size)`` in [0, 1], optionally class-conditional (the one-hot label joins ``z``
at the mapping network's input). ``GAN(arch="stylegan")`` uses it with the DCGAN critic. In eval
mode the noise inputs are fixed buffers and there is no mixing, so samples depend only on ``z``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from paintgym.generative.models import _check_classes, _Model, _normal, _one_hot, _stages, check_config

_GAIN = math.sqrt(2.0)  # leaky-ReLU gain, keeps activations at unit scale


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * _GAIN


def _unit_init(layer: nn.Linear) -> None:
    """StyleGAN's initialisation, ``N(0, 1 / fan_in)`` weights and zero bias (torch's default is ~3x smaller,
    which leaves ``w``, after a few layers, too small to modulate anything: every latent paints alike)."""
    nn.init.normal_(layer.weight, std=1.0 / math.sqrt(layer.in_features))
    nn.init.zeros_(layer.bias)


class MappingNetwork(nn.Module):
    """``z`` ``(B, latent_dim)`` (+ one-hot labels ``(B, K)``) -> style vectors ``w`` ``(B, w_dim)``.

    ``z`` (and the label part) are normalised to unit mean square first (StyleGAN's pixel norm),
    then ``layers`` fully connected layers with leaky ReLU.
    """

    def __init__(self, latent_dim: int, w_dim: int, layers: int = 4, num_classes: int = 0) -> None:
        super().__init__()
        if not isinstance(layers, int) or layers < 1:
            raise ValueError(f"mapping layers must be a positive integer, got {layers!r}")
        self.embed = nn.Linear(num_classes, latent_dim, bias=False) if num_classes else None
        dims = [latent_dim * (2 if num_classes else 1)] + [w_dim] * layers
        self.fc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))
        for layer in self.fc:  # unit-variance activations through the leaky ReLUs (with their gain): w ~ O(1)
            _unit_init(layer)

    def forward(self, z: torch.Tensor, one_hot: torch.Tensor | None = None) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
        if self.embed is not None and one_hot is not None:
            y = self.embed(one_hot)
            x = torch.cat([x, y * torch.rsqrt(y.square().mean(1, keepdim=True) + 1e-8)], dim=1)
        for layer in self.fc:
            x = _act(layer(x))
        return x


class ModulatedConv2d(nn.Module):
    """A convolution whose weights a style vector scales per input channel (modulation) and renormalises per
    output channel (demodulation); optionally after a 2x bilinear upsampling.

    :param w_dim: dimension of the style vector ``w``.
    :param demodulate: renormalise (the 3x3 layers); False for the toRGB layers.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, w_dim: int, demodulate: bool = True,
                 upsample: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel)
                                   / math.sqrt(in_channels * kernel * kernel))
        self.affine = nn.Linear(w_dim, in_channels)
        _unit_init(self.affine)
        nn.init.ones_(self.affine.bias)  # styles 1 + N(0, ~1): every latent modulates from the start
        self.demodulate, self.upsample, self.padding = demodulate, upsample, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, in, H, W)``, ``w`` ``(B, w_dim)`` -> ``(B, out, H', W')`` (``H' = 2H`` when upsampling)."""
        styles = self.affine(w)  # (B, in)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x * styles[:, :, None, None], self.weight, padding=self.padding)
        if self.demodulate:  # 1 / ||s_i w_oik|| over (i, k), per sample and output channel
            energy = self.weight.square().sum(dim=(2, 3))  # (out, in)
            x = x * torch.rsqrt(styles.square() @ energy.t() + 1e-8)[:, :, None, None]
        return x


class StyledLayer(nn.Module):
    """Modulated 3x3 convolution, per-pixel noise (one learned strength), bias and leaky ReLU at side ``resolution``."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))  # the eval-mode noise

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w)
        if self.training:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        return _act(x + self.noise_strength * noise + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to ``channels`` image channels, without demodulation, plus a bias."""

    def __init__(self, in_channels: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class StyleGenerator(_Model):
    """StyleGAN-lite generator: latent ``z`` ``(B, latent_dim)`` -> images ``(B, channels, size, size)`` in [0, 1].

    The synthesis network has a 4x4 block (one styled layer) and one block per doubling up to
    ``size`` (an upsampling styled layer and a styled layer), each with a toRGB; channels
    ``width * size / 8`` at 4x4, halving per block, at least ``width`` (as the DCGAN generator's).
    It reads :attr:`num_ws` style vectors: block ``j``'s layers read ``ws[2j - 1]``, ``ws[2j]``
    (the 4x4 layer ``ws[0]``) and its toRGB ``ws[2j + 1]``.

    :param size: image side, one of :data:`~generative.models.SIZES`.
    :param channels: 1 (grey) or 3 (RGB).
    :param latent_dim: dimension of the standard normal latent ``z``.
    :param width: channels at full resolution (see above).
    :param num_classes: classes to condition on (0: unconditional).
    :param w_dim: dimension of the style vectors (default ``latent_dim``).
    :param mapping_layers: depth of the mapping network (StyleGAN: 8).
    :param mixing_prob: fraction of training batches whose styles switch between two latents at a
        random layer (StyleGAN's mixing regularisation; 0 for none).
    """

    def __init__(self, size: int = 64, channels: int = 3, latent_dim: int = 100, width: int = 64,
                 num_classes: int = 0, w_dim: int | None = None, mapping_layers: int = 4,
                 mixing_prob: float = 0.9) -> None:
        super().__init__()
        check_config(size, channels, latent_dim, width)
        _check_classes(num_classes)
        w_dim = latent_dim if w_dim is None else w_dim
        check_config(size, channels, w_dim)
        if not 0.0 <= mixing_prob <= 1.0:
            raise ValueError(f"mixing_prob must lie in [0, 1], got {mixing_prob}")
        self.size, self.channels, self.latent_dim, self.width = size, channels, latent_dim, width
        self.num_classes, self.w_dim, self.mapping_layers = num_classes, w_dim, mapping_layers
        self.mixing_prob = float(mixing_prob)
        self.mapping = MappingNetwork(latent_dim, w_dim, mapping_layers, num_classes)
        blocks = _stages(size)  # doublings from 4x4 to size
        top = width * 2 ** (blocks - 1)
        ch = [max(top >> j, width) for j in range(blocks + 1)]  # channels at 4x4, 8x8, ..., size
        self.const = nn.Parameter(torch.randn(1, ch[0], 4, 4))
        self.layers = nn.ModuleList([StyledLayer(ch[0], ch[0], w_dim, 4)])
        self.to_rgb = nn.ModuleList([ToRGB(ch[0], channels, w_dim)])
        for j in range(1, blocks + 1):
            side = 4 * 2 ** j
            self.layers.append(StyledLayer(ch[j - 1], ch[j], w_dim, side, upsample=True))
            self.layers.append(StyledLayer(ch[j], ch[j], w_dim, side))
            self.to_rgb.append(ToRGB(ch[j], channels, w_dim))
        self.register_buffer("w_avg", torch.zeros(w_dim))  # running mean of w, for the truncation trick

    @property
    def num_ws(self) -> int:
        """Style vectors the synthesis network reads: layers + 1 (``2 log2(size / 4) + 2``)."""
        return len(self.layers) + 1

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "channels": self.channels, "latent_dim": self.latent_dim, "width": self.width,
                "num_classes": self.num_classes, "w_dim": self.w_dim, "mapping_layers": self.mapping_layers,
                "mixing_prob": self.mixing_prob}

    def map(self, z: torch.Tensor, labels: torch.Tensor | None = None, truncation: float = 1.0) -> torch.Tensor:
        """Style vectors ``w`` ``(B, w_dim)`` of ``z`` ``(B, latent_dim)`` (and ``labels`` ``(B,)`` if conditional),
        pulled towards their running mean by ``truncation`` < 1 (``w_avg + psi (w - w_avg)``)."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        one_hot = _one_hot(labels, self.num_classes, z.shape[0])
        w = self.mapping(z, None if one_hot is None else one_hot.to(z.dtype))
        if self.training:
            self.w_avg.copy_(self.w_avg.lerp(w.detach().float().mean(0), 0.005))
        if truncation != 1.0:
            w = self.w_avg.to(w.dtype) + truncation * (w - self.w_avg.to(w.dtype))
        return w

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """Images ``(B, channels, size, size)`` in [0, 1] from per-layer styles ``ws`` ``(B, num_ws, w_dim)``."""
        if ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0])
        rgb = self.to_rgb[0](x, ws[:, 1])
        for j in range(1, len(self.to_rgb)):
            x = self.layers[2 * j - 1](x, ws[:, 2 * j - 1])
            x = self.layers[2 * j](x, ws[:, 2 * j])
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + \
                self.to_rgb[j](x, ws[:, 2 * j + 1])
        return torch.sigmoid(rgb)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` ``(B, latent_dim)`` (and, if conditional, ``labels`` ``(B,)`` int in [0, K)) ->
        ``(B, channels, size, size)`` float in [0, 1]. In training mode a ``mixing_prob`` fraction of
        batches switch to the styles of other latents from a random layer on (torch's global random stream)."""
        w = self.map(z, labels)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        if self.training and self.mixing_prob > 0 and float(torch.rand(())) < self.mixing_prob:
            other = self.map(torch.randn_like(z), labels)
            crossover = int(torch.randint(1, self.num_ws, ()))
            ws = torch.cat([ws[:, :crossover], other[:, None].expand(-1, self.num_ws - crossover, -1)], dim=1)
        return self.synthesis(ws)

    def sample(self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
               truncation: float = 1.0) -> torch.Tensor:
        """``n`` samples ``(n, channels, size, size)`` in [0, 1] (no gradient), noise drawn with ``generator``;
        a conditional generator paints ``labels`` ``(n,)`` (default: classes drawn with ``generator``)."""
        with torch.no_grad():
            z = _normal(n, self.latent_dim, self.device, generator)
            if self.num_classes and labels is None:
                source = generator.device if generator is not None else self.device
                labels = torch.randint(self.num_classes, (n,), generator=generator, device=source)
            w = self.map(z, None if labels is None else labels.to(self.device), truncation)
            return self.synthesis(w[:, None].expand(-1, self.num_ws, -1))


def style_mix(generator: StyleGenerator, z_coarse: torch.Tensor, z_fine: torch.Tensor, crossover: int,
              labels: torch.Tensor | None = None, truncation: float = 1.0) -> torch.Tensor:
    """Samples whose layers before ``crossover`` read the styles of ``z_coarse`` and the rest those of ``z_fine``.

    :param z_coarse: ``(B, latent_dim)``; ``z_fine`` the same shape.
    :param crossover: in ``0 .. num_ws``: 0 gives the samples of ``z_fine``, ``num_ws`` those of
        ``z_coarse``; 2 switches after the 4x4 block, 4 after the 8x8 block, ...
    :return: ``(B, channels, size, size)`` in [0, 1], without gradient.
    """
    if z_coarse.shape != z_fine.shape:
        raise ValueError(f"the two latents must have the same shape, got {tuple(z_coarse.shape)} and "
                         f"{tuple(z_fine.shape)}")
    if not 0 <= crossover <= generator.num_ws:
        raise ValueError(f"crossover must lie in 0..{generator.num_ws}, got {crossover}")
    with torch.no_grad():
        coarse = generator.map(z_coarse, labels, truncation)
        fine = generator.map(z_fine, labels, truncation)
        layer = torch.arange(generator.num_ws, device=coarse.device)[None, :, None]
        ws = torch.where(layer < crossover, coarse[:, None], fine[:, None])
        return generator.synthesis(ws)


def mixing_grid(generator: StyleGenerator, rows: int = 4, columns: int = 6, crossover: int = 4, seed: int = 0,
                truncation: float = 1.0, tile: int = 64) -> np.ndarray:
    """StyleGAN's style-mixing figure as one ``(H, W, 3)`` uint8 image.

    The top row holds ``columns`` samples that give the *fine* styles (layers from ``crossover``
    on), the left column ``rows`` samples that give the *coarse* styles (layers before it); cell
    ``(i, j)`` mixes left sample ``i`` with top sample ``j``. Latents are drawn with a CPU generator
    seeded ``seed``; tiles are enlarged (nearest neighbour) to at least ``tile`` pixels.
    """
    from paintgym.canvas.images import to_uint8
    from paintgym.canvas.video import grid

    was_training = generator.training
    generator.eval()
    try:
        draw = torch.Generator().manual_seed(seed)
        z_top = _normal(columns, generator.latent_dim, generator.device, draw)
        z_left = _normal(rows, generator.latent_dim, generator.device, draw)
        labels = None
        if generator.num_classes:
            labels = torch.zeros(rows * columns, dtype=torch.long, device=generator.device)
        top = style_mix(generator, z_top, z_top, 0, None if labels is None else labels[:columns], truncation)
        left = style_mix(generator, z_left, z_left, 0, None if labels is None else labels[:rows], truncation)
        mixed = style_mix(generator, z_left.repeat_interleave(columns, 0), z_top.repeat(rows, 1), crossover,
                          labels, truncation)
    finally:
        generator.train(was_training)
    blank = torch.ones(1, *top.shape[1:], device=top.device)
    cells = [blank, top]
    for i in range(rows):
        cells += [left[i:i + 1], mixed[i * columns:(i + 1) * columns]]
    images = torch.cat(cells).float()
    images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    if images.shape[-1] < tile:
        images = F.interpolate(images, scale_factor=-(-tile // images.shape[-1]), mode="nearest")
    return grid(to_uint8(images).cpu().numpy(), columns + 1)
