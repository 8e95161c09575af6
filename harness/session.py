"""HarnessSession: the work behind the pytest plugin (and usable from scripts and notebooks).

It resolves model names to trained models through a ``ModelProvider`` (training on first use),
keeps one ModelContext per model so predictions and explanations are computed once and shared by
all checks, runs checks, and renders heatmap overlays for the report.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from harness.explain.context import ModelContext
from harness.checks.result import CheckResult, Verdict
from harness.checks.runner import error_result, run_check
from harness.checks.registry import get_check
from harness.suites import Suite, SuiteCheck

log = logging.getLogger(__name__)
N_OVERLAY_CASES = 6
#: Errors whose message says all there is to say (no traceback needed to understand them).
EXPLAINED_ERRORS = ("CheckpointError", "ZooError", "UnknownNameError", "ProfileUnavailableError",
                    "TrainingDivergedError", "PretrainedError", "FileNotFoundError", "PermissionError")


class ModelUnavailable(Exception):
    """A model that cannot be loaded or trained: one error with its cause, then every item of the
    model is an error naming that cause, without retrying the load."""

    def __init__(self, model: str, cause: BaseException, first: bool = True) -> None:
        super().__init__(f"model {model!r} cannot be loaded: {type(cause).__name__}: {cause}")
        self.model, self.cause, self.first = model, cause, first

    @property
    def explained(self) -> bool:
        """Whether the cause's message is enough (a harness error), or its traceback is needed (a bug)."""
        return any(c.__name__ in EXPLAINED_ERRORS for c in type(self.cause).__mro__)


#: Overlay case groups, in the order they are drawn.
OUTCOMES = ("true positives", "false negatives", "false positives")


