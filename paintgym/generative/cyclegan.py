"""CycleGAN (Zhu et al., 2017) at small scale: unpaired image-to-image translation between two domains.

Two generators translate between domain A (e.g. photos) and domain B (e.g. paintings),
``G_ab: A -> B`` and ``G_ba: B -> A``, and two critics tell real images of a domain from
translations into it, ``D_a`` and ``D_b``. Nothing pairs an A image with a B image; what ties a
translation to its input is the **cycle consistency** ``|G_ba(G_ab(a)) - a|_1`` and
``|G_ab(G_ba(b)) - b|_1`` (weight ``cycle_weight``, 10 in the paper), plus an optional **identity**
term ``|G_ab(b) - b|_1 + |G_ba(a) - a|_1`` (weight ``identity_weight * cycle_weight``, 0.5 x 10 in
the paper for paintings <-> photos: it keeps the colours of the input).

The networks are the paper's, made small:

* generator: ResNet-style. A 7x7 convolution, two stride-2 3x3 convolutions down (channels
  ``width``, ``2 width``, ``4 width``), ``blocks`` residual blocks at a quarter of the side, two
  upsamplings and a 7x7 convolution out; instance norm and ReLU, reflection padding. (The paper: 9
  blocks at 256 px, 6 at 128 px, ``width`` 64.) One change: each upsampling is a nearest-neighbour
  doubling and a 3x3 convolution, not a stride-2 transposed convolution, which leaves checkerboard
  artefacts (Odena et al., 2016) that short trainings like ours never outgrow.
* critic: PatchGAN. Stride-2 4x4 convolutions (channels ``critic_width`` doubling, instance norm
  after the first), a stride-1 one, and a 1-channel stride-1 one: one score per overlapping patch.
  ``critic_layers`` stride-2 layers give a receptive field of 16, 34 or 70 pixels for 1, 2 or 3
  (the paper: 3, 70x70 patches of 256 px images; here the default keeps a patch about half the side).

**The adversarial loss is least squares (LSGAN, Mao et al. 2017), as in the paper**, not WGAN-GP:
each critic regresses real patches to 1 and translated ones to 0, each generator pushes its
translations' patches to 1. The cycle term already anchors the generators, so the plain LSGAN is
stable here; it needs no gradient penalty (a second backward pass per critic step, about twice the
cost on a CPU) and no extra critic steps, and with instance-norm PatchGAN critics it is what the
published results were obtained with. Critics see translations from a **history pool** of 50
earlier ones (Shrivastava et al., 2017), as in the paper.

Images are ``(B, channels, size, size)`` float in [0, 1] for both domains (``size`` in
:data:`~generative.models.SIZES`, ``channels`` 1 or 3); networks work in [-1, 1] inside.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from paintgym.canvas import collective
from paintgym.generative.models import MODELS, _check_images, _Model, check_config

DIRECTIONS = ("a2b", "b2a")
"""Translation directions: A -> B (``G_ab``) and B -> A (``G_ba``)."""


def default_critic_layers(size: int) -> int:
    """Stride-2 critic layers for ``size``: 1 at 32 px (16-pixel patches), 2 at 64 (34), 3 at 128 (70)."""
    return max(1, int(math.log2(size)) - 4)


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'a2b' (A -> B) or 'b2a' (B -> A), got {direction!r}")


class ResidualBlock(nn.Module):
    """``x + conv(relu(norm(conv(x))))``, 3x3 convolutions with reflection padding and instance norm."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Translator(_Model):
    """ResNet-style image-to-image generator: ``(B, channels, size, size)`` in [0, 1] -> the same shape in [0, 1].

    :param size: image side, one of :data:`~generative.models.SIZES` (any multiple of 4 runs).
    :param channels: 1 (grey) or 3 (RGB), in and out.
    :param width: channels of the first convolution (``2 width`` and ``4 width`` after each halving).
    :param blocks: residual blocks at a quarter of the side.
    """

    def __init__(self, size: int = 64, channels: int = 3, width: int = 32, blocks: int = 6) -> None:
        super().__init__()
        check_config(size, channels, width=width)
        if not isinstance(blocks, int) or blocks < 0:
            raise ValueError(f"blocks must be a non-negative integer, got {blocks!r}")
        self.size, self.channels, self.width, self.blocks = size, channels, width, blocks
        w = width
        self.net = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(channels, w, 7), nn.InstanceNorm2d(w), nn.ReLU(True),
            nn.Conv2d(w, 2 * w, 3, 2, 1), nn.InstanceNorm2d(2 * w), nn.ReLU(True),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.InstanceNorm2d(4 * w), nn.ReLU(True),
            *[ResidualBlock(4 * w) for _ in range(blocks)],
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(4 * w, 2 * w, 3, 1, 1), nn.InstanceNorm2d(2 * w),
            nn.ReLU(True),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * w, w, 3, 1, 1), nn.InstanceNorm2d(w),
            nn.ReLU(True),
            nn.ReflectionPad2d(3), nn.Conv2d(w, channels, 7),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` ``(B, channels, H, W)`` in [0, 1] (``H``, ``W`` multiples of 4) -> translations, same shape,
        in [0, 1] (the paper's tanh output, rescaled)."""
        if images.dim() != 4 or images.shape[1] != self.channels or images.shape[2] % 4 or images.shape[3] % 4:
            raise ValueError(f"images must have shape (B, {self.channels}, H, W) with H, W multiples of 4, "
                             f"got {tuple(images.shape)}")
        return (torch.tanh(self.net(images * 2.0 - 1.0)) + 1.0) * 0.5


class PatchCritic(_Model):
    """PatchGAN critic: images ``(B, channels, size, size)`` in [0, 1] -> patch scores ``(B, 1, h, w)``
    (least-squares targets: 1 for real patches, 0 for translated ones).

    :param size: image side, one of :data:`~generative.models.SIZES`.
    :param channels: 1 (grey) or 3 (RGB).
    :param width: channels of the first convolution, doubling at each further layer (at most ``8 width``).
    :param layers: stride-2 4x4 convolutions (receptive field 16, 34, 70 pixels for 1, 2, 3).
    """

    def __init__(self, size: int = 64, channels: int = 3, width: int = 32, layers: int | None = None) -> None:
        super().__init__()
        check_config(size, channels, width=width)
        layers = default_critic_layers(size) if layers is None else layers
        if not isinstance(layers, int) or not 1 <= layers <= int(math.log2(size)) - 2:
            raise ValueError(f"critic layers must be an integer from 1 to {int(math.log2(size)) - 2} at size {size}, "
                             f"got {layers!r}")
        self.size, self.channels, self.width, self.layers = size, channels, width, layers
        modules: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = width
        for i in range(1, layers + 1):  # layers - 1 more stride-2 convolutions, then one of stride 1
            out = width * min(2 ** i, 8)
            modules += [nn.Conv2d(ch, out, 4, 2 if i < layers else 1, 1), nn.InstanceNorm2d(out),
                        nn.LeakyReLU(0.2, True)]
            ch = out
        modules.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*modules)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch scores ``(B, 1, h, w)`` of ``images`` ``(B, channels, size, size)`` in [0, 1]."""
        _check_images(images, self.channels, self.size)
        return self.net(images * 2.0 - 1.0)


class CycleGAN(_Model):
    """Two translators and two patch critics, the unit ``paintgym train-cyclegan`` trains and checkpoints.

    >>> model = CycleGAN(size=32, channels=3, width=8, blocks=2)
    >>> model.translate(torch.rand(5, 3, 32, 32), "a2b").shape       # A -> B, no gradient
    torch.Size([5, 3, 32, 32])

    :param size: image side of both domains, one of :data:`~generative.models.SIZES`.
    :param channels: 1 (grey) or 3 (RGB), both domains.
    :param width: first-layer channels of the generators.
    :param blocks: residual blocks of each generator.
    :param critic_width: first-layer channels of the critics.
    :param critic_layers: stride-2 layers of the critics (None: :func:`default_critic_layers`).
    """

    kind = "cyclegan"

    def __init__(self, size: int = 64, channels: int = 3, width: int = 32, blocks: int = 6, critic_width: int = 32,
                 critic_layers: int | None = None) -> None:
        super().__init__()
        critic_layers = default_critic_layers(size) if critic_layers is None else critic_layers
        self.size, self.channels, self.width, self.blocks = size, channels, width, blocks
        self.critic_width, self.critic_layers = critic_width, critic_layers
        self.g_ab = Translator(size, channels, width, blocks)
        self.g_ba = Translator(size, channels, width, blocks)
        self.d_a = PatchCritic(size, channels, critic_width, critic_layers)
        self.d_b = PatchCritic(size, channels, critic_width, critic_layers)

    def config(self) -> dict[str, Any]:
        return {"size": self.size, "channels": self.channels, "width": self.width, "blocks": self.blocks,
                "critic_width": self.critic_width, "critic_layers": self.critic_layers}

    def generators(self) -> list[nn.Parameter]:
        """Parameters of both generators (one optimiser, as in the paper)."""
        return [*self.g_ab.parameters(), *self.g_ba.parameters()]

    def critics(self) -> list[nn.Parameter]:
        """Parameters of both critics."""
        return [*self.d_a.parameters(), *self.d_b.parameters()]

    def forward(self, images: torch.Tensor, direction: str = "a2b") -> torch.Tensor:
        """Translate ``images`` ``(B, channels, size, size)`` in [0, 1] A -> B (``a2b``) or B -> A (``b2a``);
        differentiable. Returns the same shape, in [0, 1]."""
        _check_direction(direction)
        _check_images(images, self.channels, self.size)
        return (self.g_ab if direction == "a2b" else self.g_ba)(images)

    def translate(self, images: torch.Tensor, direction: str = "a2b", batch: int = 64) -> torch.Tensor:
        """Translate any images, without gradient, in batches of ``batch``.

        :param images: ``(B, 1 or 3, H, W)`` float in [0, 1], any side: resized to ``size`` and
            converted to the model's channels first (:func:`generative.adapt_images`).
        :param direction: ``a2b`` or ``b2a``.
        :return: ``(B, channels, size, size)`` float in [0, 1] on the model's device.
        """
        from paintgym.generative.data import adapt_images

        _check_direction(direction)
        net = self.g_ab if direction == "a2b" else self.g_ba
        with torch.no_grad():
            parts = [net(adapt_images(images[i:i + batch].to(self.device), self.size, self.channels))
                     for i in range(0, len(images), batch)]
        if not parts:
            return images.new_zeros(0, self.channels, self.size, self.size, device=self.device)
        return torch.cat(parts)

    def cycle(self, images: torch.Tensor, direction: str = "a2b", batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """``(translation, reconstruction)`` of ``images`` as :meth:`translate` takes them: for ``a2b``,
        ``G_ab(a)`` and ``G_ba(G_ab(a))``; each ``(B, channels, size, size)`` in [0, 1]."""
        there = self.translate(images, direction, batch)
        return there, self.translate(there, "b2a" if direction == "a2b" else "a2b", batch)


MODELS[CycleGAN.kind] = CycleGAN  # checkpoints of kind "cyclegan" rebuild this class


# ---------------------------------------------------------------- training


class ImagePool:
    """The history of translations a critic learns from (Shrivastava et al., 2017; CycleGAN's ``ImagePool``).

    Until ``capacity`` images are stored each new translation is stored and used; after that each is,
    with probability 1/2, swapped for a random stored one (which the critic then sees instead).
    Draws use ``generator`` only, so a run is reproducible; :meth:`state` / :meth:`load_state` save it.
    """

    def __init__(self, capacity: int = 50) -> None:
        if capacity < 0:
            raise ValueError(f"pool capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.images: torch.Tensor | None = None  # (n, C, H, W), n <= capacity

    def query(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``images`` ``(B, C, H, W)`` (detached) -> ``(B, C, H, W)``, some of them swapped for older ones."""
        images = images.detach()
        if self.capacity == 0:
            return images
        source = generator.device if generator is not None else images.device
        coins = torch.rand(len(images), generator=generator, device=source).tolist()
        picks = torch.randint(self.capacity, (len(images),), generator=generator, device=source).tolist()
        out = []
        for image, coin, pick in zip(images, coins, picks, strict=True):
            stored = 0 if self.images is None else len(self.images)
            if stored < self.capacity:
                self.images = image[None].clone() if self.images is None else torch.cat([self.images, image[None]])
                out.append(image)
            elif coin < 0.5:
                out.append(self.images[pick].clone())
                self.images[pick] = image
            else:
                out.append(image)
        return torch.stack(out)

    def state(self) -> torch.Tensor | None:
        return None if self.images is None else self.images.clone()

    def load_state(self, images: torch.Tensor | None, device: torch.device | str) -> None:
        self.images = None if images is None else images.to(device)


def lsgan_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss ``mean((scores - 1)^2)`` for real targets, ``mean(scores^2)`` for fake ones."""
    scores = scores.float()
    return (scores - 1.0).square().mean() if real else scores.square().mean()


def generator_losses(model: CycleGAN, real_a: torch.Tensor, real_b: torch.Tensor, cycle_weight: float = 10.0,
                     identity_weight: float = 0.5) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor,
                                                             torch.Tensor]:
    """The generators' objective on one batch of each domain.

    ``L = LS(D_b(G_ab(a)), 1) + LS(D_a(G_ba(b)), 1) + cycle_weight * (|G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1)
    + identity_weight * cycle_weight * (|G_ab(b) - b|_1 + |G_ba(a) - a|_1)`` (L1 as a per-pixel mean).

    :param real_a: ``(B, channels, size, size)`` in [0, 1]; ``real_b`` ``(B', channels, size, size)``.
    :return: the loss, detached statistics (``gan_ab``, ``gan_ba``, ``cycle_a``, ``cycle_b``, ``identity``),
        and the translations ``G_ab(a)``, ``G_ba(b)`` (with their graph) for the critics' step.
    """
    fake_b, fake_a = model.g_ab(real_a), model.g_ba(real_b)
    cycle_a = (model.g_ba(fake_b) - real_a).abs().mean()
    cycle_b = (model.g_ab(fake_a) - real_b).abs().mean()
    gan_ab, gan_ba = lsgan_loss(model.d_b(fake_b), True), lsgan_loss(model.d_a(fake_a), True)
    loss = gan_ab + gan_ba + cycle_weight * (cycle_a + cycle_b)
    identity = torch.zeros((), device=real_a.device)
    if identity_weight > 0:
        identity = (model.g_ab(real_b) - real_b).abs().mean() + (model.g_ba(real_a) - real_a).abs().mean()
        loss = loss + identity_weight * cycle_weight * identity
    stats = {"gan_ab": gan_ab.detach(), "gan_ba": gan_ba.detach(), "cycle_a": cycle_a.detach(),
             "cycle_b": cycle_b.detach(), "identity": identity.detach()}
    return loss, stats, fake_b, fake_a


def critic_losses(model: CycleGAN, real_a: torch.Tensor, real_b: torch.Tensor, fake_a: torch.Tensor,
                  fake_b: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Both critics' least-squares objective, halved as in the paper (the critics learn at half the
    generators' rate): ``(LS(D_a(a), 1) + LS(D_a(fake_a), 0) + LS(D_b(b), 1) + LS(D_b(fake_b), 0)) / 2``.

    :param fake_a: ``(B, channels, size, size)`` translations B -> A (from the pool; detached here), ``fake_b`` A -> B.
    """
    critic_a = lsgan_loss(model.d_a(real_a), True) + lsgan_loss(model.d_a(fake_a.detach()), False)
    critic_b = lsgan_loss(model.d_b(real_b), True) + lsgan_loss(model.d_b(fake_b.detach()), False)
    loss = 0.5 * (critic_a + critic_b)
    return loss, {"critic_a": critic_a.detach(), "critic_b": critic_b.detach()}


def train_step(model: CycleGAN, real_a: torch.Tensor, real_b: torch.Tensor, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, pools: tuple[ImagePool, ImagePool] | None = None,
               generator: torch.Generator | None = None, cycle_weight: float = 10.0,
               identity_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """One CycleGAN update on a batch of each domain: the generators (through frozen critics), then the critics.

    :param real_a: ``(B, channels, size, size)`` in [0, 1] images of domain A; ``real_b`` of domain B.
    :param opt_g: optimiser of :meth:`CycleGAN.generators`; ``opt_d`` of :meth:`CycleGAN.critics`.
    :param pools: history pools ``(of translations into A, into B)``; None: the critics see this batch's.
    :param generator: random stream of the pools.
    :return: detached statistics: ``loss_g``, ``loss_d`` and the terms of :func:`generator_losses`
        and :func:`critic_losses`.

    Data-parallel (``torchrun``): ``real_a``, ``real_b`` are this rank's equal parts of the global batches;
    the gradients are averaged over the ranks (one ``all_reduce`` per update), and the history pools take
    every rank's translations (all-gathered in rank order, drawn from the same ``generator`` on every rank),
    so every rank holds the one-process pools and keeps its part of what they return.
    """
    critics = (model.d_a, model.d_b)
    for critic in critics:
        critic.requires_grad_(False)
    loss_g, stats, fake_b, fake_a = generator_losses(model, real_a, real_b, cycle_weight, identity_weight)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    collective.average_gradients_(model.generators())
    opt_g.step()
    for critic in critics:
        critic.requires_grad_(True)
    if pools is not None:
        fake_a = collective.shard(pools[0].query(collective.all_gather_cat(fake_a.detach()), generator))
        fake_b = collective.shard(pools[1].query(collective.all_gather_cat(fake_b.detach()), generator))
    loss_d, critic_stats = critic_losses(model, real_a, real_b, fake_a, fake_b)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    collective.average_gradients_(model.critics())
    opt_d.step()
    return {"loss_g": loss_g.detach(), "loss_d": loss_d.detach(), **stats, **critic_stats}


def cycle_errors(model: CycleGAN, images_a: torch.Tensor, images_b: torch.Tensor, batch: int = 64) -> dict[str, float]:
    """Mean absolute per-pixel errors on [0, 1] images (``(N, channels, size, size)`` float, each domain):

    * ``cycle_a`` ``|G_ba(G_ab(a)) - a|``, ``cycle_b`` ``|G_ab(G_ba(b)) - b|``: the cycle reconstruction error;
    * ``change_a`` ``|G_ab(a) - a|``, ``change_b`` ``|G_ba(b) - b|``: how far the translation moved the
      image (an identity map has cycle error 0 *and* change 0: read the two together).
    """
    out = {}
    for name, images, direction in (("a", images_a, "a2b"), ("b", images_b, "b2a")):
        images = images.to(model.device)
        there, back = model.cycle(images, direction, batch)
        out[f"cycle_{name}"] = float((back - images).abs().mean())
        out[f"change_{name}"] = float((there - images).abs().mean())
    return out


def random_crops(images: torch.Tensor, size: int, generator: torch.Generator | None = None,
                 flip: bool = True) -> torch.Tensor:
    """The paper's jitter: a random ``size`` x ``size`` crop of each ``(B, C, S, S)`` image (``S >= size``),
    mirrored left-right with probability 1/2 when ``flip``. Draws use ``generator`` (on its device)."""
    b, side = images.shape[0], images.shape[-1]
    source = generator.device if generator is not None else images.device
    offsets = torch.randint(side - size + 1, (b, 2), generator=generator, device=source).tolist()
    flips = (torch.rand(b, generator=generator, device=source) < 0.5).tolist() if flip else [False] * b
    crops = [image[:, top:top + size, left:left + size] for image, (top, left) in zip(images, offsets, strict=True)]
    return torch.stack([crop.flip(-1) if mirrored else crop for crop, mirrored in zip(crops, flips, strict=True)])


def linear_decay(step: int, steps: int, start: float = 0.5) -> float:
    """The paper's schedule as a factor of the learning rate: 1 for the first ``start`` of ``steps``, then
    linearly down to 0 at ``steps``."""
    begin = start * steps
    if step < begin or steps <= begin:
        return 1.0
    return max(0.0, 1.0 - (step - begin) / (steps - begin))

