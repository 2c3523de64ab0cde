"""``paintgym train`` / ``python train.py``: train the model-based agent, PPO, REINFORCE or SB3's PPO on a
paintgym env.

Argument parsing and wiring only; the loop is :mod:`experiments.trainer`. Options come from, in rising
precedence (:mod:`experiments.config`): the defaults, the checkpoint's configuration (``--resume``), a
TOML file (``--config``, flat ``key = value`` lines named like the flags) and the flags given.
``--help`` lists the hyperparameters of the chosen ``--agent``.
"""

from __future__ import annotations

import sys
from typing import Any

from paintgym.agents.common import TrainingDiverged
from paintgym.experiments import distributed
from paintgym.experiments.algorithms import algorithm_args_class, saved_args
from paintgym.experiments.checkpoints import load_checkpoint
from paintgym.experiments.config import ConfigError, load_toml, resolve_options
from paintgym.experiments.flags import parse_flags, peek
from paintgym.experiments.train_config import TrainConfig
from paintgym.experiments.trainer import train

DESCRIPTION = """Train the model-based agent, PPO, REINFORCE or SB3's PPO on a paintgym env.

Options come from, in rising precedence: the defaults, the checkpoint's options (--resume), a TOML
file (--config) and the flags given; the defaults shown below include the first three.

examples:
  python train.py                                   # the model-based agent on digits, about a minute on a CPU
  paintgym train --agent reinforce --action-mode discrete
  paintgym train --reward "target:1.0, harmony:0.2" --targets faces --canvas-size 64
  paintgym train --config run.toml --device cuda --num-envs 1024 --total-steps 5000000
  paintgym train --resume runs/ppo-Reconstruct-v0-s1-20250101-120000 --total-steps 1000000
  paintgym train --targets faces --init-from runs/digits-run --freeze encoder   # fine-tune another run's agent"""


def resolve(argv: list[str]) -> tuple[TrainConfig, Any]:
    """The run configuration and the algorithm's hyperparameters for a command line.

    :raises ConfigError: an unknown option or a wrong type in the checkpoint or the config file.
    :raises ValueError: an unknown agent, or ``--agent`` other than the resumed run's.
    """
    known = peek(argv, {"--config": {}, "--agent": {}, "--resume": {}, "--init-from": {}})
    if known.resume and known.init_from:
        raise ConfigError("--init-from starts a new run from another run's weights, --resume continues a run: give "
                          "one of them")
    layers: list[tuple[str, dict[str, Any]]] = []
    if known.resume:
        state = load_checkpoint(known.resume)
        saved = {**state["config"], **saved_args(state["config"].get("agent", ""), state["args"])}
        # its resume and run_dir described that run, not this command
        layers.append((f"checkpoint {known.resume}",
                       {key: value for key, value in saved.items() if key not in ("resume", "run_dir")}))
    if known.config:
        layers.append((f"config file {known.config}", load_toml(known.config)))
    agent = known.agent
    for _, values in reversed(layers):
        agent = agent or values.get("agent")
    agent = agent or TrainConfig.agent
    if known.resume and known.agent and known.agent != layers[0][1]["agent"]:
        raise ConfigError(f"the run in {known.resume} trains --agent {layers[0][1]['agent']}, not {known.agent}")

    args_class = algorithm_args_class(agent)
    run_values, algo_values = resolve_options([TrainConfig, args_class], layers, f" for --agent {agent}")
    defaults = [("run", TrainConfig(**{**run_values, "agent": agent})), (agent, args_class(**algo_values))]
    config, args = parse_flags(defaults, argv, "paintgym train", DESCRIPTION)
    return config, args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    main_rank = distributed.world().is_main  # under torchrun, rank 0 speaks for the run
    try:
        config, args = resolve(argv)
        result = train(config, args)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, keep the last checkpoint
        print("paintgym train: interrupted; the last checkpoint written (if any) is kept", file=sys.stderr)
        return 130
    except TrainingDiverged as err:  # the metrics are global: every rank stops, rank 0 says why
        if main_rank:
            print(f"paintgym train: {err}", file=sys.stderr)
        return 1
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as err:  # the same on every rank
        if main_rank:
            print(f"paintgym train: error: {err}", file=sys.stderr)
        return 2
    if not main_rank:
        return 130 if result.status == "interrupted" else 0
    if result.status == "interrupted":
        print(f"interrupted at step {result.global_step:,}; checkpoint saved. Continue with:\n"
              f"  paintgym train --resume {result.run_dir}")
        return 130
    final = result.final_eval or {}
    shown = ", ".join(f"{key.removeprefix('eval/')} {value:.4g}" for key, value in final.items())
    print(f"trained {result.global_step:,} steps; held-out evaluation: {shown}")
    print(f"run directory: {result.run_dir}  (final_paintings.png, painting.mp4, learning_curve.png, metrics.csv, "
          f"tb/, checkpoint.pt)")
    return 0
