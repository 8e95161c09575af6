"""Pretrained backbones without downloads: a zoo entry's ``pretrained: zoo:<name>`` names another zoo run.

Seeds 002 (partial unfreeze) and 003 (linear probe) need a backbone that learned something before.
Real ImageNet weights drop in as a local file (``pretrained: weights/resnet18.safetensors``); on a
machine without them, ``pretrained: zoo:resnet18_histo_pretrain`` names a zoo entry trained on
another task of the embedded data (recipe ``histo_pretrain``: synth-histo's tissue findings, never
the tumour label the probe is judged on). On first use the named run is trained (and cached like
every zoo model), and its final checkpoint becomes the local ``pretrained`` file, loaded through
:func:`harness.models.pretrained.load_pretrained` like any other: key by key, heads whose shapes
differ (3 tissue findings vs 2 tumour logits) left at their initialisation. The probe's checkpoint
hash covers that file's sha256, as for any pretrained file.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from harness.models.zoo import ZooEntry, ZooError, get_zoo_entry

if TYPE_CHECKING:
    from harness.models.checkpoints import CheckpointStore

ZOO_PREFIX = "zoo:"


def pretraining_source(entry: ZooEntry) -> str | None:
    """The zoo name in ``entry.pretrained`` when it reads ``zoo:<name>``, else None."""
    value = entry.pretrained or ""
    return value[len(ZOO_PREFIX):].strip() if value.startswith(ZOO_PREFIX) else None


def materialise_pretrained(entry: ZooEntry, *, profile: str, store: CheckpointStore, progress: bool = True,
                           _seen: tuple[str, ...] = ()) -> ZooEntry:
    """``entry`` with a ``zoo:<name>`` pretrained reference replaced by that run's final checkpoint file,
    training the run first if needed (same profile and store); other entries are returned unchanged.

    Raises:
        ZooError: the name is not in the zoo, or the references form a cycle.
    """
    name = pretraining_source(entry)
    if name is None:
        return entry
    if name in (*_seen, entry.name):
        raise ZooError(f"{entry.source or entry.name}: pretrained reference cycle: "
                       f"{' -> '.join((*_seen, entry.name, name))}")
    try:
        source = get_zoo_entry(name)
    except ZooError as err:
        raise ZooError(f"{entry.source or entry.name}: model {entry.name!r}: pretrained: zoo:{name}: {err}") from None
    source = materialise_pretrained(source, profile=profile, store=store, progress=progress,
                                    _seen=(*_seen, entry.name))
    from harness.models.provision import ensure_trained

    run = ensure_trained(source, profile=profile, store=store, progress=progress)
    return replace(entry, pretrained=str(run.checkpoint()))


def trained_reference(entry: ZooEntry, store: CheckpointStore, profile: str) -> ZooEntry:
    """``entry`` with a ``zoo:<name>`` reference replaced by that run's final weights if ``store`` already
    holds the run (nothing is trained), so listings find the run a reference leads to; else unchanged."""
    name = pretraining_source(entry)
    if name is None:
        return entry
    from harness.models.recipes import get_recipe

    try:
        source = get_zoo_entry(name)
        run = store.completed_run(store.run_dir(source, get_recipe(source.recipe, profile), profile))
    except (ZooError, RecursionError):
        return entry
    return entry if run is None else replace(entry, pretrained=str(run.checkpoint()))


__all__ = ["ZOO_PREFIX", "pretraining_source", "materialise_pretrained", "trained_reference"]
