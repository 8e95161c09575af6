"""Options and configuration: what a run asks for, checked before any model is loaded (a mistake is a
usage error, exit 4), and the HarnessSession created on first use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checks.result import CATEGORIES
from harness.plugin.discovery import add_suite_glob_ini
from harness.plugin.keys import BASELINE, CALIBRATED, MODELS, RECORDER, RUN_ID, SESSION


#: Twin checkpoints of ``--checkpoint``: option -> what it is (kinds: ``harness.models.provision.TWIN_KINDS``).
TWIN_OPTIONS = {"--previous": "previous-epoch", "--seed-twin": "same recipe, other seed",
                "--shuffled-twin": "label-shuffled twin"}
_TWIN_KIND = {"--previous": "previous", "--seed-twin": "seed", "--shuffled-twin": "shuffled"}


def twin_paths(config: pytest.Config) -> dict[str, str]:
    """The twin checkpoints named on the command line, by kind (``previous``, ``seed``, ``shuffled``)."""
    values = {kind: config.getoption(option.lstrip("-").replace("-", "_")) for option, kind in _TWIN_KIND.items()}
    return {kind: value for kind, value in values.items() if value}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xai-harness", "explanation checks of trained models")
    add_suite_glob_ini(parser)  # xai_suite_glob: which YAML files may be suites (harness.plugin.discovery)
    group.addoption("--model", default=None, metavar="NAME[,NAME...]",
                    help="zoo model(s) to check, comma separated, or 'all' (see `xai-harness zoo`)")
    group.addoption("--profile", default=None, choices=["cpu", "gpu"],
                    help="training/evaluation profile (default: gpu when CUDA is available, else cpu)")
    group.addoption("--checkpoint", default=None, metavar="PATH",
                    help="check an external checkpoint (.safetensors with its .json manifest), e.g. a release candidate")
    group.addoption("--checkpoint-dir", default=None, metavar="DIR",
                    help="checkpoint store (default: $XAI_HARNESS_CHECKPOINTS or the user cache directory)")
    for option, kind in TWIN_OPTIONS.items():  # twins of --checkpoint (harness/models/provision.py, ExternalTwins)
        group.addoption(option, default=None, metavar="PATH", help=f"with --checkpoint: its {kind} checkpoint "
                        "(.safetensors with its manifest); the checks that compare with it run instead of skipping")
    group.addoption("--report-dir", default="reports", metavar="DIR", help="where run reports are written")
    group.addoption("--max-images", type=int, default=None, metavar="N",
                    help="cap on test images per split, N >= 1 (default: the suite's max_images, else all)")
    group.addoption("--finding", default=None, metavar="NAME",
                    help="multi-label models: the finding whose scores, maps and masks the checks read")
    group.addoption("--dataset", default=None, metavar="NAME|PATH.yaml",
                    help="check every model on this dataset instead of its own: a registered name or your own "
                         "data declared in YAML (docs/datasets.md), e.g. the test set of --checkpoint")
    group.addoption("--baseline", default=None, metavar="PATH",
                    help="compare each check with a previous run (its results.json or run directory) by a paired "
                         "bootstrap; a significant regression beyond the check's regression_margin fails the item")


def pytest_configure(config: pytest.Config) -> None:
    for category in CATEGORIES:
        config.addinivalue_line("markers", f"{category}: xai-harness {category} checks")
    config.addinivalue_line("markers", "xai: every check collected from a YAML suite")
    config.addinivalue_line("markers", "xai_datasets(*names): run this Python check only on models trained on "
                            "these datasets (others, and pretraining backbones, skip with the reason)")
    from harness.plugin.recorder import ResultRecorder

    config.pluginmanager.register(ResultRecorder(config), RECORDER)
    config.stash[MODELS] = _requested_models(config)
    config.stash[SESSION] = None
    config.stash[CALIBRATED] = {}
    config.stash[RUN_ID] = getattr(config, "workerinput", {}).get("xai_run_id") or _new_run_id()
    _check_options(config)
    config.stash[BASELINE] = _baseline(config.getoption("baseline"))


def _baseline(path: str | None):
    """The ``--baseline`` run, read before any model is loaded; an unreadable file is a usage error (exit 4)."""
    if not path:
        return None
    from harness.report.baseline import Baseline, BaselineError  # no torch

    try:
        return Baseline.load(path)
    except BaselineError as err:
        raise pytest.UsageError(str(err)) from None


def _check_options(config: pytest.Config) -> None:
    """Every option and path checked before any model is loaded; a mistake is a usage error (exit 4)."""
    max_images = config.getoption("max_images")
    if max_images is not None and max_images < 1:
        raise pytest.UsageError(f"--max-images must be at least 1, got {max_images}; leave it out to use every image")
    if hasattr(config, "workerinput"):  # the controller checked the paths already
        return
    checkpoint, store = config.getoption("checkpoint"), config.getoption("checkpoint_dir")
    if checkpoint:
        _check_checkpoint(checkpoint)
    for kind, path in twin_paths(config).items():  # each twin is checked like --checkpoint
        option = next(o for o, k in _TWIN_KIND.items() if k == kind)
        if not checkpoint:
            raise pytest.UsageError(f"{option} names a twin of --checkpoint; pass --checkpoint PATH too (zoo models "
                                    "find or train their own twins)")
        _check_checkpoint(path, option)
    if config.getoption("dataset"):
        _check_dataset(config.getoption("dataset"))
    if store and Path(store).expanduser().exists() and not Path(store).expanduser().is_dir():
        raise pytest.UsageError(f"--checkpoint-dir {store} is not a directory; pass the checkpoint store's folder")
    if config.stash[MODELS] or checkpoint:
        _check_writable(Path(config.getoption("report_dir")).expanduser())
    if config.stash[MODELS] and config.getoption("profile") == "gpu":
        import torch  # the run needs it anyway

        if not torch.cuda.is_available():
            raise pytest.UsageError("--profile gpu needs a CUDA device, and torch sees none; use --profile cpu here")


def _check_checkpoint(path: str, option: str = "--checkpoint") -> None:
    """``--checkpoint`` must be a weights file with a readable manifest (sha256 is checked at load)."""
    from harness.models.checkpoint_files import CheckpointError, read_manifest  # no torch

    try:
        read_manifest(Path(path).expanduser())
    except CheckpointError as err:
        raise pytest.UsageError(f"{option}: {err}; pass a .safetensors file written by xai-harness (or imported "
                                "with `xai-harness import`), with its .json manifest beside it") from None


def _check_dataset(value: str) -> None:
    """``--dataset``: a registered name, or a dataset YAML whose rows are all good (images are read later)."""
    from harness.data.generic import dataset_choice
    from harness.data.generic_spec import DatasetSpecError
    from harness.registry import UnknownNameError

    try:
        dataset_choice(value)
    except (DatasetSpecError, UnknownNameError) as err:
        raise pytest.UsageError(f"--dataset: {err}") from None


def _check_writable(folder: Path) -> None:
    """A file can be written in the report directory (or, if it does not exist yet, in the nearest
    folder above it, where it will be created); nothing is left behind."""
    import os
    import tempfile

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        handle, probe = tempfile.mkstemp(prefix=".xai-harness-probe-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise pytest.UsageError(f"--report-dir {folder} is not writable ({err.strerror or err}); pass a writable "
                                "directory with --report-dir DIR") from None


def strict(config: pytest.Config) -> bool:
    """pytest's ``--strict`` (or ``strict = true`` in the ini file): xai-harness then counts skips as failures."""
    try:
        if config.getini("strict"):
            return True
    except ValueError:  # a pytest without the strict ini option
        pass
    return bool(config.getoption("strict", default=False))


