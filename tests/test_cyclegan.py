"""CycleGAN: networks, the training step (the cycle loss falls), translation, checkpoints, ``cyclegan:`` targets
and ``paintgym train-cyclegan``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from paintgym import generative
from paintgym.envs.targets import TargetSource
from paintgym.generative.cyclegan import (
    CycleGAN,
    ImagePool,
    PatchCritic,
    cycle_errors,
    linear_decay,
    random_crops,
    train_step,
)
from tests.helpers_generative import one_thread

TINY = dict(size=32, channels=3, width=4, blocks=1, critic_width=4)


def _domains(n: int = 12, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two unpaired synthetic domains ``(n, size, size, 3)`` uint8: A = coloured rectangles on white paper,
    B = other rectangles, colours inverted, on black."""
    rng = np.random.default_rng(seed)
    domains = []
    for flip in (False, True):
        images = np.full((n, size, size, 3), 255, np.uint8)
        for image in images:
            for _ in range(3):
                x, y = rng.integers(0, size - 8, 2)
                w, h = rng.integers(4, 12, 2)
                image[y:y + h, x:x + w] = rng.integers(0, 256, 3)
        domains.append(255 - images if flip else images)
    return domains[0], domains[1]


def _float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def test_networks_keep_shapes_and_ranges() -> None:
    torch.manual_seed(0)
    model = CycleGAN(**TINY)
    x = torch.rand(2, 3, 32, 32)
    for direction in ("a2b", "b2a"):
        y = model(x, direction)
        assert y.shape == x.shape and 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    assert model.d_a(x).shape == (2, 1, 14, 14)  # one score per 16x16 patch at 32 px
    assert PatchCritic(64, 3, 4).layers == 2 and PatchCritic(128, 3, 4).layers == 3
    with pytest.raises(ValueError, match="direction must be 'a2b'"):
        model.translate(x, "ab")
    with pytest.raises(ValueError, match="critic layers"):
        PatchCritic(32, 3, 4, layers=4)


def test_translate_adapts_any_canvas_and_keeps_ranges() -> None:
    torch.manual_seed(0)
    grey = CycleGAN(size=32, channels=1, width=4, blocks=1, critic_width=4)
    canvases = torch.rand(5, 3, 48, 48)  # paintgym canvases: another side, RGB
    out = grey.translate(canvases, "a2b", batch=2)
    assert out.shape == (5, 1, 32, 32) and not out.requires_grad
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    there, back = grey.cycle(canvases, "b2a")
    assert there.shape == back.shape == (5, 1, 32, 32)
    assert torch.allclose(there, grey.translate(canvases, "b2a"))


