"""The healthy population: three architecture families, each trained with several seeds.

Members are picked to train in minutes on two CPU cores and to give an 8x8 Grad-CAM at 64 px (the
CAM target rule of ``architectures.py``): a residual network (ResNet-18, the demo model), a densely
connected one (DenseNet-121 without its last two dense blocks, CheXtransfer's truncation) and a
vision transformer (ViT-Ti blocks over a convolutional stem).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.models.zoo import ZooEntry


@dataclass(frozen=True)
class Family:
    """One architecture family: its member architecture and the recipe it is trained with."""

    name: str
    architecture: str
    recipe: str
    description: str
    dataset: str = "synth-cxr"
    dataset_options: tuple[tuple[str, object], ...] = ()  # base options (hashable), e.g. a smaller dataset in tests

    def entry(self, name: str, *, seed: int = 0, dataset: str | None = None, recipe: str | None = None,
              dataset_options: dict | None = None) -> ZooEntry:
        """A zoo entry of this family (healthy by default), named ``name``; options add to the family's."""
        options = {**dict(self.dataset_options), **(dataset_options or {})}
        return ZooEntry(name=name, architecture=self.architecture, dataset=dataset or self.dataset,
                        recipe=recipe or self.recipe, seed=seed, dataset_options=options,
                        description=f"{self.description} (defect zoo / healthy population)")


FAMILIES: dict[str, Family] = {
    "residual": Family("residual", "resnet18", "pneumothorax_cnn", "ResNet-18"),
    "dense": Family("dense", "densenet121_minus2", "pneumothorax_cnn", "DenseNet-121 minus 2 blocks"),
    "vit": Family("vit", "vit_tiny_convstem", "pneumothorax_vit", "ViT-Ti with a convolutional stem"),
}
HEALTHY_SEEDS = (0, 1, 2)
# Healthy models whose calib-split values set thresholds: seed 0 (the zoo model) and seeds 3, 4 and 8-13 (three
# seeds per family under-estimated the healthy tail: 3 of 9 blind models failed a gate); the meta run judges
# seeds 0-2 on test, so seeds 1 and 2 are models calibration never saw.
CALIBRATION_SEEDS = (0, 3, 4, 8, 9, 10, 11, 12, 13)


def healthy_name(family: Family | str, seed: int) -> str:
    """The zoo name of a healthy member: the architecture for seed 0 (the zoo's own entry, e.g. ``resnet18``,
    whose checkpoint the demo shares), ``<architecture>_s<seed>`` otherwise."""
    family = get_family(family) if isinstance(family, str) else family
    return family.architecture if seed == 0 else f"{family.architecture}_s{seed}"


def subject_name(family: Family, defect: str) -> str:
    return f"{family.architecture}_{defect}"


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]
