"""``paintgym sweep SWEEP.toml``: a grid of training runs (reward specs x seeds x ...) and their report.

The sweep file is TOML::

    out = "runs/reward_sweep"     # where the runs go (optional; --out overrides; default runs/sweep-FILENAME)
    seeds = [1, 2, 3]             # every configuration is trained once per seed

    [base]                        # options every run shares: any `paintgym train` option (keys as in
    agent = "ppo"                 # its --config files: learning_rate or learning-rate)
    total_steps = 40960
    canvas_size = 32

    [grid]                        # axes: every combination of their values is one configuration
    reward = ["target", "target:1.0, harmony:0.5"]
    action_mode = ["continuous", "discrete"]

    [[configs]]                   # and/or configurations listed one by one, with readable names
    name = "gan+novelty"
    reward = "gan(data=digits):1.0, novelty:0.5"
    agent = "reinforce"

The configurations are every ``[[configs]]`` entry (or one empty entry when there is none) crossed
with every combination of the ``[grid]`` values (or one when there is no grid). A run's options are
``[base]``, then its entry's, then its grid values, then ``seed``, ``run_dir``, ``progress = false`` and
``threads = 1`` (unless ``[base]`` sets ``threads``). A configuration's name is its entry's ``name``
(else the entry's options, ``key=value; ...``) joined with ``key=value`` for each grid axis of more
than one value; its runs go to ``OUT/<name as a folder name>/seed<S>``.

Everything is checked before any run starts: the file's keys, every option name and type for the
configuration's agent, the agent and env ids, the reward specs (built through the rewards
registry, so unknown rewards and options, and missing checkpoints, are caught) and the env options
(an env is built once per distinct set), and that existing run directories hold runs of the same
options.

Each run is a normal ``paintgym train --config OUT/NAME/seedS/sweep_run.toml`` in a child process
(``sys.executable`` on paintgym's ``train.py``), its output kept in ``train.log`` beside it;
``--jobs N`` runs N at once; ``--launcher torchrun:G`` starts each run with ``torchrun --standalone
--nproc-per-node G`` instead (data-parallel on G processes or GPUs of this node; a sweep whose runs
each need a node of their own runs one ``paintgym sweep --launcher torchrun:G`` per node, each on its
own sweep file or --out). Running the same sweep again skips finished runs (those with
``summary.json``), resumes interrupted ones (``checkpoint.pt`` without ``summary.json``) with
``--resume`` and starts the rest. Ctrl-C asks every running training to checkpoint and stop (a
second Ctrl-C stops them at once); rerun the command to continue. If the sweep itself is killed (even
by SIGKILL), Linux sends its trainings SIGTERM, on which they checkpoint and stop too, so none runs on
alone. A failed run is reported with its log and the others go on; the exit status is then 1. At the
end the report of every finished run (:mod:`experiments.report`) is written to ``OUT/report``.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from paintgym import rewards
from paintgym.canvas.export import atomic_write_bytes
from paintgym.experiments.algorithms import algorithm_args_class
from paintgym.experiments.artefacts import SUMMARY
from paintgym.experiments.config import (
    ConfigError,
    dump_toml,
    load_toml,
    read_toml,
    resolve_options,
    show_value,
    slug,
)
from paintgym.experiments.device import resolve_device
from paintgym.experiments.env_factory import make_env
from paintgym.experiments.report import PER_RUN_KEYS, SWEEP_LABEL, ReportError, write_report
from paintgym.experiments.train_config import TrainConfig, run_record

RUN_CONFIG = "sweep_run.toml"
"""The child's ``--config`` file in each run directory."""
LOG = "train.log"
"""The child's stdout and stderr, in each run directory."""
TOP_KEYS = ("out", "seeds", "base", "grid", "configs")
SWEEP_SET = {"seed": "list the seeds in seeds = [...]", "run_dir": "the sweep chooses run directories (--out)",
             "resume": "the sweep resumes interrupted runs by itself", "config": "options go in the sweep file"}
