"""Tiny deterministic stand-ins for fast tests: toy datasets, a toy recipe and a toy zoo entry.

``install_toy()`` registers the dataset ``toy-blobs`` (positives carry a bright disk, negatives do
not), the multi-label dataset ``toy-multilabel`` (findings ``disk`` and ``bar``, independent) and
the recipe ``toy`` (2 epochs of Adam); ``toy_entry()`` builds a zoo entry that trains in about a
second on the CPU with the ``test_resnet`` architecture; ``toy_project()`` points a pytester project
at a zoo file of such entries (:data:`TOY_ZOO`). Nothing is registered on import, so user-facing
listings stay clean.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from harness.data import DATASETS, ImageSet
from harness.models.recipes import RECIPES, Augmentation, Recipe
from harness.models.zoo import ZooEntry

TOY_DATASET = "toy-blobs"
TOY_MULTILABEL = "toy-multilabel"
TOY_FINDINGS = ("disk", "bar")
TOY_RECIPE = "toy"
_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
#: A zoo file with the toy model ``toy`` (a tiny ResNet on toy-blobs), for plugin runs through pytester.
TOY_ZOO = """\
models:
  toy:
    architecture: test_resnet
    dataset: toy-blobs
    dataset_options: {n: 96}
    recipe: toy
    seed: 0
