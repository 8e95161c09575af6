"""The trainer's end-to-end epoch rate against the bare model step, on the cpu profile, and where the rest goes.

Per architecture, in one run and on the same data (synth-cxr train/val at the profile's size):

- **bare step**: forward + backward + optimizer step of the recipe's model on float batches already
  in memory (no data handling, no augmentation, no validation, no checkpoint), timed for half of
  ``--seconds`` just before and half just after each end-to-end run (their mean is the trial's bare rate);
- **end to end**: the trainer's real epoch loop (``_Fitter.fit``) for ``--epochs`` epochs: uint8
  batches, recipe preprocessing and augmentation, loss, optimizer, validation every epoch and the
  checkpoints it writes (weights + resume state, sha256, atomic), in a temporary store; the epoch
  weights are written by the writer thread while training goes on, and the wall ends when the last
  one is on disk (``writer.close()``), so that thread's cost lands in the model steps it slows;
- **where the rest goes**: the end-to-end wall split into model steps, batch preparation
  (uint8 -> float, augmentation), validation, checkpointing and everything else.

The median of ``--trials`` trials of each is reported, and the figure is the median of the per-trial
ratios (each trial runs both back to back); the target is end-to-end >= 90% of the bare step. Results: ``benchmarks/results/train_e2e_cpu.json``. Run alone on an idle machine:

    .venv/bin/python benchmarks/bench_train_e2e.py                      # resnet18, densenet121, vit_small
    .venv/bin/python benchmarks/bench_train_e2e.py --archs resnet18 --trials 1 --epochs 1   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import record, write_results  # noqa: I001  (benchmarks/ is on sys.path as a script)
from harness.data import load_dataset
from harness.models import CheckpointStore, trainer
from harness.models.architectures import get_architecture_meta
from harness.models.recipes import get_profile, get_recipe
from harness.models.zoo import ZooEntry

ARCHS = ("resnet18", "densenet121", "vit_small_patch16_224")
BARE_BATCHES = 8


def recipe_for(arch: str, epochs: int):
    name = "pneumothorax_vit" if get_architecture_meta(arch)["family"] == "vit" else "pneumothorax_cnn"
    recipe = get_recipe(name, "cpu")
    return name, dataclasses.replace(recipe, epochs=epochs, warmup_epochs=min(recipe.warmup_epochs, epochs - 1))


def bare_step_rate(fitter, *, seconds: float) -> float:
    """img/s of the model step alone on prepared float batches (same model, optimizer, batch size)."""
    batch = fitter.recipe.batch_size
    batches = []
    for b in range(BARE_BATCHES):  # distinct batches, prepared up front: one batch repeated stays cache-hot
        index = (torch.arange(batch) + b * batch) % len(fitter.train)
        batches.append((fitter._prepare(fitter.train.images[index]).detach().clone(), fitter.train.labels[index]))
    model, optimizer = fitter.model, fitter.optimizer
    model.train()
    turn = itertools.cycle(batches)

    def step() -> None:
        images, labels = next(turn)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):  # warm-up
        step()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - started)


class Timers:
    """Wall time spent inside wrapped methods (CPU work is synchronous, so wall time is the cost)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, owner, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started

        setattr(owner, name, timed)


def fresh_fitter(arch: str, epochs: int, train_set, val_set, spec, device):
    """A new trainer loop of ``arch`` (model, optimizer, data) for a bare-step window before a trial."""
    recipe_name, recipe = recipe_for(arch, epochs)
    entry = ZooEntry(name=f"bench-{arch}", architecture=arch, dataset="synth-cxr", recipe=recipe_name, seed=0)
    return trainer._Fitter(entry, recipe, spec, device, train_set, val_set)


