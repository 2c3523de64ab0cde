"""Every random stream of a run, saved in its checkpoint and restored on ``--resume``, so that a resumed run
computes what an uninterrupted one would.

The state holds torch's, numpy's and Python's global generators (and CUDA's), and optionally named
``torch.Generator`` streams a trainer draws from (the generative trainers' data and noise streams), as
tensors and plain values: checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (torch's seeds every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (SB3 draws its minibatches from the legacy global generator)
    torch.manual_seed(seed)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded random stream on ``device``."""
    return torch.Generator(device=device).manual_seed(seed)


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The state of every global generator, and of the named ``generators``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generators:
        state["generators"] = {name: g.get_state() for name, g in generators.items()}
        state["devices"] = {name: g.device.type for name, g in generators.items()}
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None,
                  reseed: int | None = None) -> None:
    """Restore :func:`rng_state` (a state without numpy's or Python's part leaves those generators alone).

    A named stream saved on another device type cannot be restored: it is seeded with ``reseed``
    instead, with a warning that the run is no longer bit-identical.
    """
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        saved = state["numpy"]
        np.random.set_state((saved["kind"], saved["keys"].numpy().astype(np.uint32),  # noqa: NPY002
                             saved["pos"], saved["has_gauss"], saved["cached"]))
    if "python" in state:
        saved = state["python"]
        random.setstate((saved["version"], tuple(saved["internal"]), saved["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, generator in (generators or {}).items():
        saved_on = state.get("devices", {}).get(name)
        if saved_on == generator.device.type:
            generator.set_state(state["generators"][name])
        else:
            warnings.warn(f"resuming on {generator.device.type} a run saved on {saved_on}: its {name} random "
                          "stream restarts (the run is not bit-identical)", stacklevel=2)
            generator.manual_seed(reseed if reseed is not None else 0)
