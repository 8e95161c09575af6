"""Checkpoint store: safetensors weights + JSON manifests per epoch, atomic writes, file locks.

Layout under the store root::

    <model>-<profile>-<hash8>/          one training run; hash8 covers entry + recipe + profile
        epoch-001.safetensors           weights (the ClassifierNet state dict), never pickle
        epoch-001.json                  manifest: architecture, data, recipe, metrics, sha256, versions
        step-0000512.safetensors/.json  the K best step evaluations (recipes with ensemble_top_k)
        final.safetensors/.json         the final model when it is not the last epoch (weight soup)
        resume.safetensors/.json        optimizer + RNG state after the last epoch (until completed)
        run.json                        entry, recipe, history, retained epochs, best epoch, completed flag
    <model>-<profile>-<hash8>.lock      held while the run is trained (filelock)

The store keeps the last ``keep_last`` epochs plus the best one (by validation AUROC).

Every file is written to a temporary file in the same directory and moved into place with
``os.replace``, so a reader never sees a half-written file and a failed write leaves the old one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import atomic_write_bytes
from harness.models.checkpoint_files import (  # noqa: F401  (re-exported: the store's public API)
    CheckpointError,
    file_sha256,
    load_checkpoint,
    read_manifest,
)
from harness.models.recipes import Recipe
from harness.models.run_identity import (  # noqa: F401  (re-exported)
    FORMAT_VERSION,
    config_hash,
    dataset_version,
    pretrained_sha256,
    versions,
)
from harness.models.zoo import ZooEntry

if TYPE_CHECKING:
    from filelock import FileLock

    from harness.models.architectures import ClassifierNet

log = logging.getLogger(__name__)

CHECKPOINTS_ENV = "XAI_HARNESS_CHECKPOINTS"
_EPOCH_FILE = re.compile(r"^epoch-(\d{3,})\.safetensors$")


def default_root() -> Path:
    """``$XAI_HARNESS_CHECKPOINTS``, else ``$XDG_CACHE_HOME/xai-harness/checkpoints``, else ``~/.cache/...``."""
    if os.environ.get(CHECKPOINTS_ENV):
        return Path(os.environ[CHECKPOINTS_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "xai-harness" / "checkpoints"


def atomic_write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as sorted, indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8"))


# ----------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class TrainedRun:
    """A training run in the store (usually completed): its checkpoints, history and configuration.

    ``epochs`` are the epochs whose weights are kept (1-based). ``checkpoint``/``load`` take an epoch
    number (>= 1), a negative index into ``epochs`` (-1 = last, -2 = the one before) or None: the
    run's final model, which is the weight soup of the best step evaluations for recipes with
    ``ensemble_top_k`` (``final``) and the last epoch otherwise.
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
    best_epoch: int | None = None
    final: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> TrainedRun:
        """Read ``run_dir/run.json``; a missing, truncated or incomplete record is a CheckpointError."""
        run_dir = Path(run_dir)
        try:
            data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{run_dir / 'run.json'}: cannot read run record: {err}") from err
        try:
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
                best_epoch=data.get("best_epoch"),
                final=data.get("final"),
                candidates=list(data.get("candidates", [])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"{run_dir / 'run.json'}: run record lacks or garbles {err}") from err

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
        if epoch is None and self.final:
            return self.run_dir / self.final
        return self.run_dir / f"epoch-{self.resolve_epoch(epoch):03d}.safetensors"

    def manifest(self, epoch: int | None = None) -> dict[str, Any]:
        return read_manifest(self.checkpoint(epoch))

    def load(self, epoch: int | None = None, *, device: str = "cpu") -> ClassifierNet:
        """The model of ``epoch`` in eval mode (sha256-verified); ``load(-2)`` is the previous epoch."""
        return load_checkpoint(self.checkpoint(epoch), device=device)[0]


#: The validation metric that ranks epochs and step evaluations (higher is better; macro for multi-label).
SELECTION_METRIC = "val_auroc"


def _score(metrics: dict[str, Any]) -> float:
    value = metrics.get(SELECTION_METRIC)
    return -math.inf if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


