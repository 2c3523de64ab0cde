"""The run layer every training command shares (:mod:`paintgym.experiments`): option layers, flags, random
streams, metrics log."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from paintgym.experiments.checkpoints import load_checkpoint
from paintgym.experiments.config import ConfigError, dump_toml, resolve_options
from paintgym.experiments.flags import parse_flags
from paintgym.experiments.generative_runs import parse_args
from paintgym.experiments.logs import MetricsLog
from paintgym.experiments.rng import make_generator, rng_state, seed_everything, set_rng_state
from paintgym.experiments.train_vae import Args as VAEArgs
from paintgym.generative import VAE, save_checkpoint


@dataclass
class Run:
    steps: int = 10
    """steps to run"""
    rate: float = 0.5
    """a rate"""
    name: str | None = None
    """a name"""
    fast: bool = False
    """go fast"""


@dataclass
class Extra:
    width: int = 4
    """a width"""


def test_layers_rise_from_defaults_to_flags():
    layers = [("checkpoint c.pt", {"steps": 20, "width": 8}), ("config file x.toml", {"rate": 1, "name": "a"})]
    run_values, extra_values = resolve_options([Run, Extra], layers)
    assert run_values == {"steps": 20, "rate": 1.0, "name": "a"} and extra_values == {"width": 8}
    assert isinstance(run_values["rate"], float)  # a TOML integer where a float is due
    run, extra = parse_flags([("run", Run(**run_values)), ("extra", Extra(**extra_values))],
                             ["--rate", "0.25", "--fast", "--width", "16"], "prog", "test")
    assert run == Run(steps=20, rate=0.25, name="a", fast=True) and extra == Extra(width=16)
    with pytest.raises(ConfigError, match=r"unknown option 'stpes' in config file x.toml for prog; valid: .*steps"):
        resolve_options([Run, Extra], [("config file x.toml", {"stpes": 3})], " for prog")
    with pytest.raises(ConfigError, match="steps in checkpoint c.pt must be of type int"):
        resolve_options([Run], [("checkpoint c.pt", {"steps": "many"})])
    with pytest.raises(SystemExit) as exit_info:
        parse_flags([("run", Run())], ["--steps", "many"], "prog", "test")
    assert exit_info.value.code == 2


def test_a_resumed_generative_run_takes_its_options_from_the_checkpoint(tmp_path):
    out = tmp_path / "vae"
    model = VAE(32, 1, latent_dim=8, width=8)
    saved = VAEArgs(width=8, latent_dim=8, beta=0.5, steps=4, out=str(out), device="cpu")
    save_checkpoint(out / "ckpt.pt", model, 4, {"args": {**saved.__dict__}})
    config = tmp_path / "more.toml"
    config.write_text(dump_toml({"steps": 8, "batch_size": 16}))
    args = parse_args(VAEArgs, ["--out", str(out), "--resume", "--config", str(config), "--batch-size", "32"],
                      "paintgym train-vae", "test", "vae")
    # checkpoint: width, latent_dim, beta; config file: steps (batch_size too, but the flag wins)
    assert (args.width, args.latent_dim, args.beta, args.steps, args.batch_size) == (8, 8, 0.5, 8, 32)
    assert args.resume and args.out == str(out)
    fresh = parse_args(VAEArgs, ["--out", str(out)], "paintgym train-vae", "test", "vae")
    assert fresh.width == VAEArgs.width  # no --resume: the checkpoint is not a layer


def test_every_random_stream_is_saved_and_restored():
    seed_everything(3)
    stream = make_generator(torch.device("cpu"), 7)
    state = rng_state({"data": stream})

    def draw() -> list:
        return [torch.rand(2).tolist(), np.random.rand(2).tolist(), random.random(),  # noqa: NPY002
                torch.rand(2, generator=stream).tolist()]

    first = draw()
    set_rng_state(state, {"data": stream})
    assert draw() == first
    agent_state = rng_state()  # agent checkpoints hold no named streams
    assert "generators" not in agent_state
    again = draw()
    set_rng_state(agent_state)
    assert draw()[:3] == again[:3]


def test_metrics_log_keeps_the_rows_up_to_the_resumed_step(tmp_path):
    log = MetricsLog(tmp_path, ["step", "loss", "score"])
    for step in (1, 2, 3):
        log.write(step, {"loss": step / 10, "unlogged": 1.0})
    log.close()
    resumed = MetricsLog(tmp_path, ["step", "loss", "score"], resume_step=2)
    resumed.write(3, {"loss": 0.5, "score": 1.0})
    resumed.close()
    with (tmp_path / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["step"], row["loss"], row["score"]) for row in rows] == [("1", "0.1", ""), ("2", "0.2", ""),
                                                                          ("3", "0.5", "1")]
    assert [row["step"] for row in resumed.history] == [3] and len(resumed.rows) == 3


def test_a_checkpoint_of_another_format_version_fails_with_one_line_naming_it(tmp_path):
    torch.save({"format": "paintgym-checkpoint/2"}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="format paintgym-checkpoint/2; this paintgym reads paintgym-checkpoint/1"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="truncated, corrupt") as error:
        load_checkpoint(tmp_path)
    assert "\n" not in str(error.value)
