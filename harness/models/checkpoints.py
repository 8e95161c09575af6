"""Checkpoint store: safetensors weights + JSON manifests per epoch, atomic writes, file locks.

Layout under the store root::

    <model>-<profile>-<hash8>/          one training run; hash8 covers entry + recipe + profile
        epoch-001.safetensors           weights (the ClassifierNet state dict), never pickle
        epoch-001.json                  manifest: architecture, data, recipe, metrics, sha256, versions
        run.json                        entry, recipe, history, retained epochs, completed flag
    <model>-<profile>-<hash8>.lock      held while the run is trained (filelock)

Every file is written to a temporary file in the same directory and moved into place with
``os.replace``, so a reader never sees a half-written file and a failed write leaves the old one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import atomic_write_bytes
from harness.models.recipes import Recipe, get_profile, get_recipe
from harness.models.zoo import ZooEntry, get_zoo_entry

if TYPE_CHECKING:
    from filelock import FileLock

    from harness.models.architectures import ClassifierNet

log = logging.getLogger(__name__)

CHECKPOINTS_ENV = "XAI_HARNESS_CHECKPOINTS"
FORMAT_VERSION = 1
_EPOCH_FILE = re.compile(r"^epoch-(\d{3,})\.safetensors$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted or loaded; the message names the file."""


