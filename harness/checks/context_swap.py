"""Shortcuts nobody annotated, found without any map: the same lungs in a positive's or a negative's surroundings.

The map-based unsupervised checks (heat outside the anatomy, SpRAy, occluding what the map points
at) can only flag a shortcut the explainer shows; measured on the defect zoo, the gradient maps of
most border and marker shortcut models do not point at the artifact they use. This check asks the
model instead: keep each image's lungs and swap everything outside the anatomy for the
surroundings of another patient's image, once from a positive and once from a negative (the
background swap of Xiao et al. 2021, "Noise or Signal: The Role of Image Backgrounds in Object
Recognition", ICLR; in chest X-ray, Zech et al. 2018 and DeGrave et al. 2021 found models reading
the hospital and the patient's position outside the lungs). A model that reads the lungs does not
care whose surroundings it sees; one that reads a token, a marker or a frame outside them follows
the donor's label. Needs lung masks and labels, no artifact mask.
"""

from __future__ import annotations

import torch

from harness.checks.localisation import patient_ci
from harness.checks.offanatomy import ANATOMY_MARGIN, dilated
from harness.checks.registry import CheckSkipped, Measurement, register_check
from harness.explain.context import ModelContext


@register_check("context_swap", category="shortcut", needs_explainer=False,
                reference="the same lungs in a negative's surroundings (paired, same run)")
def check_context_swap(ctx: ModelContext, explainer: str | None = None, *, split: str = "test", n_donors: int = 4,
                       n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Mean rise of P(positive) when an image's surroundings come from a positive instead of a negative.

    For every image of ``split`` (the owner of the lungs) and each of ``n_donors`` draws, a label-1
    donor and a label-0 donor of other patients are drawn (seeded); the composite keeps the owner's
    pixels inside its dilated lungs (and inside the donor's, so no donor lesion shows) and takes the
    donor's pixels everywhere else. The value per owner is the mean over draws of
    P(positive donor's surroundings) - P(negative donor's surroundings): the seam and every other
    effect of compositing are the same on both sides and cancel. About 0 when nothing outside the
    anatomy carries the label for the model; up to (P(artifact | positive) - P(artifact | negative))
    x the artifact's effect for a shortcut outside the lungs, annotated or not. The CI resamples
    patients. It cannot see a shortcut inside the lungs, nor one the split does not carry (the
    confound must hold in the judged data, as it does where a team's data carries it).
    """
    data = ctx.dataset(split)
    if data.lung_masks is None:
        raise CheckSkipped(f"dataset {data.name} has no lung masks to tell anatomy from surroundings")
    labels, patients = ctx.labels(split), ctx.patients(split)
    positives, negatives = torch.nonzero(labels == 1).flatten(), torch.nonzero(labels == 0).flatten()
    if positives.numel() < 2 or negatives.numel() < 2:
        raise CheckSkipped(f"needs at least 2 positives and 2 negatives in split {split!r}, got "
                           f"{positives.numel()} and {negatives.numel()}")
    images = ctx.images(split)
    anatomy = dilated(data.lung_masks, ANATOMY_MARGIN)
    generator = torch.Generator().manual_seed(seed)
    owners = torch.arange(len(data))
    rises = torch.zeros(len(data), dtype=torch.float64)
    p_pos_sum, p_neg_sum, flipped = 0.0, 0.0, 0
    for _ in range(n_donors):
        from_pos = draw_donors(positives, patients, owners, generator)
        from_neg = draw_donors(negatives, patients, owners, generator)
        p_pos = ctx.score_images(swap_surroundings(images, anatomy, from_pos)).double()
        p_neg = ctx.score_images(swap_surroundings(images, anatomy, from_neg)).double()
        rises += (p_pos - p_neg) / n_donors
        p_pos_sum, p_neg_sum = p_pos_sum + float(p_pos.mean()), p_neg_sum + float(p_neg.mean())
        flipped += int(((p_pos >= 0.5) != (p_neg >= 0.5)).sum())
    boot = patient_ci(ctx, split, owners, rises, n_boot, seed)
    details = {"split": split, "n_donors": n_donors, "anatomy_margin": ANATOMY_MARGIN,
               "mean_p_positive_surroundings": p_pos_sum / n_donors,
               "mean_p_negative_surroundings": p_neg_sum / n_donors,
               "mean_rise_positive_owners": float(rises[labels == 1].mean()),
               "mean_rise_negative_owners": float(rises[labels == 0].mean()),
               "n_pairs_flipped": flipped, "n_pairs": n_donors * len(data)}
    return Measurement.of("probability_rise_positive_vs_negative_surroundings", boot, details,
                          {"name": "the same lungs in a negative's surroundings", "value": 0.0})


def draw_donors(pool: torch.Tensor, patients: torch.Tensor, owners: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
    """One donor from ``pool`` per owner, never of the owner's patient (seeded; the next pool member if so)."""
    pick = torch.randint(len(pool), (len(owners),), generator=generator)
    for _ in range(len(pool)):
        same = patients[pool[pick]] == patients[owners]
        if not same.any():
            break
        pick = torch.where(same, (pick + 1) % len(pool), pick)
    else:
        raise CheckSkipped("every donor image belongs to the owner's patient: the split needs more patients")
    return pool[pick]


def swap_surroundings(images: torch.Tensor, anatomy: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
    """``images`` with every pixel outside both its own and its donor's ``anatomy`` taken from the donor image."""
    surroundings = ~anatomy & ~anatomy[donors]
    return torch.where(surroundings, images[donors], images)
