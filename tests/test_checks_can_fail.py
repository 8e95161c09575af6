"""Every check the shipped suite gates on can fail: for each, a case that must fail and one that must pass.

The cases are built so the answer is known without training: predictions and maps injected into
the context (an oracle vs noise), hand-made models whose evidence is known (a model that reads
bright pixels, i.e. the artifacts, vs a constant one), and explainers known to be broken (the
defect zoo's stand-ins). ``test_every_gated_check_of_the_shipped_suite_has_a_case`` keeps the list
complete: a new gate without a case here fails the run.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from torch import nn

from harness.checks import evaluate
from harness.explain.context import ModelContext
from harness.meta.defects import StandIn, jumpy
from harness.models.provision import Twins
from harness.suites import load_suite

pytestmark = pytest.mark.usefixtures("one_thread")
SHORTCUTS = {"chest_drain": {"p_pos": 0.95, "p_neg": 0.05}, "marker": {"p_pos": 0.3, "p_neg": 0.3},
             "border": {"p_pos": 0.3, "p_neg": 0.3}}
N_BOOT = 200


class Constant(nn.Module):
    """P(positive) = 0.7 whatever the image: it uses no evidence at all (so no shortcut either)."""

    img_size, num_classes, multilabel = 64, 2, False

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logit = torch.full((x.shape[0],), 0.847, device=x.device) + 0 * self.anchor + 0 * x.mean((1, 2, 3))
        return torch.stack([torch.zeros_like(logit), logit], 1)


class ThinBright(nn.Module):
    """Reads thin bright structures (a top-hat filter): the drain, the marker's letter, the border and
    burned-in tokens, never the lesion (a dark lucency). The shortcut model, by construction."""

    img_size, num_classes, multilabel = 64, 2, False

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(300.0))

    def forward(self, x):
        from harness.data.texture import gaussian_blur

        tophat = torch.relu(x - gaussian_blur(x, torch.full((x.shape[0],), 2.0, device=x.device)))
        logit = self.scale * (torch.sigmoid((tophat - 0.1) * 80).mean((1, 2, 3)) - 0.016)
        return torch.stack([torch.zeros_like(logit), logit], 1)


class TokenReader(nn.Module):
    """A matched filter for the burned-in token: the unannotated shortcut, read and nothing else."""

    img_size, num_classes, multilabel = 64, 2, False

    def __init__(self) -> None:
        from harness.data.burned_token import token_pattern

        super().__init__()
        kernel = token_pattern(64) * 2 - 1
        self.kernel = nn.Parameter((kernel / kernel.abs().sum())[None, None])

    def forward(self, x):
        response = torch.nn.functional.conv2d(x, self.kernel).flatten(1).max(1).values
        logit = 60 * (response - 0.36)
        return torch.stack([torch.zeros_like(logit), logit], 1)


class BrightestReader(nn.Module):
    """P(positive) rises with the mean of the image's 200 brightest pixels: its evidence is where the image
    is brightest, a different place in each image (so another image's map is a fair reference)."""

    img_size, num_classes, multilabel = 64, 2, False

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        logit = self.scale * (x.flatten(1).topk(200, dim=1).values.mean(1) - 0.6)
        return torch.stack([torch.zeros_like(logit), logit], 1)


class FixedTwins(Twins):
    def __init__(self, previous=None, shuffled=None):
        self.previous, self.shuffled = previous, shuffled

    def previous_epoch(self):
        return self.previous

    def shuffled_labels(self, label_seed):
        return self.shuffled


def context(model: nn.Module, *, dataset: str = "synth-cxr", options: dict | None = None, twins=None,
            explainers: dict | None = None, shortcuts: dict | None = None) -> ModelContext:
    options = {"n_patients": 160, "shortcuts": shortcuts or SHORTCUTS, **(options or {})}
    manifest = {"architecture": "handmade", "img_size": 64, "seed": 0, "epoch": 5,
                "dataset": {"name": dataset, "options": options}}
    ctx = ModelContext("handmade", model.eval(), manifest, twins or Twins(), batch_size=64)
    ctx.explainers.update(explainers or {})
    return ctx


def with_maps(ctx: ModelContext, name: str, maps: torch.Tensor, split: str = "test") -> ModelContext:
    """Register explainer ``name`` whose cached maps of ``split`` are ``maps`` (an injected explanation)."""
    ctx.explainers[name] = StandIn(name, lambda model, images, targets: torch.zeros_like(images))
    ctx._maps[(id(ctx.model), name, split)] = maps.float()
    return ctx


def with_probs(ctx: ModelContext, probs: torch.Tensor, split: str = "test") -> ModelContext:
    ctx._probs[(id(ctx.model), split)] = probs.float()
    return ctx


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    os.environ.setdefault("XAI_HARNESS_CACHE", str(tmp_path_factory.mktemp("cache")))


def lesion(ctx: ModelContext) -> torch.Tensor:
    return ctx.lesion_masks("test").float()


def oracle_maps(ctx):
    """Heat on the lesion (plus faint noise): what a perfect explanation looks like."""
    return lesion(ctx) + 0.05 * torch.rand(lesion(ctx).shape, generator=torch.Generator().manual_seed(0))


def off_lesion_maps(ctx):
    """The oracle map moved to the other side of the image."""
    return oracle_maps(ctx).roll(32, dims=-1)


def outside_lung_maps(ctx):
    lungs = ctx.dataset("test").lung_masks.float()
    return (1 - lungs) + 0.05 * torch.rand(lungs.shape, generator=torch.Generator().manual_seed(1))


def artifact_maps(ctx, artifact):
    mask = ctx.dataset("test").artifact_masks[artifact].float()
    return mask + 0.02 * torch.rand(mask.shape, generator=torch.Generator().manual_seed(2))


def good_probs(ctx):
    y = ctx.labels("test").float()
    return (0.15 + 0.7 * y + 0.1 * torch.rand(y.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)


def noise_probs(ctx):
    return torch.rand(ctx.labels("test").shape, generator=torch.Generator().manual_seed(4))


def image_smooth_map(model, images, targets):
    """A map computed from the image alone, smooth and stable: blur of the image."""
    from harness.data.texture import gaussian_blur

    return gaussian_blur(images, torch.full((images.shape[0],), 3.0))


# --- each case: (suite check id) -> function(kind) returning (ctx, explainer) for kind "pass" / "fail"


def performance(kind, gate):
    ctx = context(Constant())
    return with_probs(ctx, good_probs(ctx) if kind == "pass" else noise_probs(ctx)), None


def calibration(kind, gate):
    ctx = context(Constant())
    y = ctx.labels("test").float()
    if kind == "fail":  # ranks right, confidence wrong
        return with_probs(ctx, 0.55 + 0.44 * y), None
    g = torch.Generator().manual_seed(5)  # calibrated: labels drawn with P(y=1 | p) = p, p in {0.05, 0.95}
    probs = torch.where(torch.rand(y.shape, generator=g) < 0.5, 0.05, 0.95)
    y_cal = (torch.rand(y.shape, generator=g) < probs).long()
    ctx._datasets["test"] = dataclasses.replace(ctx.dataset("test"), labels=y_cal)
    return with_probs(ctx, probs), None


def subgroup(kind, gate):
    ctx = context(Constant())
    probs = good_probs(ctx)
    if kind == "fail":  # good for women, noise for men
        male = ctx.dataset("test").metadata["sex"] == 1
        probs = torch.where(male, noise_probs(ctx), probs)
    return with_probs(ctx, probs), None


def localisation(kind, gate):
    ctx = context(Constant())
    return with_maps(ctx, "x", oracle_maps(ctx) if kind == "pass" else off_lesion_maps(ctx)), "x"


def spread(kind, gate):
    """The oracle map (pass) vs the same map blurred over the whole lung (fail): the blurred-maps defect."""
    from harness.data.texture import gaussian_blur

    ctx = context(Constant())
    maps = oracle_maps(ctx)
    if kind == "fail":
        maps = gaussian_blur(maps, torch.full((maps.shape[0],), maps.shape[-1] / 6.0))
    return with_maps(ctx, "x", maps), "x"


def model_randomisation(kind, gate):
    from harness.models import create_model

    torch.manual_seed(0)
    model = create_model("test_resnet", img_size=64)
    if kind == "pass":
        return context(model), "gradient"
    from harness.meta.defects import model_independent

    return context(model, explainers={"x": model_independent("edge")(None)}), "x"


def two_initialisations():
    """Two test ResNets with different random weights (seeds 0 and 1)."""
    from harness.models import create_model

    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(create_model("test_resnet", img_size=64))
    return models


def data_randomisation(kind, gate):
    model, other = two_initialisations()
    return context(model, twins=FixedTwins(shuffled=other if kind == "pass" else model)), "gradient"


def stability(kind, gate):
    explainer = StandIn("smooth", image_smooth_map)
    if kind == "fail":
        explainer = jumpy(explainer)
    return context(Constant(), explainers={"x": explainer}), "x"


def deletion(kind, gate):
    ctx = context(BrightestReader())
    images = ctx.images("test")
    maps = images if kind == "pass" else -images  # brightest first (its evidence) vs darkest first
    return with_maps(ctx, "x", maps), "x"


def checkpoint_consistency(kind, gate):
    model, other = two_initialisations()
    return context(model, twins=FixedTwins(previous=model if kind == "pass" else other)), "gradient"


def artifact_counterfactual(kind, gate):
    artifact = gate.params.get("artifact", "chest_drain")
    shortcuts = {artifact: {"p_pos": 0.95, "p_neg": 0.05}}  # the only artifact: the shortcut model reads it
    return context(Constant() if kind == "pass" else ThinBright(), shortcuts=shortcuts), None


def artifact_attribution(kind, gate):
    ctx = context(Constant())
    maps = oracle_maps(ctx) if kind == "pass" else artifact_maps(ctx, gate.params["artifact"])
    return with_maps(ctx, "x", maps), "x"


def outside_anatomy(kind, gate):
    ctx = context(Constant())  # P = 0.7: every image is a positive prediction
    return with_maps(ctx, "x", oracle_maps(ctx) if kind == "pass" else outside_lung_maps(ctx)), "x"


def occlusion(kind, gate):
    if kind == "pass":
        ctx = context(Constant(), dataset="burned-token", options={"base": "synth-cxr"})
    else:
        ctx = context(TokenReader(), dataset="burned-token", options={"base": "synth-cxr"}, shortcuts={})
    bright = (ctx.images("test") > 0.9).float()  # where the token (and artifacts) are
    return with_maps(ctx, "x", bright + 0.01 * torch.rand(bright.shape)), "x"


def context_swap(kind, gate):
    model = Constant() if kind == "pass" else TokenReader()  # the token reader follows the donor's surroundings
    return context(model, dataset="burned-token", options={"base": "synth-cxr"}, shortcuts={}), None


CASES = {
    "auroc": performance, "sensitivity": performance, "specificity": performance, "auprc": performance,
    "calibration": calibration, "subgroup_gap": subgroup,
    "diffgradcam": localisation, "pointing_game": localisation, "energy_pointing_game": localisation,
    "iou": localisation, "relevance_rank": localisation, "relevance_mass": localisation,
    "localisation_auc": localisation, "lesion_focus": spread,
    "model_randomisation": model_randomisation, "data_randomisation": data_randomisation,
    "perturbation_stability": stability, "equivariance": stability, "max_sensitivity": stability,
    "deletion": deletion, "checkpoint_consistency": checkpoint_consistency,
    "artifact_removal": artifact_counterfactual, "artifact_addition": artifact_counterfactual,
    "artifact_effect": artifact_counterfactual,
    "decorrelated_auroc_drop": artifact_counterfactual, "artifact_attribution": artifact_attribution,
    "outside_anatomy_attribution": outside_anatomy, "spray_clusters": outside_anatomy,
    "offanatomy_occlusion": occlusion, "context_swap": context_swap,
}
SUITE = load_suite(os.path.join(os.path.dirname(__file__), "..", "suites", "pneumothorax.yaml"))
GATES = [c for c in SUITE.checks if c.condition.severity == "fail"]


def test_every_gated_check_of_the_shipped_suite_has_a_case():
    missing = sorted({c.check for c in GATES} - set(CASES))
    assert not missing, f"gated checks without a must-fail / must-pass case: {missing}"


@pytest.mark.parametrize("kind", ["pass", "fail"])
@pytest.mark.parametrize("gate", GATES, ids=[c.id for c in GATES])
def test_gate_fails_on_its_defect_and_passes_without_it(gate, kind):
    ctx, explainer = CASES[gate.check](kind, gate)
    condition, params, _ = gate.for_model("handmade", "handmade", "cpu")
    params = {**params, "n_boot": N_BOOT}
    if "n_images" in params:
        params["n_images"] = min(params["n_images"], 32)
    result = evaluate(gate.check, ctx, explainer, require=str(condition), **params)
    expected = "pass" if kind == "pass" else "fail"
    assert result.verdict.value == expected, f"{gate.id} ({kind} case): {result.message}"


def test_artifact_effect_is_the_paired_difference_over_every_image():
    """The effect is the mean of P(with) - P(without) over every image of the split, renders made here."""
    from harness.checks import measure
    from harness.explain.context import predict_probs

    shortcuts = {"chest_drain": {"p_pos": 0.95, "p_neg": 0.05}}
    ctx = context(ThinBright(), shortcuts=shortcuts)
    data = ctx.dataset("test")
    with_it = ctx.dataset("test", shortcuts={"chest_drain": {"p_pos": 1.0, "p_neg": 1.0}})
    without = ctx.dataset("test", shortcuts={})
    expected = (predict_probs(ctx.model, with_it.as_float(), 64) - predict_probs(ctx.model, without.as_float(), 64))
    got = measure("artifact_effect", ctx, None, n_boot=50)
    assert got.n == len(data)  # every image, not only the carriers
    assert got.value == pytest.approx(float(expected.mean()), rel=1e-6)
    assert got.value > 0.3 and got.ci_low <= got.value <= got.ci_high
    removal = measure("artifact_removal", ctx, None, n_boot=50)
    assert removal.n == int(data.has_artifact("chest_drain").sum()) < got.n
    flat = measure("artifact_effect", context(Constant(), shortcuts=shortcuts), None, n_boot=50)
    assert flat.value == flat.ci_low == flat.ci_high == 0.0


class ThinBrightOnOneFinding(nn.Module):
    """Multi-label (4 findings of synth-cxr14): pneumothorax (index 3) reads thin bright structures like
    :class:`ThinBright`; the other findings are constant. A drain shortcut on one finding."""

    img_size, num_classes, multilabel = 64, 4, True

    def __init__(self) -> None:
        super().__init__()
        self.bright = ThinBright()

    def forward(self, x):
        logit = self.bright(x)[:, 1]
        constant = torch.full_like(logit, -1.0)
        return torch.stack([constant, constant, constant, logit], 1)


@pytest.mark.parametrize("check", ["artifact_effect", "artifact_removal", "artifact_addition"])
def test_counterfactual_checks_read_the_checked_finding_of_a_multilabel_model(check):
    """Multi-label: the counterfactual is scored on the finding the item names, not on every finding at once."""
    from harness.checks import measure
    from harness.checks.runner import finding_context
    from harness.checks.registry import get_check

    shortcuts = {"chest_drain": {"on": "pneumothorax", "p_pos": 0.95, "p_neg": 0.05}}
    ctx = context(ThinBrightOnOneFinding(), dataset="synth-cxr14", options={"n_patients": 120},
                  shortcuts=shortcuts)
    values = {}
    for finding in ("pneumothorax", "nodule"):
        sub, params = finding_context(ctx, get_check(check), {"finding": finding, "n_boot": 30})
        m = measure(check, sub, None, **params)
        assert m.n > 0 and m.value == m.value  # a number, not a broadcast [N,K] mix
        values[finding] = m.value
    assert values["nodule"] == pytest.approx(0.0, abs=1e-6)  # the drain moves nothing there
    assert values["pneumothorax"] > 0.1
