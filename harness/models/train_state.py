"""Resumable training state as safetensors + JSON (no pickle): model, optimizer, RNG streams, position.

``flatten`` splits a nested structure (an optimizer ``state_dict``: dicts with int keys, lists,
tuples, numbers, tensors) into a JSON-able skeleton and a flat ``{name: tensor}`` dict that
safetensors can store; ``unflatten`` reverses it exactly (JSON keeps Python floats bit-exact).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.atomic import atomic_write_bytes

STATE_FORMAT = 1
WEIGHTS_NAME = "resume.safetensors"
META_NAME = "resume.json"


def flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON skeleton of ``obj``; its tensors go into ``tensors`` under names starting with ``prefix``."""
    if isinstance(obj, torch.Tensor):
        name = f"{prefix}#{len(tensors)}"
        tensors[name] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, dict):
        return {"__dict__": [[key, flatten(value, prefix, tensors)] for key, value in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(value, prefix, tensors) for value in obj]}
    if isinstance(obj, list):
        return [flatten(value, prefix, tensors) for value in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training state")


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {key: unflatten(value, tensors) for key, value in skeleton["__dict__"]}
        return tuple(unflatten(value, tensors) for value in skeleton["__tuple__"])
    if isinstance(skeleton, list):
        return [unflatten(value, tensors) for value in skeleton]
    return skeleton


@dataclass
class TrainState:
    """Everything needed to continue a run after epoch ``epoch`` as if it had never stopped.

    Attributes:
        epoch: the last completed epoch (its checkpoint is in the run folder).
        step: optimizer steps taken so far (the LR schedule is a function of it).
        model: the model state dict.
        optimizer: the optimizer state dict.
        rng: generator states (``shuffle``, ``augment``, ``torch`` global, ``cuda`` if any).
        extra: small JSON-able values (e.g. the first non-finite step flag).
    """

    epoch: int
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)


def save_train_state(run_dir: Path, state: TrainState) -> None:
    """Write ``resume.safetensors`` then ``resume.json`` (which carries the former's sha256), atomically."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    model = flatten(state.model, "model", tensors)
    optimizer = flatten(state.optimizer, "optim", tensors)
    rng = flatten(state.rng, "rng", tensors)
    data = save(tensors)
    atomic_write_bytes(run_dir / WEIGHTS_NAME, data)
    meta = {"format": STATE_FORMAT, "epoch": state.epoch, "step": state.step, "model": model,
            "optimizer": optimizer, "rng": rng, "extra": state.extra, "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_bytes(run_dir / META_NAME, (json.dumps(meta) + "\n").encode("utf-8"))


def load_train_state(run_dir: Path) -> TrainState | None:
    """The saved state of ``run_dir``, or None if there is none or it is incomplete/corrupt."""
    from safetensors.torch import load

    meta_path, weights_path = run_dir / META_NAME, run_dir / WEIGHTS_NAME
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        data = weights_path.read_bytes()
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("format") != STATE_FORMAT or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        return None
    tensors = load(data)
    return TrainState(epoch=int(meta["epoch"]), step=int(meta["step"]), model=unflatten(meta["model"], tensors),
                      optimizer=unflatten(meta["optimizer"], tensors), rng=unflatten(meta["rng"], tensors),
                      extra=meta.get("extra", {}))


def remove_train_state(run_dir: Path) -> None:
    for name in (META_NAME, WEIGHTS_NAME):  # meta first: a state without it is ignored
        (run_dir / name).unlink(missing_ok=True)


__all__ = ["TrainState", "save_train_state", "load_train_state", "remove_train_state", "flatten", "unflatten"]
