"""The ``xai-harness`` command line: train zoo models, show the zoo, list registered names.

Heavy imports (torch, timm) happen inside the commands, so ``xai-harness --help`` stays fast.
Exit codes: 0 ok, 1 failure, 2 usage error (unknown model, profile or kind).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

Rows = list[tuple[str, str, str]]  # (name, category, description)


def _architecture_rows() -> Rows:
    """Each architecture with its parameter count (2 classes) and, for truncated variants, "times smaller"."""
    from harness.models.architectures import ARCHITECTURES, parameter_count, times_smaller

    rows = []
    for name in ARCHITECTURES.names():
        meta = ARCHITECTURES.meta(name)
        size = f"{parameter_count(name) / 1e6:.2f}M params"
        smaller = times_smaller(name)
        if smaller:
            size += f", {smaller:.1f}x smaller than {meta['truncated_from']}"
        rows.append((name, meta.get("family", "architecture"), f"{meta.get('description', '')} ({size})"))
    return rows


def _dataset_rows() -> Rows:
    from harness.data import DATASETS, list_datasets

    return [(name, DATASETS.meta(name).get("category", "dataset"), _describe(DATASETS.get(name), DATASETS.meta(name)))
            for name in list_datasets()]


def _recipe_rows() -> Rows:
    from harness.models.recipes import RECIPES

    return [(name, "recipe", _describe(RECIPES.get(name), RECIPES.meta(name))) for name in RECIPES.names()]


def _describe(obj: object, meta: dict) -> str:
    """``description`` metadata, else the first line of the docstring."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return str(meta.get("description") or (doc.splitlines()[0] if doc else ""))


def _explainer_rows() -> Rows:
    from harness.explain import EXPLAINERS

    return [(name, EXPLAINERS.meta(name).get("category") or ("control" if EXPLAINERS.meta(name)["is_control"]
             else "explainer"), EXPLAINERS.meta(name)["description"]) for name in EXPLAINERS.names()]


def _metric_rows() -> Rows:
    import harness.metrics  # noqa: F401  (registers every metric)
    from harness.metrics.registry import list_metrics

    return [(spec.name, spec.category, spec.description) for spec in list_metrics()]


def _check_rows() -> Rows:
    from harness.checks import list_checks

    return [(spec.name, spec.category, spec.description) for spec in list_checks()]


def _perturbation_rows() -> Rows:
    from harness.data.perturbations import list_perturbations

    return [(name, "perturbation", description) for name, description in list_perturbations()]


def _defect_rows() -> Rows:
    from harness.meta.defects import list_defects

    return [(d.name, d.kind, f"{d.description}; meant to be caught by " + ", ".join(map(str, d.intended)))
            for d in list_defects()]


#: ``xai-harness list KIND``: each kind maps to a callable returning (name, category, description) rows.
LISTERS: dict[str, Callable[[], Rows]] = {
    "architectures": _architecture_rows,
    "datasets": _dataset_rows,
    "recipes": _recipe_rows,
    "explainers": _explainer_rows,
    "metrics": _metric_rows,
    "checks": _check_rows,
    "perturbations": _perturbation_rows,
    "defects": _defect_rows,
}


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    table = Table(title=args.kind)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("category", no_wrap=True)
    table.add_column("description")
    for name, category, description in LISTERS[args.kind]():
        table.add_row(name, category, description)
    _console().print(table)
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    import torch
    from rich.table import Table

    from harness.models.architectures import ARCHITECTURES, create_model
    from harness.models.checkpoints import CheckpointStore
    from harness.models.recipes import get_profile, get_recipe
    from harness.models.trainer import default_profile
    from harness.models.zoo import check_architecture, list_zoo

    profile = args.profile or default_profile()
    size = get_profile(profile).img_size
    store = CheckpointStore(args.checkpoint_dir)
    table = Table(title=f"model zoo ({profile} profile, checkpoints in {store.root})")
    for column in ("name", "architecture", "recipe", "parameters", "times smaller", "init", "dataset",
                   f"trained ({profile})"):
        table.add_column(column, justify="right" if column in ("parameters", "times smaller") else "left",
                         overflow="fold")

    def n_params(arch: str) -> int:
        with torch.device("meta"):  # shapes only: no memory, no init cost
            model = create_model(arch, img_size=max(size, ARCHITECTURES.meta(arch).get("min_img_size", 1)))
        return sum(p.numel() for p in model.parameters())

    for entry in map(check_architecture, list_zoo()):
        count = n_params(entry.architecture)
        base = ARCHITECTURES.meta(entry.architecture).get("truncated_from")
        smaller = f"{n_params(base) / count:.1f}x" if base else ""
        run = store.completed_run(store.run_dir(entry, get_recipe(entry.recipe, profile), profile))
        trained = f"val AUROC {run.final_metrics.get('val_auroc', float('nan')):.3f}" if run else (
            "-" if profile in entry.profiles else f"({', '.join(entry.profiles)} only)")
        options = ", ".join(sorted(entry.dataset_options))
        dataset = f"{entry.dataset} ({options})" if options else entry.dataset
        init = f"pretrained ({entry.pretrained})" if entry.pretrained else "random"
        table.add_row(entry.name, entry.architecture, entry.recipe, f"{count / 1e6:.1f}M", smaller, init, dataset,
                      trained)
    _console().print(table)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from harness.models.checkpoints import CheckpointStore
    from harness.models.provision import ensure_trained
    from harness.models.pretrained import PretrainedError
    from harness.models.recipes import get_recipe
    from harness.models.trainer import TrainingDivergedError, default_profile
    from harness.models.zoo import get_zoo_entry

    entry = get_zoo_entry(args.model)
    if args.pretrained:
        entry = replace(entry, pretrained=str(Path(args.pretrained).expanduser().resolve()))
    profile = args.profile or default_profile()
    store = CheckpointStore(args.checkpoint_dir)
    try:
        if args.ddp:
            import os

            from harness.models.distributed import train_distributed

            if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
                _console(stderr=True).print("error: --ddp runs one rank of a torchrun launch: `torchrun "
                                            "--nproc_per_node N -m harness.cli train --model NAME --ddp`",
                                            markup=False, soft_wrap=True)
                return 2
            run = train_distributed(entry, profile=profile, store=store, progress=not args.no_progress)
            if run is None:  # not rank 0
                return 0
        else:
            existing = store.completed_run(store.run_dir(entry, get_recipe(entry.recipe, profile), profile))
            if existing is not None:
                _console(stderr=True).print(f"{entry.name} ({profile} profile) is already trained: "
                                            f"{existing.run_dir}", markup=False, soft_wrap=True)
            run = existing or ensure_trained(entry, profile=profile, store=store, progress=not args.no_progress)
    except (TrainingDivergedError, PretrainedError) as err:
        from rich.text import Text

        _console(stderr=True).print(Text.assemble(("error: ", "bold red"), str(err)), soft_wrap=True)
        return 1
    _print_history(run)
    return 0


