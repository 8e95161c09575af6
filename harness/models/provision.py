"""Model provisioning: one home for turning a name into a trained model and its twins.

Checks and sessions ask a :class:`ModelProvider` for what they need and never train or read
checkpoint files themselves:

- ``resolve("resnet18")``: the zoo model's completed run, trained on first use (under a file lock,
  with progress), loaded on the run's device;
- ``external(path)``: a checkpoint from elsewhere (weights + manifest with its sha256);
- ``twins(subject)``: the models some checks compare with: the previous epoch of the same run, the
  same recipe with another seed, the same recipe on label-shuffled data (trained on first use).
  An external checkpoint has the twins its user names (``external(path, twins={"previous": ...})``:
  ``--previous``, ``--seed-twin``, ``--shuffled-twin``), each verified like the checkpoint itself,
  and otherwise a previous epoch only if its file sits beside it.

The trainer and the checkpoint store know nothing of each other's callers: this module is the
only one that imports both.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.models.checkpoints import (
    DAMAGED,
    TRAINED,
    CheckpointError,
    CheckpointStore,
    DamagedRunError,
    RunHealth,
    TrainedRun,
)
from harness.models.checkpoint_files import load_checkpoint, read_manifest
from harness.models.recipes import get_recipe
from harness.models.zoo import ZooEntry, ZooError, get_zoo_entry

if TYPE_CHECKING:
    import torch
    from filelock import FileLock
    from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provisioned:
    """A loaded model under test: the network (eval mode, on the provider's device), its manifest,
    the weights file it came from, for zoo models the zoo entry, and for external checkpoints the
    twin checkpoints their user named (``previous``, ``seed``, ``shuffled``: see :data:`TWIN_KINDS`)."""

    name: str
    model: nn.Module
    manifest: dict[str, Any]
    weights: Path
    entry: ZooEntry | None = None
    twin_paths: dict[str, Path] = field(default_factory=dict)


class Twins:
    """The models a check compares the subject with; each returns None where there is none.

    The base class has none at all (a model built in a notebook); :class:`StoreTwins` finds or
    trains them; the defect zoo substitutes some (two seeds presented as consecutive epochs).
    """

    def previous_epoch(self) -> nn.Module | None:
        """The same run one epoch earlier."""
        return None

    def other_seed(self, seed: int) -> nn.Module | None:
        """The same architecture, data and recipe trained with ``seed``."""
        return None

    def shuffled_labels(self, label_seed: int) -> nn.Module | None:
        """The same recipe trained on the same images with permuted labels (Adebayo et al. 2018)."""
        return None


class StoreTwins(Twins):
    """Twins of a provisioned model, from the checkpoint store (zoo twins trained on first use)."""

    def __init__(self, provider: ModelProvider, subject: Provisioned) -> None:
        self.provider, self.subject = provider, subject

    def previous_epoch(self) -> nn.Module | None:
        previous = previous_checkpoint(self.subject.weights)
        return None if previous is None else self.provider.load(previous)[0]

    def other_seed(self, seed: int) -> nn.Module | None:
        entry = self.subject.entry
        return None if entry is None else self.provider.resolve(replace(entry, seed=seed)).model

    def shuffled_labels(self, label_seed: int) -> nn.Module | None:
        entry = self.subject.entry
        return None if entry is None else self.provider.resolve(shuffled_label_twin(entry, label_seed)).model


#: Twin checkpoints an external model can name, and the plugin option that names each.
TWIN_KINDS = {"previous": "--previous", "seed": "--seed-twin", "shuffled": "--shuffled-twin"}


class ExternalTwins(StoreTwins):
    """Twins of an external checkpoint from the files its user named; each is loaded (sha256 checked)
    once and must have the subject's architecture, input size and classes. Without a ``previous``
    file, the epoch file beside the checkpoint (if any) is the previous epoch."""

    def __init__(self, provider: ModelProvider, subject: Provisioned) -> None:
        super().__init__(provider, subject)
        self._loaded: dict[str, nn.Module] = {}

    def _twin(self, kind: str) -> nn.Module | None:
        path = self.subject.twin_paths.get(kind)
        if path is None:
            return None
        if kind not in self._loaded:
            net, manifest = self.provider.load(Path(path))
            check_twin(self.subject.manifest, manifest, f"{TWIN_KINDS[kind]} {path}")
            self._loaded[kind] = net
        return self._loaded[kind]

    def previous_epoch(self) -> nn.Module | None:
        return self._twin("previous") if "previous" in self.subject.twin_paths else super().previous_epoch()

    def other_seed(self, seed: int) -> nn.Module | None:
        return self._twin("seed")

    def shuffled_labels(self, label_seed: int) -> nn.Module | None:
        return self._twin("shuffled")


def check_twin(subject: dict[str, Any], twin: dict[str, Any], what: str) -> None:
    """A twin must be the same network shape as the subject, or comparing their maps means nothing."""
    keys = ("architecture", "img_size", "num_classes")
    differ = [f"{k} {twin.get(k)!r} (checked model: {subject.get(k)!r})" for k in keys if twin.get(k) != subject.get(k)]
    if differ:
        raise CheckpointError(f"{what} does not match the checked model: {'; '.join(differ)}; a twin is the same "
                              "architecture at the same input size")


class ModelProvider:
    """Resolves zoo names, entries and checkpoint files to loaded models, training on first use.

    Args:
        profile: ``cpu`` or ``gpu`` (default: gpu when CUDA is available).
        store: the checkpoint store (default: ``$XAI_HARNESS_CHECKPOINTS`` or the user cache).
        device: where loaded models live (default: cuda when available).
        progress: show training progress bars.
    """

    def __init__(self, *, profile: str | None = None, store: CheckpointStore | None = None,
                 device: torch.device | str | None = None, progress: bool = True) -> None:
        import torch

        from harness.models.trainer import default_profile
        from harness.threads import share_threads

        share_threads()  # this job's fair share of the cores, beside other harness jobs
        self.profile = profile or default_profile()
        self.store = store or CheckpointStore()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.progress = progress

    def run(self, model: str | ZooEntry) -> TrainedRun:
        """The completed training run of a zoo model, trained first if needed."""
        return ensure_trained(model, profile=self.profile, store=self.store, progress=self.progress)

    def resolve(self, model: str | ZooEntry) -> Provisioned:
        """A zoo model (name or entry), trained on first use and loaded."""
        entry = get_zoo_entry(model) if isinstance(model, str) else model
        if entry.checkpoint:  # a zoo entry naming an imported checkpoint: loaded, never trained
            return self.external(entry.checkpoint, name=entry.name, twins=entry.twins)
        weights = self.run(entry).checkpoint()
        net, manifest = self.load(weights)
        return Provisioned(entry.name, net, manifest, weights, entry)

    def external(self, path: str | Path, name: str | None = None,
                 twins: dict[str, str | Path | None] | None = None) -> Provisioned:
        """A checkpoint file (``.safetensors`` with its ``.json`` manifest) from outside the zoo.

        ``twins`` names its twin checkpoints by kind (keys of :data:`TWIN_KINDS`; None = none).
        """
        weights = Path(path)
        net, manifest = self.load(weights)
        unknown = sorted(set(twins or {}) - set(TWIN_KINDS))
        if unknown:
            raise ValueError(f"unknown twin kinds {unknown}; known: {', '.join(TWIN_KINDS)}")
        paths = {kind: Path(p).expanduser() for kind, p in (twins or {}).items() if p}
        return Provisioned(name or f"checkpoint:{weights.stem}", net, manifest, weights, None, paths)

    def load(self, weights: Path) -> tuple[nn.Module, dict[str, Any]]:
        """Load a checkpoint (sha256 verified) in eval mode on this provider's device."""
        net, manifest = load_checkpoint(weights)
        return net.to(self.device).eval(), manifest

    def twins(self, subject: Provisioned) -> Twins:
        return ExternalTwins(self, subject) if subject.twin_paths else StoreTwins(self, subject)


def shuffled_label_twin(entry: ZooEntry, label_seed: int = 0) -> ZooEntry:
    """The zoo entry of ``entry``'s data-randomisation twin: same recipe and seed, permuted training labels."""
    options = {"base": entry.dataset, "label_seed": label_seed, **entry.dataset_options}
    return replace(entry, name=f"{entry.name}_shuffled_labels", dataset="shuffled-labels", dataset_options=options)


def previous_checkpoint(weights: Path) -> Path | None:
    """The checkpoint of the epoch before ``weights`` in the same run folder, if it was kept."""
    epoch = int(read_manifest(Path(weights)).get("epoch", 0))
    candidate = Path(weights).with_name(f"epoch-{epoch - 1:03d}.safetensors")
    return candidate if epoch > 1 and candidate.is_file() else None


def ensure_trained(
    model: str | ZooEntry,
    *,
    profile: str | None = None,
    store: CheckpointStore | None = None,
    progress: bool = True,
    resume: bool = True,
    repair: bool = False,
) -> TrainedRun:
    """The completed run of zoo model ``model`` (a name or an entry), training it first if needed.

    Training happens under ``<run_dir>.lock``: a second process asking for the same model waits for
    the first and then reuses its checkpoints. An interrupted run continues from its last epoch
    (``resume``). ``profile`` defaults to ``default_profile()``.

    A run is reused only if its final weights exist and match their sha256. A damaged run (finished,
    but weights missing or altered, or run.json unreadable) raises :class:`DamagedRunError` naming
    the problem and the fix, unless ``repair``: then it is deleted and trained again.
    """
    from harness.models.trainer import default_profile, device_for, train_locked

    entry = get_zoo_entry(model) if isinstance(model, str) else model
    if entry.checkpoint:
        raise ZooError(f"{entry.source}: model {entry.name!r} is an imported checkpoint ({entry.checkpoint}): it is "
                       "checked as it is, never trained here")
    profile = profile or default_profile()
    device_for(profile)  # a profile this machine cannot run fails here, before any file is touched
    store = store or CheckpointStore()
    from harness.models.pretraining import materialise_pretrained  # `pretrained: zoo:<name>`: trained first

    entry = materialise_pretrained(entry, profile=profile, store=store, progress=progress)
    recipe = get_recipe(entry.recipe, profile)
    run_dir = store.run_dir(entry, recipe, profile)
    health = store.health(run_dir)
    if health.status == TRAINED:
        return health.run
    if health.status == DAMAGED and not repair:
        raise _damaged(entry.name, profile, health)
    with _acquire_announced(store.lock(run_dir), f"{entry.name} ({profile} profile)"):
        health = store.health(run_dir)  # another process may have finished (or repaired) while we waited
        if health.status == TRAINED:
            log.info("reusing %s trained by another process", run_dir)
            return health.run
        reason = "first use"
        if health.status == DAMAGED:
            if not repair:
                raise _damaged(entry.name, profile, health)
            log.warning("repairing %s", health.describe())
            store.remove_run(run_dir, locked=True)
            reason = "repair of a damaged run"
        return train_locked(entry, recipe=recipe, profile=profile, store=store, progress=progress,
                            reason=reason, resume=resume)


def _damaged(name: str, profile: str, health: RunHealth) -> DamagedRunError:
    return DamagedRunError(
        f"{name} ({profile} profile): the checkpoint store says it is trained, but {health.describe()}. "
        f"Retrain it with `xai-harness train --model {name} --profile {profile} --repair` (zoo models), or list "
        "and repair every damaged run with `xai-harness doctor --repair` (or delete them with `--remove`)")


@contextlib.contextmanager
def _acquire_announced(lock: FileLock, what: str):
    """Hold ``lock``; say so on stderr when another process holds it and we have to wait."""
    from filelock import Timeout
    from rich.console import Console

    try:
        lock.acquire(timeout=0)
    except Timeout:
        Console(stderr=True).print(f"waiting for another process training {what} (lock {lock.lock_file})",
                                   markup=False, highlight=False)
        lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


__all__ = ["ModelProvider", "Provisioned", "Twins", "StoreTwins", "ExternalTwins", "TWIN_KINDS", "ensure_trained",
           "previous_checkpoint", "shuffled_label_twin", "check_twin"]
