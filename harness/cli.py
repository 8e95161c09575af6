"""The ``xai-harness`` command line: train zoo models, show the zoo, list registered names, check the store.

Heavy imports (torch, timm) happen inside the commands, so ``xai-harness --help`` stays fast.
Exit codes: 0 ok, 1 failure (a damaged checkpoint, a diverged training, an unreadable file: one line
on stderr, no traceback), 2 usage error (unknown model, profile, kind or a malformed suite), 130
interrupted.
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
        if entry.checkpoint:  # imported (`xai-harness import`): nothing to train, no registered architecture
            table.add_row(entry.name, entry.architecture, "-", "", "", f"imported ({entry.checkpoint})",
                          entry.dataset, "imported")
            continue
        count = n_params(entry.architecture)
        base = ARCHITECTURES.meta(entry.architecture).get("truncated_from")
        smaller = f"{n_params(base) / count:.1f}x" if base else ""
        health = store.health(store.run_dir(entry, get_recipe(entry.recipe, profile), profile))
        run = health.run if health.status == "trained" else None
        trained = f"val AUROC {run.final_metrics.get('val_auroc', float('nan')):.3f}" if run else (
            "DAMAGED (see `xai-harness doctor`)" if health.status == "damaged" else
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
    if entry.checkpoint:
        _error(f"{entry.name} is an imported checkpoint ({entry.checkpoint}): it is checked as it is, never trained")
        return 2
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
                _console(stderr=True).print(f"{entry.name} ({profile} profile) is already trained (weights verified): "
                                            f"{existing.run_dir}", markup=False, soft_wrap=True)
            run = existing or ensure_trained(entry, profile=profile, store=store, progress=not args.no_progress,
                                             repair=args.repair)
    except (TrainingDivergedError, PretrainedError) as err:
        from rich.text import Text

        _console(stderr=True).print(Text.assemble(("error: ", "bold red"), str(err)), soft_wrap=True)
        return 1
    _print_history(run)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """List every run in the store with its health; ``--repair`` retrains damaged runs, ``--remove``
    deletes them. Exit 1 while a damaged run remains."""
    from harness.models.checkpoints import CheckpointStore

    store = CheckpointStore(args.checkpoint_dir)
    survey = store.survey()
    _print_survey(store, survey)
    damaged = [h for h in survey if h.status == "damaged"]
    left = []
    for health in damaged:
        if args.remove:
            store.remove_run(health.run_dir)
            _console(stderr=True).print(f"removed {health.run_dir}", markup=False, soft_wrap=True)
        elif args.repair:
            if not _repair(store, health, progress=not args.no_progress):
                left.append(health)
        else:
            left.append(health)
    if left:
        hint = "" if args.repair else "; retrain them with `xai-harness doctor --repair` or delete them with `--remove`"
        _error(f"{len(left)} damaged run(s) in {store.root}{hint}")
        return 1
    if not damaged:
        _console(stderr=True).print(f"{len(survey)} run(s) in {store.root}: none damaged", markup=False, soft_wrap=True)
    return 0


def _print_survey(store, survey) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"checkpoint store {store.root}"))
    for column in ("run", "model", "profile", "status", "problems"):
        table.add_column(column, overflow="fold")
    styles = {"trained": "green", "incomplete": "yellow", "damaged": "bold red"}
    for h in survey:
        note = "; ".join(h.problems) or ("training interrupted: resumes on next use" if h.status == "incomplete" else "")
        table.add_row(Text(h.run_dir.name), Text(h.name), Text(h.run.profile if h.run else "?"),
                      Text(h.status, style=styles.get(h.status, "")), Text(note))
    _console().print(table)


def _repair(store, health, *, progress: bool) -> bool:
    """Retrain the model of a damaged run; False (with the reason on stderr) where that is impossible."""
    from harness.models.provision import ensure_trained

    found = _entry_of(store, health)
    if found is None:
        _error(f"cannot tell which model {health.run_dir} holds (run.json unreadable and no zoo entry matches); "
               "delete it with `xai-harness doctor --remove`")
        return False
    entry, profile = found
    _console(stderr=True).print(f"repairing {health.describe()}", markup=False, soft_wrap=True)
    try:
        ensure_trained(entry, profile=profile, store=store, progress=progress, repair=True)
    except Exception as err:  # noqa: BLE001  (one run that cannot be repaired here must not stop the others)
        _error(f"could not repair {health.run_dir}: {type(err).__name__}: {err}")
        return False
    return True


def _entry_of(store, health):
    """``(zoo entry, profile)`` whose run folder is ``health.run_dir``: from run.json when it is readable,
    else by matching the zoo's entries; None when nothing matches."""
    from harness.models.recipes import get_recipe
    from harness.models.zoo import ZooEntry, list_zoo

    candidates = []
    if health.run is not None:
        config = health.run.entry
        try:
            entry = ZooEntry(**{k: config[k] for k in ("name", "architecture", "dataset", "recipe", "seed")},
                             dataset_options=dict(config.get("dataset_options", {})), pretrained=config.get("pretrained"))
            candidates.append((entry, health.run.profile))
        except (KeyError, TypeError):
            pass
    candidates += [(e, p) for e in list_zoo() for p in e.profiles]
    for entry, profile in candidates:
        try:
            if store.run_dir(entry, get_recipe(entry.recipe, profile), profile) == health.run_dir:
                return entry, profile
        except Exception:  # noqa: BLE001  (an entry whose recipe or pretrained file is gone matches nothing)
            continue
    return None