"""Options the sweep sets itself, and what to do instead."""
BASE_ONLY = ("threads", "progress")
"""Options that do not change a run's results: [base] may set them, configurations may not differ in them."""


class SweepError(ValueError):
    """The sweep file or the state of its output folder is wrong; the message says what and how to fix it."""


@dataclass
class Configuration:
    """One configuration of a sweep: its name, folder name and options (with where each came from)."""

    name: str
    slug: str
    options: dict[str, Any]
    origins: dict[str, str]

    def resolve(self) -> tuple[Any, Any]:
        """The training configuration and hyperparameters of this configuration (seed 1, no run dir).

        :raises SweepError: for an unknown agent, unknown option or wrong type, naming the key.
        """
        agent = self.options.get("agent", TrainConfig.agent)
        try:
            args_class = algorithm_args_class(agent)
        except ValueError as err:
            raise SweepError(f"agent in {self.origins.get('agent', '[base]')}: {err}") from None
        layers: dict[str, dict[str, Any]] = {}
        for key, value in self.options.items():
            layers.setdefault(f"{self.origins[key]} (configuration {self.name!r})", {})[key] = value
        try:
            run_values, algo_values = resolve_options([TrainConfig, args_class], list(layers.items()),
                                                      f" for agent {agent}")
        except ConfigError as err:
            raise SweepError(str(err)) from None
        return TrainConfig(**run_values), args_class(**algo_values)


@dataclass
class Sweep:
    """A parsed sweep file."""

    path: Path
    out: Path
    seeds: list[int]
    configurations: list[Configuration]
    threads: int


@dataclass
class PlannedRun:
    """One (configuration, seed) run and what the sweep will do with it: ``new``, ``resume`` or ``done``."""

    configuration: Configuration
    seed: int
    run_dir: Path
    status: str
    options: dict[str, Any]
    total_steps: int

    @property
    def label(self) -> str:
        return f"{self.configuration.slug}/seed{self.seed}"


# ---------------------------------------------------------------------------------------- parsing
def _key(key: str) -> str:
    return key.replace("-", "_")


def _check_options(table: Any, where: str, allow_base_only: bool) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise SweepError(f"{where} must be a table of options (key = value lines)")
    out = {}
    for key, value in table.items():
        name = _key(key)
        if name in SWEEP_SET:
            raise SweepError(f"{key!r} in {where} is set by the sweep: {SWEEP_SET[name]}")
        if name in BASE_ONLY and not allow_base_only:
            raise SweepError(f"{key!r} in {where}: set it in [base]; runs of a sweep may not differ in it")
        if isinstance(value, dict):
            raise SweepError(f"{key!r} in {where} is a table; options are single values")
        out[name] = value
    return out


