"""The trainer and ``paintgym train``: run directory, resume, Ctrl-C, NaN, TOML config, SB3 through the adapter."""

from __future__ import annotations

import csv
import json
import math
import signal
import threading
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from paintgym.agents.common import TrainingDiverged
from paintgym.agents.ppo import PPOArgs
from paintgym.agents.sb3_vec_env import SB3VecEnv
from paintgym.envs import CanvasVectorEnv
from paintgym.experiments import cli_train
from paintgym.experiments.checkpoints import load_checkpoint
from paintgym.experiments.config import ConfigError, dump_toml, load_toml
from paintgym.experiments.env_factory import make_eval_env
from paintgym.experiments.train_config import TrainConfig
from paintgym.experiments.trainer import Trainer
from tests.conftest import interrupt_during

TINY = ["--agent", "ppo",
        "--canvas-size", "16", "--max-steps", "2", "--num-envs", "8", "--eval-episodes", "4", "--video-size", "32",
        "--threads", "1", "--no-progress", "--seed", "5"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_config(run_dir: Path, **changes) -> TrainConfig:
    values = dict(agent="ppo", canvas_size=16, max_steps=2, num_envs=8, eval_episodes=4, video_size=32, threads=1,
                  progress=False, seed=5, total_steps=16 * 4, eval_every=32, checkpoint_every=16, run_dir=str(run_dir))
    values.update(changes)
    return TrainConfig(**values)


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_cli_writes_the_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    code = cli_train.main([*TINY, "--total-steps", "64", "--eval-every", "32", "--video-every", "32",
                           "--run-dir", str(run)])
    assert code == 0, capsys.readouterr().err
    for name in ("config.toml", "checkpoint.pt", "metrics.csv", "final_paintings.png", "learning_curve.png",
                 "painting.mp4", "summary.json", "final_episodes.npz"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert list((run / "videos").glob("step_*.mp4"))
    rows = read_rows(run)
    assert [row["step"] for row in rows] == ["0", "16", "32", "48", "64", "64"]  # step-0 eval ... final eval
    assert all(math.isfinite(float(rows[i][key])) for i in (1, 4) for key in ("return", "term/target", "l2",
                                                                               "policy_loss", "steps_per_s"))
    assert rows[2]["eval/l2"] and rows[2]["eval/psnr"] and rows[2]["eval/term/target"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 64 and 0.0 < summary["eval/l2"] < 1.0
    episodes = np.load(run / "final_episodes.npz")
    assert episodes["strokes"].shape[1:] == (2, 13) and episodes["paintings"].shape[1:] == (16, 16, 3)
    assert episodes["targets"].shape == episodes["paintings"].shape
    frames = imageio.mimread(run / "painting.mp4", memtest=False)
    assert len(frames) >= 3 and frames[0].ndim == 3
    # the resolved configuration reads back as a --config file
    config = load_toml(run / "config.toml")
    assert config["canvas_size"] == 16 and config["agent"] == "ppo" and config["learning_rate"] == PPOArgs.learning_rate
    assert "trained 64 steps" in capsys.readouterr().out


def test_resume_continues_exactly_where_ctrl_c_stopped(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C handling needs the main thread")
    # uninterrupted: 4 iterations
    full = Trainer(tiny_config(tmp_path / "full"), PPOArgs(hidden=32))
    full.train()
    expected = read_rows(tmp_path / "full")

    # interrupted by Ctrl-C during iteration 2: the trainer finishes it, saves and stops
    cut = Trainer(tiny_config(tmp_path / "cut"), PPOArgs(hidden=32))
    interrupt_during(cut, iteration=2)
    result = cut.train()
    assert result.status == "interrupted" and result.global_step == 32
    assert load_checkpoint(tmp_path / "cut")["global_step"] == 32
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored

    # resume through the command line: iterations 3 and 4 reproduce the uninterrupted run
    assert cli_train.main(["--resume", str(tmp_path / "cut")]) == 0
    resumed = read_rows(tmp_path / "cut")
    keys = ["return", "l2", "policy_loss", "value_loss", "entropy", "approx_kl", "eval/l2"]
    assert [row["step"] for row in resumed] == [row["step"] for row in expected]
    for got, want in zip(resumed[3:], expected[3:], strict=True):
        assert {k: got[k] for k in keys} == {k: want[k] for k in keys}


def test_sigterm_checkpoints_and_stops_however_often_it_comes(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handling needs the main thread")
    trainer = Trainer(tiny_config(tmp_path / "term"), PPOArgs(hidden=32))
    interrupt_during(trainer, iteration=2, signals=(signal.SIGTERM, signal.SIGTERM))  # e.g. a dying sweep's
    result = trainer.train()
    assert result.status == "interrupted" and result.global_step == 32
    assert load_checkpoint(tmp_path / "term")["global_step"] == 32
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is restored


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "nan"), PPOArgs(hidden=32))
    train_iteration = trainer.algo.train_iteration

    def diverge(iteration: int, total: int) -> dict[str, float]:
        metrics = train_iteration(iteration, total)
        if iteration == 3:
            metrics["value_loss"] = float("nan")
        return metrics

    trainer.algo.train_iteration = diverge
    with pytest.raises(TrainingDiverged, match="value_loss=nan.*last good checkpoint"):
        trainer.train()
    assert load_checkpoint(tmp_path / "nan")["global_step"] == 32


def test_config_file_and_flags(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(dump_toml({"agent": "reinforce", "baseline": "mean", "canvas_size": 24, "ent_coef": 0}))
    run_config, args = cli_train.resolve(["--config", str(config), "--canvas-size", "16"])
    assert run_config.agent == "reinforce" and run_config.canvas_size == 16  # the flag wins
    assert args.baseline == "mean" and args.ent_coef == 0.0 and isinstance(args.ent_coef, float)

    config.write_text('agent = "ppo"\nbaseline = "mean"\n')
    assert cli_train.main(["--config", str(config)]) == 2
    assert "unknown option 'baseline'" in capsys.readouterr().err
    config.write_text('num_envs = "many"\n')
    with pytest.raises(ConfigError, match="num_envs .* must be of type int"):
        cli_train.resolve(["--config", str(config)])
    with pytest.raises(ConfigError, match="does not exist"):
        cli_train.resolve(["--config", str(tmp_path / "missing.toml")])
    assert cli_train.main([*TINY, "--agent", "a2c"]) == 2
    assert "unknown agent 'a2c'" in capsys.readouterr().err


def test_help_lists_every_flag_and_the_default_agent(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_train.main(["--help"])  # a field doc with a bare % once broke argparse's help formatting
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    text = " ".join(out.replace("│", " ").split())  # the help's boxes wrap lines at the terminal's width
    assert "--target-augment" in text and "60-100% of the side" in text and "(default: model-based)" in text
    assert "--horizon" in text and "--learning-rate" in text  # the default agent's hyperparameters


def test_existing_run_dir_needs_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_train.main([*TINY, "--total-steps", "16", "--eval-every", "0", "--run-dir", str(run)]) == 0
    assert cli_train.main([*TINY, "--total-steps", "16", "--run-dir", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_reinforce_discrete_and_dict_observations_train_end_to_end(tmp_path):
    config = tiny_config(tmp_path / "r", agent="reinforce", action_mode="discrete", obs_mode="dict",
                         total_steps=32, eval_every=0)
    from paintgym.agents.reinforce import ReinforceArgs

    result = Trainer(config, ReinforceArgs(hidden=32, baseline="mean")).train()
    assert result.status == "finished" and 0.0 < result.final_eval["eval/l2"] < 1.0


def test_sb3_ppo_trains_through_the_adapter(tmp_path):
    from paintgym.agents.sb3_ppo import SB3PPOArgs

    config = tiny_config(tmp_path / "sb3", agent="sb3-ppo", total_steps=48, eval_every=0)
    trainer = Trainer(config, SB3PPOArgs(hidden=32))
    before = [p.detach().clone() for p in trainer.algo.model.policy.parameters()]
    result = trainer.train()
    assert result.status == "finished" and result.global_step == 48
    after = list(trainer.algo.model.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # SB3 updated its policy
    rows = read_rows(tmp_path / "sb3")
    trained = [row for row in rows if row["iteration"] not in ("", "0") and row["policy_loss"]]
    assert len(trained) == 3 and all(float(row["episodes"]) == 8 for row in trained)
    assert all(math.isfinite(float(row[key])) for row in trained for key in ("return", "l2", "value_loss"))
    assert 0.0 < result.final_eval["eval/l2"] < 1.0
    assert trainer.algo.model.num_timesteps == 48


def test_sb3_adapter_reports_monitor_style_episodes():
    env = SB3VecEnv(CanvasVectorEnv(3, targets="digits", canvas_size=16, max_steps=2))
    env.reset()
    total = np.zeros(3)
    for _ in range(2):
        obs, reward, dones, infos = env.step(np.zeros((3, 13), dtype=np.float32))
        total += reward
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["episode"]["l"] == 2
        assert info["episode"]["r"] == pytest.approx(total[i], abs=1e-6)
        assert info["episode_terms"]["target"] == pytest.approx(total[i], abs=1e-6)
        assert info["terminal_observation"].shape == (16, 16, 7)


def test_evaluation_scores_with_the_trained_state_of_learning_rewards(tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run", reward="target:1, novelty:0.5", total_steps=32), PPOArgs())
    trainer.train()
    trained = trainer.env.core.reward.state_dict()["novelty"]["archive"]
    evaluated = trainer.eval_env.core.reward.state_dict()["novelty"]["archive"]
    assert len(trained) > 0  # the training episodes filled the archive ...
    assert torch.equal(evaluated, trained)  # ... and the final evaluation scored against it


def test_evaluation_paints_every_held_out_image_once(tmp_path):
    config = tiny_config(tmp_path / "run", eval_targets="photos")
    env = make_eval_env(config, 20, torch.device("cpu"))
    env.reset(seed=7)
    pool = env.core.targets.images  # (17, 16, 16, 3) uint8
    shown = (env.core.target.permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    for i in range(20):  # env i paints image i mod 17, whatever the seed
        assert torch.equal(shown[i], pool[i % len(pool)])
    env.close()


def test_the_automatic_step_budget_grows_with_the_task():
    from paintgym.experiments.train_config import TrainConfig

    assert TrainConfig().steps_budget == 81_920  # the default digits: 32 px, 8 strokes
    assert TrainConfig(canvas_size=64, max_steps=8, strokes_per_step=4).steps_budget == 655_360
    assert TrainConfig(canvas_size=64, total_steps=100).steps_budget == 100
    with pytest.raises(ValueError, match="total_steps"):
        TrainConfig(total_steps=-1).check()
