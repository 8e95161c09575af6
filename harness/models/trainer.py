"""Trainer: fits a zoo entry with its recipe under a profile and writes a checkpoint per epoch.

One code path for both profiles: the whole split is held as uint8 on the training device, each
batch is converted to float and augmented there (``augment.py``). The "gpu" profile adds bf16
autocast, channels_last, cuDNN autotuning, fused optimizers and, where the architecture (or zoo
entry) asks for it, torch.compile; the "cpu" profile runs fp32 and is bit-reproducible for a given
seed. Binary data trains 2 logits (softmax), multi-label data (labels ``[N,K]``) K logits
(sigmoid). After every epoch the run's optimizer and RNG state is saved, so an interrupted run
continues where it stopped with the same result; a non-finite loss stops the run with the epoch and
step named. Data-parallel training over several processes is in ``distributed.py``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import nn

from harness.data import ImageSet, load_dataset
from harness.models.architectures import create_model, get_architecture_meta
from harness.models.augment import augment_batch
from harness.models.checkpoints import CheckpointStore, RunWriter, TrainedRun
from harness.models.distributed import DistContext, all_reduce_max, all_reduce_sum, broadcast_buffers, shard
from harness.models.evaluation import evaluate
from harness.models.freezing import freeze_norm_statistics, set_trainable
from harness.models.losses import classification_loss
from harness.models.pretrained import load_pretrained
from harness.models.recipes import Profile, ProfileUnavailableError, Recipe, get_profile, get_recipe, lr_factor
from harness.models.soup import Candidate, greedy_soup, recalibrate_batchnorm
from harness.models.train_state import TrainState
from harness.models.zoo import ZooEntry
from harness.threads import share_threads

if TYPE_CHECKING:
    from harness.models.pretrained import PretrainedReport

log = logging.getLogger(__name__)

NUM_CLASSES = 2
#: On CUDA a finiteness check synchronises the host; every this many steps (and at epoch end).
FINITE_CHECK_EVERY = 50
#: Training images used to re-estimate BatchNorm statistics of a weight soup.
BN_RECALIBRATION_IMAGES = 2048
#: The resume state (optimizer + RNG, about 3x the weights) is written after an epoch once this much wall
#: time has passed since the last one: a killed run repeats at most this much, and short runs skip the
#: write (it took 1.5-3% of the cpu-profile wall when written every epoch, bench_train_e2e.py). 0: every epoch.
RESUME_EVERY_SECONDS = 60.0
#: Validation batch on a CPU: evaluating 314 images at 64 px took 0.74 s in batches of 128 vs 0.9-1.1 s in
#: batches of 256 (resnet18; densenet121 1.45 vs 1.95 s; 2-core machine, median of 5).
CPU_EVAL_BATCH = 128


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the run stops, its earlier checkpoints stay.

    Attributes:
        epoch: 1-based epoch of the first non-finite loss.
        step: 1-based step within that epoch.
        global_step: 1-based optimizer step since the start of training.
        last_checkpoint: the last good epoch checkpoint (None if none was written).
    """

    def __init__(self, message: str, *, epoch: int, step: int, global_step: int, last_checkpoint) -> None:
        super().__init__(message)
        self.epoch, self.step, self.global_step, self.last_checkpoint = epoch, step, global_step, last_checkpoint


