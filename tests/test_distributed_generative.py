"""``train-classifier``, ``train-strokes`` and ``train-cyclegan`` under ``torchrun`` (2 gloo ranks on the CPU):
every rank holds the same weights after each step, and they are what one process with the whole global
batch trains (each rank draws the global batch from the same streams and keeps its part); rank 0 alone
writes, and the CycleGAN's history pools are the one-process pools on every rank.

The two ranks are started with ``torch.multiprocessing`` and the environment ``torchrun`` gives them, so
that each can hand back its own weights; the one-process runs run in the test process.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_distributed import free_port

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

STEPS = 3


def _data(folder: Path) -> dict[str, str]:
    """Tiny inputs: two domains of synthetic rectangles (CycleGAN) and synthetic pen arcs (sketch-rnn)."""
    from tests.test_cyclegan import _domains
    from tests.test_sketch_rnn import write_dataset

    a, b = _domains(6)
    np.save(folder / "a.npy", a)
    np.save(folder / "b.npy", b)
    return {"a": str(folder / "a.npy"), "b": str(folder / "b.npy"),
            "pen": str(write_dataset(folder / "arcs.npz", (40, 8, 8)))}


def _train_all(folder: Path, data: dict[str, str], tag: str) -> dict[str, object]:
    """Train the three models for :data:`STEPS` steps into ``folder/<kind>_<tag>``; their Results by kind."""
    from paintgym.experiments import train_classifier, train_cyclegan, train_strokes

    common = dict(steps=STEPS, device="cpu", log_every=1, checkpoint_every=100, seed=5)
    return {
        # batch 8 + 1 "none" example: the ranks hold 5 and 4 images (unequal parts, weighted)
        "classifier": train_classifier.train(train_classifier.Args(
            data="digits", batch_size=8, width=4, features=8, eval_every=2, out=str(folder / f"classifier_{tag}"),
            **common), progress=False),
        "strokes": train_strokes.train(train_strokes.Args(
            data=data["pen"], batch_size=8, hidden=8, mixtures=2, eval_every=2, out=str(folder / f"strokes_{tag}"),
            **common), progress=False),
        "cyclegan": train_cyclegan.train(train_cyclegan.Args(
            a=data["a"], b=data["b"], size=32, width=4, blocks=1, critic_width=4, batch_size=4, pool_size=3,
            sample_every=100, out=str(folder / f"cyclegan_{tag}"), **common), progress=False),
    }


def _worker(rank: int, port: str, folder: str, data: dict[str, str]) -> None:
    """Rank ``rank`` of 2, as torchrun starts it: train the three models, save this rank's weights."""
    from paintgym.experiments import distributed

    os.environ.update({"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": port, "PAINTGYM_DIST_TIMEOUT": "30"})
    torch.set_num_threads(1)
    with distributed.process_group("cpu"):
        results = _train_all(Path(folder), data, "two")
    torch.save({kind: result.model.state_dict() for kind, result in results.items()}, f"{folder}/rank{rank}.pt")


def test_classifier_strokes_and_cyclegan_train_on_two_ranks_as_one_process(tmp_path):
    from paintgym.generative import read_checkpoint

    data = _data(tmp_path)
    torch.multiprocessing.spawn(_worker, args=(str(free_port()), str(tmp_path), data), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    one = _train_all(tmp_path, data, "one")
    for kind, result in one.items():
        state = result.model.state_dict()
        for key, value in state.items():
            assert torch.equal(ranks[0][kind][key], ranks[1][kind][key]), f"{kind}: ranks differ at {key}"
            if kind != "cyclegan":
                torch.testing.assert_close(ranks[0][kind][key], value, atol=1e-4, rtol=1e-4,
                                           msg=lambda m, kind=kind, key=key: f"{kind} {key}: 2 ranks vs 1: {m}")
        if kind == "cyclegan":  # compare what the networks compute: a convolution's bias before an instance
            # norm has no effect and a zero gradient, whose float noise Adam scales up to lr-sized steps
            two = type(result.model)(**result.model.config())
            two.load_state_dict(ranks[0][kind])
            x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                for name in ("g_ab", "g_ba", "d_a", "d_b"):
                    torch.testing.assert_close(getattr(two.eval(), name)(x), getattr(result.model, name)(x),
                                               atol=1e-4, rtol=1e-4)
        # rank 0 alone wrote: one metrics row per step, the final files, a checkpoint at the last step
        two = tmp_path / f"{kind}_two"
        assert [row.split(",")[0] for row in (two / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2", "3"]
        assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in (tmp_path / f"{kind}_one").iterdir())
        assert read_checkpoint(two / "ckpt.pt")["step"] == STEPS
    # the CycleGAN's history pools (every rank's translations) and the held-out score are one process's
    pools_two = read_checkpoint(tmp_path / "cyclegan_two" / "ckpt.pt")["train"]["pools"]
    pools_one = read_checkpoint(tmp_path / "cyclegan_one" / "ckpt.pt")["train"]["pools"]
    for pool_two, pool_one in zip(pools_two, pools_one, strict=True):
        assert pool_two.shape == pool_one.shape == (3, 3, 32, 32)
        torch.testing.assert_close(pool_two, pool_one, atol=1e-4, rtol=0)
    import json

    record_two = json.loads((tmp_path / "classifier_two" / "heldout.json").read_text())
    assert record_two["accuracy"] == one["classifier"].heldout["accuracy"]
    # --resume on one process continues the two-rank run as it continues the one-process run (the streams
    # in the checkpoint are every rank's)
    from paintgym.experiments import train_classifier

    resumed = {tag: train_classifier.main(["--out", str(tmp_path / f"classifier_{tag}"), "--resume", "--steps", "4",
                                           "--device", "cpu"]) for tag in ("one", "two")}
    assert resumed == {"one": 0, "two": 0}
    after = [read_checkpoint(tmp_path / f"classifier_{tag}" / "ckpt.pt")["model"] for tag in ("one", "two")]
    for key, value in after[0].items():
        torch.testing.assert_close(after[1][key], value, atol=1e-4, rtol=1e-4)
