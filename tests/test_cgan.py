"""The class-conditional GAN (CGAN): models, losses, class-conditional prior targets and the ``gan(class=K)`` reward."""

from __future__ import annotations

import pytest
import torch

from paintgym import generative, rewards
from paintgym.generative import GAN, critic_loss, generator_loss


def _cgan(tmp_path, classes: int = 3):
    torch.manual_seed(0)
    gan = GAN(size=32, channels=1, latent_dim=8, width=8, num_classes=classes)
    path = tmp_path / "cgan.pt"
    generative.save_checkpoint(path, gan)
    return gan, path


def test_generator_paints_the_class_it_is_given() -> None:
    torch.manual_seed(0)
    gan = GAN(size=32, channels=1, latent_dim=8, width=8, num_classes=4).eval()
    z = torch.randn(4, 8)
    with torch.no_grad():
        a = gan.generator(z, torch.tensor([0, 1, 2, 3]))
        b = gan.generator(z, torch.tensor([3, 2, 1, 0]))
        one = gan.generator(z[2:3], torch.tensor([2]))
    assert a.shape == (4, 1, 32, 32) and 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert not torch.allclose(a, b)  # the label changes the image for the same noise
    assert torch.allclose(one, a[2:3], atol=1e-4)


def test_projection_critic_scores_depend_on_the_class_and_losses_run() -> None:
    torch.manual_seed(0)
    gan = GAN(size=32, channels=1, latent_dim=8, width=8, num_classes=3)
    torch.nn.init.normal_(gan.critic.embed.weight, std=1.0)
    images = torch.rand(5, 1, 32, 32)
    zeros, ones = torch.zeros(5, dtype=torch.long), torch.ones(5, dtype=torch.long)
    assert not torch.allclose(gan(images, zeros), gan(images, ones))
    labels = torch.tensor([0, 1, 2, 0, 1])
    fake = gan.generator(torch.randn(5, 8), labels)
    loss, stats = critic_loss(gan.critic, images, fake, labels=labels, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert gan.critic.embed.weight.grad is not None and float(stats["gp"]) >= 0
    generator_loss(gan.critic, gan.generator(torch.randn(5, 8), labels), labels).backward()


@pytest.mark.parametrize(("labels", "message"), [
    (None, "pass labels="), (torch.tensor([0, 5]), "[0, 3)"), (torch.tensor([0.0, 1.0]), "integer tensor")])
def test_bad_labels_get_a_one_line_error(labels, message) -> None:
    gan = GAN(size=32, channels=1, latent_dim=8, width=8, num_classes=3)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        gan.generator(torch.randn(2, 8), labels)
    with pytest.raises(ValueError, match="not class-conditional"):
        GAN(size=32, channels=1, latent_dim=8, width=8)(torch.rand(2, 1, 32, 32), torch.tensor([0, 1]))


def test_unconditional_checkpoints_without_num_classes_still_load(tmp_path) -> None:
    gan = GAN(size=32, channels=1, latent_dim=8, width=8)
    path = tmp_path / "gan.pt"
    generative.save_checkpoint(path, gan)
    payload = torch.load(path, weights_only=True)
    payload["config"].pop("num_classes")  # as written before class conditioning existed
    torch.save(payload, path)
    assert generative.load(path).num_classes == 0


def test_class_prior_targets_sample_one_class(tmp_path) -> None:
    gan, path = _cgan(tmp_path)
    assert generative.parse_prior_spec(f"gan:{path}:class=2") == ("gan", str(path), 2)
    images = generative.prior_images("gan", path, size=16, count=6, label=2)
    gan.eval()
    expected = gan.sample(6, torch.Generator().manual_seed(0), torch.full((6,), 2))
    assert images.shape == (6, 16, 16, 3)
    assert torch.allclose(torch.as_tensor(images[..., 0]).float() / 255,
                          torch.nn.functional.interpolate(expected, size=16, mode="area")[:, 0], atol=0.02)
    with pytest.raises(ValueError, match="classes 0..2, not 7"):
        generative.prior_images("gan", path, size=16, count=2, label=7)
    source = __import__("paintgym.envs.targets", fromlist=["TargetSource"]).TargetSource.from_spec(
        f"gan:{path}:class=1", 16, split="all")
    assert source.images.shape[1:] == (16, 16, 3)


def test_class_reward_scores_that_class_and_is_differentiable(tmp_path) -> None:
    gan, path = _cgan(tmp_path)
    reward = rewards.build(f"gan(checkpoint={path},class=1)")
    canvas = torch.rand(3, 3, 32, 32, requires_grad=True)
    score = reward.score(canvas)
    score.sum().backward()
    assert canvas.grad is not None and score.shape == (3,)
    grey = generative.adapt_images(canvas.detach(), 32, 1)
    assert torch.allclose(score.detach(), gan.eval().critic(grey, labels=torch.ones(3, dtype=torch.long)), atol=1e-5)
    with pytest.raises(ValueError, match="class-conditional"):
        rewards.build(f"gan(checkpoint={path})")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        rewards.build(f"gan(checkpoint={path},class=3)")
    per_episode = rewards.build(f"gan(checkpoint={path},class=condition)")  # each painting's own class
    labels = torch.tensor([2, 0, 1])
    assert per_episode.uses_condition and per_episode.num_classes == 3
    assert torch.allclose(per_episode.score(canvas.detach(), condition=labels),
                          gan.critic(grey, labels=labels), atol=1e-5)


def test_train_gan_conditional_learns_which_class_an_image_is(tmp_path) -> None:
    """After a short CGAN training on digits, the projection critic scores held-out real digits higher as
    their own class than as the other classes, and the sample grid has one row per class."""
    from paintgym.experiments.train_gan import Args, train
    from paintgym.generative.data import as_float, load_labelled

    out = tmp_path / "cgan"
    result = train(Args(data="digits", conditional=True, width=8, latent_dim=8, steps=60, batch_size=32, n_critic=1,
                        lr=5e-4, out=str(out), device="cpu", sample_every=60, checkpoint_every=60), progress=False)
    assert result.model.num_classes == 10 and (out / "samples" / "step_000060.png").exists()
    heldout = load_labelled("digits", 32, 1, split="test")
    images, labels = as_float(heldout.images), heldout.labels
    with torch.no_grad():
        scores = torch.stack([result.model.critic(images, labels=torch.full_like(labels, k)) for k in range(10)], 1)
    own = scores[torch.arange(len(labels)), labels]
    others = (scores.sum(1) - own) / 9
    assert (own > others).float().mean() > 0.75
    assert generative.load(out / "ckpt.pt").num_classes == 10  # the checkpoint rebuilds the CGAN


def test_conditional_on_unlabelled_data_is_a_one_line_error(tmp_path, capsys) -> None:
    from paintgym.experiments.train_gan import main

    assert main(["--data", "faces", "--conditional", "--out", str(tmp_path / "x"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no class labels" in err
