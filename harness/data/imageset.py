"""The in-memory dataset contract every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageSet:
    """One split of a dataset, held as tensors.

    Attributes:
        images: uint8 ``[N,1,H,W]``; models see them as float in [0,1] (see ``as_float``).
        labels: int64 ``[N]``; 1 = finding present (pneumothorax), 0 = healthy.
        lesion_masks: bool ``[N,1,H,W]``; all False for negatives.
        lung_masks: bool ``[N,1,H,W]``; the anatomy (both lung fields), for outside-anatomy checks.
        artifact_masks: name -> bool ``[N,1,H,W]``; pixels of each planted shortcut (all False where absent).
        patient_ids: int64 ``[N]``.
        name: dataset name plus split, for reports (e.g. ``synth-cxr/test``).
        config: the generating configuration (JSON-serialisable), for manifests and cache keys.
    """

    images: torch.Tensor
    labels: torch.Tensor
    lesion_masks: torch.Tensor
    lung_masks: torch.Tensor
    artifact_masks: dict[str, torch.Tensor] = field(default_factory=dict)
    patient_ids: torch.Tensor | None = None
    name: str = ""
    config: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def as_float(self) -> torch.Tensor:
        """Images as float32 in [0,1] (the input space of every model and perturbation)."""
        return self.images.float().div_(255.0)

    def has_artifact(self, name: str) -> torch.Tensor:
        """bool ``[N]``: which images carry artifact ``name``."""
        return self.artifact_masks[name].flatten(1).any(1)

    def subset(self, index: torch.Tensor) -> "ImageSet":
        """A new ImageSet with the rows selected by ``index`` (bool mask or int indices)."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return ImageSet(
            images=self.images[index],
            labels=self.labels[index],
            lesion_masks=self.lesion_masks[index],
            lung_masks=self.lung_masks[index],
            artifact_masks={k: v[index] for k, v in self.artifact_masks.items()},
            patient_ids=pick(self.patient_ids),
            name=self.name,
            config=self.config,
        )
