"""Reading a checkpoint back: the manifest, the sha256 check, the architecture, the state dict (no pickle)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.models.architectures import ClassifierNet


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted or loaded; the message names the file."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(weights_path: str | Path, *, device: str = "cpu") -> tuple[ClassifierNet, dict[str, Any]]:
    """Load ``epoch-NNN.safetensors`` (or an imported model's weights) and its sibling manifest; the
    model comes back in eval mode.

    Raises:
        CheckpointError: missing/invalid manifest, sha256 mismatch, unregistered architecture,
            or a state dict that does not match the architecture.
    """
    weights_path = Path(weights_path)
    manifest = read_manifest(weights_path)
    expected = manifest.get("sha256", "")
    actual = file_sha256(weights_path)
    if actual != expected:
        raise CheckpointError(f"{weights_path}: sha256 mismatch: expected {expected}, file has {actual}")
    if "external" in manifest:  # imported with `xai-harness import` (harness/models/external.py)
        from harness.models.external import load_external

        return load_external(weights_path, manifest).to(device).eval(), manifest
    model = _build_for(manifest, weights_path)
    _load_state(model, weights_path)
    return model.to(device).eval(), manifest


def read_manifest(weights_path: Path) -> dict[str, Any]:
    manifest_path = Path(weights_path).with_suffix(".json")
    if not Path(weights_path).is_file():
        raise CheckpointError(f"{weights_path}: no such checkpoint file")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{weights_path}: manifest {manifest_path.name} is missing") from None
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{manifest_path}: unreadable manifest: {err}") from err
    missing = [k for k in ("architecture", "img_size", "num_classes", "sha256") if k not in manifest]
    if missing:
        raise CheckpointError(f"{manifest_path}: manifest lacks {missing}")
    return manifest


def _build_for(manifest: dict[str, Any], weights_path: Path) -> ClassifierNet:
    from harness.models.architectures import ARCHITECTURES, create_model

    arch = manifest["architecture"]
    if arch not in ARCHITECTURES:
        raise CheckpointError(
            f"{weights_path}: architecture {arch!r} is not registered; known: {', '.join(ARCHITECTURES.names())}"
        )
    return create_model(arch, img_size=int(manifest["img_size"]), num_classes=int(manifest["num_classes"]),
                        preprocess=manifest.get("preprocess", "none"), multilabel=bool(manifest.get("multilabel", False)),
                        finding_names=tuple(manifest.get("finding_names", ())))


def _load_state(model: ClassifierNet, weights_path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file: {err}") from err
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: shape {tuple(state[k].shape)} in file, {tuple(v.shape)} in {model.arch}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} problems)" if len(problems) > 5 else "")
        raise CheckpointError(f"{weights_path}: state dict does not match architecture {model.arch!r}: {shown}")
    model.load_state_dict(state, strict=True)