def outcome_cases(labels: torch.Tensor, predicted: torch.Tensor, k: int) -> list[tuple[int, str]]:
    """Up to ``k`` ``(image index, outcome)``: the first images of each group in :data:`OUTCOMES`, a fair
    share each (``k // 3``), the rest filled from the groups in order; empty when no group has an image."""
    positive = labels == 1
    groups = [torch.nonzero(mask).flatten().tolist()
              for mask in (positive & predicted, positive & ~predicted, ~positive & predicted)]
    share = max(1, k // len(groups))
    taken = [g[:share] for g in groups]
    for g, group in enumerate(groups):
        room = k - sum(map(len, taken))
        taken[g] += group[len(taken[g]):len(taken[g]) + max(0, room)]
    return [(i, outcome) for outcome, group in zip(OUTCOMES, taken) for i in group][:k]


def shown_explainer(ctx: ModelContext, explainer: str) -> str:
    """An overlay's explainer label: ``gradcam[nodule]`` when a multi-label model is checked on a finding."""
    return f"{explainer}[{ctx.finding}]" if ctx.multilabel and ctx.finding else explainer


def dataset_entry(value: str | None) -> dict | None:
    """``--dataset NAME|PATH.yaml`` as a manifest's ``dataset`` entry (None: each model's own dataset)."""
    if not value:
        return None
    from harness.data.generic import dataset_choice

    return dataset_choice(value)


def _architecture_of(model: str) -> str:
    """The zoo architecture of ``model`` where the zoo knows it, else "-" (e.g. an unreadable checkpoint)."""
    from harness.models.zoo import ZooError, list_zoo

    try:
        return next((e.architecture for e in list_zoo() if e.name == model), "-")
    except ZooError:
        return "-"


class HarnessSession:
    """Shared state of one run: model contexts, the run directory, overlays already drawn."""

    def __init__(self, *, profile: str | None = None, checkpoint: str | None = None,
                 checkpoint_dir: str | None = None, max_images: int | None = None,
                 finding: str | None = None, seed: int = 0, twins: dict[str, str | None] | None = None,
                 dataset: str | None = None) -> None:
        """``twins``: the ``--checkpoint`` model's twin checkpoints by kind (``previous``, ``seed``,
        ``shuffled``; see ``harness.models.provision.TWIN_KINDS``)."""
        from harness.models import CheckpointStore, ModelProvider

        self.provider = ModelProvider(profile=profile, store=CheckpointStore(checkpoint_dir))
        self.profile = self.provider.profile
        self.store = self.provider.store
        self.device = self.provider.device
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.twins = dict(twins or {})
        self.dataset_override = dataset_entry(dataset)  # --dataset: what every model is checked on (None: its own)
        self.max_images = max_images
        self.finding = finding
        self.seed = seed
        self._contexts: dict[str, ModelContext] = {}
        self._overlays: set[tuple[str, str]] = set()
        self.new_overlays: list = []  # Overlay values not yet handed to the report writer
        self.unavailable: dict[str, BaseException] = {}  # model -> why it could not be loaded

    @property
    def checkpoint_name(self) -> str:
        """The model name under which ``--checkpoint`` is reported."""
        return f"checkpoint:{self.checkpoint.stem}" if self.checkpoint else ""

    def context(self, model: str, suite: Suite | None = None) -> ModelContext:
        """The ModelContext of ``model`` (a zoo name or the checkpoint name), loaded once.

        Raises:
            ModelUnavailable: the model cannot be loaded (or trained). The first call says why
                (``first=True``); later calls raise at once with the same cause, never retrying.
        """
        if model in self.unavailable:
            raise ModelUnavailable(model, self.unavailable[model], first=False)
        if model not in self._contexts:
            max_images = self.max_images if self.max_images is not None else (suite.max_images if suite else None)
            try:
                self._contexts[model] = self._load(model, max_images)
            except Exception as err:  # noqa: BLE001  (one error per model, reported once with its cause)
                self.unavailable[model] = err
                raise ModelUnavailable(model, err, first=True) from err
        return self._contexts[model]

    def unavailable_result(self, suite: Suite, check: SuiteCheck, model: str, explainer: str | None) -> CheckResult:
        """The record of an item whose model could not be loaded: verdict ``error``, the cause, no traceback."""
        from harness.explain import EXPLAINERS

        condition = check.condition
        control = bool(explainer) and bool(EXPLAINERS.meta(explainer).get("is_control"))
        role = "control" if control else ("reported" if condition.severity == "warn" else "gate")
        return CheckResult(suite=suite.name, model=model, architecture=_architecture_of(model), explainer=explainer or "-",
                           check=check.id, category=get_check(check.check).category, metric=check.check,
                           value=float("nan"), ci_low=float("nan"), ci_high=float("nan"),
                           threshold=condition.threshold, direction=condition.direction, gate_on=condition.gate_on,
                           verdict=Verdict.ERROR, n=0, seed=0, message=str(ModelUnavailable(model, self.unavailable[model])),
                           details={"model_unavailable": True}, role=role)

    def add_context(self, ctx: ModelContext) -> None:
        """Use ``ctx`` for model ``ctx.name`` (e.g. a model built in a notebook or a benchmark)."""
        self._contexts[ctx.name] = ctx

    def _load(self, model: str, max_images: int | None) -> ModelContext:
        if self.checkpoint and model == self.checkpoint_name:
            subject = self.provider.external(self.checkpoint, name=model, twins=self.twins)
        else:
            subject = self.provider.resolve(model)
        manifest = subject.manifest
        if self.dataset_override is not None:  # --dataset replaces the model's own data
            manifest = {**manifest, "dataset": self.dataset_override}
        return ModelContext(model, subject.model, manifest, self.provider.twins(subject), max_images,
                            finding=self.finding, seed=self.seed)

    def run_item(self, suite: Suite, check: SuiteCheck, model: str, explainer: str | None) -> CheckResult:
        """Run one collected item; exceptions become verdict ``error`` with the exception text."""
        ctx = self.context(model, suite)
        condition, params, skip = check.for_model(model, ctx.architecture, str(ctx.manifest.get("profile", "")),
                                                   ctx.family)
        if skip:
            return CheckResult(suite=suite.name, model=model, architecture=ctx.architecture,
                               explainer=explainer or "-", check=check.id, category=get_check(check.check).category,
                               metric=check.check, value=float("nan"), ci_low=float("nan"), ci_high=float("nan"),
                               threshold=condition.threshold, direction=condition.direction, gate_on=condition.gate_on,
                               verdict=Verdict.SKIP, n=0, seed=0, message=f"skipped for {model} by the suite's overrides")
        try:
            result = run_check(ctx, suite=suite.name, check_id=check.id, check=check.check, explainer=explainer,
                               params=params, condition=condition)
        except Exception as err:  # noqa: BLE001  (reported as an error record, with the traceback logged)
            log.exception("check %s on %s failed", check.id, model)
            return error_result(suite=suite.name, model=model, architecture=ctx.architecture, explainer=explainer,
                                check_id=check.id, category=get_check(check.check).category,
                                condition=condition, error=err)
        try:  # an overlay that cannot be drawn (degenerate data) must never lose the measured result
            view = ctx.for_finding(params["finding"]) if "finding" in params and ctx.multilabel else ctx
            if explainer and result.category == "localisation":
                self.draw_overlay(view, explainer)  # per finding where the item names one
            if explainer and "clusters" in result.details:
                self.draw_cluster_prototypes(view, explainer, result.details["clusters"], result.details["split"])
        except Exception:  # noqa: BLE001
            log.warning("could not draw the overlays of %s with %s", model, explainer, exc_info=True)
        return result

    def draw_overlay(self, ctx: ModelContext, explainer: str, split: str = "test") -> None:
        """Queue heatmap overlays of the first true positives, false negatives and false positives (at
        probability 0.5) and the class-averaged maps, once per model and explainer."""
        key = (ctx.name, shown_explainer(ctx, explainer))
        if key in self._overlays:
            return
        self._overlays.add(key)
        cases = outcome_cases(ctx.labels(split), ctx.scores(split) >= 0.5, N_OVERLAY_CASES)
        if not cases:  # no positive and no false positive (e.g. --max-images 1): nothing to draw
            log.warning("no overlay of %s with %s: split %r has no positive case", ctx.name, explainer, split)
            return
        idx = torch.tensor([i for i, _ in cases])
        scores = ctx.scores(split)[idx].tolist()
        captions = [f"{outcome[:-1]}, p={score:.2f}" for (_, outcome), score in zip(cases, scores)]
        counts = {o: sum(c == o for _, c in cases) for o in OUTCOMES if any(c == o for _, c in cases)}
        shown = ", ".join(f"{n} {o}" for o, n in counts.items())
        self.new_overlays.append(self._overlay(ctx, explainer, split, idx, shown_explainer(ctx, explainer),
                                               f"{ctx.name} ({ctx.architecture}), {shown_explainer(ctx, explainer)}, "
                                               f"{split}: {shown}",
                                               captions=captions))
        if not bool((ctx.labels(split) == 1).any()):
            return
        self.new_overlays.append(self._class_average(ctx, explainer, split))

    def _class_average(self, ctx: ModelContext, explainer: str, split: str):
        """Seed 001's class-averaged view: mean and std of the [0,1] maps over every positive image,
        over the mean image, with the outline of where lesions occur in at least 10% of them."""
        from harness.metrics import class_mean_maps
        from harness.report import Overlay

        positive = ctx.labels(split) == 1
        summary = class_mean_maps(ctx.unit_maps(explainer, split)[positive], torch.zeros(int(positive.sum()),
                                  dtype=torch.long), num_classes=1)
        mean_image = ctx.dataset(split).as_float()[positive].mean(0)
        lesion_rate = ctx.lesion_masks(split)[positive].float().mean(0) >= 0.1
        scaled = [m / m.max().clamp_min(1e-12) for m in (summary.mean[0], summary.std[0])]  # display only
        n = int(positive.sum())
        label = shown_explainer(ctx, explainer)
        return Overlay(model=ctx.name, explainer=f"{label}-class-average", images=mean_image.expand(2, -1, -1, -1),
                       maps01=torch.stack(scaled).float(), lesion_masks=lesion_rate.expand(2, -1, -1, -1),
                       labels=["mean map", "std map"], scores=[float(n)] * 2,
                       captions=[f"mean {explainer}, positives (n={n})", f"std of {explainer}, positives (n={n})"],
                       title=f"{ctx.name}, {label}: mean and std over {int(positive.sum())} positives")

    def draw_cluster_prototypes(self, ctx: ModelContext, explainer: str, clusters: list[dict], split: str) -> None:
        """Queue one overlay of prototype members per SpRAy cluster (flagged clusters say so in the title)."""
        for c in clusters:
            flag = "FLAGGED: heat outside the lungs" if c["flagged"] else "anatomy"
            title = (f"{ctx.name}, {explainer}, SpRAy cluster {c['cluster']} ({c['size']} images; {flag}, "
                     f"outside-lung density {c['outside_lungs_density']:.2f}x uniform)")
            self.new_overlays.append(self._overlay(ctx, explainer, split, torch.tensor(c["prototypes"]),
                                                   f"{explainer}-spray{c['cluster']}", title))

    def _overlay(self, ctx: ModelContext, explainer: str, split: str, idx: torch.Tensor, label: str, title: str,
                 captions: list[str] | None = None):
        from harness.report import Overlay

        data = ctx.dataset(split)
        lesions = ctx.lesion_masks(split)[idx]
        artifacts = torch.zeros_like(lesions)
        for mask in data.artifact_masks.values():
            artifacts |= mask[idx]
        return Overlay(model=ctx.name, explainer=label, images=data.as_float()[idx],
                       maps01=ctx.unit_maps(explainer, split)[idx], lesion_masks=lesions, artifact_masks=artifacts,
                       labels=ctx.labels(split)[idx], scores=ctx.scores(split)[idx], title=title, captions=captions)
