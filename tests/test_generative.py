"""Generative models: shapes, WGAN-GP objective, learning on digits, checkpoints, exact resume, data errors."""

from __future__ import annotations

import dataclasses
import signal
import threading

import numpy as np
import pytest
import torch

from paintgym import generative
from paintgym.experiments.generative_runs import TrainingError, parse_args
from paintgym.generative import GAN, VAE, CheckpointError, Critic, Generator
from paintgym.generative.data import as_float, load_dataset, random_stroke_canvases
from tests.helpers_generative import GAN_OPTIONS, one_thread, trained_gan


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield

# ---------------------------------------------------------------- models


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_model_shapes_and_ranges(size: int, channels: int) -> None:
    torch.manual_seed(0)
    gan = GAN(size, channels, latent_dim=8, width=4)
    z = torch.randn(2, 8)
    images = gan.generator(z)
    assert images.shape == (2, channels, size, size)
    assert images.min() >= 0 and images.max() <= 1
    assert gan.critic(images).shape == (2,)
    pair_critic = Critic(size, channels, conditional=True, width=4)
    assert pair_critic(images, condition=images.flip(0)).shape == (2,)

    vae = VAE(size, channels, latent_dim=8, width=4)
    mu, logvar = vae.encode(images)
    assert mu.shape == logvar.shape == (2, 8)
    assert vae.decode(mu).shape == images.shape
    assert vae.sample(3, torch.Generator().manual_seed(0)).shape == (3, channels, size, size)
    assert vae.elbo(images).shape == (2,)
    frames = vae.interpolate(images[0], images[1], steps=5)
    assert frames.shape == (5, channels, size, size)
    torch.testing.assert_close(frames[0], vae.reconstruct(images[:1])[0])
    torch.testing.assert_close(frames[-1], vae.reconstruct(images[1:])[0])
    for model in (gan, gan.generator, gan.critic, vae):
        assert (model.size, model.channels) == (size, channels)


def test_models_reject_bad_configuration_and_inputs() -> None:
    with pytest.raises(ValueError, match="size 48 is not supported"):
        Generator(48, 3)
    with pytest.raises(ValueError, match="channels must be 1"):
        VAE(32, 2)
    critic = Critic(32, 1, conditional=True, width=4)
    with pytest.raises(ValueError, match="conditional"):
        critic(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 1, 32, 32\)"):
        Critic(32, 1, width=4)(torch.rand(2, 3, 64, 64))


