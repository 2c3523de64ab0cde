"""Data-parallel training under ``torchrun`` (:mod:`experiments.distributed`): two CPU processes with gloo
train what one process with the whole batch trains, rank 0 alone writes, a resume may change the world size.

The two ranks are launched as ``torchrun`` launches them: ``python train.py`` with ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR`` and a free ``MASTER_PORT`` in the environment (one test goes through
``torchrun`` itself). The one-process runs run in the test process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from paintgym.canvas import collective
from paintgym.experiments import cli_train, distributed
from paintgym.experiments.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]

# 16 px digits, 8 envs of 2 steps, one group (so the first update is over the whole global batch)
TINY = ["--canvas-size", "16", "--max-steps", "2", "--num-envs", "8", "--eval-episodes", "2", "--video-size", "16",
        "--threads", "1", "--no-progress", "--seed", "3", "--eval-every", "0", "--checkpoint-every", "16",
        "--width", "4", "--hidden", "32"]
MODEL_BASED = ["--agent", "model-based", "--num-minibatches", "1", *TINY]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(argv: list[str], world_size: int = 2, timeout: float = 120.0,
           command: tuple[str, ...] = ("train.py",)) -> list[subprocess.CompletedProcess]:
    """Run ``python train.py argv`` (or ``python command argv``) in ``world_size`` processes, as ``torchrun``
    would; wait for all."""
    port = str(free_port())
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "WORLD_SIZE": str(world_size), "RANK": str(rank), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PAINTGYM_DIST_TIMEOUT": "30"}
        procs.append(subprocess.Popen([sys.executable, *command, *argv], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def params(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run)["algorithm"]["agent"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


def test_without_torchrun_everything_is_a_no_op(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched() and distributed.world() == distributed.World(0, 1, 0)
    with distributed.process_group("cpu") as world:
        assert world.is_main and not torch.distributed.is_initialized() and not collective.active()
    x = torch.tensor([1.0, 2.0, 4.0])
    assert torch.equal(collective.normalise(x), (x - x.mean()) / (x.std() + 1e-8))
    assert collective.average_metrics({"a": 1.5}) == {"a": 1.5}
    module = torch.nn.Sequential(torch.nn.BatchNorm2d(2))
    assert collective.sync_batchnorm(module, torch.device("cpu")) is module
    assert type(module[0]) is torch.nn.BatchNorm2d
    assert distributed.local_count(8) == 8


def test_two_ranks_make_the_first_update_of_one_process(tmp_path):
    """The model-based agent (deterministic actor, batch norm synchronised): one iteration on 8 envs split
    4 + 4 over two ranks equals one iteration on 8 envs in one process; then a resume on one process
    continues the two-process run."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli_train.main([*MODEL_BASED, "--total-steps", "16", "--run-dir", str(one)]) == 0
    runs = launch([*MODEL_BASED, "--total-steps", "16", "--run-dir", str(two)])
    for rank, run in enumerate(runs):
        assert run.returncode == 0, f"rank {rank}: {run.stderr[-3000:]}"
    assert "trained 16 steps" in runs[0].stdout and runs[1].stdout == ""  # rank 1 is silent
    difference = max_difference(params(one), params(two))
    print(f"max parameter difference after the first update, 1 vs 2 processes: {difference:.3g}")
    assert difference < 1e-4
    # batch-norm running statistics follow the global batch too
    state_one, state_two = load_checkpoint(one), load_checkpoint(two)
    assert torch.equal(state_one["env"]["env_seeds"], state_two["env"]["env_seeds"])  # every env, rank order
    assert state_two["world_size"] == 2 and state_two["global_step"] == 16

    # rank 0 alone wrote: one checkpoint, one CSV, one TensorBoard log, the final files
    names = sorted(path.name for path in two.iterdir())
    assert names == sorted(path.name for path in one.iterdir())
    assert len(list((two / "tb").iterdir())) == 1

    # resume the two-process run in one process: the same global batch, it continues
    cut = tmp_path / "cut"
    shutil.copytree(two, cut)
    assert cli_train.main(["--resume", str(cut), "--total-steps", "32"]) == 0
    assert load_checkpoint(cut)["global_step"] == 32
    assert max_difference(params(cut), params(two)) > 0  # it trained on


@pytest.mark.parametrize("agent", ["ppo", "reinforce"])
def test_policy_gradient_agents_run_on_two_ranks_and_resume_on_one(tmp_path, agent):
    run = tmp_path / agent
    extra = ["--num-minibatches", "2", "--update-epochs", "1"] if agent == "ppo" else ["--baseline", "mean"]
    runs = launch(["--agent", agent, *TINY, "--total-steps", "16", *extra, "--run-dir", str(run)])
    for rank, done in enumerate(runs):
        assert done.returncode == 0, f"rank {rank}: {done.stderr[-3000:]}"
    state = load_checkpoint(run)
    assert state["world_size"] == 2 and state["env"]["episodes"].shape == (8,)
    assert cli_train.main(["--resume", str(run), "--total-steps", "32"]) == 0
    assert load_checkpoint(run)["global_step"] == 32
    if agent == "ppo":  # and back to two processes (the reward normaliser's per-env returns are re-sliced)
        runs = launch(["--resume", str(run), "--total-steps", "48"])
        assert [done.returncode for done in runs] == [0, 0], runs[0].stderr[-3000:]
        assert load_checkpoint(run)["global_step"] == 48