"""
#: The conftest of such a project: its pytest runs register the toy datasets and recipe too.
TOY_CONFTEST = "from harness.models.testing import install_toy\ninstall_toy()\n"


def toy_imageset(split: str = "train", *, size: int = 32, n: int = 64, seed: int = 0) -> ImageSet:
    """``n`` noisy ``size``x``size`` images; label 1 = a bright disk (the lesion) somewhere in the middle."""
    gen = torch.Generator().manual_seed(1000 * seed + _SPLIT_SEEDS.get(split, 3))
    labels = (torch.arange(n) % 2).long()
    labels = labels[torch.randperm(n, generator=gen)]
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = torch.randint(size // 4, 3 * size // 4, (n, 2), generator=gen)
    radius = max(2.0, size / 8)
    dist2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    lesion = (dist2 <= radius**2) & labels.bool()[:, None, None]
    base = 0.3 + 0.1 * torch.rand((n, size, size), generator=gen)
    images = (base + 0.5 * lesion.float()).clamp(0, 1).mul(255).round().to(torch.uint8)[:, None]
    lung = torch.zeros((n, 1, size, size), dtype=torch.bool)
    lung[:, :, size // 8 : -size // 8, size // 8 : -size // 8] = True
    return ImageSet(
        images=images,
        labels=labels,
        lesion_masks=lesion[:, None],
        lung_masks=lung,
        patient_ids=torch.arange(n),
        name=f"{TOY_DATASET}/{split}",
        config={"size": size, "n": n, "seed": seed},
    )


def toy_multilabel_imageset(split: str = "train", *, size: int = 32, n: int = 64, seed: int = 0) -> ImageSet:
    """Multi-label toy data: labels float ``[n,2]`` (``disk``: a bright disk, ``bar``: a bright
    horizontal bar), each present in half of the images independently; lesion masks ``[n,2,H,W]``."""
    gen = torch.Generator().manual_seed(1000 * seed + 10 + _SPLIT_SEEDS.get(split, 3))
    labels = torch.stack([torch.randperm(n, generator=gen) % 2 for _ in TOY_FINDINGS], 1).float()
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = torch.randint(size // 4, 3 * size // 4, (n, 2), generator=gen)
    dist2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    disk = (dist2 <= max(2.0, size / 8) ** 2) & labels[:, 0].bool()[:, None, None]
    rows = torch.randint(size // 8, size - size // 8 - 2, (n,), generator=gen)
    bar = ((yy[None] >= rows[:, None, None]) & (yy[None] < rows[:, None, None] + 2)
           & (xx[None] >= size // 8) & (xx[None] < size - size // 8) & labels[:, 1].bool()[:, None, None])
    base = 0.3 + 0.1 * torch.rand((n, size, size), generator=gen)
    images = (base + 0.5 * (disk | bar).float()).clamp(0, 1).mul(255).round().to(torch.uint8)[:, None]
    lung = torch.zeros((n, 1, size, size), dtype=torch.bool)
    lung[:, :, size // 8 : -size // 8, size // 8 : -size // 8] = True
    return _imageset(images=images, labels=labels, lesion_masks=torch.stack([disk, bar], 1), lung_masks=lung,
                     patient_ids=torch.arange(n), name=f"{TOY_MULTILABEL}/{split}",
                     config={"size": size, "n": n, "seed": seed}, finding_names=TOY_FINDINGS)


def _imageset(*, finding_names: tuple[str, ...], **values) -> ImageSet:
    """An ImageSet with ``finding_names`` (a field of newer ImageSets, else set as an attribute)."""
    if "finding_names" in {f.name for f in dataclasses.fields(ImageSet)}:
        return ImageSet(finding_names=finding_names, **values)
    data = ImageSet(**values)
    data.finding_names = finding_names
    return data


def toy_recipe(profile: str) -> Recipe:
    """2 epochs of Adam 3e-3, batch 16, light augmentation (exercises the augmentation path)."""
    augment = Augmentation(hflip=True, rotation_deg=5.0, brightness=0.05, contrast=0.05, noise_std=0.01)
    return Recipe(TOY_RECIPE, profile, "adam", lr=3e-3, epochs=2, batch_size=16, augment=augment)


def install_toy() -> None:
    """Register ``toy-blobs`` and ``toy`` (idempotent)."""
    if TOY_DATASET not in DATASETS:
        DATASETS.register(TOY_DATASET, description="toy blobs for tests")(
            lambda split, **options: toy_imageset(split, **options)
        )
    if TOY_MULTILABEL not in DATASETS:
        DATASETS.register(TOY_MULTILABEL, description="multi-label toy data for tests")(
            lambda split, **options: toy_multilabel_imageset(split, **options)
        )
    if TOY_RECIPE not in RECIPES:
        RECIPES.register(TOY_RECIPE, description="2-epoch toy recipe for tests")(toy_recipe)


def toy_entry(name: str = "toy", *, architecture: str = "test_resnet", seed: int = 0, recipe: str = TOY_RECIPE,
              dataset: str = TOY_DATASET, pretrained: str | None = None, **options) -> ZooEntry:
    """A zoo entry on a toy dataset (``options`` go to the dataset, e.g. ``size=32, n=64``)."""
    install_toy()
    return ZooEntry(name=name, architecture=architecture, dataset=dataset, recipe=recipe, seed=seed,
                    dataset_options=dict(options), pretrained=pretrained)


def toy_project(pytester: Any, monkeypatch: Any, store: Path, *, zoo: str = TOY_ZOO,
                conftest: str = TOY_CONFTEST) -> Path:
    """Point ``pytester``'s project at a toy zoo: the toy registries here and in its runs (``conftest``),
    the ``zoo`` file and the checkpoint store in folder ``store`` (one folder shared by a module's tests
    trains each toy model once); returns the zoo file."""
    install_toy()
    pytester.makeconftest(conftest)
    store.mkdir(parents=True, exist_ok=True)
    (store / "zoo.yaml").write_text(zoo)
    monkeypatch.setenv("XAI_HARNESS_ZOO", str(store / "zoo.yaml"))
    monkeypatch.setenv("XAI_HARNESS_CHECKPOINTS", str(store / "ckpt"))
    return store / "zoo.yaml"


__all__ = ["toy_imageset", "toy_multilabel_imageset", "toy_recipe", "toy_entry", "install_toy", "toy_project",
           "TOY_DATASET", "TOY_MULTILABEL", "TOY_FINDINGS", "TOY_RECIPE", "TOY_ZOO", "TOY_CONFTEST"]
