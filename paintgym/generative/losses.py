"""The WGAN-GP objective (Gulrajani et al., 2017), shared by ``train-gan`` and the online ``gan`` reward."""

from __future__ import annotations

import torch

from paintgym.generative.models import Critic


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (autocast may hand back bfloat16), keeping float64 for exact checks."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _scores(critic: Critic, images: torch.Tensor, condition: torch.Tensor | None,
            labels: torch.Tensor | None) -> torch.Tensor:
    """The critic's scores, widened; labels are passed only when there are some (any critic with
    ``forward(images, condition=None)`` works unconditionally)."""
    return _wide(critic(images, condition) if labels is None else critic(images, condition, labels))


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, condition: torch.Tensor | None = None,
                     generator: torch.Generator | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``E[(||grad_x critic(x)||_2 - 1)^2]`` at random points ``x`` between real and fake images.

    ``x = eps * real + (1 - eps) * fake`` with one ``eps ~ U(0, 1)`` per image, drawn as
    ``torch.rand(B, 1, 1, 1, generator=generator)`` on the generator's device (the images' device
    when None). A conditional critic keeps ``condition`` fixed and is differentiated with respect
    to the canvas only.

    :param real: ``(B, C, H, W)`` in [0, 1]; ``fake`` the same shape.
    :param condition: ``(B, C, H, W)`` targets for a conditional critic, else None.
    :param labels: ``(B,)`` classes of both real and fake images for a class-conditional critic, else None.
    :return: scalar tensor, differentiable with respect to the critic's parameters.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    source = generator.device if generator is not None else real.device
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device=source).to(real.device, real.dtype)
    mixed = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    scores = _scores(critic, mixed, condition, labels)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return (_wide(grad).flatten(1).norm(2, dim=1) - 1.0).square().mean()


def critic_loss(critic: Critic, real: torch.Tensor, fake: torch.Tensor, gp_weight: float = 10.0,
                condition: torch.Tensor | None = None, generator: torch.Generator | None = None,
                drift_weight: float = 0.0, labels: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """WGAN-GP critic loss ``E[D(fake)] - E[D(real)] + gp_weight * GP (+ drift_weight * E[D(real)^2])``.

    :param real: ``(B, C, H, W)`` in [0, 1] real images (for a conditional critic: the targets
        themselves, as Learning to Paint pairs (target, target) as real); ``fake`` ``(B', C, H, W)``
        (detached here; ``B' = B`` when ``gp_weight > 0``).
    :param condition: ``(B, C, H, W)`` targets for a conditional critic (paired with both real and fake).
    :param labels: ``(B,)`` classes for a class-conditional critic (CGAN): the fakes were generated as
        the real images' classes, so each pair is scored as its class.
    :param drift_weight: ProGAN's small penalty on real scores that keeps them near 0 (0 = plain WGAN-GP).
    :return: scalar loss to minimise, and statistics as detached scalar tensors: ``wasserstein``
        (``E[D(real)] - E[D(fake)]``, the critic's estimate of the distance), ``gp``, ``real`` and
        ``fake`` (mean scores).
    """
    fake = fake.detach()
    real_scores = _scores(critic, real, condition, labels)
    fake_scores = _scores(critic, fake, condition, labels)
    wasserstein = real_scores.mean() - fake_scores.mean()
    loss = -wasserstein
    if gp_weight > 0:
        gp = gradient_penalty(critic, real, fake, condition, generator, labels)
        loss = loss + gp_weight * gp
    else:
        gp = torch.zeros((), device=real.device)
    if drift_weight > 0:
        loss = loss + drift_weight * real_scores.square().mean()
    # detached tensors, not floats: the caller decides when to synchronise with the device
    stats = {"wasserstein": wasserstein.detach(), "gp": gp.detach(), "real": real_scores.detach().mean(),
             "fake": fake_scores.detach().mean()}
    return loss, stats


def generator_loss(critic: Critic, fake: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``-E[D(fake)]`` for generator samples ``fake`` ``(B, C, H, W)`` in [0, 1] (keeps their gradient),
    scored as classes ``labels`` ``(B,)`` by a class-conditional critic."""
    return -_scores(critic, fake, None, labels).mean()
