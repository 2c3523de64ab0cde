"""Transfer learning: ``--init-from RUN|CHECKPOINT`` (and ``--freeze encoder|trunk``) for ``paintgym train``
and the generative trainers.

A run started with ``--init-from`` takes another run's **model weights** and nothing else: its
optimisers are fresh, its step counter starts at 0, its random streams come from its own ``--seed``
(unlike ``--resume``, which continues a run exactly). The weights are matched by name:

* a tensor with the same name and shape is copied;
* a tensor whose shape differs (another action space, canvas size, class count...) keeps this run's
  fresh initialisation, and is listed in the log as re-initialised;
* a tensor only one side has is left alone (listed too).

A checkpoint of another kind of model (a GAN given to ``paintgym train``, a VAE to ``train-classifier``,
an actor-critic to the model-based agent) or one of which no layer fits is a one-line error.

``--freeze encoder|trunk`` then stops the gradient of part of the network: its parameters get
``requires_grad = False`` and are left out of the optimisers. Only copied layers are frozen (a layer
with a re-initialised tensor trains, all of it). What ``encoder`` and ``trunk`` mean is each model's own
(``freeze_parts``): ``encoder`` is the convolutions that read the image, ``trunk`` everything but the
output layers (heads). The parameters frozen are recorded in the run's checkpoint, so that ``--resume``
freezes the same ones. Batch norms in a frozen part keep their affine weights but, the network being in
training mode, still normalise with (and track) the new data's batch statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

FREEZE_PARTS = ("encoder", "trunk")
"""The values ``--freeze`` takes."""

COMMANDS = {"sketch-rnn": "train-strokes"}
"""The trainer of a generative model kind, where it is not ``train-KIND``."""


@dataclass
class Transfer:
    """What :func:`load_matching_` (and :func:`freeze_`) did.

    Names are ``KEY.NAME``: the network's key (e.g. ``agent``) and the tensor's name in its state dict.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    """tensors copied from the checkpoint"""
    reinitialised: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    """``(name, shape in the checkpoint, shape here)`` of the tensors whose shapes differ"""
    new: list[str] = field(default_factory=list)
    """tensors this model has and the checkpoint does not"""
    unused: list[str] = field(default_factory=list)
    """tensors of the checkpoint this model has not"""
    loaded_shapes: list[tuple[int, ...]] = field(default_factory=list)
    """the shapes of :attr:`loaded`"""
    loaded_parameters: int = 0
    """parameters (numbers) copied"""
    total_parameters: int = 0
    """parameters (numbers) of this model"""
    frozen: list[str] = field(default_factory=list)
    """parameters frozen by ``--freeze`` (names)"""
    frozen_parameters: int = 0
    freeze: str | None = None

    def lines(self) -> list[str]:
        """The log: a summary line, then one line per re-initialised layer, then the new and unused tensors."""
        share = self.loaded_parameters / max(self.total_parameters, 1)
        out = [f"--init-from {self.source}: copied {len(self.loaded)} tensors ({self.loaded_parameters:,} of "
               f"{self.total_parameters:,} parameters, {share:.0%}); fresh optimiser, step 0"]
        for layer, shapes in _by_layer([(name, (old, new)) for name, old, new in self.reinitialised]).items():
            listed = ", ".join(f"{tensor} {_shape(old)} -> {_shape(new)}" for tensor, (old, new) in shapes)
            out.append(f"  re-initialised {layer} (shapes differ, checkpoint -> this run): {listed}")
        if self.new:
            out.append(f"  re-initialised (not in the checkpoint): {_compact(self.new)}")
        if self.unused:
            out.append(f"  unused (not in this model): {_compact(self.unused)}")
        if self.freeze:
            out.append(f"  frozen (--freeze {self.freeze}): {len(self.frozen)} tensors, {self.frozen_parameters:,} "
                       f"parameters: {_compact(self.frozen)}")
        return out


def _shape(shape: tuple[int, ...]) -> str:
    return str(tuple(shape))


def _by_layer(items: list[tuple[str, Any]]) -> dict[str, list[tuple[str, Any]]]:
    """Group ``(name, value)`` by layer: ``agent.actor.weight`` -> layer ``agent.actor``, tensor ``weight``."""
    layers: dict[str, list[tuple[str, Any]]] = {}
    for name, value in items:
        layer, _, tensor = name.rpartition(".")
        layers.setdefault(layer, []).append((tensor, value))
    return layers


