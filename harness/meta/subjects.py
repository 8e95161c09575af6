"""Subjects of the meta run: each healthy model and each defect of each family, built as a ModelContext.

Training happens through the :class:`~harness.models.provision.ModelProvider` (on first use, with
progress), so a second run reuses every checkpoint. Twins are shared per family to keep the run
short: every subject's data-randomisation twin is the family's label-shuffled seed-0 model (itself
the ``shuffled_labels`` defect), and no subject has a seed twin (the suite has no seed check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from harness.explain.context import ModelContext, create_context_explainer
from harness.meta.defects import Defect, randomised_copy
from harness.meta.families import Family, healthy_name, subject_name
from harness.models.provision import ModelProvider, Provisioned, Twins, previous_checkpoint, shuffled_label_twin
from harness.models.zoo import ZooEntry


@dataclass(frozen=True)
class Subject:
    """One model (and explainer set) the meta run judges.

    ``explainers``: for explainer defects, the suite explainers that are replaced; only items that
    use them are evaluated (every other item equals the healthy model's). None: every item.
    """

    name: str
    family: Family
    seed: int
    defect: Defect | None = None
    explainers: tuple[str, ...] | None = None

    @property
    def healthy(self) -> bool:
        return self.defect is None

    @property
    def label(self) -> str:
        return "healthy" if self.defect is None else self.defect.name


class FamilyTwins(Twins):
    """Twins in the meta run: the family's shuffled-label model, the subject's own previous epoch
    (or a given model presented as the previous epoch), no other seed."""

    def __init__(self, provider: ModelProvider, subject: Provisioned | None, shuffled: ZooEntry,
                 previous: Callable[[], nn.Module | None] | None = None) -> None:
        self.provider, self.subject, self.shuffled, self.previous = provider, subject, shuffled, previous

    def previous_epoch(self) -> nn.Module | None:
        if self.previous is not None:
            return self.previous()
        path = previous_checkpoint(self.subject.weights) if self.subject else None
        return None if path is None else self.provider.load(path)[0]

    def shuffled_labels(self, label_seed: int) -> nn.Module | None:
        return self.provider.resolve(self.shuffled).model


def subjects_for(family: Family, defects: list[Defect], seeds: tuple[int, ...]) -> list[Subject]:
    """The healthy seeds of ``family``, then each defect (on seed 0)."""
    out = [Subject(healthy_name(family, s), family, s) for s in seeds]
    for defect in defects:
        out.append(Subject(subject_name(family, defect.name), family, 0, defect, defect.replaces or None))
    return out


def entry_of(subject: Subject) -> ZooEntry:
    """The zoo entry that is trained for ``subject`` (the healthy one for model-preserving defects)."""
    family, defect = subject.family, subject.defect
    if defect is None or defect.kind != "trained":
        return family.entry(healthy_name(family, subject.seed), seed=subject.seed)
    if defect.dataset == "shuffled-labels":
        return shuffled_label_twin(family.entry(healthy_name(family, 0)), defect.dataset_options["label_seed"])
    options = dict(defect.dataset_options)
    if defect.dataset:
        options = {"base": family.dataset, **dict(family.dataset_options), **options}
    return family.entry(subject.name, seed=subject.seed, dataset=defect.dataset, recipe=defect.recipe,
                        dataset_options=options)


def needs_training(subject: Subject) -> list[ZooEntry]:
    """Every zoo entry the subject needs trained (itself, the family's twin, a second seed)."""
    family = subject.family
    entries = [entry_of(subject), shuffled_label_twin(family.entry(healthy_name(family, 0)), 0)]
    if subject.defect is not None and subject.defect.kind == "twins":
        entries.append(family.entry(healthy_name(family, 1), seed=1))
    return entries


def build_context(subject: Subject, provider: ModelProvider, *, seed: int = 0) -> ModelContext:
    """The subject as a ModelContext (trains what it needs on first use)."""
    family, defect = subject.family, subject.defect
    shuffled = shuffled_label_twin(family.entry(healthy_name(family, 0)), 0)
    provisioned = provider.resolve(entry_of(subject))
    model, manifest = provisioned.model, dict(provisioned.manifest)
    previous = None
    if defect is not None and defect.kind == "weights":
        model = randomised_copy(model, manifest["architecture"], seed=1234)
        manifest["weights"] = "randomised"
        provisioned = None
    if defect is not None and defect.kind == "twins":
        other = family.entry(healthy_name(family, 1), seed=1)
        previous = lambda: provider.resolve(other).model  # noqa: E731
    twins = FamilyTwins(provider, provisioned, shuffled, previous)
    ctx = ModelContext(subject.name, model, manifest, twins, seed=seed)
    if defect is not None:
        ctx.explainers.update(defect.explainers(lambda name: create_context_explainer(name, seed)))
    return ctx
