"""The training steps of the generative models: one update each, and their held-out scores.

The loops around them -- run folder, resume, logs, signals -- are the run layer's
(:mod:`experiments.train_gan`, :mod:`experiments.train_vae`, :mod:`experiments.train_classifier`).
Each step takes its batches and random streams as arguments and runs the forward passes under
bfloat16 autocast when ``amp`` (which the caller enables on CUDA only); losses and statistics come
back as detached scalar tensors, so the caller decides when to synchronise with the device.

Data-parallel (``torchrun``): each rank passes its slice of the batch, and the steps average
the gradients over the ranks with one ``all_reduce`` of a flat buffer per update
(:func:`canvas.collective.average_gradients_`; a no-op on one process). DDP's module wrapper is not used:
WGAN-GP's gradient penalty needs a double backward, which DDP does not support, and the VAE's loss is
not its ``forward``; one mechanism serves every step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch.nn import functional as F

from paintgym.canvas import collective
from paintgym.canvas.render import render
from paintgym.generative.classifier import REJECT_NAME, Classifier
from paintgym.generative.data import adapt_images, as_float
from paintgym.generative.losses import critic_loss, generator_loss
from paintgym.generative.models import GAN, VAE

EVAL_BATCH = 256  # held-out images per forward pass of the VAE's evaluation
CLASSIFIER_EVAL_BATCH = 512  # held-out images per forward pass of the classifier's


def _autocast(device: torch.device, amp: bool) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp)


@contextlib.contextmanager
def evaluating(*modules: torch.nn.Module) -> Iterator[None]:
    """Put modules in eval mode (and no-grad) for the block, then back in train mode."""
    for module in modules:
        module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module in modules:
            module.train()


# ---------------------------------------------------------------- GAN


def gan_step(model: GAN, opt_generator: torch.optim.Optimizer, opt_critic: torch.optim.Optimizer,
             real_batch: Callable[[], torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
             noise: Callable[[], torch.Tensor], n_critic: int, gp_weight: float, noise_stream: torch.Generator,
             amp: bool = False) -> dict[str, torch.Tensor]:
    """One WGAN-GP step (Gulrajani et al., 2017): ``n_critic`` critic updates on fresh real batches and
    generator samples, then one generator update through the frozen critic.

    A class-conditional GAN (``model.num_classes > 0``, a CGAN) paints each real batch's classes:
    the fakes of a critic update get the real images' labels, and the generator update draws the
    labels of another real batch, so classes come in the data's proportions.

    :param real_batch: draws a batch of real images ``(B, C, H, W)`` float in [0, 1]; for a CGAN, a
        pair (images, labels ``(B,)`` int64).
    :param noise: draws a batch of latent noise ``(B, latent_dim)``.
    :param noise_stream: the generator of the gradient penalty's interpolation weights.
    :return: ``loss/critic``, ``loss/generator`` and ``critic/<statistic>`` (:func:`critic_loss`'s).
    """
    generator, critic = model.generator, model.critic
    device = next(model.parameters()).device

    def draw() -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = real_batch()
        return batch if isinstance(batch, tuple) else (batch, None)

    critic.requires_grad_(True)
    for _ in range(n_critic):
        real, labels = draw()
        with _autocast(device, amp):
            with torch.no_grad():
                fake = generator(noise(), labels) if labels is not None else generator(noise())
            loss_c, stats = critic_loss(critic, real, fake.float(), gp_weight, generator=noise_stream, labels=labels)
        opt_critic.zero_grad(set_to_none=True)
        loss_c.backward()
        collective.average_gradients_(critic.parameters())  # data-parallel: one all_reduce (no DDP: double backward)
        opt_critic.step()
    critic.requires_grad_(False)
    labels = draw()[1] if model.num_classes else None
    with _autocast(device, amp):
        fake = generator(noise(), labels) if labels is not None else generator(noise())
        loss_g = generator_loss(critic, fake, labels)
    opt_generator.zero_grad(set_to_none=True)
    loss_g.backward()
    collective.average_gradients_(generator.parameters())
    opt_generator.step()
    critic.requires_grad_(True)
    return {"loss/critic": loss_c.detach(), "loss/generator": loss_g.detach(),
            **{f"critic/{key}": value for key, value in stats.items()}}


# ---------------------------------------------------------------- VAE


def vae_step(model: VAE, optimizer: torch.optim.Optimizer, images: torch.Tensor, noise_stream: torch.Generator,
             amp: bool = False) -> dict[str, torch.Tensor]:
    """One step on ``E[-log p(x|z)] + beta * KL(q(z|x) || N(0, I))`` for images ``(B, C, H, W)`` in [0, 1].

    :return: ``loss/loss``, ``loss/nll`` and ``loss/kl`` (per image).
    """
    with _autocast(images.device, amp):
        loss, stats = model.loss(images, noise_stream)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    collective.average_gradients_(model.parameters())  # data-parallel: one all_reduce per step
    optimizer.step()
    return {f"loss/{key}": value for key, value in stats.items()}


def vae_heldout(model: VAE, images: torch.Tensor) -> dict[str, float]:
    """Held-out reconstruction MSE (per pixel) and mean ELBO (nats per image, posterior mean decoded).

    :param images: ``(N, C, size, size)`` uint8 on the model's device.
    """
    squared, elbo = torch.zeros((), device=images.device), torch.zeros((), device=images.device)
    with evaluating(model):
        for start in range(0, len(images), EVAL_BATCH):  # bounded memory for any held-out set
            x = as_float(images[start:start + EVAL_BATCH])
            squared += (model.reconstruct(x) - x).square().sum()
            elbo += model.elbo(x, samples=0).sum()
    return {"mse": squared.item() / images.numel(), "elbo": elbo.item() / len(images)}


# ---------------------------------------------------------------- classifier


def classifier_step(model: Classifier, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
                    amp: bool = False, total: int | None = None) -> dict[str, torch.Tensor]:
    """One cross-entropy step on images ``(B, C, H, W)`` in [0, 1] with class indices ``labels`` ``(B,)``.

    Data-parallel (``torchrun``): ``images`` is this rank's part of a global batch of ``total`` images (None:
    ``B``, one process); the gradients are averaged over the ranks in one ``all_reduce``, and the loss is
    weighted (:func:`canvas.collective.share_weight`) so that the update is that of the mean over the whole
    global batch even when the ranks hold unequal parts. Without the average, each rank would step on its
    own part's gradient and the ranks' weights would part at the first step.

    :return: ``loss/cross_entropy`` and ``train/accuracy`` (of this batch, before the step; averaged over the
        ranks, they are the global batch's).
    """
    weight = collective.share_weight(len(labels), len(labels) if total is None else total)
    with _autocast(images.device, amp):
        logits = model(images)
    loss = F.cross_entropy(logits.float(), labels) * weight
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    collective.average_gradients_(model.parameters())  # data-parallel: one all_reduce per step
    optimizer.step()
    return {"loss/cross_entropy": loss.detach(),
            "train/accuracy": (logits.detach().argmax(1) == labels).float().mean() * weight}


def classifier_heldout(model: Classifier, images: torch.Tensor, labels: torch.Tensor,
                       rejects: torch.Tensor | None = None) -> dict:
    """Held-out scores of a classifier.

    :param images: ``(N, C, size, size)`` uint8 held-out images; ``labels`` ``(N,)`` their classes.
    :param rejects: ``(M, C, size, size)`` uint8 "none" examples, or None.
    :return: ``accuracy`` (argmax over every output), ``per_class`` accuracy by class name,
        ``reject_accuracy`` (fraction of ``rejects`` called "none"; None without), ``confusion``
        (rows: true classes then "none" if ``rejects``; columns: :attr:`Classifier.output_names`),
        ``rows``/``columns`` (names), ``count``, and ``predictions`` ``(N,)`` (a tensor, not for JSON).
    """
    def predict(batch_source: torch.Tensor) -> torch.Tensor:
        with evaluating(model):
            return torch.cat([model(as_float(batch_source[i:i + CLASSIFIER_EVAL_BATCH])).argmax(1)
                              for i in range(0, len(batch_source), CLASSIFIER_EVAL_BATCH)])

    predictions = predict(images)
    outputs = model.outputs
    confusion = torch.zeros(model.classes + (1 if rejects is not None else 0), outputs, dtype=torch.int64)
    pairs = (labels.cpu() * outputs + predictions.cpu()).bincount(minlength=model.classes * outputs)
    confusion[:model.classes] = pairs.view(model.classes, outputs)
    reject_accuracy = None
    if rejects is not None:
        called = predict(rejects).cpu().bincount(minlength=outputs)
        confusion[-1] = called
        reject_accuracy = float(called[-1]) / len(rejects) if model.reject else 0.0
    per_row = confusion[:model.classes].sum(1).clamp(min=1)
    diagonal = confusion[:model.classes].diagonal()
    return {"accuracy": float(diagonal.sum()) / max(len(labels), 1),
            "per_class": {name: float(d) / float(n) for name, d, n in zip(model.names, diagonal, per_row,
                                                                          strict=True)},
            "reject_accuracy": reject_accuracy, "count": len(labels),
            "rows": model.names + ([REJECT_NAME] if rejects is not None else []),
            "columns": model.output_names, "confusion": confusion.tolist(), "predictions": predictions}


def reject_examples(count: int, size: int, channels: int, seed: int,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """``count`` examples of "none" ``(count, channels, size, size)`` uint8: what is not a painting of anything.

    Half are blank canvases (white, black, then random flat colours), half random-stroke paintings
    (1 to 16 uniformly random strokes on white or black) as a random painting policy makes.
    """
    generator = torch.Generator().manual_seed(seed)
    blanks = count // 2
    colours = torch.rand(blanks, 3, 1, 1, generator=generator)
    colours[0::4], colours[1::4] = 1.0, 0.0  # the usual paper colours, often
    parts = [colours.expand(-1, -1, size, size)]
    groups = (1, 2, 4, 8, 16)
    remaining = count - blanks
    for i, strokes in enumerate(groups):
        n = remaining // len(groups) + (1 if i < remaining % len(groups) else 0)
        if n == 0:
            continue
        params = torch.rand(n, strokes, 13, generator=generator)
        background = float(torch.randint(0, 2, (), generator=generator))  # white or black paper
        parts.append(render(params, size=size, background=background))
    images = adapt_images(torch.cat(parts), size, channels)
    return images.mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8).to(device)


def augment(images: torch.Tensor, generator: torch.Generator, draws: torch.Tensor | None = None) -> torch.Tensor:
    """Randomly rotate (up to 10 degrees), scale (0.9-1.1) and shift (up to 10% of the side) ``(B, C, H, W)``
    float images, each its own way; edges are extended (``border`` padding), so paper stays paper.

    :param draws: ``(B, 4)`` uniform [0, 1) numbers to use instead of drawing from ``generator`` (a
        data-parallel rank's part of the global batch's draws).
    """
    b, device = images.shape[0], images.device
    if draws is None:
        draws = torch.rand(b, 4, generator=generator, device=generator.device)
    u = draws.to(device) * 2.0 - 1.0
    angle, scale, shift = u[:, 0] * math.radians(10.0), 1.0 + 0.1 * u[:, 1], 0.2 * u[:, 2:]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