def _error(message: str) -> None:
    from rich.text import Text

    _console(stderr=True).print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


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
    train.add_argument("--repair", action="store_true", help="if the stored run is damaged (weights missing or "
                       "not matching their sha256, run.json unreadable), delete it and train again")
    train.set_defaults(func=cmd_train)

    doctor = commands.add_parser("doctor", help="check every run in the checkpoint store (final weights present, "
                                 "sha256 as in the manifest); repair or remove damaged ones on request")
    doctor.add_argument("--checkpoint-dir", help="checkpoint store root (default: $XAI_HARNESS_CHECKPOINTS "
                        "or ~/.cache/xai-harness/checkpoints)")
    action = doctor.add_mutually_exclusive_group()
    action.add_argument("--repair", action="store_true", help="retrain every damaged run")
    action.add_argument("--remove", action="store_true", help="delete every damaged run")
    doctor.add_argument("--no-progress", action="store_true", help="no progress bars while retraining")
    doctor.set_defaults(func=cmd_doctor)

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

    from harness.models.external_command import add_import_arguments, import_command

    importer = commands.add_parser("import", help="bring your own model: verify a safetensors state dict trained "
                                   "elsewhere and write its manifest, so `--checkpoint PATH` can check it")
    add_import_arguments(importer)
    importer.set_defaults(func=import_command)

    from harness.report.commands import add_report_arguments, report_command

    report = commands.add_parser("report", help="re-render reports/<run-id>/index.html from results.json, or "
                                 "merge several runs into one report; export per-image values (--csv, --parquet)")
    add_report_arguments(report)
    report.set_defaults(func=report_command)

    lister = commands.add_parser("list", help="list registered names of one kind")
    lister.add_argument("kind", choices=sorted(LISTERS))
    lister.set_defaults(func=cmd_list)
    return parser


#: Harness errors that mean the command was asked for something that does not exist (exit 2).
USAGE_ERRORS = ("ZooError", "UnknownNameError", "ProfileUnavailableError", "SuiteError", "MetaUsageError")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. The harness's own errors (and unreadable or unwritable files) become one line
    on stderr and exit 2 (usage) or 1, without a traceback; anything else is a bug and shows one."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as err:  # noqa: BLE001  (re-raised below unless it is the harness's own error)
        if not _own_error(err):
            raise
        _error(f"{type(err).__name__}: {err}" if isinstance(err, OSError) else str(err))
        return 2 if any(c.__name__ in USAGE_ERRORS for c in type(err).__mro__) else 1


def _own_error(err: BaseException) -> bool:
    """An error the harness raises on purpose (defined in a ``harness`` module), or a file problem."""
    return isinstance(err, OSError) or any(c.__module__.split(".")[0] == "harness" for c in type(err).__mro__)


if __name__ == "__main__":
    sys.exit(main())
