"""DCGAN-style generator and WGAN critic, and a convolutional VAE, for square images.

Every model works on images ``(B, C, H, W)`` float in [0, 1], with ``C = channels`` (1 for grey,
3 for RGB) and ``H = W = size`` in :data:`SIZES`. A model stores its constructor arguments in
:meth:`config` so that a checkpoint can rebuild it (:mod:`generative.checkpoint`).

The architectures follow DCGAN (Radford et al., 2016): ``log2(size) - 2`` strided 4x4
convolutions between ``size`` and 4x4, doubling the channels from ``width`` on the way down
(halving them on the way up). The critic has no batch normalisation, as WGAN-GP requires
(the gradient penalty is taken per sample); the generator keeps DCGAN's batch norm, so its
samples depend on ``train()``/``eval()`` mode like any batch-norm network.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

SIZES = (32, 64, 128)
"""Image sides the models support."""
CHANNELS = (1, 3)
"""Channel counts the models support (grey, RGB)."""
ARCHS = ("dcgan", "stylegan")
"""Generator architectures of :class:`GAN`."""


def check_config(size: int, channels: int, latent_dim: int | None = None, width: int | None = None) -> None:
    """Raise a ValueError saying what to change for an unsupported configuration."""
    if size not in SIZES:
        raise ValueError(f"image size {size} is not supported; choose one of {', '.join(map(str, SIZES))}")
    if channels not in CHANNELS:
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if latent_dim is not None and (not isinstance(latent_dim, int) or latent_dim < 1):
        raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
    if width is not None and (not isinstance(width, int) or width < 1):
        raise ValueError(f"width must be a positive integer, got {width!r}")


def _check_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative integer (0: unconditional), got {num_classes!r}")


def _one_hot(labels: torch.Tensor | None, num_classes: int, batch: int) -> torch.Tensor | None:
    """``labels`` ``(B,)`` as one-hot ``(B, K)`` float, after checking them against a model of ``num_classes``."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError("this model is not class-conditional: it takes no labels (train it with --conditional)")
        return None
    if labels is None:
        raise ValueError(f"this model is class-conditional ({num_classes} classes): pass labels=, a (B,) tensor")
    if labels.shape != (batch,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be a ({batch},) integer tensor, got {tuple(labels.shape)} {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {int(labels.min())}..{int(labels.max())}")
    return nn.functional.one_hot(labels.long(), num_classes).float()


def _stages(size: int) -> int:
    """Strided convolutions between ``size`` and 4x4: 3 for 32, 4 for 64, 5 for 128."""
    return int(math.log2(size)) - 2


def _check_images(images: torch.Tensor, channels: int, size: int, what: str = "images") -> None:
    if images.dim() != 4 or images.shape[1] != channels or images.shape[2] != size or images.shape[3] != size:
        raise ValueError(f"{what} must have shape (B, {channels}, {size}, {size}), got {tuple(images.shape)}; "
                         "paintgym.generative.adapt_images resizes and converts canvases")


def _normal(n: int, dim: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """``(n, dim)`` standard normal noise drawn with ``generator`` (on its own device), then moved to ``device``.

    Drawing on the generator's device lets a CPU generator seed samples of a CUDA model reproducibly.
    """
    source = generator.device if generator is not None else device
    return torch.randn(n, dim, generator=generator, device=source).to(device)


def _encoder(channels: int, size: int, width: int) -> tuple[nn.Sequential, int]:
    """Strided 4x4 convolutions ``(B, channels, size, size)`` -> ``(B, top, 4, 4)``; returns (net, top)."""
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
    ch = width
    for _ in range(_stages(size) - 1):
        layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        ch *= 2
    return nn.Sequential(*layers), ch


def _decoder(channels: int, size: int, width: int, batch_norm: bool) -> tuple[nn.Sequential, int]:
    """Transposed convolutions ``(B, top, 4, 4)`` -> ``(B, channels, size, size)`` logits; returns (net, top)."""
    n = _stages(size)
    top = width * 2 ** (n - 1)
    layers: list[nn.Module] = []
    ch = top
    for _ in range(n - 1):
        layers.append(nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(ch // 2))
        layers.append(nn.ReLU(inplace=True))
        ch //= 2
    layers.append(nn.ConvTranspose2d(ch, channels, 4, 2, 1))
    return nn.Sequential(*layers), top


class _Model(nn.Module):
    size: int
    channels: int

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class Generator(_Model):
    """DCGAN generator: latent ``z`` ``(B, latent_dim)`` -> images ``(B, channels, size, size)`` in [0, 1].

    With ``num_classes = K > 0`` it is class-conditional (Mirza & Osindero, 2014): the one-hot label
    ``(B, K)`` is appended to ``z``, and ``forward(z, labels)`` paints class ``labels`` ``(B,)``.

    :param size: image side, one of :data:`SIZES`.
    :param channels: 1 (grey) or 3 (RGB).
    :param latent_dim: dimension of the standard normal latent.
    :param width: channels of the last hidden layer (the first layer has ``width * size / 8``).
    :param num_classes: classes to condition on (0: unconditional).
    """

    def __init__(self, size: int = 64, channels: int = 3, latent_dim: int = 100, width: int = 64,
                 num_classes: int = 0) -> None:
        super().__init__()
        check_config(size, channels, latent_dim, width)
        _check_classes(num_classes)
        self.size, self.channels, self.latent_dim, self.width = size, channels, latent_dim, width
        self.num_classes = num_classes
        body, top = _decoder(channels, size, width, batch_norm=True)
        self.net = nn.Sequential(
            # (B, latent + K, 1, 1) -> (B, top, 4, 4)
            nn.ConvTranspose2d(latent_dim + num_classes, top, 4, 1, 0, bias=False),
            nn.BatchNorm2d(top),
            nn.ReLU(inplace=True),
            body,
        )

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "channels": self.channels, "latent_dim": self.latent_dim, "width": self.width,
                "num_classes": self.num_classes}

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` ``(B, latent_dim)`` (and, if conditional, ``labels`` ``(B,)`` int in [0, K)) ->
        ``(B, channels, size, size)`` float in [0, 1]."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        one_hot = _one_hot(labels, self.num_classes, z.shape[0])
        if one_hot is not None:
            z = torch.cat([z, one_hot.to(z.dtype)], dim=1)
        return torch.sigmoid(self.net(z[:, :, None, None]))

    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` samples ``(n, channels, size, size)`` in [0, 1] (no gradient), noise drawn with ``generator``.

        A conditional generator paints ``labels`` ``(n,)``; without them, classes drawn uniformly
        with ``generator``.
        """
        with torch.no_grad():
            z = _normal(n, self.latent_dim, self.device, generator)
            if self.num_classes and labels is None:
                source = generator.device if generator is not None else self.device
                labels = torch.randint(self.num_classes, (n,), generator=generator, device=source)
            return self(z, None if labels is None else labels.to(self.device))


class Critic(_Model):
    """WGAN critic: images ``(B, channels, size, size)`` in [0, 1] -> scores ``(B,)`` (higher = more real).

    The conditional form (as Learning to Paint's discriminator) scores ``(target, canvas)`` pairs:
    ``forward(canvas, condition=target)``, both ``(B, channels, size, size)``, stacked channel-wise.

    With ``num_classes = K > 0`` it scores (image, class) pairs, ``forward(images, labels=y)``, as a
    projection critic (Miyato & Koyama, 2018): ``score = w . h + b + E[y] . h`` for the image
    features ``h``, so one network says how real an image looks *as class y*.

    :param size: image side, one of :data:`SIZES`.
    :param channels: 1 (grey) or 3 (RGB).
    :param conditional: whether the critic scores (target, canvas) pairs.
    :param width: channels of the first convolution (doubling at each halving of the resolution).
    :param num_classes: classes of the projection (0: none).
    """

    def __init__(self, size: int = 64, channels: int = 3, conditional: bool = False, width: int = 64,
                 num_classes: int = 0) -> None:
        super().__init__()
        check_config(size, channels, width=width)
        _check_classes(num_classes)
        self.size, self.channels, self.conditional, self.width = size, channels, bool(conditional), width
        self.num_classes = num_classes
        features, top = _encoder(channels * (2 if conditional else 1), size, width)
        self.net = nn.Sequential(features, nn.Conv2d(top, 1, 4, 1, 0))  # (B, top, 4, 4) -> (B, 1, 1, 1)
        # the projection: one embedding per class against the flattened (top, 4, 4) features
        self.embed = nn.Embedding(num_classes, top * 16) if num_classes else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, std=0.02)

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "channels": self.channels, "conditional": self.conditional, "width": self.width,
                "num_classes": self.num_classes}

    def forward(self, images: torch.Tensor, condition: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score ``images`` ``(B, C, size, size)`` in [0, 1] (given ``condition``, the targets, if conditional;
        and ``labels`` ``(B,)`` int in [0, K) if it has classes)."""
        _check_images(images, self.channels, self.size)
        if self.conditional:
            if condition is None:
                raise ValueError("this critic is conditional: pass condition= (the targets, same shape as images)")
            _check_images(condition, self.channels, self.size, "condition")
            images = torch.cat([condition, images], dim=1)
        elif condition is not None:
            raise ValueError("this critic is unconditional: it takes no condition")
        if self.embed is None:
            _one_hot(labels, 0, images.shape[0])  # says why labels are refused
            return self.net(images * 2.0 - 1.0).flatten()
        _one_hot(labels, self.num_classes, images.shape[0])
        features = self.net[0](images * 2.0 - 1.0)
        projection = (self.embed(labels) * features.flatten(1)).sum(dim=1)
        return self.net[1](features).flatten() + projection


class GAN(_Model):
    """A generator and its critic, the unit that ``paintgym train-gan`` trains and checkpoints.

    :param size: image side, one of :data:`SIZES`.
    :param channels: 1 (grey) or 3 (RGB).
    :param latent_dim: generator latent dimension.
    :param width: base width of both networks.
    :param num_classes: classes of a class-conditional GAN (CGAN: ``train-gan --conditional``); 0 for none.
    :param arch: the generator: ``dcgan`` (:class:`Generator`) or ``stylegan`` (a mapping network and
        modulated convolutions, :class:`~generative.stylegan.StyleGenerator`); the critic is the same.
        Checkpoints written before there was a choice load as ``dcgan``.
    """

    kind = "gan"

    def __init__(self, size: int = 64, channels: int = 3, latent_dim: int = 100, width: int = 64,
                 num_classes: int = 0, arch: str = "dcgan") -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown GAN architecture {arch!r}; choose one of {', '.join(ARCHS)}")
        self.size, self.channels, self.latent_dim, self.width = size, channels, latent_dim, width
        self.num_classes, self.arch = num_classes, arch
        if arch == "stylegan":
            from paintgym.generative.stylegan import StyleGenerator  # it builds on this module

            self.generator: Generator = StyleGenerator(size, channels, latent_dim, width, num_classes)
        else:
            self.generator = Generator(size, channels, latent_dim, width, num_classes)
        self.critic = Critic(size, channels, conditional=False, width=width, num_classes=num_classes)

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "channels": self.channels, "latent_dim": self.latent_dim, "width": self.width,
                "num_classes": self.num_classes, "arch": self.arch}

    def freeze_parts(self) -> dict[str, list[str]]:
        """What ``--freeze`` may freeze (parameter name prefixes): ``encoder`` the critic's convolutions (the
        features it scores); ``trunk`` those and the generator's hidden layers: everything but the critic's
        score and class projection and the generator's last (image) layer."""
        if self.arch == "stylegan":
            generator = ["generator.mapping.", "generator.const", "generator.layers."]
        else:
            body = self.generator.net[3]
            hidden = [f"generator.net.3.{i}." for i in range(len(body) - 1)]  # all but the image layer
            generator = ["generator.net.0.", "generator.net.1.", *hidden]
        return {"encoder": ["critic.net.0."], "trunk": ["critic.net.0.", *generator]}

    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, channels, size, size)`` generator samples in [0, 1] (of classes ``labels`` ``(n,)`` if conditional)."""
        return self.generator.sample(n, generator, labels)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The critic's scores ``(B,)`` of ``images`` ``(B, channels, size, size)`` in [0, 1], as classes ``labels``."""
        return self.critic(images, labels=labels)


class VAE(_Model):
    """Convolutional VAE with a Gaussian latent and a Bernoulli (cross-entropy) image likelihood.

    :param size: image side, one of :data:`SIZES`.
    :param channels: 1 (grey) or 3 (RGB).
    :param latent_dim: dimension of the latent ``z``; the prior is ``N(0, I)``.
    :param beta: weight of the KL term in the training loss (beta-VAE; 1 is the plain ELBO).
    :param width: channels of the first encoder convolution.
    """

    kind = "vae"

    def __init__(self, size: int = 64, channels: int = 3, latent_dim: int = 32, beta: float = 1.0,
                 width: int = 32) -> None:
        super().__init__()
        check_config(size, channels, latent_dim, width)
        if not beta >= 0.0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.size, self.channels, self.latent_dim, self.width = size, channels, latent_dim, width
        self.beta = float(beta)
        self.features, top = _encoder(channels, size, width)
        self.to_latent = nn.Linear(top * 16, 2 * latent_dim)  # mean and log-variance
        self.from_latent = nn.Linear(latent_dim, top * 16)
        self.upsample, _ = _decoder(channels, size, width, batch_norm=False)
        self._top = top

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "channels": self.channels, "latent_dim": self.latent_dim, "beta": self.beta,
                "width": self.width}

    def freeze_parts(self) -> dict[str, list[str]]:
        """What ``--freeze`` may freeze (parameter name prefixes): ``encoder`` the convolutions of q(z|x);
        ``trunk`` everything but the decoder's last (image) layer."""
        hidden = [f"upsample.{i}." for i in range(len(self.upsample) - 1)]
        return {"encoder": ["features."], "trunk": ["features.", "to_latent.", "from_latent.", *hidden]}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(B, C, size, size)`` in [0, 1] -> posterior mean and log-variance, each ``(B, latent_dim)``."""
        _check_images(x, self.channels, self.size)
        stats = self.to_latent(self.features(x * 2.0 - 1.0).flatten(1))
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)  # keeps exp(logvar) finite early in training

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean ``(B, latent_dim)`` of images ``(B, C, size, size)``: an embedding (no gradient)."""
        with torch.no_grad():
            return self.encode(x)[0]

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, latent_dim)`` -> Bernoulli logits ``(B, C, size, size)``."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        hidden = F.relu(self.from_latent(z)).view(-1, self._top, 4, 4)
        return self.upsample(hidden)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, latent_dim)`` -> images ``(B, C, size, size)`` in [0, 1] (the likelihood's mean)."""
        return torch.sigmoid(self.decode_logits(z))

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """A posterior sample ``mu + sigma * eps`` ``(B, latent_dim)``, ``eps`` drawn with ``generator``."""
        eps = _normal(mu.shape[0], self.latent_dim, mu.device, generator).to(mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def terms(self, x: torch.Tensor, generator: torch.Generator | None = None,
              samples: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image reconstruction negative log-likelihood and KL divergence, each ``(B,)`` in nats.

        :param x: ``(B, C, size, size)`` in [0, 1].
        :param samples: posterior samples averaged for the reconstruction term; 0 decodes the mean
            (deterministic, what rewards use).
        """
        mu, logvar = (t.float() for t in self.encode(x))  # float32 statistics under autocast
        kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)
        if samples == 0:
            logits = self.decode_logits(mu)
            nll = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").flatten(1).sum(1)
            return nll, kl
        nll = torch.zeros(x.shape[0], device=x.device)
        for _ in range(samples):  # a handful of Monte-Carlo samples, not a per-item loop
            logits = self.decode_logits(self.reparameterize(mu, logvar, generator))
            nll = nll + F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").flatten(1).sum(1)
        return nll / samples, kl

    def loss(self, x: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss (batch mean of ``nll + beta * kl``) and statistics to log (detached scalar tensors)."""
        nll, kl = self.terms(x, generator)
        loss = (nll + self.beta * kl).mean()
        return loss, {"loss": loss.detach(), "nll": nll.detach().mean(), "kl": kl.detach().mean()}

    def elbo(self, x: torch.Tensor, samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Evidence lower bound ``log p(x) >= -nll - kl`` per image, ``(B,)`` in nats (higher = more plausible).

        The plain ELBO (KL weight 1, whatever ``beta`` the model was trained with). ``samples=0``
        decodes the posterior mean instead of sampling: deterministic, for scoring paintings.
        """
        with torch.no_grad():
            nll, kl = self.terms(x, generator, samples)
            return -(nll + kl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x`` ``(B, C, size, size)`` from its posterior mean; ``(B, C, size, size)`` in [0, 1]."""
        return self.decode(self.encode(x)[0])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstructions (decoded posterior means) of ``x``, no gradient."""
        with torch.no_grad():
            return self(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, C, size, size)`` in [0, 1] decoded from prior samples (no gradient)."""
        with torch.no_grad():
            return self.decode(_normal(n, self.latent_dim, self.device, generator))

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Decode ``steps`` evenly spaced points between the latent means of ``a`` and ``b``.

        :param a: ``(B, C, size, size)`` or ``(C, size, size)`` in [0, 1]; ``b`` the same shape.
        :return: ``(B, steps, C, size, size)`` (or ``(steps, C, size, size)``) in [0, 1]; the first
            and last frames are the reconstructions of ``a`` and ``b``.
        """
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        if steps < 2:
            raise ValueError(f"steps must be at least 2, got {steps}")
        single = a.dim() == 3
        a, b = (a[None], b[None]) if single else (a, b)
        with torch.no_grad():
            za, zb = self.encode(a)[0], self.encode(b)[0]
            t = torch.linspace(0.0, 1.0, steps, device=za.device).view(1, steps, 1)
            z = za[:, None] + t * (zb - za)[:, None]  # (B, steps, latent)
            frames = self.decode(z.reshape(-1, self.latent_dim)).view(a.shape[0], steps, *a.shape[1:])
        return frames[0] if single else frames


MODELS: dict[str, type[_Model]] = {"gan": GAN, "vae": VAE}
"""Checkpoint kind -> model class."""
