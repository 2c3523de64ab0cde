"""The novelty reward: k-nearest-neighbour archive, random network distillation, VAE embedding."""

from __future__ import annotations

import math

import pytest
import torch

from paintgym import generative, rewards
from paintgym.canvas.images import load_images, to_float
from paintgym.rewards.novelty import UNRELATED, NoveltyReward


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return to_float(torch.from_numpy(load_images("digits", 32)[:60]))  # (60, 3, 32, 32)


def jittered(picture: torch.Tensor, generator: torch.Generator, noise: float = 0.03) -> torch.Tensor:
    """The same picture painted again: a little different every time."""
    return (picture + noise * torch.randn(picture.shape, generator=generator)).clamp(0.0, 1.0)


def test_empty_archive_makes_everything_novel(digits):
    novelty = NoveltyReward()
    torch.testing.assert_close(novelty.score(digits[:4]), torch.full((4,), UNRELATED))
    novelty.update(digits[:2])  # fewer entries than k: the missing neighbours count as unrelated
    expected = (0.0 + (novelty.k - 2) * UNRELATED) / novelty.k
    assert novelty.score(digits[:1]).item() == pytest.approx(
        expected + torch.cdist(novelty.embed(digits[:1]), novelty.embed(digits[1:2])).item() / novelty.k, abs=1e-4)


def test_same_picture_again_and_again_drives_novelty_down_and_new_pictures_score_high(digits):
    novelty = NoveltyReward(k=5)
    novelty.update(digits[:40])
    generator = torch.Generator().manual_seed(0)
    picture = digits[40:41]
    scores = []
    for _ in range(8):
        again = jittered(picture, generator)
        scores.append(novelty.score(again).item())
        novelty.update(again)
    assert scores[-1] < 0.5 * scores[0]
    assert all(later <= earlier + 0.02 for earlier, later in zip(scores, scores[1:], strict=False))
    new = novelty.score(digits[41:49])
    assert new.min().item() > 2 * scores[-1]


def test_archive_stays_bounded_and_keeps_the_newest(digits):
    novelty = NoveltyReward(k=1, archive_size=16)
    for start in range(0, 60, 10):
        stats = novelty.update(digits[start:start + 10])
        assert novelty.count <= 16 and novelty.archive.shape[0] == 16
    assert stats["archive"] == 16
    assert novelty.score(digits[50:60]).max().item() < 1e-3  # the newest are kept ...
    assert novelty.score(digits[:10]).min().item() > 0.05  # ... the oldest forgotten


def test_insertion_threshold_rejects_duplicates(digits):
    novelty = NoveltyReward(threshold=0.05)
    batch = torch.cat([digits[:3], digits[:3], digits[:1]])  # duplicates inside one update
    assert novelty.update(batch)["inserted"] == 3
    assert novelty.update(digits[:3])["inserted"] == 0  # and against the archive
    assert novelty.update(digits[3:5])["inserted"] == 2


def test_archive_state_round_trip(digits):
    novelty = NoveltyReward(archive_size=8)
    novelty.update(digits[:13])  # wraps around the ring buffer
    state = novelty.state_dict()
    assert state["archive"].shape == (8, novelty.dim) and state["archive"].device.type == "cpu"
    restored = NoveltyReward(archive_size=8)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.score(digits[20:30]), novelty.score(digits[20:30]))
    novelty.update(digits[30:33])  # both forget the same (oldest) entries next
    restored.update(digits[30:33])
    torch.testing.assert_close(restored.score(digits[:20]), novelty.score(digits[:20]))
    smaller = NoveltyReward(archive_size=4)  # a smaller archive keeps the newest entries
    smaller.load_state_dict(state)
    assert smaller.count == 4
    torch.testing.assert_close(smaller.archive, state["archive"][-4:])


def test_random_embedding_is_seeded(digits):
    a, b, c = NoveltyReward(seed=3), NoveltyReward(seed=3), NoveltyReward(seed=4)
    torch.testing.assert_close(a.embed(digits[:4]), b.embed(digits[:4]))
    assert not torch.allclose(a.embed(digits[:4]), c.embed(digits[:4]))
    norms = a.embed(digits[:4]).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(4))


def test_random_network_distillation(digits):
    torch.manual_seed(0)
    novelty = rewards.build("novelty(rnd=true, lr=0.001)").terms[0][2]
    novelty.update(digits[:40])
    generator = torch.Generator().manual_seed(1)
    scores = []
    for _ in range(10):
        again = jittered(digits[40:41], generator)
        scores.append(novelty.score(again).item())
        stats = novelty.update(again)
    assert "rnd_loss" in stats and novelty.count == 0  # RND replaces the archive
    assert scores[-1] < 0.5 * scores[0]
    assert novelty.score(digits[41:49]).min().item() > scores[-1]

    restored = rewards.build("novelty(rnd=true)").terms[0][2]
    restored.load_state_dict(novelty.state_dict())
    torch.testing.assert_close(restored.score(digits[:8]), novelty.score(digits[:8]))
    novelty.update(digits[:8])
    restored.update(digits[:8])  # the optimiser state came along: the same next step
    torch.testing.assert_close(restored.score(digits[8:16]), novelty.score(digits[8:16]))
    with pytest.raises(ValueError, match="RND predictor"):
        restored.load_state_dict(NoveltyReward().state_dict())


def test_bad_options_are_errors_that_say_what_to_do():
    with pytest.raises(rewards.RewardSpecError, match="k must be an integer >= 1"):
        rewards.build("novelty(k=0)")
    with pytest.raises(rewards.RewardSpecError, match="threshold"):
        rewards.build("novelty(threshold=-1)")
    with pytest.raises(rewards.RewardSpecError, match="does not exist"):
        rewards.build("novelty(vae=/nonexistent/ckpt.pt)")


def test_vae_embedding(tmp_path, digits):
    torch.manual_seed(0)
    vae = generative.VAE(32, 1)
    path = tmp_path / "vae.pt"
    generative.save_checkpoint(path, vae)
    novelty = rewards.build(f"novelty(vae={path}, k=2)").terms[0][2]
    assert novelty.dim == vae.latent_dim
    embedded = novelty.embed(digits[:4])  # 32x32 RGB canvases -> the VAE's grey input
    expected = torch.nn.functional.normalize(vae.eval().encode(generative.adapt_images(digits[:4], 32, 1))[0], dim=1)
    torch.testing.assert_close(embedded, expected, atol=1e-5, rtol=1e-4)
    novelty.update(digits[:20])
    assert novelty.score(digits[:4]).max().item() < 0.5 * math.sqrt(2)
    assert novelty.options()["vae"] == str(path)
    with pytest.raises(ValueError, match="same vae= option"):
        NoveltyReward().load_state_dict(novelty.state_dict())