def _requested_models(config: pytest.Config) -> list[str]:
    """Validate --model against the zoo; an unknown name is a usage error listing the known ones."""
    value = config.getoption("model")
    if not value:
        return []
    from harness.models.zoo import list_zoo  # reads fixtures/zoo.yaml; no torch

    known = [entry.name for entry in list_zoo()]
    if value == "all":  # the entries meant for this run's profile (e.g. vit_large is gpu-only)
        profile = config.getoption("profile")
        if profile is None:
            from harness.models.trainer import default_profile

            profile = default_profile()
        return [entry.name for entry in list_zoo(profile=profile)]
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise pytest.UsageError(
            f"unknown model {', '.join(map(repr, unknown))}; known models: {', '.join(known)} (or 'all')"
        )
    return names


def _new_run_id() -> str:
    from harness.report.results_file import new_run_id  # light: no torch, no matplotlib

    return new_run_id()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker writes into the controller's run directory."""
    node.workerinput["xai_run_id"] = node.config.stash[RUN_ID]


def session_of(config: pytest.Config):
    """The HarnessSession of this pytest run, created on first use (imports torch then)."""
    if config.stash[SESSION] is None:
        from harness.session import HarnessSession

        config.stash[SESSION] = HarnessSession(
            profile=config.getoption("profile"),
            checkpoint=config.getoption("checkpoint"),
            checkpoint_dir=config.getoption("checkpoint_dir"),
            max_images=config.getoption("max_images"),
            finding=config.getoption("finding"),
            twins=twin_paths(config),
            dataset=config.getoption("dataset"),
        )
    return config.stash[SESSION]


def calibrated_profile(path: Path) -> str:
    """The profile a calibration file was made on (``?`` if it does not say)."""
    try:
        return str(json.loads(Path(path).read_text()).get("profile", "?"))
    except (OSError, ValueError):
        return "?"


def uncalibrated_note(config: pytest.Config) -> str:
    """A line for suites whose thresholds were calibrated on another profile than this run's ("" if none)."""
    session = config.stash[SESSION]
    if session is None:
        return ""
    other = {name: p for name, p in config.stash[CALIBRATED].items() if p != session.profile}
    if not other:
        return ""
    names = ", ".join(f"{name} (calibrated on the {p} profile)" for name, p in sorted(other.items()))
    return (f"thresholds not validated for the {session.profile} profile: {names}; run "
            f"`xai-harness calibrate --profile {session.profile}` to calibrate them")