class RunWriter:
    """Writes one run's checkpoints; created by :meth:`CheckpointStore.start_run` under the run lock.

    Attributes:
        resume_state: the saved :class:`~harness.models.train_state.TrainState` to continue from
            (None when the run starts from scratch).
    """

    def __init__(self, store: CheckpointStore, run_dir: Path, entry: ZooEntry, recipe: Recipe, profile: str,
                 dataset_options: dict[str, Any], train_config: dict[str, Any] | None = None) -> None:
        self.store, self.run_dir, self.entry, self.recipe, self.profile = store, run_dir, entry, recipe, profile
        self.dataset_options = dataset_options
        self.train_config = train_config or {}
        self.history: list[dict[str, Any]] = []
        self.epochs: list[int] = []
        self.best_epoch: int | None = None
        self.candidates: list[dict[str, Any]] = []
        self.final: str | None = None
        self.extra_manifest: dict[str, Any] = {}
        self.resume_state = None
        self._writer = None  # the checkpoint writer thread (a one-worker executor), started by the first epoch
        self._pending: list = []
        self._failure: BaseException | None = None
        self._stopped: BaseException | None = None

    def save_epoch(self, model: ClassifierNet, epoch: int, metrics: dict[str, Any]) -> Path:
        """Write ``epoch-NNN.safetensors`` + manifest, prune old epochs (never the best), update run.json.

        The weights are copied now; serialising, hashing and writing them (and the manifest, the
        pruning and run.json, in that order as before) happen on the writer thread while training
        goes on. :meth:`flush` waits for it; every other write and :meth:`finish` flush first.
        """
        write, weights = self._weights_job(model, f"epoch-{epoch:03d}", epoch, metrics)
        self.history.append(dict(metrics, epoch=epoch))
        self.epochs.append(epoch)
        if self.best_epoch is None or _score(metrics) >= _score(self._metrics_of(self.best_epoch)):  # ties: later
            self.best_epoch = epoch
        pruned = self._prune_list()
        run_text = self._run_text(completed=False)

        def job() -> None:
            write()
            for stem in pruned:
                self._unlink(stem)
            atomic_write_bytes(self.run_dir / "run.json", run_text)

        self._submit(job)
        return weights

    # --- the writer thread -------------------------------------------------------------------

    def _submit(self, job) -> None:
        """Queue ``job`` on the single writer thread (jobs run in order); a failed job stops the later ones,
        and its error is raised here or by :meth:`flush`."""
        from concurrent.futures import ThreadPoolExecutor

        self._raise_failure()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"checkpoints-{self.entry.name}")

        def guarded() -> None:
            if self._failure is not None or self._stopped is not None:
                return  # after a failed write nothing more is written (run.json must not name missing files)
            try:
                job()
            except BaseException as err:  # noqa: BLE001  (kept, raised in the training thread)
                self._failure = err

        self._pending.append(self._writer.submit(guarded))

    def flush(self) -> None:
        """Wait until every queued write is on disk; raise the first write error (the files it had not
        written are missing, never half-written)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()
        self._raise_failure()

    def close(self, *, quiet: bool = False) -> None:
        """:meth:`flush` and stop the writer thread; ``quiet`` logs a write error instead of raising it
        (for a training run that is already failing with its own error)."""
        try:
            self.flush()
        except Exception as err:  # noqa: BLE001
            if not quiet:
                raise
            log.error("%s: a checkpoint write failed too: %s", self.run_dir, err)
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            self._stopped = failure
            raise CheckpointError(f"{self.run_dir}: writing a checkpoint failed: {failure}") from failure
        if self._stopped is not None:
            raise CheckpointError(f"{self.run_dir}: an earlier checkpoint write failed: {self._stopped}")

    def save_candidate(self, model: ClassifierNet, epoch: int, step: int, metrics: dict[str, Any], top_k: int) -> bool:
        """Keep ``model`` as ``step-NNNNNNN`` if it is among the ``top_k`` best step evaluations."""
        self.flush()
        ranked = sorted(self.candidates + [{"step": step, **metrics}], key=lambda c: (-_score(c), c["step"]))
        if step not in [c["step"] for c in ranked[:top_k]]:
            return False
        self._write_weights(model, f"step-{step:07d}", epoch, dict(metrics, step=step))
        for dropped in ranked[top_k:]:
            self._unlink(f"step-{dropped['step']:07d}")
        self.candidates = sorted(ranked[:top_k], key=lambda c: c["step"])
        self._write_run(completed=False)
        return True

    def candidate_path(self, step: int) -> Path:
        return self.run_dir / f"step-{step:07d}.safetensors"

    def save_final(self, model: ClassifierNet, epoch: int, metrics: dict[str, Any], info: dict[str, Any]) -> Path:
        """Write the run's final model (``final.safetensors``) when it is not simply the last epoch."""
        self.flush()
        self.extra_manifest = {"final_model": info}
        weights = self._write_weights(model, "final", epoch, metrics)
        self.extra_manifest = {}
        self.final = weights.name
        self._write_run(completed=False)
        return weights

    def save_resume(self, state) -> None:
        from harness.models.train_state import save_train_state

        self.flush()  # the state names the last epoch: its weights and run.json are written first
        save_train_state(self.run_dir, state)

    def finish(self, wall_seconds: float) -> TrainedRun:
        from harness.models.train_state import remove_train_state

        self.close()
        self._write_run(completed=True, wall_seconds=wall_seconds)
        remove_train_state(self.run_dir)
        return TrainedRun.from_dir(self.run_dir)

    def restore(self, state, record: dict[str, Any]) -> None:
        """Continue after ``state.epoch``: history and files of later epochs/steps are dropped."""
        self.resume_state = state
        self.history = [h for h in record.get("history", []) if h["epoch"] <= state.epoch]
        self.epochs = [e for e in record.get("epochs", []) if e <= state.epoch]
        self.candidates = [c for c in record.get("candidates", []) if c["step"] <= state.step]
        best = record.get("best_epoch")
        self.best_epoch = best if best is not None and best <= state.epoch else None
        keep = {f"epoch-{e:03d}" for e in self.epochs} | {f"step-{c['step']:07d}" for c in self.candidates}
        for stale in list(self.run_dir.glob("epoch-*")) + list(self.run_dir.glob("step-*")) + \
                list(self.run_dir.glob("final.*")):
            if stale.name.split(".")[0] not in keep:
                stale.unlink()
        self._write_run(completed=False)

    def _metrics_of(self, epoch: int) -> dict[str, Any]:
        return next((h for h in self.history if h["epoch"] == epoch), {})

    def _write_weights(self, model: ClassifierNet, stem: str, epoch: int, metrics: dict[str, Any]) -> Path:
        write, weights = self._weights_job(model, stem, epoch, metrics)
        write()
        return weights

    def _weights_job(self, model: ClassifierNet, stem: str, epoch: int, metrics: dict[str, Any]):
        """A copy of ``model``'s weights now, and the job that writes them + their manifest (sha256) later."""
        from safetensors.torch import save

        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
        weights = self.run_dir / f"{stem}.safetensors"
        extra = dict(self.extra_manifest)
        metadata = {"format": "pt", "architecture": model.arch}

        def write() -> None:
            data = save(state, metadata=metadata)
            atomic_write_bytes(weights, data)
            manifest = self._manifest(model, epoch, metrics, hashlib.sha256(data).hexdigest(), weights.name)
            manifest.update(extra)
            atomic_write_json(weights.with_suffix(".json"), manifest)

        return write, weights

    def _manifest(self, model: ClassifierNet, epoch: int, metrics: dict[str, Any], sha256: str,
                  weights_file: str) -> dict[str, Any]:
        manifest = {
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
            "weights_file": weights_file,
            "sha256": sha256,
            "versions": versions(),
        }
        # Written only where they differ from what older manifests implied.
        if model.preprocess.kind != "none":
            manifest["preprocess"] = model.preprocess.kind
        if model.multilabel:
            manifest["multilabel"] = True
        if model.finding_names:
            manifest["finding_names"] = list(model.finding_names)
        if self.entry.pretrained:
            manifest["pretrained"] = {"path": self.entry.pretrained, "sha256": pretrained_sha256(self.entry.pretrained)}
        return manifest

    def _prune_list(self) -> list[str]:
        """Drop old epochs (all but the last ``keep_last`` and the best) from the record; their file stems."""
        keep = self.store.keep_last
        if keep is None:
            return []
        recent = set(self.epochs[-keep:])
        old = [e for e in self.epochs if e not in recent and e != self.best_epoch]
        for epoch in old:
            self.epochs.remove(epoch)
        return [f"epoch-{e:03d}" for e in old]

    def _unlink(self, stem: str) -> None:
        for suffix in (".json", ".safetensors"):  # manifest first: weights never lack one
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / f"{stem}{suffix}").unlink()

    def _write_run(self, *, completed: bool, wall_seconds: float = 0.0) -> None:
        atomic_write_bytes(self.run_dir / "run.json", self._run_text(completed=completed, wall_seconds=wall_seconds))

    def _run_text(self, *, completed: bool, wall_seconds: float = 0.0) -> bytes:
        """run.json as it stands now (serialised here, so a queued write never sees a later epoch)."""
        record = {
            "format": FORMAT_VERSION,
            "name": self.entry.name,
            "profile": self.profile,
            "entry": self.entry.config(),
            "recipe": self.recipe.to_dict(),
            "dataset_options": self.dataset_options,
            "history": self.history,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "completed": completed,
            "wall_seconds": wall_seconds,
        }
        if self.candidates:
            record["candidates"] = self.candidates
        if self.final:
            record["final"] = self.final
        return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")


