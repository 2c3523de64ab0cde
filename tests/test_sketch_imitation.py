"""Sketching with a policy initialised by behaviour cloning on human drawings (``--actor free --bc-data``):
the imitation loss, cloning, the model-based agent's wiring and errors, and ``paintgym eval --prior``.
Synthetic pen drawings and a tiny prior from tests/test_sketch_rnn.py (no shared data)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from paintgym.agents.imitation import clone, imitation_loss
from paintgym.agents.model_based import FreeStrokeActor, ModelBasedArgs
from paintgym.canvas.render import render
from paintgym.experiments import cli_eval
from paintgym.experiments.trainer import Trainer
from paintgym.generative.pen_data import PenDatasetError, stroke_demonstrations
from tests.test_agents_model_based import read_rows, tiny_config
from tests.test_sketch_rnn import dataset, trained

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _stroke(x0: float, y0: float, x2: float, y2: float) -> torch.Tensor:
    return torch.tensor([x0, y0, (x0 + x2) / 2, (y0 + y2) / 2, x2, y2, 0.05, 0.05, 1.0, 1.0, 0.0, 0.0, 0.0])


def test_imitation_loss_is_free_of_direction_and_takes_the_nearest_stroke_still_to_draw() -> None:
    a, b = _stroke(0.1, 0.1, 0.9, 0.1), _stroke(0.5, 0.2, 0.5, 0.8)
    teacher = torch.stack([a, b])[None]  # (1, 2, 13)
    backwards = _stroke(0.9, 0.1, 0.1, 0.1)[None, None]
    both = torch.tensor([[True, True]])
    assert imitation_loss(backwards, teacher, both) == pytest.approx(0.0, abs=1e-6)  # a, drawn the other way
    assert imitation_loss(b[None, None], teacher, both) == pytest.approx(0.0, abs=1e-6)
    only_b = torch.tensor([[False, True]])  # a is on the canvas already: predicting it again is wrong
    assert imitation_loss(a[None, None], teacher, only_b) > 1.0
    coloured = a.clone()
    coloured[10:13] = 1.0
    assert imitation_loss(coloured[None, None], teacher, both) == pytest.approx(0.0, abs=1e-6)
    assert imitation_loss(coloured[None, None], teacher, both, colour=True) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="teacher"):
        imitation_loss(a[None, None], teacher[0], both)


def _first_stroke_loss(actor: torch.nn.Module, demos, size: int) -> float:
    """Imitation loss of the first stroke on blank canvases: how near a stroke of the drawing the actor starts."""
    targets = render(demos.strokes, size=size)
    with torch.no_grad():
        predicted = actor(torch.ones_like(targets), targets, torch.zeros(len(targets)))
    drawn = torch.arange(demos.strokes.shape[1])[None] < demos.counts[:, None]
    return float(imitation_loss(predicted, demos.strokes, drawn))


def test_cloning_teaches_an_actor_to_start_on_a_stroke_of_drawings_it_never_saw() -> None:
    torch.manual_seed(0)
    demos = stroke_demonstrations(dataset(), 48, 6, tolerance=0.03, seed=0)
    assert demos.strokes.shape == (48, 6, 13) and 1 <= int(demos.counts.min()) and int(demos.counts.max()) <= 6
    assert (demos.strokes[torch.arange(6)[None] >= demos.counts[:, None]][:, 8:10] == 0).all()  # padding invisible
    held_out = stroke_demonstrations(dataset(), 32, 6, split="test", tolerance=0.03, seed=0)
    actor = FreeStrokeActor(True, 16, 1, 8, 64)
    before = _first_stroke_loss(actor, held_out, 16)
    losses = clone(actor, demos, 16, 6, 1, steps=250, learning_rate=3e-3, generator=torch.Generator().manual_seed(0))
    assert sum(losses[-25:]) / 25 < 0.9 * sum(losses[:25]) / 25
    after = _first_stroke_loss(actor, held_out, 16)
    assert after < 0.7 * before, (before, after)


def test_model_based_agent_clones_before_training_and_checks_its_options(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "run", max_steps=3, strokes_per_step=1, total_steps=8 * 3 * 2, eval_every=0,
                         checkpoint_every=10**9)
    args = ModelBasedArgs(width=8, hidden=32, actor="free", bc_data=str(dataset()), bc_steps=5, bc_drawings=8)
    trainer = Trainer(config, args)
    calls = []
    imitate = trainer.algo.imitate
    trainer.algo.imitate = lambda: calls.append(1) or imitate()
    trainer.train()
    rows = read_rows(tmp_path / "run")
    cloned = [float(row["bc_loss"]) for row in rows if row["bc_loss"]]
    assert calls == [1] and len(cloned) == 1 and cloned[0] > 0  # once, at the first iteration
    for bad, message in ((dict(actor="patch"), "add --actor free"), (dict(bc_steps=0), "bc_steps"),
                         (dict(bc_data=str(tmp_path / "missing.npz")), "does not exist"),
                         (dict(actor="round"), "unknown actor")):
        with pytest.raises((ValueError, PenDatasetError), match=message) as error:
            Trainer(tiny_config(tmp_path / "bad", max_steps=3, strokes_per_step=1),
                    ModelBasedArgs(**{**vars(args), **bad}))
        assert "\n" not in str(error.value)
    with pytest.raises(PenDatasetError, match="fits in 1 strokes"):
        stroke_demonstrations(dataset(), 4, 1, tolerance=0.001)


def test_eval_scores_paintings_under_a_stroke_prior(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = trained()
    assert cli_eval.main(["--painter", "random", "--targets", "digits", "--size", "16", "--strokes", "2", "--limit",
                          "3", "--prior", str(out), "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    assert " prior " in capsys.readouterr().out
    with (tmp_path / "eval" / "quality.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all(row["prior"] for row in rows) and len(rows) == 2 * 4  # n = 1, 2: a mean row and 3 images each
    assert cli_eval.main(["--painter", "random", "--targets", "digits", "--size", "16", "--strokes", "1", "--limit",
                          "1", "--prior", str(tmp_path / "nothing"), "--out", str(tmp_path / "e2"),
                          "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paintgym eval: error:") and err.count("\n") == 1
