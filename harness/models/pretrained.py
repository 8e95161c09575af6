"""Pretrained weights from a local safetensors file, adapted to the single-channel architectures.

Nothing is ever downloaded: ``--pretrained PATH`` / a zoo entry's ``pretrained:`` names a file,
e.g. a timm or torchvision ImageNet state dict saved with ``safetensors.torch.save_file``. Loading
is by key and shape: the 3-channel ImageNet stem is adapted to one channel by summing its kernels
over the input channels (timm's ``adapt_input_conv``), a ViT's position embedding is resampled to
the token grid of the image size (timm's ``resample_abs_pos_embed``), and tensors whose shapes
still differ (the ImageNet classifier head) keep their initialisation. Pickle files are refused.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from harness.models.architectures import ClassifierNet

log = logging.getLogger(__name__)

_PREFIXES = ("backbone.", "module.", "model.")


class PretrainedError(ValueError):
    """A pretrained file that is missing, not safetensors, or shares no weights with the architecture."""


@dataclass(frozen=True)
class PretrainedReport:
    """What :func:`load_pretrained` did, tensor by tensor (names are backbone state-dict keys).

    Attributes:
        path: the file.
        sha256: its content hash (recorded in manifests and config hashes).
        loaded: copied unchanged.
        adapted: 3-channel stems summed to 1 channel.
        resampled: ViT position embeddings resampled to this image size.
        kept_init: in both, but with different shapes (e.g. the classifier head): left at init.
        missing: in the model, not in the file: left at init.
        unexpected: in the file, not in the model (e.g. blocks a truncated model removed).
    """

    path: str
    sha256: str
    loaded: tuple[str, ...]
    adapted: tuple[str, ...]
    resampled: tuple[str, ...]
    kept_init: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"{len(self.loaded)} tensors loaded, {len(self.adapted)} stems summed to 1 channel, "
                f"{len(self.resampled)} resampled, {len(self.kept_init)} kept at init (shape), "
                f"{len(self.missing)} missing, {len(self.unexpected)} unused")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of safetensors file ``path`` on the CPU, with any ``backbone.``/``module.``/
    ``model.`` prefix shared by every key removed."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainedError(f"pretrained weights {path}: no such file (weights are never downloaded)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise PretrainedError(f"pretrained weights {path}: not a safetensors file ({err}); convert a .pt/.pth "
                              "state dict with safetensors.torch.save_file") from err
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_pretrained(model: ClassifierNet, path: str | Path) -> PretrainedReport:
    """Copy the weights of ``path`` into ``model.backbone`` by key and shape (see the module docstring).

    Raises:
        PretrainedError: unreadable file, or no tensor of the file fits the architecture.
    """
    source = read_weights(path)
    target = model.backbone.state_dict()
    groups: dict[str, list[str]] = {k: [] for k in ("loaded", "adapted", "resampled", "kept_init", "missing")}
    updates: dict[str, torch.Tensor] = {}
    for key, current in target.items():
        kind, value = _fit(model, key, current, source.get(key))
        groups[kind].append(key)
        if value is not None:
            updates[key] = value
    if not updates:
        raise PretrainedError(f"pretrained weights {path}: no tensor matches architecture {model.arch!r} "
                              f"(file keys e.g. {sorted(source)[:3]}, model keys e.g. {sorted(target)[:3]})")
    with torch.no_grad():
        for key, value in updates.items():
            target[key].copy_(value.to(dtype=target[key].dtype))
    report = PretrainedReport(path=str(path), sha256=file_sha256(Path(path).expanduser()),
                              unexpected=tuple(sorted(set(source) - set(target))),
                              **{k: tuple(v) for k, v in groups.items()})
    log.info("pretrained %s -> %s: %s", path, model.arch, report.summary())
    return report


def _fit(model: ClassifierNet, key: str, current: torch.Tensor, value: torch.Tensor | None):
    """(kind, tensor to copy or None) for one state-dict entry."""
    if value is None:
        return "missing", None
    if value.shape == current.shape:
        return "loaded", value
    if value.ndim == 4 and current.ndim == 4 and current.shape[1] == 1 and value.shape[1] == 3 \
            and value.shape[0] == current.shape[0] and value.shape[2:] == current.shape[2:]:
        from timm.models import adapt_input_conv

        return "adapted", adapt_input_conv(1, value)
    if model.is_vit and key.endswith("pos_embed") and value.ndim == 3 and value.shape[2] == current.shape[2]:
        return "resampled", _resample_pos_embed(model, value)
    return "kept_init", None


def _resample_pos_embed(model: ClassifierNet, value: torch.Tensor) -> torch.Tensor:
    from timm.layers import resample_abs_pos_embed

    backbone = model.backbone
    prefix = 0 if getattr(backbone, "no_embed_class", False) else int(backbone.num_prefix_tokens)
    return resample_abs_pos_embed(value.float(), list(backbone.patch_embed.grid_size), num_prefix_tokens=prefix)


__all__ = ["PretrainedError", "PretrainedReport", "load_pretrained", "read_weights", "file_sha256"]