def _compact(names: list[str]) -> str:
    """Tensor names as layers: ``a.weight, a.bias, b.weight`` -> ``a (weight, bias), b (weight)``."""
    return ", ".join(f"{layer} ({', '.join(tensor for tensor, _ in tensors)})"
                     for layer, tensors in _by_layer([(name, None) for name in names]).items())


def load_matching_(networks: Mapping[str, nn.Module], saved: Mapping[str, Mapping[str, torch.Tensor]],
                   source: str) -> Transfer:
    """Copy every tensor of ``saved`` whose name and shape match into ``networks``; keep the others as they are.

    :param networks: ``{key: module}``; ``saved[key]`` is the checkpoint's state dict of that module.
    :param source: the checkpoint, for the log and the messages.
    :raises ValueError: one line, when not one parameter of the checkpoint fits.
    """
    report = Transfer(source)
    for key, module in networks.items():
        theirs = saved.get(key, {})
        mine = module.state_dict()
        merged = dict(mine)
        parameters = {name for name, _ in module.named_parameters(remove_duplicate=False)}
        for name, tensor in mine.items():
            label = f"{key}.{name}"
            count = tensor.numel() if name in parameters else 0
            report.total_parameters += count
            if name not in theirs:
                report.new.append(label)
            elif tuple(theirs[name].shape) != tuple(tensor.shape):
                report.reinitialised.append((label, tuple(theirs[name].shape), tuple(tensor.shape)))
            else:
                merged[name] = theirs[name].to(tensor.device, tensor.dtype)
                report.loaded.append(label)
                report.loaded_shapes.append(tuple(tensor.shape))
                report.loaded_parameters += count
        report.unused += [f"{key}.{name}" for name in theirs if name not in mine]
        module.load_state_dict(merged)
    if not any(len(theirs_shape) >= 2 for theirs_shape in report.loaded_shapes):
        raise ValueError(f"--init-from {source}: not one layer of the checkpoint fits this model (names or weight "
                         f"shapes all differ: another architecture, --width or --hidden?); nothing to start from")
    return report


def _aliases(networks: Mapping[str, nn.Module]) -> list[tuple[list[str], nn.Parameter]]:
    """Each parameter once, with every ``KEY.NAME`` it goes by (a module may be registered twice, as SB3's
    shared feature extractor is)."""
    found: dict[int, tuple[list[str], nn.Parameter]] = {}
    for key, module in networks.items():
        for name, parameter in module.named_parameters(remove_duplicate=False):
            found.setdefault(id(parameter), ([], parameter))[0].append(f"{key}.{name}")
    return list(found.values())


def freeze_(networks: Mapping[str, nn.Module], prefixes: Iterable[str], report: Transfer, part: str,
            what: str = "this model") -> None:
    """Freeze (``requires_grad = False``) the parameters under ``prefixes`` of the layers ``report`` copied whole.

    :param prefixes: ``KEY.NAME`` prefixes of the part (a model's ``freeze_parts()[part]``).
    :raises ValueError: one line, when the part holds no copied parameter.
    """
    prefixes = tuple(prefixes)
    fresh = {name.rpartition(".")[0] for name in [*report.new, *(name for name, _, _ in report.reinitialised)]}
    loaded = {name for name in report.loaded if name.rpartition(".")[0] not in fresh}  # whole layers only
    for names, parameter in _aliases(networks):
        if any(name.startswith(prefixes) for name in names) and any(name in loaded for name in names):
            parameter.requires_grad_(False)
            report.frozen.append(names[0])
            report.frozen_parameters += parameter.numel()
    report.freeze = part
    if not report.frozen:
        raise ValueError(f"--freeze {part}: no layer of {what}'s {part} was copied from {report.source} (all "
                         "re-initialised); nothing to freeze")


def freeze_names_(networks: Mapping[str, nn.Module], names: Iterable[str]) -> None:
    """Freeze the parameters called ``names`` (``KEY.NAME``; a resumed run's :attr:`Transfer.frozen`)."""
    names = set(names)
    for aliases, parameter in _aliases(networks):
        if names.intersection(aliases):
            parameter.requires_grad_(False)


def frozen_names(networks: Mapping[str, nn.Module]) -> list[str]:
    """The ``KEY.NAME`` of every parameter that does not train, for a checkpoint."""
    return [names[0] for names, parameter in _aliases(networks) if not parameter.requires_grad]