def test_sampling_is_reproducible_with_a_generator() -> None:
    torch.manual_seed(0)
    gen = Generator(32, 1, latent_dim=8, width=4).eval()
    first = gen.sample(4, torch.Generator().manual_seed(7))
    assert torch.equal(first, gen.sample(4, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, gen.sample(4, torch.Generator().manual_seed(8)))


def test_adapt_images_resizes_and_converts_to_grey() -> None:
    canvas = torch.rand(2, 3, 64, 64, requires_grad=True)
    grey = generative.adapt_images(canvas, 32, 1)
    assert grey.shape == (2, 1, 32, 32)
    luma = 0.299 * canvas[:, 0] + 0.587 * canvas[:, 1] + 0.114 * canvas[:, 2]
    expected = torch.nn.functional.avg_pool2d(luma[:, None], 2)  # halving = averaging 2x2 blocks
    torch.testing.assert_close(grey, expected)
    grey.sum().backward()  # differentiable, for rewards that need it
    assert canvas.grad is not None
    assert generative.adapt_images(canvas, 64, 3) is not None and generative.adapt_images(canvas, 128, 3).shape == (
        2, 3, 128, 128)


# ---------------------------------------------------------------- WGAN-GP objective


class _SquareCritic(torch.nn.Module):
    """``D(x) = sum(w * x^2)``: its input gradient ``2 w x`` is easy to write by hand."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight)

    def forward(self, images: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is not None:
            images = images * condition
        return (self.weight * images.square()).flatten(1).sum(1)


def test_gradient_penalty_matches_a_hand_computation() -> None:
    torch.manual_seed(0)
    real, fake = torch.rand(5, 1, 2, 2, dtype=torch.float64), torch.rand(5, 1, 2, 2, dtype=torch.float64)
    weight = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    critic = _SquareCritic(weight.clone())

    gp = generative.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    eps = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(3)).double()  # the documented draw
    mixed = eps * real + (1 - eps) * fake
    norms = (2 * weight * mixed).flatten(1).norm(dim=1)  # grad of sum(w x^2) is 2 w x
    assert gp.item() == pytest.approx(((norms - 1) ** 2).mean().item(), rel=1e-12)

    gp.backward()  # differentiable in the critic's parameters (double backward)
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0

    condition = torch.rand(5, 1, 2, 2, dtype=torch.float64)  # conditional: gradient w.r.t. the canvas only
    gp_cond = generative.gradient_penalty(critic, real, fake, condition, generator=torch.Generator().manual_seed(3))
    norms_cond = (2 * weight * mixed * condition.square()).flatten(1).norm(dim=1)
    assert gp_cond.item() == pytest.approx(((norms_cond - 1) ** 2).mean().item(), rel=1e-12)


def test_critic_loss_is_wgan_gp() -> None:
    torch.manual_seed(0)
    real, fake = torch.rand(4, 1, 2, 2, dtype=torch.float64), torch.rand(4, 1, 2, 2, dtype=torch.float64)
    critic = _SquareCritic(torch.randn(1, 1, 2, 2, dtype=torch.float64))
    loss, stats = generative.critic_loss(critic, real, fake, gp_weight=10.0, generator=torch.Generator().manual_seed(1))
    gp = generative.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = critic(fake).mean() - critic(real).mean() + 10.0 * gp
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert stats["wasserstein"].item() == pytest.approx((critic(real).mean() - critic(fake).mean()).item())


# ---------------------------------------------------------------- learning on digits


def test_vae_training_lowers_heldout_reconstruction_error(tmp_path) -> None:
    from paintgym.experiments.train_vae import Args, train
    from paintgym.generative.steps import vae_heldout

    args = Args(data="digits", size=32, steps=150, batch_size=32, width=16, latent_dim=16, device="cpu",
                out=str(tmp_path / "vae"), log_every=50, sample_every=1000, checkpoint_every=1000)
    heldout, channels = load_dataset("digits", 32, split="test")
    torch.manual_seed(args.seed)  # the same initial weights train() starts from
    untrained = vae_heldout(VAE(32, channels, args.latent_dim, args.beta, args.width), heldout)["mse"]
    with one_thread():
        result = train(args, progress=False)
    assert channels == 1 and result.step == 150
    assert result.heldout_mse < 0.4 * untrained, (result.heldout_mse, untrained)
    train_images, _ = load_dataset("digits", 32, split="train")
    mean_image = as_float(train_images).mean(dim=0)
    assert result.heldout_mse < (as_float(heldout) - mean_image).square().mean().item()  # beats the average digit
    vae = generative.load(tmp_path / "vae" / "ckpt.pt", kind="vae")
    x = as_float(heldout[:64])
    trained_elbo, untrained_elbo = vae.elbo(x, samples=0).mean(), VAE(32, 1, 16, width=16).elbo(x, samples=0).mean()
    assert trained_elbo > untrained_elbo  # held-out digits became more plausible
    assert sorted(p.name for p in (tmp_path / "vae" / "samples").iterdir()) == [
        "step_000150_reconstructions.png", "step_000150_samples.png"]
    assert any((tmp_path / "vae" / "tb").iterdir())  # TensorBoard events


def test_gan_critic_ranks_real_digits_above_samples_and_random_strokes() -> None:
    gan = generative.load(trained_gan(), kind="gan")
    heldout, _ = load_dataset("digits", 32, 1, split="test")
    with torch.no_grad():
        real = gan.critic(as_float(heldout[:128]))
        samples = gan.critic(gan.generator.sample(128, torch.Generator().manual_seed(1)))
        strokes = gan.critic(generative.adapt_images(random_stroke_canvases(128, 64, seed=2), 32, 1))
    for fake in (samples, strokes):
        assert real.mean() > fake.mean()
        assert (real[:, None] > fake[None, :]).float().mean() > 0.9  # nearly every pair ordered right


# ---------------------------------------------------------------- checkpoints


def test_save_load_gives_identical_outputs(tmp_path) -> None:
    gan = generative.load(trained_gan())
    generative.save_checkpoint(tmp_path / "gan.pt", gan)
    again = generative.load(tmp_path / "gan.pt", kind="gan", size=32, channels=1)
    z, x = torch.randn(8, gan.latent_dim), torch.rand(8, 1, 32, 32)
    assert torch.equal(gan.generator(z), again.generator(z))
    assert torch.equal(gan.critic(x), again.critic(x))

    torch.manual_seed(0)
    vae = VAE(64, 3, latent_dim=8, width=4, beta=2.0).eval()
    generative.save_checkpoint(tmp_path / "vae.pt", vae)
    loaded = generative.load(tmp_path / "vae.pt", kind="vae")
    x = torch.rand(4, 3, 64, 64)
    assert loaded.beta == 2.0 and not loaded.training
    assert torch.equal(vae.reconstruct(x), loaded.reconstruct(x))
    assert torch.equal(vae.sample(4, torch.Generator().manual_seed(0)),
                       loaded.sample(4, torch.Generator().manual_seed(0)))


def test_load_errors_are_clear(tmp_path) -> None:
    vae_path = generative.save_checkpoint(tmp_path / "vae.pt", VAE(32, 1, latent_dim=4, width=4))
    with pytest.raises(CheckpointError, match="is a VAE checkpoint, not a GAN one"):
        generative.load(vae_path, kind="gan")
    with pytest.raises(CheckpointError, match=r"different configuration: size=32 \(wanted 64\)"):
        generative.load(vae_path, size=64)
    with pytest.raises(CheckpointError, match="does not exist"):
        generative.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        generative.load(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a paintgym generative checkpoint"):
        generative.load(tmp_path / "other.pt")
    payload = generative.read_checkpoint(vae_path)
    payload["config"]["latent_dim"] = 5  # weights no longer fit the configuration
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="weights do not match the configuration"):
        generative.load(tmp_path / "edited.pt")


def _tiny_run(kind: str, out, steps: int, resume: bool = False):
    if kind == "gan":
        from paintgym.experiments.train_gan import Args, train

        options = {**GAN_OPTIONS, "width": 8, "latent_dim": 8, "batch_size": 16}
    else:
        from paintgym.experiments.train_vae import Args, train

        options = dict(data="digits", size=32, width=8, latent_dim=8, batch_size=16, device="cpu",
                       sample_every=1000, checkpoint_every=1000)
    args = Args(**{**options, "steps": steps, "out": str(out), "resume": resume, "log_every": 1})
    with one_thread():
        return train(args, progress=False)


@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_resume_continues_exactly(tmp_path, kind: str) -> None:
    straight = _tiny_run(kind, tmp_path / "straight", steps=6)
    _tiny_run(kind, tmp_path / "split", steps=3)
    resumed = _tiny_run(kind, tmp_path / "split", steps=6, resume=True)
    assert [row["step"] for row in resumed.history] == [4, 5, 6]
    for a, b in zip(straight.history[3:], resumed.history, strict=True):
        assert {k: v for k, v in a.items() if not k.startswith("perf/")} == \
               {k: v for k, v in b.items() if not k.startswith("perf/")}
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_resume_and_overwrite_are_checked(tmp_path) -> None:
    _tiny_run("vae", tmp_path / "run", steps=2)
    with pytest.raises(FileExistsError, match="already holds a run"):
        _tiny_run("vae", tmp_path / "run", steps=4)
    with pytest.raises(TrainingError, match="already at step 2"):
        _tiny_run("vae", tmp_path / "run", steps=2, resume=True)
    with pytest.raises(TrainingError, match="no checkpoint"):
        _tiny_run("vae", tmp_path / "elsewhere", steps=4, resume=True)
    from paintgym.experiments.train_vae import Args, train

    changed = Args(data="digits", size=32, width=16, latent_dim=8, batch_size=16, device="cpu", steps=4,
                   out=str(tmp_path / "run"), resume=True)
    with pytest.raises(TrainingError, match="--width 16 \\(run has 8\\)"):
        train(changed, progress=False)
    with pytest.raises(TrainingError, match="is a VAE checkpoint"):
        _tiny_run("gan", tmp_path / "run", steps=4, resume=True)


# ---------------------------------------------------------------- command line


def _corrupt_folder(path):
    path.mkdir()
    (path / "a.png").write_bytes(b"\x89PNG but not really")
    (path / "b.jpg").write_bytes(b"garbage")
    return path


@pytest.mark.parametrize("command", ["train-gan", "train-vae"])
@pytest.mark.parametrize("case, message", [
    ("missing", "neither a built-in"),
    ("empty", "no image files"),
    ("corrupt", "could be decoded"),
])
def test_bad_data_gets_a_one_line_error(tmp_path, capsys, command: str, case: str, message: str) -> None:
    from paintgym import cli

    data = {"missing": lambda: tmp_path / "nope",
            "empty": lambda: (tmp_path / "empty").mkdir() or tmp_path / "empty",
            "corrupt": lambda: _corrupt_folder(tmp_path / "corrupt")}[case]()
    code = cli.cli([command, "--data", str(data), "--out", str(tmp_path / "out"), "--steps", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"paintgym {command}: error:") and message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "ckpt.pt").exists()


def test_cli_options_parse_from_the_args_dataclass(tmp_path) -> None:
    from paintgym.experiments.train_gan import Args

    out = str(tmp_path / "gan")
    args = parse_args(Args, ["--size", "64", "--channels", "1", "--no-amp", "--gp-weight", "5", "--resume",
                             "--out", out], "paintgym train-gan", "test", "gan")
    assert (args.size, args.channels, args.amp, args.gp_weight, args.resume) == (64, 1, False, 5.0, True)
    assert dataclasses.replace(args, size=32).size == 32
    from paintgym import cli

    assert cli.SUBCOMMANDS["train-gan"][0] == "paintgym.experiments.train_gan"
    assert cli.SUBCOMMANDS["train-vae"][0] == "paintgym.experiments.train_vae"


# ---------------------------------------------------------------- prior


def test_prior_images_feed_the_environment_targets(tmp_path) -> None:
    from paintgym.envs.targets import TargetSource

    path = trained_gan() / "ckpt.pt"
    images = generative.prior_images("gan", path, size=48, count=5, seed=0)
    assert images.shape == (5, 48, 48, 3) and images.dtype == np.uint8
    assert (images[..., 0] == images[..., 2]).all()  # grey model -> grey RGB
    assert np.array_equal(images, generative.prior_images("gan", path, size=48, count=5, seed=0))
    assert not np.array_equal(images, generative.prior_images("gan", path, size=48, count=5, seed=1))
    source = TargetSource.from_spec(f"gan:{path}", size=64, split="all")
    assert source.images.shape[1:] == (64, 64, 3)
    with pytest.raises(CheckpointError, match="not a VAE one"):
        generative.prior_images("vae", path, size=32, count=2)


def test_ctrl_c_finishes_the_step_and_saves_a_checkpoint_to_resume_from(tmp_path, monkeypatch, capsys) -> None:
    import paintgym.experiments.train_vae as train_vae

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C handling needs the main thread")
    real_heldout = train_vae.vae_heldout

    def ctrl_c_then_score(*args):  # the user presses Ctrl-C during step 3's evaluation
        signal.raise_signal(signal.SIGINT)
        return real_heldout(*args)

    monkeypatch.setattr(train_vae, "vae_heldout", ctrl_c_then_score)
    args = train_vae.Args(data="digits", size=32, width=8, latent_dim=8, batch_size=16, device="cpu", steps=6,
                          sample_every=3, log_every=1, out=str(tmp_path / "run"))
    with one_thread():
        stopped = train_vae.train(args, progress=False)
    assert stopped.interrupted and stopped.step == 3
    assert "Ctrl-C: finishing this step" in capsys.readouterr().out
    assert generative.read_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored
    monkeypatch.setattr(train_vae, "vae_heldout", real_heldout)
    with one_thread():  # the command line takes the run's options from its checkpoint
        assert train_vae.main(["--out", str(tmp_path / "run"), "--resume", "--steps", "6", "--device", "cpu"]) == 0
    assert generative.read_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == 6
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss/loss") and [row.split(",")[0] for row in rows[1:]] == list("123456")
    assert "width = 8" in (tmp_path / "run" / "config.toml").read_text()