def _print_history(run) -> None:
    from rich.table import Table

    table = Table(title=f"{run.name} ({run.profile}) — {run.run_dir}")
    columns = ("epoch", "train_loss", "val_loss", "val_auroc", "val_accuracy", "epoch_seconds", "images_per_second")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in run.history:
        table.add_row(*(str(row[c]) if c == "epoch" else f"{row[c]:.3f}" if c != "images_per_second"
                        else f"{row[c]:.0f}" for c in columns))
    _console().print(table)
    _console().print(f"total {run.wall_seconds:.1f} s; last checkpoint {run.checkpoint()}", markup=False,
                     soft_wrap=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xai-harness", description="pytest for explanations of "
                                     "medical-imaging classifiers")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a zoo model (or reuse its checkpoint)")
    train.add_argument("--model", required=True, help="zoo name (see `xai-harness zoo`)")
    train.add_argument("--profile", choices=("cpu", "gpu"), help="default: gpu if CUDA is available, else cpu")
    train.add_argument("--checkpoint-dir", help="checkpoint store root (default: $XAI_HARNESS_CHECKPOINTS "
                       "or ~/.cache/xai-harness/checkpoints)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--pretrained", metavar="PATH", help="initialise from this local safetensors file "
                       "(3-channel stems are summed to 1 channel; mismatching heads stay at init; never downloads)")
    train.add_argument("--ddp", action="store_true", help="data-parallel: run as one rank of `torchrun "
                       "--nproc_per_node N -m harness.cli train ... --ddp` (only rank 0 writes checkpoints)")
    train.set_defaults(func=cmd_train)

    zoo = commands.add_parser("zoo", help="show the model zoo")
    zoo.add_argument("--profile", choices=("cpu", "gpu"))
    zoo.add_argument("--checkpoint-dir")
    zoo.set_defaults(func=cmd_zoo)

    from harness.meta.commands import add_arguments, calibrate_command, meta_command

    calibrate = commands.add_parser("calibrate", help="propose suite thresholds from the calib split: healthy "
                                    "models vs the defects each check is meant to catch")
    add_arguments(calibrate, meta=False)
    calibrate.set_defaults(func=calibrate_command)
    meta = commands.add_parser("meta", help="judge the healthy population and the defect zoo on the test "
                               "split: detection matrix, sensitivity and false-fail rate per check")
    add_arguments(meta, meta=True)
    meta.set_defaults(func=meta_command)

    lister = commands.add_parser("list", help="list registered names of one kind")
    lister.add_argument("kind", choices=sorted(LISTERS))
    lister.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.models.recipes import ProfileUnavailableError
    from harness.models.zoo import ZooError
    from harness.registry import UnknownNameError

    try:
        return args.func(args)
    except (ZooError, UnknownNameError, ProfileUnavailableError) as err:
        from rich.text import Text

        _console(stderr=True).print(Text.assemble(("error: ", "bold red"), str(err)), soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
