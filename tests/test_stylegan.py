"""StyleGAN-lite: modulated convolutions, the generator inside GAN(arch="stylegan"), style mixing, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paintgym import generative
from paintgym.generative import GAN, critic_loss, generator_loss
from paintgym.generative.stylegan import ModulatedConv2d, StyleGenerator, mixing_grid, style_mix


def _generator(**options) -> StyleGenerator:
    torch.manual_seed(0)
    return StyleGenerator(**{"size": 32, "channels": 1, "latent_dim": 8, "width": 4, **options}).eval()


def test_generator_shapes_ranges_and_styles() -> None:
    for size, channels, num_ws in ((32, 1, 8), (64, 3, 10)):
        gen = _generator(size=size, channels=channels)
        assert gen.num_ws == num_ws
        images = gen(torch.randn(3, 8))
        assert images.shape == (3, channels, size, size)
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    gen = _generator()
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(gen(z), gen(z))  # eval mode: fixed noise, no mixing
    assert torch.equal(gen.sample(4, torch.Generator().manual_seed(3)), gen.sample(4, torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match=r"z must have shape \(B, 8\)"):
        gen(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"ws must have shape"):
        gen.synthesis(torch.randn(2, 3, 8))


def test_modulated_convolution_equals_per_sample_weights() -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(3, 5, 3, w_dim=4)
    x, w = torch.randn(2, 3, 6, 6), torch.randn(2, 4)
    styles = conv.affine(w)
    for b in range(2):  # StyleGAN2's definition: w'' = s w / ||s w||, one weight per sample
        weight = conv.weight * styles[b][None, :, None, None]
        weight = weight / weight.square().sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        expected = torch.nn.functional.conv2d(x[b:b + 1], weight, padding=1)
        assert torch.allclose(conv(x, w)[b:b + 1], expected, atol=1e-5)
    doubled = ModulatedConv2d(3, 5, 3, w_dim=4, upsample=True)
    assert doubled(x, w).shape == (2, 5, 12, 12)


def test_style_mixing_uses_both_latents() -> None:
    gen = _generator()
    draw = torch.Generator().manual_seed(0)
    z1, z2, z3 = (torch.randn(3, 8, generator=draw) for _ in range(3))
    assert torch.allclose(style_mix(gen, z1, z2, 0), gen(z2), atol=1e-6)  # all layers from the fine latent
    assert torch.allclose(style_mix(gen, z1, z2, gen.num_ws), gen(z1), atol=1e-6)
    mixed = style_mix(gen, z1, z2, 4)
    assert not torch.allclose(mixed, gen(z1), atol=1e-4) and not torch.allclose(mixed, gen(z2), atol=1e-4)
    assert not torch.allclose(style_mix(gen, z3, z2, 4), mixed, atol=1e-4)  # the coarse latent matters
    assert not torch.allclose(style_mix(gen, z1, z3, 4), mixed, atol=1e-4)  # and so does the fine one
    with pytest.raises(ValueError, match="crossover must lie in 0..8"):
        style_mix(gen, z1, z2, 9)
    sheet = mixing_grid(gen, rows=2, columns=3, crossover=4)
    assert sheet.dtype == np.uint8 and sheet.shape == (3 * 64 + 8, 4 * 64 + 10, 3)  # 3 x 4 tiles, 2-px gaps


def test_training_mode_mixes_styles_and_tracks_the_mean_style() -> None:
    gen = _generator(mixing_prob=1.0).train()
    torch.manual_seed(1)
    z = torch.randn(4, 8)
    first, second = gen(z), gen(z)
    assert not torch.allclose(first, second)  # noise and mixing are random in training
    assert float(gen.w_avg.abs().sum()) > 0
    truncated = gen.eval().sample(2, torch.Generator().manual_seed(0), truncation=0.0)
    assert torch.allclose(truncated[0], truncated[1], atol=1e-5)  # psi = 0: every sample is the mean style's


def test_gan_arch_stylegan_trains_with_wgan_gp_and_round_trips(tmp_path) -> None:
    torch.manual_seed(0)
    gan = GAN(size=32, channels=1, latent_dim=8, width=4, arch="stylegan")
    assert isinstance(gan.generator, StyleGenerator) and gan.config()["arch"] == "stylegan"
    real = torch.rand(4, 1, 32, 32)
    fake = gan.generator(torch.randn(4, 8))
    loss, stats = critic_loss(gan.critic, real, fake, generator=torch.Generator().manual_seed(0))
    loss.backward()
    generator_loss(gan.critic, gan.generator(torch.randn(4, 8))).backward()
    assert gan.generator.const.grad is not None and gan.generator.mapping.fc[0].weight.grad is not None
    path = generative.save_checkpoint(tmp_path / "style.pt", gan)
    loaded = generative.load(path, kind="gan", arch="stylegan")
    gan.eval()
    seeded = torch.Generator().manual_seed
    assert torch.equal(loaded.sample(3, seeded(2)), gan.sample(3, seeded(2)))
    images = generative.prior_images("gan", path, size=16, count=5)  # gan:PATH targets work for either arch
    assert images.shape == (5, 16, 16, 3)
    with pytest.raises(ValueError, match="unknown GAN architecture 'big'"):
        GAN(size=32, channels=1, arch="big")


def test_old_gan_checkpoints_without_arch_load_as_dcgan(tmp_path) -> None:
    gan = GAN(size=32, channels=1, latent_dim=8, width=4)
    path = generative.save_checkpoint(tmp_path / "gan.pt", gan)
    payload = torch.load(path, weights_only=True)
    payload["config"].pop("arch")  # as written before the choice existed
    torch.save(payload, path)
    loaded = generative.load(path)
    assert loaded.arch == "dcgan" and isinstance(loaded.generator, generative.Generator)


def test_class_conditional_stylegan() -> None:
    gen = _generator(num_classes=3)
    z = torch.randn(3, 8)
    a, b = gen(z, torch.tensor([0, 1, 2])), gen(z, torch.tensor([2, 1, 0]))
    assert not torch.allclose(a, b) and torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="pass labels="):
        gen(z)
    assert gen.sample(4, torch.Generator().manual_seed(0)).shape == (4, 1, 32, 32)