def drop_frozen_(optimizers: Iterable[torch.optim.Optimizer]) -> None:
    """Take the frozen parameters out of fresh optimisers (before their first step)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if p.requires_grad]


def part_prefixes(parts: Mapping[str, Iterable[str]], part: str, what: str) -> list[str]:
    """The prefixes of ``part`` in a model's ``freeze_parts()``; one-line ``ValueError`` if it has none."""
    if part not in FREEZE_PARTS:
        raise ValueError(f"--freeze takes {' or '.join(FREEZE_PARTS)}, got {part!r}")
    if part not in parts:
        raise ValueError(f"--freeze {part}: {what} has no {part} to freeze"
                         + (f" (it has: {', '.join(parts)})" if parts else ""))
    return list(parts[part])


def check_options(init_from: str | None, freeze: str | None) -> None:
    """``--freeze`` needs ``--init-from`` and one of :data:`FREEZE_PARTS` (ValueError, one line)."""
    if freeze is None:
        return
    if freeze not in FREEZE_PARTS:
        raise ValueError(f"--freeze takes {' or '.join(FREEZE_PARTS)}, got {freeze!r}")
    if init_from is None:
        raise ValueError("--freeze freezes the layers --init-from copies: give --init-from RUN as well")


def describe_checkpoint(path: str | Path) -> str | None:
    """What kind of paintgym checkpoint ``path`` (a file or a run folder) is, for a message: ``"an agent's run
    (paintgym train --agent ppo)"``, ``"a GAN checkpoint (paintgym train-gan)"``; None if it is neither or
    cannot be read."""
    from paintgym.experiments.checkpoints import CHECKPOINT, load_checkpoint
    from paintgym.generative.checkpoint import CHECKPOINT_NAME, read_checkpoint

    path = Path(path).expanduser()
    agent = path / CHECKPOINT if path.is_dir() else path
    generative = path / CHECKPOINT_NAME if path.is_dir() else path
    if agent.is_file():
        try:
            state = load_checkpoint(agent)
            return f"an agent's run (paintgym train --agent {state['config'].get('agent', '?')})"
        except (ValueError, FileNotFoundError, KeyError, AttributeError):
            pass
    if generative.is_file():
        try:
            kind = read_checkpoint(generative)["kind"]
            return f"a {kind.upper()} checkpoint (paintgym {COMMANDS.get(kind, 'train-' + kind)})"
        except ValueError:
            pass
    return None


def init_algorithm_(algo: Any, agent: str, source: str, freeze: str | None,
                    device: torch.device | str = "cpu") -> Transfer:
    """``paintgym train --init-from SOURCE [--freeze PART]``: copy the networks of another agent run into ``algo``
    (an :class:`agents.common.Algorithm` of ``--agent agent``), freeze ``PART``, restart its optimisers.

    :param source: a run directory of ``paintgym train`` or its ``checkpoint.pt``.
    :raises ValueError: one line: no agent checkpoint there (a generative model's, say), a run of an agent
        with another network, not one layer that fits, or a part that holds nothing to freeze.
    """
    from paintgym.experiments.algorithms import algorithm_entry
    from paintgym.experiments.checkpoints import find_checkpoint, load_checkpoint

    try:
        state = load_checkpoint(find_checkpoint(source, hint="--init-from takes"), device)
    except (FileNotFoundError, ValueError) as err:
        found = describe_checkpoint(source)
        if found is not None and not found.startswith("an agent"):
            raise ValueError(f"--init-from {source} is {found}; paintgym train starts from an agent's run (a run "
                             "directory of paintgym train, or its checkpoint.pt)") from None
        raise ValueError(str(err)) from None
    theirs = str(state["config"].get("agent"))
    mine, saved = algorithm_entry(agent), algorithm_entry(theirs)
    if saved.network != mine.network:
        raise ValueError(f"--init-from {source} is a run of --agent {theirs}, whose network ({saved.network}) is not "
                         f"--agent {agent}'s ({mine.network}); start from a run of --agent {agent}")
    report = load_matching_(algo.networks(), state["algorithm"], source)
    if freeze is not None:
        prefixes = part_prefixes(algo.freeze_parts(), freeze, f"--agent {agent}")
        freeze_(algo.networks(), prefixes, report, freeze, f"--agent {agent}")
    algo.restart_training()
    return report
