"""``paintgym train`` / ``python train.py``: train PPO, REINFORCE or SB3's PPO on a paintgym env.

Argument parsing and wiring only; the loop is :mod:`experiments.trainer`. Options come from, in rising
precedence: the defaults, the checkpoint's configuration (``--resume``), a TOML file (``--config``,
flat ``key = value`` lines named like the flags) and the flags given. ``--help`` lists the
hyperparameters of the chosen ``--agent``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from paintgym.experiments.config import ConfigError, add_dataclass_arguments, coerce, load_toml

EXAMPLES = """examples:
  python train.py                                   # PPO on digits, a few minutes on a CPU
  paintgym train --agent reinforce --action-mode discrete
  paintgym train --reward "target:1.0, harmony:0.2" --targets faces --canvas-size 64
  paintgym train --config run.toml --device cuda --num-envs 1024 --total-steps 5000000
  paintgym train --resume runs/ppo-Reconstruct-v0-s1-20250101-120000 --total-steps 1000000
"""


def build_parser(agent: str) -> argparse.ArgumentParser:
    """The parser for ``agent``'s options (every default suppressed: only given flags are parsed)."""
    from paintgym.experiments.trainer import TrainConfig, algorithm_args_class

    parser = argparse.ArgumentParser(prog="paintgym train",
                                     description="Train PPO, REINFORCE or SB3 PPO on a paintgym env.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="FILE", help="TOML file of options (flags given override it)")
    add_dataclass_arguments(parser.add_argument_group("run"), TrainConfig)
    add_dataclass_arguments(parser.add_argument_group(f"{agent} hyperparameters"), algorithm_args_class(agent))
    return parser


def resolve(argv: list[str]) -> tuple[Any, Any]:
    """The run configuration and the algorithm's hyperparameters for a command line."""
    from paintgym.experiments.trainer import TrainConfig, algorithm_args_class, load_checkpoint

    pre = argparse.ArgumentParser(add_help=False)
    for flag in ("--config", "--agent", "--resume"):
        pre.add_argument(flag)
    known, _ = pre.parse_known_args(argv)

    layers: list[tuple[str, dict[str, Any]]] = []
    if known.resume:
        state = load_checkpoint(known.resume)
        layers.append((f"checkpoint {known.resume}", {**state["config"], **state["args"]}))
    if known.config:
        layers.append((f"config file {known.config}", load_toml(known.config)))
    agent = known.agent
    for _, values in reversed(layers):
        agent = agent or values.get("agent")
    agent = agent or TrainConfig.agent
    if known.resume and known.agent and known.agent != layers[0][1]["agent"]:
        raise ConfigError(f"the run in {known.resume} trains --agent {layers[0][1]['agent']}, not {known.agent}")

    parser = build_parser(agent)
    given = vars(parser.parse_args(argv))
    given.pop("config", None)
    layers.append(("the command line", given))

    args_class = algorithm_args_class(agent)
    run_keys = {field.name for field in dataclasses.fields(TrainConfig)}
    algo_keys = {field.name for field in dataclasses.fields(args_class)}
    run_values: dict[str, Any] = {}
    algo_values: dict[str, Any] = {}
    for origin, values in layers:
        values = {key.replace("-", "_"): value for key, value in values.items()}
        if origin.startswith("checkpoint"):  # its resume/run_dir described that run, not this command
            values = {key: value for key, value in values.items() if key not in ("resume", "run_dir")}
        unknown = sorted(set(values) - run_keys - algo_keys)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} in {origin} for --agent {agent}; "
                              f"valid: {', '.join(sorted(run_keys | algo_keys))}")
        run_values.update(coerce(TrainConfig, {k: v for k, v in values.items() if k in run_keys}, origin))
        algo_values.update(coerce(args_class, {k: v for k, v in values.items() if k in algo_keys}, origin))
    run_values["agent"] = agent
    return TrainConfig(**run_values), args_class(**algo_values)


def main(argv: list[str] | None = None) -> int:
    from paintgym.agents.common import TrainingDiverged
    from paintgym.experiments.trainer import train

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config, args = resolve(argv)
        result = train(config, args)
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, keep the last checkpoint
        print("paintgym train: interrupted; the last checkpoint written (if any) is kept", file=sys.stderr)
        return 130
    except TrainingDiverged as err:
        print(f"paintgym train: {err}", file=sys.stderr)
        return 1
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"paintgym train: error: {err}", file=sys.stderr)
        return 2
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
