"""Trainer: fits a zoo entry with its recipe under a profile and writes a checkpoint per epoch.

One code path for both profiles: the whole split is held as uint8 on the training device, each
batch is converted to float and augmented there (``augment.py``). The "gpu" profile adds bf16
autocast, channels_last, cuDNN autotuning and fused optimizers; the "cpu" profile runs fp32 and is
bit-reproducible for a given seed. torch.compile is not used: its cold start (24-59 s, PERF.md)
does not pay off for runs this short.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from harness.data import ImageSet, load_dataset
from harness.models.architectures import create_model, get_architecture_meta
from harness.models.augment import augment_batch
from harness.models.checkpoints import CheckpointStore, RunWriter, TrainedRun
from harness.models.recipes import Profile, ProfileUnavailableError, Recipe, get_profile, get_recipe
from harness.models.zoo import ZooEntry

log = logging.getLogger(__name__)

NUM_CLASSES = 2


def default_profile() -> str:
    """``gpu`` when CUDA is available, else ``cpu``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def train(
    entry: ZooEntry,
    *,
    profile: str | None = None,
    store: CheckpointStore | None = None,
    progress: bool = True,
) -> TrainedRun:
    """Train ``entry`` from scratch under ``profile`` (always retrains; see ``ensure_trained``).

    Holds the run's file lock while training, so two processes never write the same checkpoints.
    """
    profile = profile or default_profile()
    store = store or CheckpointStore()
    recipe = get_recipe(entry.recipe, profile)
    device_for(profile)  # fail before creating any file
    with store.lock(store.run_dir(entry, recipe, profile)):
        return train_locked(entry, recipe=recipe, profile=profile, store=store, progress=progress)


def train_locked(
    entry: ZooEntry,
    *,
    recipe: Recipe,
    profile: str,
    store: CheckpointStore,
    progress: bool = True,
    reason: str = "",
) -> TrainedRun:
    """:func:`train` for a caller that already holds the run lock."""
    spec = get_profile(profile)
    device = device_for(profile)
    options = dict(entry.dataset_options)
    options.setdefault("size", spec.img_size)
    train_set = _load_split(entry, "train", options)
    val_set = _load_split(entry, "val", options)
    console = _console()
    console.print(_announcement(entry, recipe, spec, train_set, reason), markup=False, highlight=False)
    started = time.perf_counter()
    writer = store.start_run(entry, recipe, profile, options, train_config=train_set.config)
    with _training_backends(spec, device):
        fitter = _Fitter(entry, recipe, spec, device, train_set, val_set)
        fitter.fit(writer, progress=progress, console=console)
    run = writer.finish(wall_seconds=time.perf_counter() - started)
    last = run.final_metrics
    console.print(
        f"trained {entry.name} ({profile} profile) in {run.wall_seconds:.0f} s: val AUROC "
        f"{last.get('val_auroc', float('nan')):.3f}, val accuracy {last.get('val_accuracy', float('nan')):.3f} "
        f"-> {run.run_dir}",
        markup=False,
        highlight=False,
    )
    return run


