"""``--agent sb3-ppo``: a run resumed from its checkpoint continues exactly as the uninterrupted run."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest

from paintgym.agents.sb3_ppo import SB3PPOArgs
from paintgym.experiments import cli_train
from paintgym.experiments.checkpoints import load_checkpoint
from paintgym.experiments.train_config import TrainConfig
from paintgym.experiments.trainer import Trainer
from tests.conftest import interrupt_during

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def sb3_config(run_dir: Path) -> TrainConfig:
    """A tiny SB3 run: 16x16 canvases, 2 steps per episode, 8 envs, 4 iterations of 16 steps."""
    return TrainConfig(agent="sb3-ppo", canvas_size=16, max_steps=2, num_envs=8, eval_episodes=4, video_size=32,
                       threads=1, progress=False, seed=7, total_steps=64, eval_every=32, checkpoint_every=16,
                       run_dir=str(run_dir))


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_sb3_resume_continues_exactly_where_ctrl_c_stopped(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C handling needs the main thread")
    args = SB3PPOArgs(hidden=32, width=8, num_minibatches=2, update_epochs=2, ent_coef=0.01)
    Trainer(sb3_config(tmp_path / "full"), args).train()
    expected = read_rows(tmp_path / "full")

    cut = Trainer(sb3_config(tmp_path / "cut"), args)
    interrupt_during(cut, iteration=2)
    result = cut.train()
    assert result.status == "interrupted" and result.global_step == 32
    assert load_checkpoint(tmp_path / "cut")["algorithm"]["num_timesteps"] == 32

    assert cli_train.main(["--resume", str(tmp_path / "cut")]) == 0
    resumed = read_rows(tmp_path / "cut")
    assert [row["step"] for row in resumed] == [row["step"] for row in expected]
    keys = ["return", "l2", "policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "explained_variance",
            "eval/l2"]
    for got, want in zip(resumed[3:], expected[3:], strict=True):  # iterations 3 and 4, then the final evaluation
        assert {k: got[k] for k in keys} == {k: want[k] for k in keys}
    assert all(row["policy_loss"] for row in resumed[3:5])  # the rows compared hold losses
