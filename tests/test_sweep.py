"""``paintgym sweep`` and ``paintgym report``: a tiny grid end to end, resume, Ctrl-C, metrics, errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from paintgym.experiments import report, sweep
from paintgym.experiments.checkpoints import load_checkpoint
from paintgym.experiments.trainer import Trainer
from paintgym.rewards.harmony import harmony_score
from tests.conftest import interrupt_during

TINY = """
[base]
agent = "ppo"
canvas_size = 16
max_steps = 2
num_envs = 8
eval_episodes = 4
video_size = 32
total_steps = 32
eval_every = 16
checkpoint_every = 16
"""
TINY_ANY_AGENT = TINY.replace('agent = "ppo"\n', "")
REWARDS = ["target", "target:1, harmony:0.5"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_sweep(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A two-reward x two-seed sweep of tiny runs, two at a time."""
    folder = tmp_path_factory.mktemp("sweep")
    path = write_sweep(folder / "tiny.toml", f"seeds = [1, 2]\n{TINY}\n[grid]\nreward = {json.dumps(REWARDS)}\n")
    out = folder / "out"
    code = sweep.main([str(path), "--out", str(out), "--jobs", "2", "--no-progress"])
    return path, out, code


def run_dirs(out: Path) -> list[Path]:
    return sorted(path.parent for path in out.glob("*/seed*/summary.json"))


def test_sweep_trains_every_run_and_writes_the_report(finished_sweep):
    _, out, code = finished_sweep
    assert code == 0
    runs = run_dirs(out)
    assert [path.relative_to(out).as_posix() for path in runs] == [
        "reward=target/seed1", "reward=target/seed2", "reward=target_1_harmony_0.5/seed1",
        "reward=target_1_harmony_0.5/seed2"]
    for run in runs:
        assert (run / "train.log").read_text().count("paintgym sweep: starting") == 1
        assert json.loads((run / "summary.json").read_text())["global_step"] == 32
    folder = out / "report"
    rows = read_csv(folder / "metrics.csv")
    assert [row["configuration"] for row in rows] == ["reward=target", "reward=target:1, harmony:0.5"]
    assert [row["seeds"] for row in rows] == ["1 2", "1 2"]
    markdown = (folder / "report.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| reward=")]
    assert len(table) == 2 + 4  # one row per configuration, then one per run
    html = (folder / "report.html").read_text()
    assert 'src="learning_curves.png"' in html and html.count('src="sheets/') == 2
    for name in ["learning_curves.png", *(f"sheets/{p.name}" for p in (folder / "sheets").glob("*.png"))]:
        image = cv2.imread(str(folder / name))
        assert image is not None and image.shape[0] > 32 and image.shape[1] > 32, name
        assert name in markdown and name in html


