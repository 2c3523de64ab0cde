"""Transfer learning (``--init-from``, ``--freeze``): matching layers are copied and the others re-initialised,
frozen parameters do not move, a frozen run resumes frozen, and checkpoints of the wrong kind are one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from paintgym.agents.model_based import ModelBasedArgs
from paintgym.agents.ppo import PPOArgs
from paintgym.agents.reinforce import ReinforceArgs
from paintgym.experiments import cli_train
from paintgym.experiments.checkpoints import load_checkpoint
from paintgym.experiments.generative_runs import TrainingError
from paintgym.experiments.train_classifier import Args as ClassifierArgs
from paintgym.experiments.train_classifier import train as train_classifier
from paintgym.experiments.train_config import TrainConfig
from paintgym.experiments.train_vae import Args as VAEArgs
from paintgym.experiments.train_vae import train as train_vae
from paintgym.experiments.trainer import Trainer
from paintgym.generative.checkpoint import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CLASSIFIER = dict(size=32, batch_size=16, width=4, features=16, device="cpu", log_every=1, eval_every=1000,
                  checkpoint_every=1000, seed=0)


def agent_config(run_dir: Path, **changes) -> TrainConfig:
    values = dict(agent="ppo", canvas_size=16, max_steps=2, num_envs=8, eval_episodes=4, video_size=32, threads=1,
                  progress=False, seed=5, total_steps=16, eval_every=0, checkpoint_every=16, run_dir=str(run_dir))
    values.update(changes)
    return TrainConfig(**values)


def source_run(tmp_path: Path, name: str, args, **changes) -> Path:
    """A trained (16 env steps) agent run directory."""
    Trainer(agent_config(tmp_path / name, **changes), args).train()
    return tmp_path / name


def saved_network(run: Path, key: str = "agent") -> dict[str, torch.Tensor]:
    return load_checkpoint(run)["algorithm"][key]


def test_ppo_with_another_stroke_count_copies_the_encoder_and_reinitialises_the_actor_head(tmp_path, capsys):
    source = source_run(tmp_path, "source", PPOArgs(hidden=32))
    saved = saved_network(source)
    config = agent_config(tmp_path / "fine", init_from=str(source), strokes_per_step=2,  # 26 actions, not 13
                          freeze="trunk")
    trainer = Trainer(config, PPOArgs(hidden=32))
    report = trainer.transfer
    mine = trainer.algo.agent.state_dict()
    assert {name for name, _, _ in report.reinitialised} == {"agent.actor.weight", "agent.actor.bias"}
    assert not torch.equal(mine["actor.weight"][:26], saved["actor.weight"])  # fresh, not a copy
    for name in ("encoder.stem.weight", "encoder.fc.0.weight", "critic.weight"):
        assert torch.equal(mine[name], saved[name]), name
    assert "re-initialised agent.actor (shapes differ" in capsys.readouterr().out
    result = trainer.train()  # fresh optimiser and step counter
    assert result.global_step == 16 and result.status == "finished"
    trained = trainer.algo.agent.state_dict()
    assert all(torch.equal(trained[name], saved[name]) for name in saved if name.startswith("encoder."))  # frozen
    assert not torch.equal(trained["critic.weight"], saved["critic.weight"])  # the heads trained

    # reinforce shares PPO's network: it starts from a PPO run too
    reinforce = Trainer(agent_config(tmp_path / "r", agent="reinforce", init_from=str(source)),
                        ReinforceArgs(hidden=32))
    assert not reinforce.transfer.reinitialised and not reinforce.transfer.new


def test_model_based_on_another_canvas_size_keeps_its_actor_and_reinitialises_the_critic_head(tmp_path):
    args = ModelBasedArgs(width=4, hidden=32, num_minibatches=2)
    source = source_run(tmp_path, "source", args, agent="model-based")
    trainer = Trainer(agent_config(tmp_path / "big", agent="model-based", init_from=str(source), canvas_size=32),
                      args)
    report = trainer.transfer
    # the actor sees fixed-size windows: all of it fits; the critic's last linear layer reads a larger map
    assert {name for name, _, _ in report.reinitialised} == {"agent.critic.trunk.fc.0.weight"}
    assert all(not name.startswith("agent.actor.") for name in report.new)
    saved = saved_network(source)
    assert torch.equal(trainer.algo.actor.head[2].weight, saved["actor.head.2.weight"])
    # the target network restarts from the copied critic
    for online, target in zip(trainer.algo.critic.parameters(), trainer.algo.critic_target.parameters(), strict=True):
        assert torch.equal(online, target)


def test_frozen_parameters_do_not_move_and_a_frozen_run_resumes_frozen(tmp_path):
    args = ModelBasedArgs(width=4, hidden=32, num_minibatches=2)
    source = source_run(tmp_path, "source", args, agent="model-based")
    saved = saved_network(source)
    run = tmp_path / "frozen"
    trainer = Trainer(agent_config(run, agent="model-based", init_from=str(source), freeze="encoder", total_steps=32),
                      args)
    frozen = set(trainer.transfer.frozen)
    assert frozen and all(name.startswith(("agent.actor.cnn.", "agent.critic.trunk.convs.")) for name in frozen)
    optimised = {id(p) for group in trainer.algo.actor_optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in trainer.algo.actor.cnn.parameters())
    trainer.train()
    after = trainer.algo.agent.state_dict()
    for name in frozen:
        assert torch.equal(after[name.removeprefix("agent.")], saved[name.removeprefix("agent.")]), name
    assert not torch.equal(after["actor.head.2.weight"], saved["actor.head.2.weight"])  # the rest trained
    assert sorted(load_checkpoint(run)["frozen"]) == sorted(frozen)

    resumed = Trainer(agent_config(run, agent="model-based", init_from=str(source), freeze="encoder",
                                   resume=str(run), total_steps=48), args)
    assert resumed.transfer is None and not any(p.requires_grad for p in resumed.algo.actor.cnn.parameters())
    resumed.train()
    for name in frozen:
        assert torch.equal(resumed.algo.agent.state_dict()[name.removeprefix("agent.")],
                           saved[name.removeprefix("agent.")])


def test_a_classifier_with_other_classes_copies_its_body_and_freezes_its_trunk(tmp_path, capsys):
    source = tmp_path / "digits"
    train_classifier(ClassifierArgs(steps=2, out=str(source), **CLASSIFIER), progress=False)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "three.npz", images=rng.integers(0, 256, (30, 12, 12), dtype=np.uint8),
             labels=np.repeat([0, 1, 2], 10))
    result = train_classifier(ClassifierArgs(data=str(tmp_path / "three.npz"), steps=3, out=str(tmp_path / "fine"),
                                             init_from=str(source), freeze="trunk", **CLASSIFIER), progress=False)
    printed = capsys.readouterr().out
    assert "re-initialised model.head (shapes differ, checkpoint -> this run): weight (11, 16) -> (4, 16)" in printed
    saved = read_checkpoint(source)["model"]
    now = result.model.state_dict()
    assert all(torch.equal(now[name], saved[name]) for name in now if name.startswith("body."))  # frozen
    assert now["head.weight"].shape == (4, 16)
    fine = read_checkpoint(tmp_path / "fine")
    assert fine["step"] == 3 and len(fine["train"]["optimizer"]["param_groups"][0]["params"]) == 2  # head only
    assert set(fine["train"]["frozen"]) == {f"model.{name}" for name in now if name.startswith("body.")}
    # a frozen run resumes frozen
    resumed = train_classifier(ClassifierArgs(data=str(tmp_path / "three.npz"), steps=5, out=str(tmp_path / "fine"),
                                              init_from=str(source), freeze="trunk", resume=True, **CLASSIFIER),
                               progress=False)
    assert resumed.step == 5 and all(torch.equal(resumed.model.state_dict()[name], saved[name]) for name in saved
                                     if name.startswith("body."))


def test_checkpoints_that_make_no_sense_are_one_line_errors(tmp_path, capsys):
    classifier = tmp_path / "classifier"
    train_classifier(ClassifierArgs(steps=1, out=str(classifier), **CLASSIFIER), progress=False)
    ppo = source_run(tmp_path, "ppo", PPOArgs(hidden=32))
    tiny = ["--canvas-size", "16", "--max-steps", "2", "--num-envs", "8", "--total-steps", "16", "--no-progress",
            "--threads", "1", "--eval-episodes", "4"]

    def train_error(*argv: str) -> str:
        assert cli_train.main([*tiny, "--run-dir", str(tmp_path / f"run{len(argv)}"), *argv]) == 2
        error = capsys.readouterr().err.strip()
        assert "\n" not in error and error.startswith("paintgym train: error:")
        return error

    assert "is a CLASSIFIER checkpoint (paintgym train-classifier)" in train_error("--init-from", str(classifier))
    assert "--agent ppo, whose network (an actor-critic)" in train_error("--agent", "model-based", "--init-from",
                                                                         str(ppo))
    assert "not one layer of the checkpoint fits" in train_error("--agent", "ppo", "--width", "3", "--hidden", "8",
                                                                 "--init-from", str(ppo))
    assert "--freeze freezes the layers --init-from copies" in train_error("--freeze", "encoder")
    assert "--freeze takes encoder or trunk" in train_error("--init-from", str(ppo), "--freeze", "heads")
    assert "give one of them" in train_error("--init-from", str(ppo), "--resume", str(ppo))
    assert "holds no checkpoint.pt" in train_error("--init-from", str(tmp_path))

    with pytest.raises(TrainingError, match=r"is a CLASSIFIER checkpoint \(paintgym train-classifier\); paintgym "
                                            "train-vae starts from a VAE"):
        train_vae(VAEArgs(steps=1, width=4, batch_size=8, out=str(tmp_path / "vae"), init_from=str(classifier),
                          device="cpu"), progress=False)
    with pytest.raises(TrainingError, match=r"is an agent's run \(paintgym train --agent ppo\); paintgym "
                                            "train-classifier starts from a CLASSIFIER checkpoint"):
        train_classifier(ClassifierArgs(steps=1, out=str(tmp_path / "c2"), init_from=str(ppo), **CLASSIFIER),
                         progress=False)