def test_cycle_loss_falls_on_tiny_data() -> None:
    torch.manual_seed(0)
    a, b = (_float(d) for d in _domains())
    model = CycleGAN(**TINY)
    opt_g = torch.optim.Adam(model.generators(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.critics(), lr=2e-3, betas=(0.5, 0.999))
    pools, generator = (ImagePool(8), ImagePool(8)), torch.Generator().manual_seed(0)
    before = cycle_errors(model, a, b)
    cycles = []
    with one_thread():
        for _ in range(40):
            index = torch.randint(len(a), (4,), generator=generator)
            stats = train_step(model, a[index], b[index], opt_g, opt_d, pools, generator)
            cycles.append(float(stats["cycle_a"] + stats["cycle_b"]))
    after = cycle_errors(model, a, b)
    assert np.mean(cycles[-5:]) < 0.6 * np.mean(cycles[:5])
    assert after["cycle_a"] < 0.6 * before["cycle_a"] and after["cycle_b"] < 0.6 * before["cycle_b"]
    assert set(stats) >= {"loss_g", "loss_d", "gan_ab", "gan_ba", "identity", "critic_a", "critic_b"}


def test_pool_crops_and_schedule() -> None:
    pool, generator = ImagePool(3), torch.Generator().manual_seed(0)
    first = torch.rand(3, 1, 4, 4)
    assert torch.equal(pool.query(first, generator), first)  # filling up: each image passes through
    later = torch.stack([pool.query(torch.full((2, 1, 4, 4), 5.0), generator) for _ in range(20)])
    assert (later == 5.0).any() and (later < 1.0).any()  # some new, some from the history
    assert len(pool.state()) == 3 and ImagePool(0).query(first) is not None
    crops = random_crops(torch.rand(4, 3, 36, 36), 32, torch.Generator().manual_seed(0))
    assert crops.shape == (4, 3, 32, 32)
    assert [linear_decay(s, 100) for s in (0, 49, 50, 75, 100)] == [1.0, 1.0, 1.0, 0.5, 0.0]


def test_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = CycleGAN(**TINY)
    path = generative.save_checkpoint(tmp_path / "cyclegan.pt", model, step=3)
    loaded = generative.load(path, kind="cyclegan", size=32)
    x = torch.rand(2, 3, 32, 32)
    assert isinstance(loaded, CycleGAN) and loaded.config() == model.config()
    assert torch.equal(loaded.translate(x, "b2a"), model.translate(x, "b2a"))
    with pytest.raises(generative.CheckpointError, match="CYCLEGAN checkpoint, not a GAN"):
        generative.load(path, kind="gan")


def test_cyclegan_targets_translate_a_folder(tmp_path) -> None:
    torch.manual_seed(0)
    model = CycleGAN(**TINY)
    path = generative.save_checkpoint(tmp_path / "run" / "ckpt.pt", model)
    photos, _ = _domains(6)
    np.save(tmp_path / "photos.npy", photos)
    spec = f"cyclegan:{tmp_path / 'run'}:{tmp_path / 'photos.npy'}"
    assert generative.parse_cyclegan_spec(spec + ":b2a") == (str(tmp_path / "run"), str(tmp_path / "photos.npy"),
                                                             "b2a")
    source = TargetSource.from_spec(spec, 32, split="all")
    assert source.images.shape == (6, 32, 32, 3) and source.images.dtype == torch.uint8
    expected = (model.translate(_float(photos)) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    assert (source.images.int() - expected.int()).abs().max() <= 1
    assert TargetSource.from_spec(spec + ":b2a", 16, split="all").images.shape == (6, 16, 16, 3)
    with pytest.raises(ValueError, match="cyclegan:CHECKPOINT:IMAGES"):
        generative.parse_cyclegan_spec(f"cyclegan:{path}")
    gan = generative.save_checkpoint(tmp_path / "gan.pt", generative.GAN(32, 1, latent_dim=4, width=4))
    with pytest.raises(generative.CheckpointError, match="GAN checkpoint, not a CYCLEGAN"):
        TargetSource.from_spec(f"cyclegan:{gan}:{tmp_path / 'photos.npy'}", 32)


def _train_args(tmp_path, out: str, steps: int) -> list[str]:
    a, b = _domains(6)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    return ["--a", str(tmp_path / "a.npy"), "--b", str(tmp_path / "b.npy"), "--size", "32", "--width", "4",
            "--blocks", "1", "--critic-width", "4", "--batch-size", "2", "--steps", str(steps), "--device", "cpu",
            "--out", str(tmp_path / out), "--sample-every", "2", "--log-every", "1", "--pool-size", "3"]


def test_train_cyclegan_writes_a_run_and_resumes_exactly(tmp_path, capsys) -> None:
    from paintgym.experiments import train_cyclegan

    with one_thread():
        assert train_cyclegan.main(_train_args(tmp_path, "straight", 4)) == 0
        assert train_cyclegan.main(_train_args(tmp_path, "resumed", 2)) == 0
        assert train_cyclegan.main([*_train_args(tmp_path, "resumed", 4), "--resume"]) == 0
    assert "cycle error A->B->A" in capsys.readouterr().out
    run = tmp_path / "straight"
    record = json.loads((run / "cycle.json").read_text())
    assert record["step"] == 4 and record["heldout_a_is_training_data"] and 0.0 < record["cycle_a"] < 1.0
    for name in ("sheet.png", "sheet_b.png", "samples/sheet_step_000002.png", "ckpt.pt"):
        assert (run / name).is_file()
    import imageio.v3 as iio

    assert iio.imread(run / "sheet.png").shape[:2] == (3 * 64 + 8, 6 * 64 + 14)  # A, A->B, A->B->A; 6 images
    straight = generative.read_checkpoint(run, kind="cyclegan")
    resumed = generative.read_checkpoint(tmp_path / "resumed", kind="cyclegan")
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_train_cyclegan_one_line_errors(tmp_path, capsys) -> None:
    from paintgym.experiments import train_cyclegan

    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    for argv, message in (
            (["--a", str(empty), "--b", "faces"], "--a " + str(empty) + ": no image files"),
            (["--a", "faces", "--b", str(broken)], "--b " + str(broken) + ": none of the 1 image files"),
            (["--a", "faces"], "--b is required")):
        assert train_cyclegan.main([*argv, "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("paintgym train-cyclegan: error:") and message in err and "\n" not in err