def load_sweep(path: str | os.PathLike, out: str | os.PathLike | None = None) -> Sweep:
    """Read and check the structure of a sweep file (options are checked by :func:`validate`).

    :param path: the TOML file.
    :param out: the output folder; None: the file's ``out`` or ``runs/sweep-FILENAME``.
    :raises SweepError: for a missing or invalid file, unknown keys, bad seeds, empty axes, clashing names.
    """
    path = Path(path)
    data = read_toml(path, "sweep file", SweepError)
    unknown = [key for key in data if key not in TOP_KEYS]
    if unknown:
        raise SweepError(f"unknown key {unknown[0]!r} in {path}; a sweep file has {', '.join(TOP_KEYS)} "
                         "(training options go in [base], [grid] or [[configs]])")
    seeds = data.get("seeds", [1])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise SweepError(f"seeds in {path} must be a non-empty list of integers >= 0, e.g. seeds = [1, 2, 3]")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds in {path} repeat a seed: {seeds}")
    if out is None and "out" in data and not isinstance(data["out"], str):
        raise SweepError(f"out in {path} must be a folder path (a string)")
    out_dir = Path(out if out is not None else data.get("out", f"runs/sweep-{path.stem}"))

    base = _check_options(data.get("base", {}), "[base]", allow_base_only=True)
    threads = base.pop("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise SweepError(f"threads in [base] must be an integer >= 0 (0: all cores), got {threads!r}")
    base.setdefault("progress", False)
    grid = _check_options(data.get("grid", {}), "[grid]", allow_base_only=False)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{key} in [grid] must be a non-empty list of values, e.g. {key} = [...]")
        if len({json.dumps(v) for v in values}) != len(values):
            raise SweepError(f"{key} in [grid] lists a value twice: {values}")
        if key in base:
            raise SweepError(f"{key} is set in [base] and is a [grid] axis; keep one")
    entries = data.get("configs", [{}])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries) or not entries:
        raise SweepError(f"configs in {path} must be [[configs]] tables, one per configuration")

    configurations = []
    for index, entry in enumerate(entries):
        entry = dict(entry)
        name = entry.pop("name", None)
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise SweepError(f"name of [[configs]] entry {index + 1} must be a non-empty string")
        where = f"[[configs]] {name!r}" if name else f"[[configs]] entry {index + 1}"
        options = _check_options(entry, where, allow_base_only=False)
        for key in options:
            if key in grid:
                raise SweepError(f"{key} is set in {where} and is a [grid] axis; keep one")
        named = name or "; ".join(f"{key}={show_value(value)}" for key, value in options.items())
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values, strict=True))
            shown = "; ".join(f"{key}={show_value(value)}" for key, value in point.items() if len(grid[key]) > 1)
            full = "; ".join(part for part in (named, shown) if part) or "base"
            merged = {**base, **options, **point}
            origins = {**{key: "[base]" for key in base}, **{key: where for key in options},
                       **{key: "[grid]" for key in point}}
            configurations.append(Configuration(full, slug(full), merged, origins))
    seen: dict[str, str] = {}
    for configuration in configurations:
        clash = seen.get(configuration.slug.lower())
        if clash is not None:
            raise SweepError(f"configurations {clash!r} and {configuration.name!r} would share the folder "
                             f"{configuration.slug!r}; give them distinct names in [[configs]]")
        seen[configuration.slug.lower()] = configuration.name
    return Sweep(path, out_dir, list(seeds), configurations, int(threads))


# ------------------------------------------------------------------------------------- validation
def validate(sweep: Sweep) -> list[tuple[Any, Any]]:
    """Check every configuration's options, reward spec and env, building an env once per distinct set
    of env options (on the CPU, one canvas). Returns each configuration's resolved (config, args).

    :raises SweepError: naming the configuration and the key at fault.
    """

    resolved = [configuration.resolve() for configuration in sweep.configurations]
    built: set[str] = set()
    for configuration, (config, _) in zip(sweep.configurations, resolved, strict=True):
        where = f"configuration {configuration.name!r}"
        try:
            resolve_device(config.device)
        except ValueError as err:
            raise SweepError(f"device in {configuration.origins.get('device', '[base]')} ({where}): {err}") from None
        if config.reward is not None:
            try:
                rewards.build(config.reward)
            except (ValueError, FileNotFoundError) as err:
                origin = configuration.origins.get("reward", "[base]")
                raise SweepError(f"reward = {config.reward!r} in {origin} ({where}): {err}") from None
        env_key = json.dumps([config.env, config.reward, config.targets, config.canvas_size, config.max_steps,
                              config.strokes_per_step, config.action_mode, config.obs_mode])
        if env_key in built:
            continue
        try:
            env = make_env(dataclasses.replace(config, device="cpu"), 1, resolve_device("cpu"))
        except (ValueError, FileNotFoundError) as err:
            raise SweepError(f"{where}: {err}") from None
        env.close()
        built.add(env_key)
    return resolved