def default_root() -> Path:
    """``$XAI_HARNESS_CHECKPOINTS``, else ``$XDG_CACHE_HOME/xai-harness/checkpoints``, else ``~/.cache/...``."""
    if os.environ.get(CHECKPOINTS_ENV):
        return Path(os.environ[CHECKPOINTS_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "xai-harness" / "checkpoints"


def atomic_write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as sorted, indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def config_hash(entry: ZooEntry, recipe: Recipe, profile: str) -> str:
    """First 8 hex digits of sha256 over everything that determines the weights.

    That includes the dataset's declared version (:func:`dataset_version`), so a new data
    generator retrains the models instead of reusing weights fitted to the old images.
    """
    payload = {
        "format": FORMAT_VERSION,
        "entry": entry.config(),
        "dataset_version": dataset_version(entry.dataset),
        "recipe": recipe.to_dict(),
        "profile": get_profile(profile).to_dict(),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:8]


def dataset_version(name: str) -> str | None:
    """The version a registered dataset declares: ``register_dataset(name, version=...)`` metadata,
    else a ``GENERATOR_VERSION`` or ``VERSION`` constant of the module defining it; None if neither."""
    import sys

    from harness.data import DATASETS, list_datasets

    list_datasets()  # registers the built-in datasets
    if name not in DATASETS:
        return None
    declared = DATASETS.meta(name).get("version")
    if declared is not None:
        return str(declared)
    module = sys.modules.get(getattr(DATASETS.get(name), "__module__", ""), None)
    found = getattr(module, "GENERATOR_VERSION", None) or getattr(module, "VERSION", None)
    return None if found is None else str(found)


def versions() -> dict[str, str]:
    import safetensors
    import timm
    import torch

    import harness

    return {"torch": torch.__version__, "timm": timm.__version__, "safetensors": safetensors.__version__,
            "harness": harness.__version__}


# ----------------------------------------------------------------------------------------------
# Loading


def load_checkpoint(weights_path: str | Path, *, device: str = "cpu") -> tuple[ClassifierNet, dict[str, Any]]:
    """Load ``epoch-NNN.safetensors`` and its sibling manifest; the model comes back in eval mode.

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
    return create_model(arch, img_size=int(manifest["img_size"]), num_classes=int(manifest["num_classes"]))


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


# ----------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class TrainedRun:
    """A training run in the store (usually completed): its checkpoints, history and configuration.

    ``epochs`` are the epochs whose weights are kept (1-based). ``checkpoint``/``load`` take an epoch
    number (>= 1), a negative index into ``epochs`` (-1 = last, -2 = the one before) or None (last).
    """

    run_dir: Path
    name: str
    profile: str
    entry: dict[str, Any]
    recipe: dict[str, Any]
    history: list[dict[str, Any]]
    epochs: list[int]
    completed: bool
    wall_seconds: float

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> TrainedRun:
        run_dir = Path(run_dir)
        try:
            data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{run_dir / 'run.json'}: cannot read run record: {err}") from err
        return cls(
            run_dir=run_dir,
            name=data["name"],
            profile=data["profile"],
            entry=data["entry"],
            recipe=data["recipe"],
            history=data["history"],
            epochs=sorted(data["epochs"]),
            completed=bool(data["completed"]),
            wall_seconds=float(data.get("wall_seconds", 0.0)),
        )

    @property
    def last_epoch(self) -> int:
        if not self.epochs:
            raise CheckpointError(f"{self.run_dir}: run has no checkpoints")
        return self.epochs[-1]

    @property
    def final_metrics(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    def resolve_epoch(self, epoch: int | None = None) -> int:
        if epoch is None:
            return self.last_epoch
        if epoch < 0:
            if -epoch > len(self.epochs):
                raise CheckpointError(f"{self.run_dir}: epoch index {epoch}, but only epochs {self.epochs} are kept")
            return self.epochs[epoch]
        if epoch not in self.epochs:
            raise CheckpointError(f"{self.run_dir}: no checkpoint for epoch {epoch}; kept epochs: {self.epochs}")
        return epoch

    def checkpoint(self, epoch: int | None = None) -> Path:
        """Path of the weights file of ``epoch`` (see the class docstring for the numbering)."""
        return self.run_dir / f"epoch-{self.resolve_epoch(epoch):03d}.safetensors"

    def manifest(self, epoch: int | None = None) -> dict[str, Any]:
        return read_manifest(self.checkpoint(epoch))

    def load(self, epoch: int | None = -1, *, device: str = "cpu") -> ClassifierNet:
        """The model of ``epoch`` in eval mode (sha256-verified); ``load(-2)`` is the previous epoch."""
        return load_checkpoint(self.checkpoint(epoch), device=device)[0]


class RunWriter:
    """Writes one run's checkpoints; created by :meth:`CheckpointStore.start_run` under the run lock."""

    def __init__(self, store: CheckpointStore, run_dir: Path, entry: ZooEntry, recipe: Recipe, profile: str,
                 dataset_options: dict[str, Any], train_config: dict[str, Any] | None = None) -> None:
        self.store, self.run_dir, self.entry, self.recipe, self.profile = store, run_dir, entry, recipe, profile
        self.dataset_options = dataset_options
        self.train_config = train_config or {}
        self.history: list[dict[str, Any]] = []
        self.epochs: list[int] = []

    def save_epoch(self, model: ClassifierNet, epoch: int, metrics: dict[str, Any]) -> Path:
        """Write ``epoch-NNN.safetensors`` + manifest, prune old epochs, update run.json."""
        from safetensors.torch import save

        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
        data = save(state, metadata={"format": "pt", "architecture": model.arch})
        weights = self.run_dir / f"epoch-{epoch:03d}.safetensors"
        atomic_write_bytes(weights, data)
        manifest = self._manifest(model, epoch, metrics, hashlib.sha256(data).hexdigest())
        atomic_write_json(weights.with_suffix(".json"), manifest)
        self.history.append(dict(metrics, epoch=epoch))
        self.epochs.append(epoch)
        self._prune()
        self._write_run(completed=False)
        return weights

    def finish(self, wall_seconds: float) -> TrainedRun:
        self._write_run(completed=True, wall_seconds=wall_seconds)
        return TrainedRun.from_dir(self.run_dir)

    def _manifest(self, model: ClassifierNet, epoch: int, metrics: dict[str, Any], sha256: str) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "model_name": self.entry.name,
            "architecture": model.arch,
            "img_size": model.img_size,
            "num_classes": model.num_classes,
            "target_layer": model.target_layer_name,
            "dataset": {"name": self.entry.dataset, "options": self.dataset_options,
                        "version": dataset_version(self.entry.dataset), "train_config": self.train_config},
            "recipe": {"name": self.recipe.name, "values": self.recipe.to_dict()},
            "profile": self.profile,
            "seed": self.entry.seed,
            "epoch": epoch,
            "metrics": metrics,
            "weights_file": f"epoch-{epoch:03d}.safetensors",
            "sha256": sha256,
            "versions": versions(),
        }

    def _prune(self) -> None:
        keep = self.store.keep_last
        while keep is not None and len(self.epochs) > keep:
            old = self.epochs.pop(0)
            for suffix in (".json", ".safetensors"):  # manifest first: weights never lack one
                with contextlib.suppress(FileNotFoundError):
                    (self.run_dir / f"epoch-{old:03d}{suffix}").unlink()

    def _write_run(self, *, completed: bool, wall_seconds: float = 0.0) -> None:
        atomic_write_json(self.run_dir / "run.json", {
            "format": FORMAT_VERSION,
            "name": self.entry.name,
            "profile": self.profile,
            "entry": self.entry.config(),
            "recipe": self.recipe.to_dict(),
            "dataset_options": self.dataset_options,
            "history": self.history,
            "epochs": self.epochs,
            "completed": completed,
            "wall_seconds": wall_seconds,
        })


class CheckpointStore:
    """A directory of training runs (see the module docstring for the layout).

    Args:
        root: directory; default :func:`default_root`.
        keep_last: how many most recent epochs keep their weights (None = all). Five covers the
            checkpoint-consistency checks and bounds disk use (a 300-epoch vit_base run would
            otherwise write ~100 GB).
    """

    def __init__(self, root: str | Path | None = None, *, keep_last: int | None = 5) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        if keep_last is not None and keep_last < 2:
            raise ValueError("keep_last must be >= 2 (load(-2) needs the previous epoch) or None")
        self.keep_last = keep_last

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.root)!r}, keep_last={self.keep_last})"

    def run_dir(self, entry: ZooEntry, recipe: Recipe, profile: str) -> Path:
        return self.root / f"{entry.name}-{profile}-{config_hash(entry, recipe, profile)}"

    def lock(self, run_dir: Path) -> FileLock:
        """The inter-process lock guarding ``run_dir`` (file ``<run_dir>.lock``)."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(run_dir) + ".lock")

    def completed_run(self, run_dir: Path) -> TrainedRun | None:
        """The run in ``run_dir`` if it finished, else None."""
        if not (run_dir / "run.json").is_file():
            return None
        run = TrainedRun.from_dir(run_dir)
        return run if run.completed and run.epochs else None

    def start_run(self, entry: ZooEntry, recipe: Recipe, profile: str, dataset_options: dict[str, Any],
                  train_config: dict[str, Any] | None = None) -> RunWriter:
        """Begin (or restart) a run: clears leftovers of an interrupted attempt. Hold :meth:`lock`.

        ``train_config`` is the training split's ``ImageSet.config``, recorded in every manifest.
        """
        run_dir = self.run_dir(entry, recipe, profile)
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob("epoch-*"):
            stale.unlink()
        writer = RunWriter(self, run_dir, entry, recipe, profile, dataset_options, train_config)
        writer._write_run(completed=False)
        return writer

    def runs(self) -> list[TrainedRun]:
        """Every run with a readable run.json, by directory name."""
        if not self.root.is_dir():
            return []
        return [TrainedRun.from_dir(p) for p in sorted(self.root.iterdir()) if (p / "run.json").is_file()]


def ensure_trained(
    model: str | ZooEntry,
    *,
    profile: str | None = None,
    store: CheckpointStore | None = None,
    progress: bool = True,
) -> TrainedRun:
    """The completed run of zoo model ``model`` (a name or an entry), training it first if needed.

    Training happens under ``<run_dir>.lock``: a second process asking for the same model waits for
    the first and then reuses its checkpoints. ``profile`` defaults to ``default_profile()``.
    """
    from harness.models.trainer import default_profile, device_for, train_locked

    entry = get_zoo_entry(model) if isinstance(model, str) else model
    profile = profile or default_profile()
    device_for(profile)  # a profile this machine cannot run fails here, before any file is touched
    store = store or CheckpointStore()
    recipe = get_recipe(entry.recipe, profile)
    run_dir = store.run_dir(entry, recipe, profile)
    run = store.completed_run(run_dir)
    if run is not None:
        return run
    with _acquire_announced(store.lock(run_dir), f"{entry.name} ({profile} profile)"):
        run = store.completed_run(run_dir)  # another process may have finished while we waited
        if run is not None:
            log.info("reusing %s trained by another process", run_dir)
            return run
        return train_locked(entry, recipe=recipe, profile=profile, store=store, progress=progress,
                            reason="first use")


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


__all__ = [
    "CheckpointError",
    "CheckpointStore",
    "TrainedRun",
    "RunWriter",
    "load_checkpoint",
    "read_manifest",
    "ensure_trained",
    "default_root",
    "config_hash",
    "atomic_write_bytes",
    "atomic_write_json",
    "file_sha256",
]