def default_profile() -> str:
    """``gpu`` when CUDA is available, else ``cpu``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def train(
    entry: ZooEntry,
    *,
    profile: str | None = None,
    store: CheckpointStore | None = None,
    progress: bool = True,
    resume: bool = False,
) -> TrainedRun:
    """Train ``entry`` under ``profile``: from scratch, or continuing an interrupted run with ``resume``.

    Holds the run's file lock while training, so two processes never write the same checkpoints.
    """
    profile = profile or default_profile()
    store = store or CheckpointStore()
    recipe = get_recipe(entry.recipe, profile)
    device_for(profile)  # fail before creating any file
    with store.lock(store.run_dir(entry, recipe, profile)):
        return train_locked(entry, recipe=recipe, profile=profile, store=store, progress=progress, resume=resume)


def train_locked(
    entry: ZooEntry,
    *,
    recipe: Recipe,
    profile: str,
    store: CheckpointStore,
    progress: bool = True,
    reason: str = "",
    resume: bool = False,
    dist_ctx: DistContext | None = None,
    device: torch.device | None = None,
) -> TrainedRun | None:
    """:func:`train` for a caller that already holds the run lock (any rank but 0 of a
    data-parallel group holds none, writes nothing and gets None)."""
    spec = get_profile(profile)
    device = device or device_for(profile)
    options = dict(entry.dataset_options)
    options.setdefault("size", spec.img_size)
    train_set = _load_split(entry, "train", options)
    val_set = _load_split(entry, "val", options)
    main = dist_ctx is None or dist_ctx.is_main
    console = _console()
    writer = store.start_run(entry, recipe, profile, options, train_config=train_set.config,
                             resume=resume) if main else None
    state = writer.resume_state if writer else None
    if main:
        console.print(_announcement(entry, recipe, spec, train_set, reason, state), markup=False, highlight=False)
    started = time.perf_counter()
    with _training_backends(spec, device):
        fitter = _Fitter(entry, recipe, spec, device, train_set, val_set, dist=dist_ctx,
                         compile_mode=compile_mode_for(entry, device))
        if state is not None:
            fitter.load_state(state)
        try:
            fitter.fit(writer, progress=progress and main, console=console, started=started)
        except BaseException:
            if writer is not None:  # queued checkpoint writes end before the run lock is released
                writer.close(quiet=True)
            raise
    if writer is None:
        return None
    run = writer.finish(wall_seconds=fitter.wall_before + time.perf_counter() - started)
    _print_summary(console, entry, profile, run)
    return run


def _print_summary(console, entry: ZooEntry, profile: str, run: TrainedRun) -> None:
    last = run.final_metrics
    final = f" (final model: {run.final})" if run.final else ""
    console.print(
        f"trained {entry.name} ({profile} profile) in {run.wall_seconds:.0f} s: val AUROC "
        f"{last.get('val_auroc', float('nan')):.3f}, val accuracy {last.get('val_accuracy', float('nan')):.3f} "
        f"-> {run.run_dir}{final}",
        markup=False,
        highlight=False,
    )
    warning = did_not_learn(entry, last)
    if warning:
        console.print(f"warning: {warning}", markup=False, highlight=False, style="bold yellow")


#: A run whose validation AUROC ends below this learned (almost) nothing: chance is 0.5.
NEAR_CHANCE_AUROC = 0.60
#: Runs meant not to learn: the defect zoo's label-shuffled and under-trained models.
UNLEARNABLE_DATASETS, UNDERTRAINING_RECIPES = {"shuffled-labels"}, {"undertrained"}


def did_not_learn(entry: ZooEntry, metrics: dict) -> str:
    """Why the finished run looks untrained (validation AUROC near chance), or "": said when training ends,
    before minutes of evaluation find it out. Runs meant not to learn (shuffled labels, a few steps) are not
    warned about."""
    auroc = metrics.get("val_auroc")
    if auroc is None or math.isnan(auroc) or auroc >= NEAR_CHANCE_AUROC or entry.dataset in UNLEARNABLE_DATASETS \
            or entry.recipe in UNDERTRAINING_RECIPES:
        return ""
    loss = metrics.get("train_loss")
    stuck = f", training loss {loss:.3f} (ln 2 = 0.693 is a constant 50/50 guess)" if loss is not None else ""
    return (f"{entry.name} ended near chance: val AUROC {auroc:.3f}{stuck}. It did not learn on recipe "
            f"{entry.recipe!r}: its suites will fail it. Give its zoo entry a recipe with a lower learning rate or "
            "more epochs (`xai-harness list recipes`), or another architecture.")


@dataclass
class _Split:
    """A split held on the training device: uint8 images and labels (int64 ``[N]`` or float ``[N,K]``)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class _Fitter:
    """The epoch loop of one run (state shared by the train and eval passes)."""

    def __init__(self, entry: ZooEntry, recipe: Recipe, spec: Profile, device: torch.device,
                 train_set: ImageSet, val_set: ImageSet, *, dist: DistContext | None = None,
                 compile_mode: bool | str = False) -> None:
        self.entry, self.recipe, self.spec, self.device, self.dist = entry, recipe, spec, device, dist
        self.train = _to_device(_limit(train_set, recipe.max_train_images, entry.seed), device)
        self.val = _to_device(val_set, device)
        self.multilabel = self.train.labels.ndim == 2
        torch.manual_seed(entry.seed)
        self.model = create_model(
            entry.architecture, img_size=int(train_set.images.shape[-1]),
            num_classes=int(self.train.labels.shape[1]) if self.multilabel else NUM_CLASSES,
            preprocess=recipe.preprocess, multilabel=self.multilabel,
            finding_names=tuple(getattr(train_set, "finding_names", ()) or ()),
        ).to(device)
        self.pretrained: PretrainedReport | None = load_pretrained(self.model, entry.pretrained) \
            if entry.pretrained else None
        if spec.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = _optimizer(set_trainable(self.model, recipe.trainable_stages), recipe, device)
        self.net = _training_module(self.model, dist, device, compile_mode)
        self.shuffle_gen = torch.Generator().manual_seed(entry.seed)
        rank_offset = 1_000_003 * dist.rank if dist else 0  # each rank augments its own share differently
        self.augment_gen = torch.Generator(device=device).manual_seed(entry.seed + 1 + rank_offset)
        self.ranges = _batches(len(self.train), recipe.batch_size, min_last=2 * (dist.world_size if dist else 1))
        self.steps_per_epoch = len(self.ranges)
        self.step = 0
        self.start_epoch = 1
        self.wall_before = 0.0
        self.writer: RunWriter | None = None
        self._bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self._bad_value = torch.zeros((), device=device)

    # --- the loop ------------------------------------------------------------------------------

    def fit(self, writer: RunWriter | None, *, progress: bool, console, started: float | None = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.writer = writer
        started = time.perf_counter() if started is None else started
        self._resume_saved_at = started
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        with Progress(*columns, console=console, disable=not progress) as bars:
            epochs = bars.add_task(f"{self.entry.name} epochs", total=self.recipe.epochs,
                                   completed=self.start_epoch - 1, status="")
            batches = bars.add_task("  batches", total=self.steps_per_epoch, status="")
            for epoch in range(self.start_epoch, self.recipe.epochs + 1):
                share_threads()  # a job that started or ended since the last epoch shifts this one's share
                bars.reset(batches, total=self.steps_per_epoch)
                metrics = self.run_epoch(lambda: bars.advance(batches), epoch)
                if writer is not None:
                    writer.save_epoch(self.model, epoch, metrics)
                    if self._resume_due(epoch):
                        writer.save_resume(self.state(epoch, self.wall_before + time.perf_counter() - started))
                        self._resume_saved_at = time.perf_counter()
                log.info("%s epoch %d: %s", self.entry.name, epoch, metrics)
                bars.update(epochs, advance=1, status=f"val AUROC {metrics['val_auroc']:.3f}, "
                            f"loss {metrics['train_loss']:.3f}, {metrics['images_per_second']:.0f} img/s")
        if self.recipe.ensemble_top_k and writer is not None:
            self.finish_soup(writer)

    def _resume_due(self, epoch: int) -> bool:
        """Whether to write the resume state after ``epoch``: not after the last one (``finish()`` drops it;
        a soup still has work after it), else once :data:`RESUME_EVERY_SECONDS` passed since the last write
        (or the start of this attempt). An older state is safe: resuming drops the epochs after it."""
        if epoch >= self.recipe.epochs and not self.recipe.ensemble_top_k:
            return False
        return time.perf_counter() - self._resume_saved_at >= RESUME_EVERY_SECONDS

    def run_epoch(self, on_batch, epoch: int = 1) -> dict[str, Any]:
        started = time.perf_counter()
        train_loss = self.train_epoch(on_batch, epoch)
        train_seconds = time.perf_counter() - started
        broadcast_buffers(self.model, self.dist)  # every rank ends the epoch with rank 0's statistics
        val = self.validate()
        metrics = {
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "val_auroc": val["auroc"],
            "val_accuracy": val["accuracy"],
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_seconds": time.perf_counter() - started,
            "images_per_second": len(self.train) / max(train_seconds, 1e-9),
        }
        if self.multilabel:
            metrics["val_auroc_per_class"] = val["per_class_auroc"]
        return metrics

    def train_epoch(self, on_batch, epoch: int = 1) -> float:
        self._train_mode()
        order = torch.randperm(len(self.train), generator=self.shuffle_gen).to(self.device)
        total = torch.zeros((), device=self.device)
        seen = 0
        epoch_start = self.step
        for start, stop in self.ranges:
            self._set_lr()
            index = shard(order[start:stop], self.dist)
            loss = self.train_step(index)
            total += loss.detach() * len(index)
            seen += len(index)
            self.step += 1
            if self.device.type != "cuda" or self.step % FINITE_CHECK_EVERY == 0:
                self.check_finite(epoch, epoch_start)
            if self.recipe.eval_every_steps and self.step % self.recipe.eval_every_steps == 0:
                self.evaluate_step(epoch, epoch_start)
            on_batch()
        self.check_finite(epoch, epoch_start)
        if self.dist is None:
            return float(total) / len(self.train)
        counts = all_reduce_sum(torch.tensor([float(seen)], device=self.device), self.dist)
        return float(all_reduce_sum(total, self.dist)) / float(counts)

    def train_step(self, index: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the training images ``index``; returns the (undetached) loss."""
        images = self._prepare(self.train.images[index])
        with _autocast(self.spec, self.device):
            logits = self.net(images)
        loss = classification_loss(logits, self.train.labels[index], loss=self.recipe.loss,
                                   label_smoothing=self.recipe.label_smoothing, focal_gamma=self.recipe.focal_gamma)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        bad = ~torch.isfinite(loss.detach()) & (self._bad_step < 0)
        self._bad_step = torch.where(bad, self.step, self._bad_step)
        self._bad_value = torch.where(bad, loss.detach().float(), self._bad_value)
        return loss

    def validate(self) -> dict[str, Any]:
        batch = self.recipe.eval_batch_size
        if self.device.type == "cpu":  # cache-sized chunks: same outputs up to float rounding, 20-25% less time
            batch = min(batch, CPU_EVAL_BATCH)
        return evaluate(self.model, self.val.images, self.val.labels, batch_size=batch,
                        precision=self.spec.precision, channels_last=self.spec.channels_last)

    # --- divergence, step evaluations, the soup --------------------------------------------------

    def check_finite(self, epoch: int, epoch_start: int) -> None:
        """Raise :class:`TrainingDivergedError` if any loss so far was NaN/inf (all ranks together)."""
        bad = int(all_reduce_max(self._bad_step.clone(), self.dist))
        if bad < 0:
            return
        last = self.writer.run_dir / f"epoch-{self.writer.epochs[-1]:03d}.safetensors" \
            if self.writer is not None and self.writer.epochs else None
        kept = f"the last good checkpoint is {last}" if last else "no epoch had completed, so no checkpoint exists"
        step_in_epoch = bad - epoch_start + 1
        raise TrainingDivergedError(
            f"{self.entry.name}: training loss became {float(self._bad_value)} at epoch {epoch}, step {step_in_epoch} "
            f"of {self.steps_per_epoch} (global step {bad + 1}); training stopped and {kept}. Lower the learning "
            f"rate ({self.recipe.lr:g} in recipe {self.recipe.name!r}) or check the data.",
            epoch=epoch, step=step_in_epoch, global_step=bad + 1, last_checkpoint=last,
        )

    def evaluate_step(self, epoch: int, epoch_start: int) -> None:
        """Validate after this step and keep the model if among the ``ensemble_top_k`` best (rank 0)."""
        self.check_finite(epoch, epoch_start)  # never keep a diverged model
        if self.writer is None:
            return
        val = self.validate()
        metrics = {"val_loss": val["loss"], "val_auroc": val["auroc"], "val_accuracy": val["accuracy"]}
        self.writer.save_candidate(self.model, epoch, self.step, metrics, self.recipe.ensemble_top_k)
        self._train_mode()

    def finish_soup(self, writer: RunWriter) -> None:
        """Make the final model from the kept step evaluations (``soup.py``) and write it."""
        from safetensors.torch import load_file

        if not writer.candidates:
            log.warning("%s: no step evaluation was kept; the final model is the last epoch", self.entry.name)
            return
        candidates = [Candidate(c["step"], c["val_auroc"], load_file(str(writer.candidate_path(c["step"]))))
                      for c in writer.candidates]
        result = greedy_soup(self.model, candidates, score=lambda m: self.validate()["auroc"],
                             recalibrate=self._recalibrate)
        val = self.validate()
        metrics = {"val_loss": val["loss"], "val_auroc": val["auroc"], "val_accuracy": val["accuracy"]}
        writer.save_final(self.model, self.recipe.epochs, metrics, {
            "method": "greedy weight soup of the best step evaluations (Wortsman et al. 2022)",
            "members": list(result.members), "candidates": result.tried, "val_auroc": val["auroc"],
        })

    def _recalibrate(self, model: nn.Module) -> None:
        batches = []
        n = min(len(self.train), BN_RECALIBRATION_IMAGES)
        for start, stop in _batches(n, self.recipe.eval_batch_size, min_last=2):
            batches.append(self._prepare(self.train.images[start:stop], augment=False))
        with _autocast(self.spec, self.device):
            recalibrate_batchnorm(model, batches)

    # --- resume ----------------------------------------------------------------------------------

    def state(self, epoch: int, wall_seconds: float = 0.0) -> TrainState:
        """Everything :meth:`load_state` needs to continue after ``epoch`` exactly."""
        rng = {"shuffle": self.shuffle_gen.get_state(), "augment": self.augment_gen.get_state(),
               "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return TrainState(epoch=epoch, step=self.step, model=self.model.state_dict(),
                          optimizer=self.optimizer.state_dict(), rng=rng, extra={"wall_seconds": wall_seconds})

    def load_state(self, state: TrainState) -> None:
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.shuffle_gen.set_state(state.rng["shuffle"])
        self.augment_gen.set_state(state.rng["augment"])
        torch.set_rng_state(state.rng["torch"])
        if "cuda" in state.rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(state.rng["cuda"], self.device)
        self.step, self.start_epoch = state.step, state.epoch + 1
        self.wall_before = float(state.extra.get("wall_seconds", 0.0))

    # --- helpers ---------------------------------------------------------------------------------

    def _train_mode(self) -> None:
        self.model.train()
        freeze_norm_statistics(self.model)

    def _prepare(self, images_u8: torch.Tensor, *, augment: bool = True) -> torch.Tensor:
        images = images_u8.float().div_(255.0)
        if augment and self.recipe.augment.enabled:
            images = augment_batch(images, self.recipe.augment, self.augment_gen)
        if self.spec.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _set_lr(self) -> None:
        lr = self.recipe.lr * lr_factor(self.recipe, self.step, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def _batches(n: int, batch_size: int, *, keep_single: bool = False, min_last: int = 2) -> list[tuple[int, int]]:
    """[start, stop) ranges; when training, a trailing batch smaller than ``min_last`` (BatchNorm
    needs two images per process) is dropped."""
    ranges = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if not keep_single and len(ranges) > 1 and ranges[-1][1] - ranges[-1][0] < min_last:
        ranges.pop()
    return ranges


def _optimizer(params: list[nn.Parameter], recipe: Recipe, device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" else {}
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay, **fused)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, **fused)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                           **fused)


def compile_mode_for(entry: ZooEntry, device: torch.device) -> bool:
    """torch.compile for training: the entry's ``compile`` key, else the architecture's default;
    CUDA only (PERF.md: it pays for ViTs, resnet50 and vgg16 there; cold compile costs 24-59 s)."""
    wanted = entry.compile if entry.compile is not None else get_architecture_meta(entry.architecture).get("compile")
    return bool(wanted) and device.type == "cuda"


def _training_module(model: nn.Module, dist: DistContext | None, device: torch.device,
                     compile_mode: bool | str) -> nn.Module:
    """What the training step calls: the model, DDP-wrapped for data parallelism, maybe compiled
    (``compile_mode`` True for inductor or a backend name). Checkpoints always save ``model``."""
    net = model
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile_mode:
        net = torch.compile(net, **({} if compile_mode is True else {"backend": compile_mode}))
    return net


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
    check_labels(data.labels, f"{entry.dataset}/{split}")
    return data


def check_labels(labels: torch.Tensor, where: str) -> None:
    """Binary int labels ``[N]`` in {0,1}, or multi-hot float labels ``[N,K]`` in {0,1} (NaN: unknown)."""
    if labels.ndim == 2:
        if not labels.is_floating_point() or not bool(((labels == 0) | (labels == 1) | labels.isnan()).all()):
            raise ValueError(f"{where}: multi-label targets must be float multi-hot [N,K] of 0/1 (NaN: unknown)")
        return
    bad = set(labels.unique().tolist()) - {0, 1}
    if labels.ndim != 1 or bad:
        raise ValueError(f"{where}: labels must be 0/1 for a 2-logit classifier, found {sorted(bad)}")


def _limit(data: ImageSet, max_images: int | None, seed: int) -> ImageSet:
    """A seeded subset of at most ``max_images`` images (in their original order)."""
    if max_images is None or len(data) <= max_images:
        return data
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:max_images].sort().values
    return data.subset(pick)


def _to_device(data: ImageSet, device: torch.device) -> _Split:
    labels = data.labels.to(device=device, dtype=torch.float32 if data.labels.ndim == 2 else torch.long)
    return _Split(images=data.images.to(device).contiguous(), labels=labels)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _announcement(entry: ZooEntry, recipe: Recipe, spec: Profile, train_set: ImageSet, reason: str,
                  state: TrainState | None = None) -> str:
    n_train, size = min(len(train_set), recipe.max_train_images or len(train_set)), int(train_set.images.shape[-1])
    meta = get_architecture_meta(entry.architecture)
    rate = meta.get("cpu_img_per_s" if spec.name == "cpu" else "gpu_img_per_s")
    remaining = recipe.epochs - (state.epoch if state else 0)
    eta = f", ~{_round_eta(1.15 * remaining * n_train / rate)}" if rate else ""
    why = f" — {reason}" if reason else ""
    resumed = f", resuming after epoch {state.epoch}" if state else ""
    return (f"training {entry.name} ({spec.name} profile){why}{resumed}{eta}: {n_train} images x {recipe.epochs} "
            f"epochs, {size}x{size}")


def _round_eta(seconds: float) -> str:
    if seconds < 120:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    return f"{seconds / 60:.0f} min"


__all__ = ["train", "train_locked", "default_profile", "device_for", "evaluate", "lr_factor", "NUM_CLASSES",
           "TrainingDivergedError", "compile_mode_for", "check_labels"]