def plan(sweep: Sweep, resolved: list[tuple[Any, Any]]) -> list[PlannedRun]:
    """Every (configuration, seed) run, seed by seed, with its status from its run directory.

    :raises SweepError: when a run directory holds a run trained with other options.
    """
    runs = []
    ignored = set(PER_RUN_KEYS) - {"seed"}
    for seed in sweep.seeds:
        for configuration, (config, args) in zip(sweep.configurations, resolved, strict=True):
            run_dir = sweep.out / configuration.slug / f"seed{seed}"
            options = {**configuration.options, "seed": seed, "run_dir": str(run_dir), "threads": sweep.threads}
            status = "done" if (run_dir / SUMMARY).is_file() else "resume" if (run_dir / "checkpoint.pt").is_file() \
                else "new"
            if status != "new" and (run_dir / "config.toml").is_file():
                try:
                    existing = load_toml(run_dir / "config.toml")
                except ConfigError as err:
                    raise SweepError(f"cannot read the run in {run_dir}: {err}") from None
                wanted = run_record(dataclasses.replace(config, seed=seed), args)
                for key in wanted.keys() | existing.keys():
                    if key not in ignored and existing.get(key) != wanted.get(key):
                        raise SweepError(f"{run_dir} holds a run with other options ({key} = {existing.get(key)!r} "
                                         f"there, {wanted.get(key)!r} in {sweep.path}); use another --out, or delete "
                                         "that run directory to train it again")
            runs.append(PlannedRun(configuration, seed, run_dir, status, options, config.steps_budget))
    return runs


# ------------------------------------------------------------------------------------------ running
def train_command(run: PlannedRun, launcher: str = "local") -> list[str]:
    """The child's command line: ``python -m paintgym train`` under this Python; with the launcher
    ``torchrun:G``, ``torchrun --standalone --nproc-per-node G -m paintgym train`` (each run data-parallel
    on G processes of this node, :mod:`experiments.distributed`)."""
    command = ["-m", "paintgym", "train", "--config", str(run.run_dir / RUN_CONFIG)]
    if launcher.startswith("torchrun:"):
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        command = [torchrun, "--standalone", f"--nproc-per-node={parse_launcher(launcher)}", *command]
    else:
        command = [sys.executable, *command]
    return command + (["--resume", str(run.run_dir)] if run.status == "resume" else [])


def parse_launcher(launcher: str) -> int:
    """Processes per run of a ``--launcher`` (``local``: 1, ``torchrun:G``: G).

    :raises SweepError: one line, for anything else.
    """
    if launcher == "local":
        return 1
    kind, _, count = launcher.partition(":")
    if kind != "torchrun" or not count.isdigit() or int(count) < 1:
        raise SweepError(f"--launcher must be local or torchrun:G (G processes per run, e.g. torchrun:8), "
                         f"got {launcher!r}")
    return int(count)


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _trained_fraction(run: PlannedRun) -> float:
    """How far a running training is, from the last row of its metrics.csv."""
    line = _last_line(run.run_dir / "metrics.csv")
    try:
        return int(line.split(",", 1)[0]) / max(1, run.total_steps)
    except ValueError:
        return 0.0


@dataclass
class Outcome:
    """How a sweep went: runs by status (``finished``, ``skipped``, ``failed``, ``interrupted``)."""

    runs: dict[str, list[PlannedRun]]
    interrupted: bool = False


def _stop_when_orphaned(sweep_pid: int) -> None:
    """In a training child before it starts (Linux): have the kernel send it SIGTERM when the sweep dies in
    any way, even by SIGKILL, so that no training goes on alone; the trainer checkpoints and stops.

    SIGTERM rather than SIGINT: the kernel signals once per thread of the dying sweep that the child is
    handed to, and a second SIGINT would make the trainer quit without its checkpoint."""

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the child just outlives a killed sweep
        return
    if os.getppid() != sweep_pid:  # the sweep died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _start(run: PlannedRun, launcher: str = "local") -> tuple[subprocess.Popen, Any]:
    run.run_dir.mkdir(parents=True, exist_ok=True)

    header = f"written by paintgym sweep from {run.configuration.name!r}; the run's own record is config.toml"
    atomic_write_bytes(run.run_dir / RUN_CONFIG, dump_toml(run.options, header).encode())
    command = train_command(run) if launcher == "local" else train_command(run, launcher)
    log = (run.run_dir / LOG).open("ab")
    verb = "resuming" if run.status == "resume" else "starting"
    log.write(f"\n=== {datetime.now():%Y-%m-%d %H:%M:%S} paintgym sweep: {verb}: {shlex.join(command)}\n".encode())
    log.flush()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # a session of its own: a Ctrl-C in the terminal reaches only the sweep, which passes one SIGINT on,
    # so that every trainer checkpoints (a second SIGINT would make it quit without one)
    orphan_guard = None
    if sys.platform.startswith("linux"):
        sweep_pid = os.getpid()
        orphan_guard = lambda: _stop_when_orphaned(sweep_pid)  # noqa: E731
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True, preexec_fn=orphan_guard)
    return process, log


