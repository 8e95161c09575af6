"""The model zoo: named trained models (architecture + dataset + recipe + seed) from fixtures/zoo.yaml.

The file is the catalogue users edit; errors name the file and line. Parsing and ``list_zoo`` stay
torch-free (the pytest plugin validates ``--model`` with them): recipe names are checked on every
parse, architecture names (whose registry imports timm) by ``get_zoo_entry`` and ``load_zoo``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_ZOO = Path(__file__).resolve().parents[2] / "fixtures" / "zoo.yaml"
ZOO_ENV = "XAI_HARNESS_ZOO"
_FIELDS = {"architecture", "dataset", "dataset_options", "recipe", "seed", "description", "pretrained", "compile",
           "profiles", "purpose"}
#: ``judged``: a classifier of its dataset's task, which the suites of that dataset judge; ``pretraining``: a
#: backbone trained on another task for other entries (``pretrained: zoo:<name>``), which no suite judges.
PURPOSES = ("judged", "pretraining")
#: An entry naming a model trained elsewhere (imported with `xai-harness import`): its weights and twins.
_CHECKPOINT_FIELDS = {"checkpoint", "previous", "seed_twin", "shuffled_twin", "description", "profiles"}
_TWIN_FIELDS = {"previous": "previous", "seed_twin": "seed", "shuffled_twin": "shuffled"}  # -> provision.TWIN_KINDS
_PROFILES = ("cpu", "gpu")  # recipes.PROFILES, kept literal so parsing stays import-light
_REQUIRED = ("architecture", "dataset", "recipe", "seed")


class ZooError(ValueError):
    """A malformed zoo file or an unknown model name; the message says where."""


@dataclass(frozen=True)
class ZooEntry:
    """One named model of the zoo.

    Attributes:
        name: the zoo name (``resnet18_shortcut``), used on the command line and in suites.
        architecture: registered architecture name (a timm name).
        dataset: registered dataset name; ``dataset_options`` are passed to ``load_dataset``.
        recipe: registered recipe name.
        seed: the training seed (weights init, shuffling, augmentation).
        description: free text for tables.
        pretrained: path of a local safetensors file to initialise from (relative paths are
            resolved against the zoo file's folder), or ``zoo:<name>``: the final weights of another
            zoo entry, trained first (``pretraining.py``); None = random init. Never downloaded.
        compile: torch.compile the model for training (None: the architecture's default; only on
            CUDA). A speed option, not part of the configuration hash.
        profiles: the profiles the entry is meant for (``list_zoo(profile=...)`` and ``--model all``
            skip the others: a ViT-L is impractical on 2 CPU cores). Not part of the hash.
        purpose: ``judged`` (the default) or ``pretraining`` (see :data:`PURPOSES`): a suite does not
            apply to a pretraining backbone, whose labels are another task's. Not part of the hash.
        source: ``file:line`` where the entry is defined (not part of the configuration).
        checkpoint: an imported checkpoint (``xai-harness import``) instead of a training
            configuration: architecture and dataset come from its manifest, nothing is trained.
        twins: the imported checkpoint's twins by kind (``previous``, ``seed``, ``shuffled``).
    """

    name: str
    architecture: str
    dataset: str
    recipe: str
    seed: int
    dataset_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    pretrained: str | None = None
    compile: bool | None = field(default=None, compare=False)
    profiles: tuple[str, ...] = field(default=_PROFILES, compare=False)
    purpose: str = field(default="judged", compare=False)
    source: str = field(default="", compare=False)
    architecture_source: str = field(default="", compare=False, repr=False)
    checkpoint: str | None = None
    twins: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """The fields that determine the trained weights (hashed into the checkpoint run name).

        ``pretrained`` appears only when set (the checkpoint hash then also covers the file's
        sha256), so entries without it keep their hash.
        """
        config = {
            "name": self.name,
            "architecture": self.architecture,
            "dataset": self.dataset,
            "dataset_options": self.dataset_options,
            "recipe": self.recipe,
            "seed": self.seed,
        }
        if self.pretrained:
            config["pretrained"] = self.pretrained
        return config


def zoo_path() -> Path:
    """``$XAI_HARNESS_ZOO`` if set, else the repository's ``fixtures/zoo.yaml``."""
    return Path(os.environ.get(ZOO_ENV) or DEFAULT_ZOO)


def list_zoo(path: str | Path | None = None, *, profile: str | None = None) -> list[ZooEntry]:
    """The entries of the zoo file (those meant for ``profile`` if given), in file order (no torch
    import; architectures not checked)."""
    entries = _load(Path(path) if path else zoo_path()).values()
    return [e for e in entries if profile is None or profile in e.profiles]


def get_zoo_entry(name: str, path: str | Path | None = None) -> ZooEntry:
    """The entry ``name``, its architecture checked; an unknown name lists the known names.

    Raises:
        ZooError: unknown model, malformed file, or an unregistered architecture (with file:line).
    """
    file = Path(path) if path else zoo_path()
    entries = _load(file)
    if name not in entries:
        raise ZooError(f"unknown model {name!r} in {file}; known models: {', '.join(entries) or '(none)'}")
    return check_architecture(entries[name])


def load_zoo(path: str | Path) -> dict[str, ZooEntry]:
    """Parse and fully validate a zoo file (uncached, architectures included): name -> entry."""
    entries = _parse(Path(path))
    for entry in entries.values():
        check_architecture(entry)
    return entries


def check_architecture(entry: ZooEntry) -> ZooEntry:
    """``entry`` if its architecture is registered (or it is an imported checkpoint), else :class:`ZooError`
    naming file and line."""
    from harness.models.architectures import ARCHITECTURES
    from harness.registry import UnknownNameError

    if entry.checkpoint:  # rebuilt from its manifest (timm names and factories need no registration)
        return entry

    try:
        ARCHITECTURES.get(entry.architecture)
    except UnknownNameError as err:
        raise ZooError(f"{entry.architecture_source or entry.source}: model {entry.name!r}: {err}") from None
    return entry


def _load(path: Path) -> dict[str, ZooEntry]:
    stat = path.stat() if path.exists() else None
    return _parse_cached(str(path.resolve()), stat.st_mtime_ns if stat else 0)


@lru_cache(maxsize=8)
def _parse_cached(path: str, mtime_ns: int) -> dict[str, ZooEntry]:
    return _parse(Path(path))


def _parse(path: Path) -> dict[str, ZooEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ZooError(f"cannot read zoo file {path}: {err}") from err
    root = _compose(path, text)
    if not isinstance(root, yaml.MappingNode):
        raise ZooError(f"{_where(path, root)}: a zoo file is a mapping with a 'models' key")
    models = _child(root, "models")
    if models is None:
        raise ZooError(f"{_where(path, root)}: missing top-level key 'models'")
    if not isinstance(models, yaml.MappingNode):
        raise ZooError(f"{_where(path, models)}: 'models' must map model names to entries")
    entries: dict[str, ZooEntry] = {}
    for key_node, value_node in models.value:
        name = key_node.value
        if name in entries:
            raise ZooError(f"{_where(path, key_node)}: duplicate model name {name!r}")
        entries[name] = _entry(path, name, key_node, value_node)
    return entries


def _compose(path: Path, text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ZooError(f"{path}{line}: invalid YAML: {err.problem or err}") from err


def _where(path: Path, node: yaml.Node | None) -> str:
    return f"{path}:{node.start_mark.line + 1}" if node is not None else str(path)


def _child(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next((v for k, v in mapping.value if k.value == key), None)


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _entry(path: Path, name: str, key_node: yaml.Node, node: yaml.Node) -> ZooEntry:
    where = _where(path, key_node)
    if not isinstance(node, yaml.MappingNode):
        raise ZooError(f"{where}: model {name!r} must be a mapping of {', '.join(sorted(_FIELDS))}")
    values = _construct(node)
    if "checkpoint" in values:
        return _checkpoint_entry(path, name, where, node, values)
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise ZooError(f"{where}: model {name!r}: unknown keys {unknown}; allowed: {', '.join(sorted(_FIELDS))}")
    missing = [k for k in _REQUIRED if k not in values]
    if missing:
        raise ZooError(f"{where}: model {name!r}: missing keys {missing}")
    options = values.get("dataset_options") or {}
    if not isinstance(options, dict):
        where_options = _where(path, _child(node, "dataset_options"))
        raise ZooError(f"{where_options}: model {name!r}: dataset_options must be a mapping")
    if not isinstance(values["seed"], int) or isinstance(values["seed"], bool):
        raise ZooError(f"{_where(path, _child(node, 'seed'))}: model {name!r}: seed must be an integer")
    for key in ("architecture", "dataset", "recipe", "pretrained"):
        if key in values and not isinstance(values[key], str):
            raise ZooError(f"{_where(path, _child(node, key))}: model {name!r}: {key} must be a string")
    if not isinstance(values.get("compile", False), bool):
        raise ZooError(f"{_where(path, _child(node, 'compile'))}: model {name!r}: compile must be true or false")
    profiles = values.get("profiles", list(_PROFILES))
    if not isinstance(profiles, list) or not profiles or not set(profiles) <= set(_PROFILES):
        raise ZooError(f"{_where(path, _child(node, 'profiles'))}: model {name!r}: profiles must be a non-empty "
                       f"list of {', '.join(_PROFILES)}")
    purpose = values.get("purpose", "judged")
    if purpose not in PURPOSES:
        raise ZooError(f"{_where(path, _child(node, 'purpose'))}: model {name!r}: purpose must be one of "
                       f"{', '.join(PURPOSES)}, got {purpose!r}")
    _check_registered(path, node, name, values)
    return ZooEntry(
        name=name,
        architecture=values["architecture"],
        dataset=values["dataset"],
        recipe=values["recipe"],
        seed=values["seed"],
        dataset_options=options,
        description=str(values.get("description", "")),
        pretrained=_resolve(path, values.get("pretrained")),
        compile=values.get("compile"),
        profiles=tuple(profiles),
        purpose=purpose,
        source=where,
        architecture_source=_where(path, _child(node, "architecture")),
    )


def _checkpoint_entry(path: Path, name: str, where: str, node: yaml.MappingNode, values: dict[str, Any]) -> ZooEntry:
    """An entry naming an imported checkpoint (and its twins): architecture and dataset from its manifest."""
    from harness.models.checkpoint_files import CheckpointError, read_manifest  # json only, no torch

    unknown = sorted(set(values) - _CHECKPOINT_FIELDS)
    if unknown:
        raise ZooError(f"{where}: model {name!r} names a checkpoint: unknown keys {unknown}; allowed: "
                       f"{', '.join(sorted(_CHECKPOINT_FIELDS))}")
    files = {key: _resolve(path, str(values[key])) for key in ("checkpoint", *_TWIN_FIELDS) if values.get(key)}
    for key, file in files.items():
        try:
            manifest = read_manifest(Path(str(file)))
        except CheckpointError as err:
            raise ZooError(f"{_where(path, _child(node, key))}: model {name!r}: {err}; import it with "
                           "`xai-harness import`") from None
        if key == "checkpoint":
            checked = manifest
    dataset = checked.get("dataset") or {}
    if not isinstance(dataset, dict) or "name" not in dataset:
        raise ZooError(f"{_where(path, _child(node, 'checkpoint'))}: model {name!r}: the manifest of {files['checkpoint']} "
                       "names no dataset; import it again with `xai-harness import --dataset NAME --force`")
    profiles = values.get("profiles", list(_PROFILES))
    return ZooEntry(name=name, architecture=str(checked["architecture"]), dataset=str(dataset["name"]),
                    recipe="imported", seed=int(checked.get("seed", 0)),
                    dataset_options=dict(dataset.get("options") or {}),
                    description=str(values.get("description", "")), profiles=tuple(profiles), source=where,
                    architecture_source=where, checkpoint=files["checkpoint"],
                    twins={_TWIN_FIELDS[k]: str(v) for k, v in files.items() if k in _TWIN_FIELDS})


def _resolve(zoo_file: Path, pretrained: str | None) -> str | None:
    """``pretrained`` with ``~`` expanded, relative to the zoo file's folder (existence is checked at training)."""
    if not pretrained:
        return None
    if pretrained.startswith("zoo:"):  # another zoo run's final weights (harness/models/pretraining.py)
        return pretrained
    path = Path(pretrained).expanduser()
    return str(path if path.is_absolute() else (zoo_file.resolve().parent / path))


def _check_registered(path: Path, node: yaml.MappingNode, name: str, values: dict[str, Any]) -> None:
    """The recipe name must be registered (torch-free); architectures: :func:`check_architecture`."""
    from harness.models.recipes import RECIPES
    from harness.registry import UnknownNameError

    try:
        RECIPES.get(values["recipe"])
    except UnknownNameError as err:
        raise ZooError(f"{_where(path, _child(node, 'recipe'))}: model {name!r}: {err}") from None


__all__ = ["ZooEntry", "ZooError", "get_zoo_entry", "list_zoo", "load_zoo", "check_architecture", "zoo_path",
           "DEFAULT_ZOO"]