def test_rerunning_skips_finished_runs(finished_sweep, capsys):
    path, out, _ = finished_sweep
    capsys.readouterr()
    stamps = {run: (run / "checkpoint.pt").stat().st_mtime_ns for run in run_dirs(out)}
    assert sweep.main([str(path), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert printed.out.count("finished already") == 4 and "0 trained, 4 finished before" in printed.out
    assert {run: (run / "checkpoint.pt").stat().st_mtime_ns for run in run_dirs(out)} == stamps
    assert all("resuming" not in (run / "train.log").read_text() for run in stamps)


def test_report_cli_metrics_are_mean_and_std_over_seeds(finished_sweep, tmp_path, capsys):
    _, out, _ = finished_sweep
    runs = run_dirs(out)
    assert report.main([*map(str, runs), "--out", str(tmp_path / "cmp")]) == 0, capsys.readouterr().err
    for name in ("report.md", "report.html", "metrics.csv", "learning_curves.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0
    rows = {row["configuration"]: row for row in read_csv(tmp_path / "cmp" / "metrics.csv")}
    assert set(rows) == {"reward=target", "reward=target:1, harmony:0.5"}  # named by what differs
    for name, seeds in (("reward=target", runs[:2]), ("reward=target:1, harmony:0.5", runs[2:])):
        summaries = [json.loads((run / "summary.json").read_text()) for run in seeds]
        for key in ("eval/l2", "eval/psnr", "eval/return", "eval/term/target"):
            values = np.array([summary[key] for summary in summaries])
            assert float(rows[name][f"{key}_mean"]) == pytest.approx(values.mean(), rel=1e-12)
            assert float(rows[name][f"{key}_std"]) == pytest.approx(values.std(ddof=1), rel=1e-9)
        harmony = [float(harmony_score(torch.from_numpy(np.load(run / "final_episodes.npz")["paintings"])
                                       .permute(0, 3, 1, 2).float() / 255).mean()) for run in seeds]
        assert float(rows[name]["harmony_mean"]) == pytest.approx(np.mean(harmony), rel=1e-6)
        assert 0.0 <= float(rows[name]["novelty_mean"]) <= 2.0
        assert 0.0 < float(rows[name]["strokes_used_mean"]) <= 2.0  # max_steps x strokes_per_step
    assert rows["reward=target"]["eval/term/harmony_mean"] == ""  # not part of that reward
    # a whole sweep folder is found too, with unfinished runs skipped and said so
    (runs[0] / "summary.json").rename(runs[0] / "summary.moved")
    try:
        assert report.main([str(out), "--out", str(tmp_path / "all")]) == 0
    finally:
        (runs[0] / "summary.moved").rename(runs[0] / "summary.json")
    assert "warning: skipping" in capsys.readouterr().err
    assert [row["runs"] for row in read_csv(tmp_path / "all" / "metrics.csv")] == ["1", "2"]


def test_strokes_used_counts_strokes_that_change_the_picture():
    wide = [0.1, 0.5, 0.5, 0.5, 0.9, 0.5, 1, 1, 1, 1, 0, 0, 0]  # an opaque black band across the middle
    hidden = [0.45, 0.5, 0.5, 0.5, 0.55, 0.5, 0, 0, 1, 1, 0, 0, 0]  # black inside the black band
    invisible = [0.2, 0.2, 0.5, 0.5, 0.8, 0.8, 0.5, 0.5, 0, 0, 1, 0, 0]  # zero opacity
    red = [0.1, 0.1, 0.2, 0.1, 0.3, 0.1, 0.2, 0.2, 1, 1, 1, 0, 0]
    strokes = np.array([[wide, hidden, invisible, red], [invisible, red, hidden, wide]], dtype=np.float32)
    assert report.strokes_used(strokes, 32).tolist() == [2, 3]
    same = np.full((5, 16, 16, 3), 200, dtype=np.uint8)
    assert report.diversity(same) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(0)
    assert 0.0 < report.diversity(rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)) <= 2.0


@pytest.mark.parametrize("body, message", [
    (f"seeds = [1]\n{TINY}lerning_rate = 0.1\n", "unknown option 'lerning_rate' in [base]"),
    (f"seeds = [1]\nsteps = 3\n{TINY}", "unknown key 'steps'"),
    (f"seeds = [1]\n{TINY}seed = 3\n", "'seed' in [base] is set by the sweep"),
    (f"seeds = [1]\n{TINY}\n[grid]\nreward = ['target', 'target, nosuch:0.5']\n",
     "reward = 'target, nosuch:0.5' in [grid]"),
    (f"seeds = [1]\n{TINY}\n[[configs]]\nname = 'h'\nreward = 'harmony(bins=2)'\n", "bins must be an integer >= 4"),
    (f"seeds = [1]\n{TINY_ANY_AGENT}\n[grid]\nagent = ['ppo', 'dqn']\n", "unknown agent 'dqn'"),
    (f"seeds = [1]\n{TINY}\n[grid]\naction_mode = ['continuous', 'smooth']\n", "unknown action_mode 'smooth'"),
    (f"seeds = [1]\n{TINY}\n[grid]\nstrokes_per_step = [1, 'two']\n", "strokes_per_step in [grid]"),
], ids=["unknown-option", "unknown-top-key", "seed-in-base", "unknown-reward", "bad-reward-option", "unknown-agent",
        "bad-env-option", "wrong-type"])
def test_bad_sweep_files_fail_before_any_run(tmp_path, capsys, body, message):
    path = write_sweep(tmp_path / "bad.toml", body)
    assert sweep.main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paintgym sweep: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_sweep_file_and_bad_report_inputs(tmp_path, capsys):
    assert sweep.main([str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    assert "is not a training run" in capsys.readouterr().err
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.toml").write_text("seed = 1\n")
    assert report.main([str(tmp_path / "unfinished"), "--out", str(tmp_path / "r")]) == 2
    assert "no finished run" in capsys.readouterr().err


FAKE_TRAINING = """
import pathlib, signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda *_: got.append(1))
pathlib.Path(sys.argv[1], "started").touch()
deadline = time.monotonic() + 60
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.3)  # a second SIGINT, had the sweep sent one, would arrive meanwhile
print(f"SIGINTs received: {len(got)}")
sys.exit(130)  # what paintgym train returns after checkpointing on Ctrl-C
"""


def test_ctrl_c_reaches_each_running_training_once(tmp_path, capsys, monkeypatch):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C handling needs the main thread")
    path = write_sweep(tmp_path / "two.toml", f"seeds = [1, 2]\n{TINY}reward = 'target'\n")
    out = tmp_path / "out"
    monkeypatch.setattr(sweep, "train_command", lambda run: [sys.executable, "-c", FAKE_TRAINING, str(run.run_dir)])
    markers = [out / "base" / f"seed{seed}" / "started" for seed in (1, 2)]
    done = threading.Event()

    def ctrl_c_once_both_run() -> None:
        while not done.is_set():
            if all(marker.exists() for marker in markers):
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the terminal reaches only the sweep
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=ctrl_c_once_both_run, daemon=True)
    watcher.start()
    try:
        code = sweep.main([str(path), "--out", str(out), "--jobs", "2", "--no-progress"])
    finally:
        done.set()
        watcher.join()
    printed = capsys.readouterr()
    assert code == 130
    assert printed.out.count("checkpointed; rerun the sweep to resume it") == 2
    assert "continue with: paintgym sweep" in printed.err
    for seed in (1, 2):  # the sweep passed exactly one SIGINT on: the trainers checkpoint rather than quit
        assert "SIGINTs received: 1" in (out / "base" / f"seed{seed}" / "train.log").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the orphan guard uses Linux's prctl")
def test_trainings_are_interrupted_when_the_sweep_is_killed(tmp_path):
    import subprocess

    path = write_sweep(tmp_path / "two.toml", f"seeds = [1, 2]\n{TINY}reward = 'target'\n")
    out = tmp_path / "out"
    fake = FAKE_TRAINING.replace("SIGINT", "SIGTERM")  # what the kernel sends the orphans
    driver = (f"import sys; from paintgym.experiments import sweep; "
              f"sweep.train_command = lambda run: [sys.executable, '-c', {fake!r}, str(run.run_dir)]; "
              f"sweep.main([{str(path)!r}, '--out', {str(out)!r}, '--jobs', '2', '--no-progress'])")
    process = subprocess.Popen([sys.executable, "-c", driver], cwd=Path(__file__).resolve().parents[1])
    markers = [out / "base" / f"seed{seed}" / "started" for seed in (1, 2)]
    deadline = time.monotonic() + 60
    while not all(marker.exists() for marker in markers) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()  # SIGKILL: the sweep gets no chance to pass anything on
    process.wait()
    logs = [out / "base" / f"seed{seed}" / "train.log" for seed in (1, 2)]
    printed = re.compile(r"SIGTERMs received: (\d+)")  # what the training prints (its source is in the log too)
    while not all(printed.search(log.read_text()) for log in logs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for log in logs:  # the kernel told each training to stop (once per thread of the dead sweep it passed to)
        assert int(printed.search(log.read_text()).group(1)) >= 1


def test_an_interrupted_run_is_resumed(tmp_path, capsys):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C handling needs the main thread")
    body = TINY.replace("total_steps = 32", "total_steps = 64").replace("eval_every = 16", "eval_every = 0")
    path = write_sweep(tmp_path / "one.toml", f"seeds = [4]\n{body}reward = 'target'\n")
    out = tmp_path / "out"
    # the run the sweep plans, trained here until a Ctrl-C in its second iteration (as the trainer tests do)
    plan = sweep.load_sweep(path, out)
    [(config, args)] = sweep.validate(plan)
    [run] = sweep.plan(plan, [(config, args)])
    trainer = Trainer(dataclasses.replace(config, **{k: run.options[k] for k in ("seed", "run_dir", "threads")}), args)
    interrupt_during(trainer, iteration=2)
    assert trainer.train().status == "interrupted"
    assert load_checkpoint(run.run_dir)["global_step"] == 32 and not (run.run_dir / "summary.json").exists()

    assert sweep.main([str(path), "--out", str(out), "--no-progress", "--no-report"]) == 0
    assert "resume  base/seed4" in capsys.readouterr().out
    assert json.loads((run.run_dir / "summary.json").read_text())["global_step"] == 64
    assert "paintgym sweep: resuming" in (run.run_dir / "train.log").read_text()
    steps = [int(row["step"]) for row in read_csv(run.run_dir / "metrics.csv")]
    assert steps == [0, 16, 32, 48, 64, 64]  # every iteration once, then the final evaluation