def execute(runs: list[PlannedRun], jobs: int = 1, progress: bool = True, launcher: str = "local") -> Outcome:
    """Run the ``new`` and ``resume`` runs, ``jobs`` at a time (each with ``launcher``), and say how each went."""

    outcome = Outcome({"finished": [], "skipped": [], "failed": [], "interrupted": []})
    pending = deque(run for run in runs if run.status != "done")
    outcome.runs["skipped"] = [run for run in runs if run.status == "done"]
    bar = tqdm(total=len(runs), initial=len(outcome.runs["skipped"]), unit="run", desc="sweep", disable=not progress,
               dynamic_ncols=True)
    for run in outcome.runs["skipped"]:
        bar.write(f"skip    {run.label}: finished already ({run.run_dir / SUMMARY})")
    running: dict[subprocess.Popen, tuple[PlannedRun, Any]] = {}

    def reap(process: subprocess.Popen) -> None:
        run, log = running.pop(process)
        log.close()
        code = process.returncode
        if code == 0 and (run.run_dir / SUMMARY).is_file():
            outcome.runs["finished"].append(run)
            bar.write(f"done    {run.label}")
        elif code in (130, -signal.SIGINT):
            outcome.runs["interrupted"].append(run)
            bar.write(f"stopped {run.label}: checkpointed; rerun the sweep to resume it")
        else:
            outcome.runs["failed"].append(run)
            bar.write(f"FAILED  {run.label} (exit {code}): {_last_line(run.run_dir / LOG)}\n"
                      f"        log: {run.run_dir / LOG}")
        bar.update(1)

    try:
        shown = 0.0
        while pending or running:
            while pending and len(running) < jobs:
                run = pending.popleft()
                bar.write(f"{'resume' if run.status == 'resume' else 'start':<7} {run.label}  (log: "
                          f"{run.run_dir / LOG})")
                process, log = _start(run, launcher)
                running[process] = (run, log)
            for process in [p for p in running if p.poll() is not None]:
                reap(process)
            if time.monotonic() - shown > 2.0 and running:
                shown = time.monotonic()
                bar.set_postfix_str(", ".join(f"{run.label} {_trained_fraction(run):.0%}"
                                              for run, _ in running.values()))
            time.sleep(0.1)
    except KeyboardInterrupt:
        outcome.interrupted = True
        bar.write(f"Ctrl-C: asking {len(running)} training(s) to checkpoint and stop (Ctrl-C again to stop them "
                  "at once)")
        for process in running:
            process.send_signal(signal.SIGINT)
        try:
            while running:
                for process in [p for p in running if p.poll() is not None]:
                    reap(process)
                time.sleep(0.1)
        except KeyboardInterrupt:
            for process in running:
                process.send_signal(signal.SIGINT)  # the trainers' second Ctrl-C: quit at once
            for process in list(running):
                process.wait()
                reap(process)
    finally:
        bar.close()
    return outcome


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paintgym sweep", description="Train a grid of configurations (reward specs x seeds x agents or env "
        "options), each a normal training run, and write a report comparing them.",
        epilog="the sweep file's format is documented in experiments/sweep.py; example: examples/reward_sweep.toml\n"
               "  paintgym sweep examples/reward_sweep.toml --jobs 2\n"
               "  paintgym sweep examples/reward_sweep.toml --dry-run     # what would run, nothing started",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="runs at once (default 1: one by one)")
    parser.add_argument("--launcher", default="local", metavar="L",
                        help="local (one process per run) or torchrun:G (each run data-parallel on G processes)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: the file's out, else runs/sweep-NAME)")
    parser.add_argument("--dry-run", action="store_true", help="check the file and show the runs, start nothing")
    parser.add_argument("--no-report", action="store_true", help="do not write OUT/report at the end")
    parser.add_argument("--classifier", metavar="PATH", help="the report's novelty and Fréchet distance use "
                        "this paintgym train-classifier run's features rather than random ones")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def _print_plan(sweep: Sweep, runs: list[PlannedRun]) -> None:
    counts = {status: sum(run.status == status for run in runs) for status in ("new", "resume", "done")}
    print(f"sweep {sweep.path}: {len(sweep.configurations)} configuration(s) x {len(sweep.seeds)} seed(s) = "
          f"{len(runs)} runs in {sweep.out} ({counts['new']} to start, {counts['resume']} to resume, "
          f"{counts['done']} finished)")
    width = max(len(c.name) for c in sweep.configurations)
    for configuration in sweep.configurations:
        options = ", ".join(f"{key}={show_value(value)}" for key, value in configuration.options.items()
                            if key != "progress")
        print(f"  {configuration.name:<{width}}  {options}")
    for run in runs:
        print(f"  {run.status:<7} {run.run_dir}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``paintgym sweep``; returns the exit status (0 ok, 1 a run failed, 2 bad input, 130 Ctrl-C)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.jobs < 1:
            raise SweepError(f"--jobs must be at least 1, got {args.jobs}")
        parse_launcher(args.launcher)
        sweep = load_sweep(args.sweep, args.out)
        runs = plan(sweep, validate(sweep))
        if not args.dry_run:
            sweep.out.mkdir(parents=True, exist_ok=True)
    except (SweepError, OSError) as err:
        message = err if isinstance(err, SweepError) else f"cannot create {args.out or 'the output folder'}: {err}"
        print(f"paintgym sweep: error: {message}", file=sys.stderr)
        return 2
    if args.dry_run:
        _print_plan(sweep, runs)
        return 0

    for run in runs:  # the configuration's name, for the report
        if run.status != "done" or not (run.run_dir / SWEEP_LABEL).is_file():
            label = {"config": run.configuration.name, "seed": run.seed, "sweep": str(sweep.path)}
            atomic_write_bytes(run.run_dir / SWEEP_LABEL, (json.dumps(label, indent=1) + "\n").encode())
    outcome = execute(runs, args.jobs, args.progress, args.launcher)
    counts = {key: len(value) for key, value in outcome.runs.items()}
    print(f"sweep: {counts['finished']} trained, {counts['skipped']} finished before (skipped), "
          f"{counts['failed']} failed, {counts['interrupted']} stopped")
    for run in outcome.runs["failed"]:
        print(f"  failed: {run.label}; log: {run.run_dir / LOG}", file=sys.stderr)
    if outcome.interrupted:
        print(f"interrupted; continue with: paintgym sweep {shlex.quote(str(sweep.path))} --out "
              f"{shlex.quote(str(sweep.out))}", file=sys.stderr)
        return 130
    status = 1 if outcome.runs["failed"] else 0
    if args.no_report:
        return status
    done = {id(run) for key in ("finished", "skipped") for run in outcome.runs[key]}
    finished = [run.run_dir.resolve() for run in runs if id(run) in done]
    unfinished = [run.run_dir.resolve() for run in runs if id(run) not in done and run.run_dir.is_dir()]
    if not finished:
        print("paintgym sweep: no run finished; no report written", file=sys.stderr)
        return status or 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = write_report([sweep.out], sweep.out / "report", title=f"paintgym sweep: {sweep.path.name}",
                                  runs_found=(finished, unfinished), progress=args.progress,
                                  classifier=args.classifier)
        except ReportError as err:
            print(f"paintgym sweep: error: {err}", file=sys.stderr)
            return 2
        finally:
            for warning in caught:
                print(f"paintgym sweep: warning: {warning.message}", file=sys.stderr)
    print(f"report: {report.out / 'report.html'} (report.md, metrics.csv, learning_curves.png, sheets/)")
    return status