def end_to_end(arch: str, epochs: int, train_set, val_set, spec, device) -> tuple[float, dict[str, float], object]:
    """img/s over the whole fit loop and the seconds per part; the fitter is returned for the bare step."""
    recipe_name, recipe = recipe_for(arch, epochs)
    entry = ZooEntry(name=f"bench-{arch}", architecture=arch, dataset="synth-cxr", recipe=recipe_name, seed=0)
    with tempfile.TemporaryDirectory() as tmp, trainer._training_backends(spec, device):
        store = CheckpointStore(Path(tmp))
        writer = store.start_run(entry, recipe, spec.name, {"size": spec.img_size}, train_config=train_set.config)
        fitter = trainer._Fitter(entry, recipe, spec, device, train_set, val_set)
        timers = Timers()
        timers.wrap(fitter, "_prepare", "batch preparation (uint8 -> float, augmentation)")
        timers.wrap(fitter, "validate", "validation")
        timers.wrap(writer, "save_epoch", "checkpoint: epoch weights")
        timers.wrap(writer, "save_resume", "checkpoint: resume state")
        timers.wrap(fitter, "train_epoch", "train epochs")
        timers.wrap(writer, "close", "checkpoint: waiting for the writer thread")
        started = time.perf_counter()
        fitter.fit(writer, progress=False, console=None, started=started)
        writer.close()  # every queued checkpoint on disk: its time counts
        wall = time.perf_counter() - started
    parts = dict(timers.seconds)
    train = parts.pop("train epochs")
    prepare = parts["batch preparation (uint8 -> float, augmentation)"]
    parts = {"model steps": train - prepare, **parts}
    parts["other (loop, progress, logging)"] = wall - sum(parts.values())
    return epochs * len(fitter.train) / wall, {k: round(v, 3) for k, v in parts.items()}, fitter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--epochs", type=int, default=2, help="epochs per end-to-end trial")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0, help="bare-step seconds per trial")
    args = parser.parse_args(argv)
    spec, device = get_profile("cpu"), torch.device("cpu")
    train_set = load_dataset("synth-cxr", "train", size=spec.img_size)
    val_set = load_dataset("synth-cxr", "val", size=spec.img_size)
    records = []
    for arch in args.archs.split(","):
        e2e, bare, breakdowns = [], [], []
        for _ in range(args.trials):
            before = bare_step_rate(fresh_fitter(arch, args.epochs, train_set, val_set, spec, device),
                                    seconds=args.seconds / 2)
            rate, parts, fitter = end_to_end(arch, args.epochs, train_set, val_set, spec, device)
            after = bare_step_rate(fitter, seconds=args.seconds / 2)
            e2e.append(rate)
            breakdowns.append(parts)
            bare.append((before + after) / 2)
            del fitter
        e2e_rate, bare_rate = statistics.median(e2e), statistics.median(bare)
        # Each trial's end-to-end run sits between two bare-step windows (half the seconds each, averaged), so
        # their ratio cancels the drifts of this VM (+-30% between trials, and within one); the median of those
        # paired ratios is the figure.
        paired = [a / b for a, b in zip(e2e, bare)]
        ratio = statistics.median(paired)
        parts = breakdowns[e2e.index(statistics.median_low(e2e))]
        total = sum(parts.values())
        steps_rate = args.epochs * len(train_set) / parts["model steps"]
        print(f"{arch:24s} end to end {e2e_rate:6.1f} img/s, bare step {bare_rate:6.1f} img/s: paired ratio "
              f"{ratio:.0%} (per trial: {', '.join(f'{r:.0%}' for r in paired)}; rates: "
              f"{', '.join(f'{r:.1f}' for r in e2e)} | {', '.join(f'{r:.1f}' for r in bare)})", flush=True)
        print(f"    model step inside the trainer: {steps_rate:.1f} img/s", flush=True)
        for part, seconds in parts.items():
            print(f"    {part:52s} {seconds:7.2f} s  {seconds / total:6.1%}", flush=True)
        records.append(record(f"train_end_to_end/{arch}", device, e2e_rate, "img/s", arch=arch,
                              bare_step=bare_rate, ratio_to_bare=ratio, ratio_of_medians=e2e_rate / bare_rate,
                              paired_ratios=paired, target_ratio=0.9, trainer_step_rate=steps_rate,
                              trials_end_to_end=e2e, trials_bare=bare, epochs=args.epochs,
                              train_images=len(train_set), val_images=len(val_set), batch=recipe_for(arch, 1)[1].batch_size,
                              img_size=spec.img_size, breakdown_seconds=parts))
    note = (f"cpu profile ({spec.img_size}x{spec.img_size}, fp32), synth-cxr train/val; end to end = the trainer's "
            f"fit loop for {args.epochs} epochs (data, augmentation, loss, optimizer, validation, checkpoints) / "
            f"bare model step on {BARE_BATCHES} prepared batches ({args.seconds / 2:.0f} s before and after each "
            f"end-to-end run, averaged); ratio = median of "
            f"{args.trials} paired trials; "
            f"{torch.get_num_threads()} torch threads, run alone on an idle machine")
    print(write_results("train_e2e", device, records, note=note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