@dataclass
class _Split:
    """A split held on the training device: uint8 images and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class _Fitter:
    """The epoch loop of one run (state shared by the train and eval passes)."""

    def __init__(self, entry: ZooEntry, recipe: Recipe, spec: Profile, device: torch.device,
                 train_set: ImageSet, val_set: ImageSet) -> None:
        self.entry, self.recipe, self.spec, self.device = entry, recipe, spec, device
        self.train = _to_device(train_set, device)
        self.val = _to_device(val_set, device)
        torch.manual_seed(entry.seed)
        self.model = create_model(entry.architecture, img_size=int(train_set.images.shape[-1]),
                                  num_classes=NUM_CLASSES).to(device)
        if spec.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = _optimizer(self.model, recipe, device)
        self.shuffle_gen = torch.Generator().manual_seed(entry.seed)
        self.augment_gen = torch.Generator(device=device).manual_seed(entry.seed + 1)
        self.steps_per_epoch = len(_batches(len(self.train), recipe.batch_size))
        self.step = 0

    def fit(self, writer: RunWriter, *, progress: bool, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        with Progress(*columns, console=console, disable=not progress) as bars:
            epochs = bars.add_task(f"{self.entry.name} epochs", total=self.recipe.epochs, status="")
            batches = bars.add_task("  batches", total=self.steps_per_epoch, status="")
            for epoch in range(1, self.recipe.epochs + 1):
                bars.reset(batches, total=self.steps_per_epoch)
                metrics = self.run_epoch(lambda: bars.advance(batches))
                writer.save_epoch(self.model, epoch, metrics)
                log.info("%s epoch %d: %s", self.entry.name, epoch, metrics)
                bars.update(epochs, advance=1, status=f"val AUROC {metrics['val_auroc']:.3f}, "
                            f"loss {metrics['train_loss']:.3f}, {metrics['images_per_second']:.0f} img/s")

    def run_epoch(self, on_batch) -> dict[str, Any]:
        started = time.perf_counter()
        train_loss = self.train_epoch(on_batch)
        train_seconds = time.perf_counter() - started
        val = evaluate(self.model, self.val.images, self.val.labels, batch_size=self.recipe.eval_batch_size,
                       precision=self.spec.precision, channels_last=self.spec.channels_last)
        return {
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "val_auroc": val["auroc"],
            "val_accuracy": val["accuracy"],
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_seconds": time.perf_counter() - started,
            "images_per_second": len(self.train) / max(train_seconds, 1e-9),
        }

    def train_epoch(self, on_batch) -> float:
        self.model.train()
        order = torch.randperm(len(self.train), generator=self.shuffle_gen).to(self.device)
        total = torch.zeros((), device=self.device)
        for start, stop in _batches(len(self.train), self.recipe.batch_size):
            self._set_lr()
            index = order[start:stop]
            images = self._prepare(self.train.images[index])
            with _autocast(self.spec, self.device):
                logits = self.model(images)
            loss = F.cross_entropy(logits.float(), self.train.labels[index],
                                   label_smoothing=self.recipe.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * (stop - start)
            self.step += 1
            on_batch()
        return float(total) / len(self.train)

    def _prepare(self, images_u8: torch.Tensor) -> torch.Tensor:
        images = images_u8.float().div_(255.0)
        if self.recipe.augment.enabled:
            images = augment_batch(images, self.recipe.augment, self.augment_gen)
        if self.spec.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _set_lr(self) -> None:
        lr = self.recipe.lr * lr_factor(self.recipe, self.step, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def lr_factor(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (linear warm-up, then constant or cosine)."""
    warmup = recipe.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if recipe.schedule == "constant":
        return 1.0
    total = recipe.epochs * steps_per_epoch
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def evaluate(model: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 256,
             precision: str = "fp32", channels_last: bool = False) -> dict[str, float]:
    """Cross-entropy, AUROC (sklearn) and accuracy of ``model`` on uint8 images ``[N,1,H,W]``.

    AUROC is NaN when ``labels`` holds a single class. Leaves the model in eval mode.
    """
    from sklearn.metrics import roc_auc_score

    model.eval()
    device = next(model.parameters()).device
    logits = []
    for start, stop in _batches(len(labels), batch_size, keep_single=True):
        x = images_u8[start:stop].to(device).float().div_(255.0)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits.append(model(x).float())
    all_logits = torch.cat(logits)
    labels = labels.to(device)
    loss = F.cross_entropy(all_logits, labels).item()
    accuracy = (all_logits.argmax(1) == labels).float().mean().item()
    y = labels.cpu().numpy()
    score = torch.softmax(all_logits, 1)[:, 1].cpu().numpy()
    auroc = float(roc_auc_score(y, score)) if len(set(y.tolist())) == 2 else float("nan")
    return {"loss": loss, "auroc": auroc, "accuracy": accuracy}


def _batches(n: int, batch_size: int, *, keep_single: bool = False) -> list[tuple[int, int]]:
    """[start, stop) ranges; a trailing batch of one image is dropped when training (BatchNorm)."""
    ranges = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if not keep_single and len(ranges) > 1 and ranges[-1][1] - ranges[-1][0] < 2:
        ranges.pop()
    return ranges


def _optimizer(model: nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" else {}
    params = model.parameters()
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay, **fused)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, **fused)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                           **fused)


def _autocast(spec: Profile, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16")


@contextlib.contextmanager
def _training_backends(spec: Profile, device: torch.device) -> Iterator[None]:
    """cuDNN autotuning for the gpu profile, restored afterwards."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def device_for(profile: str) -> torch.device:
    """The device ``profile`` trains on; raises :class:`ProfileUnavailableError` if this machine has none."""
    spec = get_profile(profile)
    if spec.needs_cuda:
        if not torch.cuda.is_available():
            raise ProfileUnavailableError(
                f"profile {spec.name!r} needs a CUDA device, and torch sees none; use profile 'cpu' here"
            )
        return torch.device("cuda")
    return torch.device("cpu")


def _load_split(entry: ZooEntry, split: str, options: dict[str, Any]) -> ImageSet:
    data = load_dataset(entry.dataset, split, **options)
    if data.images.dtype != torch.uint8 or data.images.ndim != 4 or data.images.shape[1] != 1:
        raise ValueError(f"{entry.dataset}/{split}: expected uint8 images [N,1,H,W], got "
                         f"{data.images.dtype} {tuple(data.images.shape)}")
    bad = set(data.labels.unique().tolist()) - {0, 1}
    if bad:
        raise ValueError(f"{entry.dataset}/{split}: labels must be 0/1 for a 2-logit classifier, found {sorted(bad)}")
    return data


def _to_device(data: ImageSet, device: torch.device) -> _Split:
    return _Split(images=data.images.to(device).contiguous(), labels=data.labels.to(device=device, dtype=torch.long))


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _announcement(entry: ZooEntry, recipe: Recipe, spec: Profile, train_set: ImageSet, reason: str) -> str:
    n_train, size = len(train_set), int(train_set.images.shape[-1])
    meta = get_architecture_meta(entry.architecture)
    rate = meta.get("cpu_img_per_s" if spec.name == "cpu" else "gpu_img_per_s")
    eta = f", ~{_round_eta(1.15 * recipe.epochs * n_train / rate)}" if rate else ""
    why = f" — {reason}" if reason else ""
    return (f"training {entry.name} ({spec.name} profile){why}{eta}: {n_train} images x {recipe.epochs} epochs, "
            f"{size}x{size}")


def _round_eta(seconds: float) -> str:
    if seconds < 120:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    return f"{seconds / 60:.0f} min"


__all__ = ["train", "train_locked", "default_profile", "device_for", "evaluate", "lr_factor", "NUM_CLASSES"]