class CheckpointStore:
    """A directory of training runs (see the module docstring for the layout).

    Args:
        root: directory; default :func:`default_root`.
        keep_last: how many most recent epochs keep their weights (None = all); the best epoch is
            kept in addition. Five covers the checkpoint-consistency checks and bounds disk use (a
            300-epoch vit_base run would otherwise write ~100 GB).
    """

    def __init__(self, root: str | Path | None = None, *, keep_last: int | None = 5) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        if keep_last is not None and keep_last < 2:
            raise ValueError("keep_last must be >= 2 (load(-2) needs the previous epoch) or None")
        self.keep_last = keep_last

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.root)!r}, keep_last={self.keep_last})"

    def run_dir(self, entry: ZooEntry, recipe: Recipe, profile: str) -> Path:
        from harness.models.pretraining import trained_reference  # `pretrained: zoo:<name>` -> its weights file

        entry = trained_reference(entry, self, profile)
        return self.root / f"{entry.name}-{profile}-{config_hash(entry, recipe, profile)}"

    def lock(self, run_dir: Path) -> FileLock:
        """The inter-process lock guarding ``run_dir`` (file ``<run_dir>.lock``)."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(run_dir) + ".lock")

    def completed_run(self, run_dir: Path) -> TrainedRun | None:
        """The run in ``run_dir`` if it finished and its final weights are intact (present, sha256 as
        in their manifest), else None; :meth:`health` says what is wrong with a damaged one."""
        health = self.health(run_dir)
        return health.run if health.status == TRAINED else None

    def health(self, run_dir: Path) -> RunHealth:
        """What the store can vouch for in ``run_dir``: trained, incomplete, damaged or absent.

        A run is *trained* only if run.json says it finished and its final weights exist and match the
        sha256 of their manifest, and the other epochs it lists are on disk. *Incomplete*: training was
        interrupted (it resumes on next use). *Damaged*: anything else; :attr:`RunHealth.problems` says what.
        """
        run_dir = Path(run_dir)
        if not (run_dir / "run.json").is_file():
            leftovers = run_dir.is_dir() and any(run_dir.glob("*.safetensors"))
            return RunHealth(run_dir, DAMAGED, ("run.json is missing",)) if leftovers else RunHealth(run_dir, ABSENT)
        try:
            run = TrainedRun.from_dir(run_dir)
        except CheckpointError as err:
            return RunHealth(run_dir, DAMAGED, (str(err),))
        if not run.completed:
            return RunHealth(run_dir, INCOMPLETE, (), run)
        problems = verify_run(run)
        return RunHealth(run_dir, DAMAGED if problems else TRAINED, tuple(problems), run)

    def survey(self) -> list[RunHealth]:
        """The health of every run folder in the store, by folder name (``xai-harness doctor``)."""
        if not self.root.is_dir():
            return []
        return [self.health(p) for p in sorted(self.root.iterdir()) if p.is_dir() and not p.name.startswith(".")]

    def remove_run(self, run_dir: Path, *, locked: bool = False) -> None:
        """Delete a run folder, under its lock so no process is training it meanwhile (``locked``: the
        caller holds the lock already)."""
        import shutil

        if locked:
            if Path(run_dir).exists():
                shutil.rmtree(run_dir)
            return
        with self.lock(run_dir):
            self.remove_run(run_dir, locked=True)

    def start_run(self, entry: ZooEntry, recipe: Recipe, profile: str, dataset_options: dict[str, Any],
                  train_config: dict[str, Any] | None = None, *, resume: bool = False) -> RunWriter:
        """Begin a run, under :meth:`lock`. With ``resume`` and a saved training state of an
        interrupted attempt, the writer continues it (``writer.resume_state``); otherwise the
        leftovers of an interrupted attempt are cleared and the run starts from scratch.

        ``train_config`` is the training split's ``ImageSet.config``, recorded in every manifest.
        """
        from harness.models.train_state import load_train_state, remove_train_state

        run_dir = self.run_dir(entry, recipe, profile)
        run_dir.mkdir(parents=True, exist_ok=True)
        writer = RunWriter(self, run_dir, entry, recipe, profile, dataset_options, train_config)
        state = load_train_state(run_dir) if resume else None
        record = _read_record(run_dir)
        if state is not None and record is not None and not record.get("completed"):
            writer.restore(state, record)
            return writer
        remove_train_state(run_dir)
        for pattern in ("epoch-*", "step-*", "final.*"):
            for stale in run_dir.glob(pattern):
                stale.unlink()
        writer._write_run(completed=False)
        return writer

    def runs(self) -> list[TrainedRun]:
        """Every run with a readable run.json, by directory name (damaged records: see :meth:`survey`)."""
        return [h.run for h in self.survey() if h.run is not None]


TRAINED, INCOMPLETE, DAMAGED, ABSENT = "trained", "incomplete", "damaged", "absent"


class DamagedRunError(CheckpointError):
    """A run the store lists as finished whose files are missing or do not match their sha256."""


@dataclass(frozen=True)
class RunHealth:
    """One run folder as the store sees it.

    ``status``: ``trained`` (finished, final weights intact), ``incomplete`` (training interrupted; it
    resumes on next use), ``damaged`` (``problems`` says what) or ``absent`` (no such run).
    """

    run_dir: Path
    status: str
    problems: tuple[str, ...] = ()
    run: TrainedRun | None = None

    @property
    def name(self) -> str:
        """The model name (from run.json), else the folder name."""
        return self.run.name if self.run else self.run_dir.name

    def describe(self) -> str:
        """``<run_dir> is damaged: <problem>; <problem>`` (or its status)."""
        if self.status != DAMAGED:
            return f"{self.run_dir} is {self.status}"
        return f"{self.run_dir} is damaged: {'; '.join(self.problems)}"


def verify_run(run: TrainedRun) -> list[str]:
    """What is wrong with a finished run's files: the final weights must exist, have a readable
    manifest and match its sha256; the other epochs run.json lists must be on disk."""
    if not run.epochs:
        return ["run.json lists no checkpoint"]
    try:
        weights = run.checkpoint()
    except CheckpointError as err:
        return [str(err)]
    if not weights.is_file():
        return [f"final weights {weights.name} are missing"]
    try:
        manifest = read_manifest(weights)
    except CheckpointError as err:
        return [str(err)]
    problems = []
    actual = file_sha256(weights)
    if actual != manifest["sha256"]:
        problems.append(f"{weights.name}: sha256 mismatch: manifest says {manifest['sha256']}, file has {actual}")
    for epoch in run.epochs:
        kept = run.run_dir / f"epoch-{epoch:03d}.safetensors"
        if kept != weights and not (kept.is_file() and kept.with_suffix(".json").is_file()):
            problems.append(f"kept epoch {epoch} ({kept.name} or its manifest) is missing")
    return problems


def _read_record(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


__all__ = [
    "CheckpointError",
    "CheckpointStore",
    "DamagedRunError",
    "RunHealth",
    "verify_run",
    "TrainedRun",
    "RunWriter",
    "load_checkpoint",
    "read_manifest",
    "default_root",
    "config_hash",
    "atomic_write_bytes",
    "atomic_write_json",
    "file_sha256",
    "pretrained_sha256",
    "SELECTION_METRIC",
]