def as_rank_0_of_2(monkeypatch):
    """This process's environment as torchrun's rank 0 of 2 (the checks fail before the ranks meet)."""
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)


def test_num_envs_that_do_not_divide_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    as_rank_0_of_2(monkeypatch)
    run = tmp_path / "r"
    assert cli_train.main([*MODEL_BASED, "--num-envs", "7", "--total-steps", "14", "--run-dir", str(run)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--num-envs 7 does not divide among 2 ranks" in lines[0], lines
    assert not run.exists() and not torch.distributed.is_initialized()
    monkeypatch.setenv("RANK", "1")  # the other ranks fail alike, silently
    assert cli_train.main([*MODEL_BASED, "--num-envs", "7", "--total-steps", "14", "--run-dir", str(run)]) == 2
    assert capsys.readouterr().err == ""


def test_an_agent_without_data_parallel_support_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    as_rank_0_of_2(monkeypatch)
    assert cli_train.main(["--agent", "sb3-ppo", *TINY[:-4], "--total-steps", "16",
                           "--run-dir", str(tmp_path / "r")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "does not run under torchrun" in lines[0], lines


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_generative_trainers_run_on_two_ranks(tmp_path, kind):
    """train-vae / train-gan: each rank a slice of the batch, gradients averaged, rank 0 writes; a resume
    on one process continues."""
    from paintgym.generative.checkpoint import read_checkpoint

    out = tmp_path / kind
    options = ["--data", "digits", "--size", "32", "--width", "8", "--batch-size", "8", "--device", "cpu",
               "--steps", "2", "--log-every", "1", "--sample-every", "2", "--checkpoint-every", "2", "--out", str(out)]
    options += ["--latent-dim", "8"] if kind == "vae" else ["--latent-dim", "8", "--n-critic", "1"]
    runs = launch(options, command=("-m", "paintgym", f"train-{kind}"))
    for rank, done in enumerate(runs):
        assert done.returncode == 0, f"rank {rank}: {done.stderr[-3000:]}"
    assert "trained to step 2" in runs[0].stdout and runs[1].stdout == ""
    assert read_checkpoint(out / "ckpt.pt", kind)["step"] == 2
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2"]  # one writer
    module = __import__(f"paintgym.experiments.train_{kind}", fromlist=["main"])
    assert module.main(["--out", str(out), "--resume", "--steps", "3", "--device", "cpu"]) == 0
    assert read_checkpoint(out / "ckpt.pt", kind)["step"] == 3


def test_sweep_launches_each_run_with_torchrun(tmp_path):
    from paintgym.experiments import sweep

    run = sweep.PlannedRun.__new__(sweep.PlannedRun)
    run.run_dir, run.status = tmp_path / "a" / "seed1", "resume"
    command = sweep.train_command(run, "torchrun:4")
    assert Path(command[0]).name == "torchrun" and command[1:3] == ["--standalone", "--nproc-per-node=4"]
    assert command[3:6] == ["-m", "paintgym", "train"] and command[-2:] == ["--resume", str(run.run_dir)]
    assert sweep.train_command(run)[0] == sys.executable
    with pytest.raises(sweep.SweepError, match="torchrun:G"):
        sweep.parse_launcher("torchrun:x")


def test_a_dead_rank_stops_the_others_and_the_checkpoint_resumes(tmp_path):
    """Rank 1 is killed mid-run: rank 0 stops with an error within the process group's timeout (30 s here),
    its last checkpoint is intact and --resume continues on one process."""
    import time

    run = tmp_path / "run"
    port = str(free_port())
    argv = [*MODEL_BASED, "--total-steps", "100000", "--checkpoint-every", "16", "--run-dir", str(run)]
    procs = []
    for rank in range(2):
        env = {**os.environ, "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": port, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PAINTGYM_DIST_TIMEOUT": "30"}
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "train.py"), *argv], env=env, cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists():
            assert time.monotonic() < deadline and procs[0].poll() is None, "no checkpoint was written"
            time.sleep(0.2)
        procs[1].kill()
        killed = time.monotonic()
        procs[0].wait(timeout=90)
        took = time.monotonic() - killed
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()
    print(f"rank 0 stopped {took:.1f} s after rank 1 died")
    assert procs[0].returncode != 0 and took < 60, (procs[0].returncode, took)
    state = load_checkpoint(run)  # intact
    step = state["global_step"]
    assert step >= 16
    assert cli_train.main(["--resume", str(run), "--total-steps", str(step + 16)]) == 0
    assert load_checkpoint(run)["global_step"] == step + 16


def _collectives_worker(rank: int, port: str, out: str) -> None:
    """Rank ``rank`` of 2: global statistics and the synchronised batch norm on half of a batch each."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5) * 3.0 + 1.0
    mine = x.chunk(2)[rank].clone().requires_grad_()
    bn = collective.sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)), torch.device("cpu"))
    (bn(mine).square() * torch.arange(3.0).view(1, 3, 1, 1)).mean().backward()
    collective.average_gradients_(bn.parameters())
    values = torch.arange(10.0)[rank * 5:(rank + 1) * 5] ** 2
    local = torch.nn.BatchNorm2d(3)  # each rank's own statistics (--no-sync-batchnorm), then one average
    local(mine.detach())
    collective.average_running_stats_([torch.nn.Sequential(local)])
    result = {"y": bn(mine).detach(), "grad_x": mine.grad, "grad_w": bn[0].weight.grad,
              "local_mean": local.running_mean.clone(), "local_var": local.running_var.clone(),
              "running": bn[0].running_var.clone(), "normalised": collective.normalise(values),
              "metrics": collective.average_metrics({"a": float(rank), "episodes": 2.0})}
    torch.save(result, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_collectives_on_two_ranks_compute_what_one_process_does(tmp_path):
    """Advantage normalisation, metric averaging and the synchronised batch norm (forward, the gradient
    of the input and of the weights, running statistics) over 2 gloo ranks equal one process's."""
    torch.multiprocessing.spawn(_collectives_worker, args=(str(free_port()), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    torch.manual_seed(0)
    x = (torch.randn(8, 3, 5, 5) * 3.0 + 1.0).requires_grad_()
    bn = torch.nn.BatchNorm2d(3)
    (bn(x).square() * torch.arange(3.0).view(1, 3, 1, 1)).mean().backward()
    y = bn(x).detach()
    running = bn.running_var.clone()
    values = torch.arange(10.0) ** 2
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([r["grad_x"] for r in ranks]), x.grad * 2, **close)  # mean of 2 halves
    torch.testing.assert_close(ranks[0]["grad_w"], bn.weight.grad, **close)
    torch.testing.assert_close(ranks[1]["running"], running, **close)
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y, **close)
    torch.testing.assert_close(torch.cat([r["normalised"] for r in ranks]),
                               (values - values.mean()) / (values.std() + 1e-8), **close)
    assert ranks[0]["metrics"] == ranks[1]["metrics"] == {"a": 0.5, "episodes": 4.0}
    # unsynchronised batch norms: after average_running_stats_ every rank holds the mean of the ranks' running
    # statistics (the running mean of the global batch mean, the ranks' mean variance)
    halves = [torch.nn.BatchNorm2d(3) for _ in range(2)]
    for half, part in zip(halves, x.detach().chunk(2), strict=True):
        half(part)
    for key, name in (("local_mean", "running_mean"), ("local_var", "running_var")):
        torch.testing.assert_close(ranks[0][key], ranks[1][key], atol=0, rtol=0)
        torch.testing.assert_close(ranks[0][key], (getattr(halves[0], name) + getattr(halves[1], name)) / 2, **close)
    torch.testing.assert_close(ranks[0]["local_mean"], 0.1 * x.detach().mean((0, 2, 3)), **close)


def test_learning_rewards_are_synchronised(tmp_path):
    """The novelty archive and the online GAN critic see every rank's paintings (all-gathered in rank order):
    after one iteration on two ranks they are one process's, as is the model-based agent's value critic
    (a reward term that is not differentiable needs it: --horizon 1)."""
    argv = [*MODEL_BASED, "--reward", "target:1.0, novelty:0.5, gan(data=digits):0.1", "--horizon", "1",
            "--total-steps", "16"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli_train.main([*argv, "--run-dir", str(one)]) == 0
    runs = launch([*argv, "--run-dir", str(two)])
    for rank, run in enumerate(runs):
        assert run.returncode == 0, f"rank {rank}: {run.stderr[-3000:]}"
    state_one, state_two = load_checkpoint(one), load_checkpoint(two)
    archive_one, archive_two = (state["reward"]["novelty"]["archive"] for state in (state_one, state_two))
    assert archive_one.shape == archive_two.shape and archive_one.shape[0] > 4  # more than one rank's paintings
    torch.testing.assert_close(archive_two, archive_one, atol=1e-3, rtol=0)
    gan_one, gan_two = state_one["reward"]["gan"], state_two["reward"]["gan"]
    assert gan_one["stored"] == gan_two["stored"] == 8  # each rank painted 4
    # the paintings differ by the float noise of the actor's update; Adam's first steps are near lr * sign(grad)
    assert max_difference(gan_one["critic"], gan_two["critic"]) < 1e-3
    assert max_difference(state_one["algorithm"]["agent"], state_two["algorithm"]["agent"]) < 1e-4
