"""The in-memory dataset contract every later stage consumes: binary or multi-label ImageSets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import torch

from harness.registry import UnknownNameError

# Metadata conventions shared by every dataset (see ImageSet.metadata).
SEX_FEMALE, SEX_MALE, SEX_UNKNOWN = 0, 1, -1
VIEW_PA, VIEW_AP, VIEW_LATERAL, VIEW_UNKNOWN = 0, 1, 2, -1
# Other datasets' names for one finding, in normalised form (see normalise_finding).
FINDING_ALIASES = {
    "airspace_opacity": "lung_opacity",  # CheXlocalize's name for CheXpert's "Lung Opacity"
    "infiltrate": "infiltration",  # NIH's BBox_List_2017.csv vs Data_Entry_2017.csv
    "pleural_effusion": "effusion",
    "tumor": "tumour",
}


def normalise_finding(name: str) -> str:
    """Lower-case snake_case form of a finding name: ``"Pleural Effusion"`` -> ``"pleural_effusion"``."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


@dataclass
class ImageSet:
    """One split of a dataset, held as tensors.

    Binary datasets (``synth-cxr``, SIIM-ACR, PCam) have one finding and ``int64 [N]`` labels;
    multi-label datasets (``synth-cxr14``, NIH ChestX-ray14, CheXpert) have K findings and float
    multi-hot ``[N,K]`` labels. Masks always carry one channel per finding, so a binary set's
    ``lesion_masks`` is ``[N,1,H,W]``. ``__post_init__`` checks every shape and dtype.

    Attributes:
        images: uint8 ``[N,1,H,W]``; models see them as float in [0,1] (see ``as_float``).
        labels: int64 ``[N]`` in {0,1} (1 = the finding is present) for a binary set, or float32
            multi-hot ``[N,K]`` for a multi-label set, where NaN marks an unknown label (CheXpert's
            uncertainty policy ``"ignore"``); ``K = len(finding_names)``.
        lesion_masks: bool ``[N,K,H,W]``, channel k = where finding k is (all False where the finding
            is absent or not annotated). Datasets without any localisation return a broadcast
            (zero-stride) all-False view: read it, index it, never write into it.
        lung_masks: bool ``[N,1,H,W]`` anatomy (both lung fields) for outside-anatomy checks, or
            ``None`` where the dataset has none (the real datasets).
        artifact_masks: name -> bool ``[N,1,H,W]``; pixels of each planted shortcut (all False where absent).
        patient_ids: int64 ``[N]``.
        name: dataset name plus split, for reports (e.g. ``synth-cxr/test``).
        config: the generating configuration (JSON-serialisable), for manifests and cache keys.
        finding_names: the K findings, lower-case snake_case (``("pneumothorax",)``).
        metadata: name -> ``[N]`` tensor, for subgroup checks. Conventions: ``age`` float32 years
            (NaN unknown), ``sex`` int64 (0 female, 1 male, -1 unknown), ``view`` int64 (0 PA,
            1 AP, 2 lateral, -1 unknown). Empty by default.
        image_ids: the source file (or id) of every image, for real datasets; ``None`` otherwise.
    """

    images: torch.Tensor
    labels: torch.Tensor
    lesion_masks: torch.Tensor
    lung_masks: torch.Tensor | None
    artifact_masks: dict[str, torch.Tensor] = field(default_factory=dict)
    patient_ids: torch.Tensor | None = None
    name: str = ""
    config: dict = field(default_factory=dict)
    finding_names: tuple[str, ...] = ("finding",)
    metadata: dict[str, torch.Tensor] = field(default_factory=dict)
    image_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.finding_names = tuple(self.finding_names)
        check_imageset(self)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def multilabel(self) -> bool:
        """True when labels are multi-hot ``[N,K]``."""
        return self.labels.ndim == 2

    @property
    def n_findings(self) -> int:
        return len(self.finding_names)

    def as_float(self) -> torch.Tensor:
        """Images as float32 in [0,1] (the input space of every model and perturbation)."""
        return self.images.float().div_(255.0)

    def has_artifact(self, name: str) -> torch.Tensor:
        """bool ``[N]``: which images carry artifact ``name``."""
        return self.artifact_masks[name].flatten(1).any(1)

    def finding_index(self, name: str) -> int:
        """Channel of finding ``name``; matching ignores case, spaces and known aliases.

        Raises:
            UnknownNameError: (a ``KeyError``) the set has no such finding; the message lists them.
        """
        wanted = normalise_finding(name)
        wanted = FINDING_ALIASES.get(wanted, wanted)
        names = [normalise_finding(n) for n in self.finding_names]
        for candidate in (wanted, *[k for k, v in FINDING_ALIASES.items() if v == wanted]):
            if candidate in names:
                return names.index(candidate)
        raise UnknownNameError(
            f"{self.name or 'this ImageSet'} has no finding {name!r}; its findings: {', '.join(self.finding_names)}"
        )

    def finding_labels(self, name: str) -> torch.Tensor:
        """Labels of one finding: int64 ``[N]`` in {0,1}, or float ``[N]`` with NaN where unknown."""
        k = self.finding_index(name)
        if not self.multilabel:
            return self.labels
        column = self.labels[:, k]
        return column if column.isnan().any() else column.round().long()

    def for_finding(self, name: str) -> "ImageSet":
        """A binary view of one finding: labels int64 ``[N]``, ``lesion_masks`` ``[N,1,H,W]``.

        Images whose label is unknown (NaN) are dropped. Lets code written for binary sets (one
        target, one mask channel) run on a multi-label set, one finding at a time.
        """
        k = self.finding_index(name)
        column = self.labels[:, k] if self.multilabel else self.labels.float()
        keep = ~column.isnan()
        binary = replace(
            self,
            labels=column.nan_to_num(0).round().long(),
            lesion_masks=self.lesion_masks[:, k : k + 1],
            finding_names=(self.finding_names[k],),
            name=f"{self.name}[{self.finding_names[k]}]" if self.multilabel else self.name,
        )
        return binary if bool(keep.all()) else binary.subset(keep)

    def subset(self, index: torch.Tensor) -> "ImageSet":
        """A new ImageSet with the rows selected by ``index`` (bool mask or int indices)."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return ImageSet(
            images=self.images[index],
            labels=self.labels[index],
            lesion_masks=self.lesion_masks[index],
            lung_masks=pick(self.lung_masks),
            artifact_masks={k: v[index] for k, v in self.artifact_masks.items()},
            patient_ids=pick(self.patient_ids),
            name=self.name,
            config=self.config,
            finding_names=self.finding_names,
            metadata={k: v[index] for k, v in self.metadata.items()},
            image_ids=None if self.image_ids is None else _pick_ids(self.image_ids, index, len(self)),
        )


def _pick_ids(ids: tuple[str, ...], index, n: int) -> tuple[str, ...]:
    """The ids of the rows ``index`` selects (anything that indexes a tensor's first axis)."""
    rows = torch.arange(n)[index]
    return tuple(ids[i] for i in rows.reshape(-1).tolist())


def empty_masks(n: int, channels: int, size: int | tuple[int, int]) -> torch.Tensor:
    """A broadcast all-False bool ``[n, channels, H, W]`` view that takes no memory."""
    height, width = (size, size) if isinstance(size, int) else size
    return torch.zeros((1, 1, 1, 1), dtype=torch.bool).expand(n, channels, height, width)


def check_imageset(data: ImageSet) -> None:
    """Raise ``ValueError`` naming the first field that breaks the ImageSet contract."""
    where = data.name or "ImageSet"
    _check(data.images.ndim == 4 and data.images.shape[1] == 1 and data.images.dtype == torch.uint8,
           where, "images", "uint8 [N,1,H,W]", data.images)
    n, height, width = data.images.shape[0], *data.images.shape[-2:]
    k = len(data.finding_names)
    if k == 0 or len(set(data.finding_names)) != k:
        raise ValueError(f"{where}: finding_names must be non-empty and distinct, got {data.finding_names}")
    binary_ok = data.labels.shape == (n,) and data.labels.dtype == torch.int64 and k == 1
    multi_ok = data.labels.shape == (n, k) and data.labels.dtype == torch.float32
    _check(binary_ok or multi_ok, where, "labels", f"int64 [N] (one finding) or float32 [N,K] with N={n}, K={k}",
           data.labels)
    _check(data.lesion_masks.shape == (n, k, height, width) and data.lesion_masks.dtype == torch.bool,
           where, "lesion_masks", f"bool [N,K,H,W] = [{n},{k},{height},{width}]", data.lesion_masks)
    if data.lung_masks is not None:
        _check(data.lung_masks.shape == (n, 1, height, width) and data.lung_masks.dtype == torch.bool,
               where, "lung_masks", f"bool [{n},1,{height},{width}] or None", data.lung_masks)
    for name, mask in data.artifact_masks.items():
        _check(mask.shape == (n, 1, height, width) and mask.dtype == torch.bool,
               where, f"artifact_masks[{name!r}]", f"bool [{n},1,{height},{width}]", mask)
    if data.patient_ids is not None:
        _check(data.patient_ids.shape == (n,), where, "patient_ids", f"[{n}]", data.patient_ids)
    for name, values in data.metadata.items():
        _check(values.shape == (n,), where, f"metadata[{name!r}]", f"[{n}]", values)
    if data.image_ids is not None and len(data.image_ids) != n:
        raise ValueError(f"{where}: image_ids has {len(data.image_ids)} entries, expected {n}")


def _check(ok: bool, where: str, field_name: str, expected: str, tensor: torch.Tensor) -> None:
    if not ok:
        raise ValueError(f"{where}: {field_name} must be {expected}, got {tuple(tensor.shape)} {tensor.dtype}")
