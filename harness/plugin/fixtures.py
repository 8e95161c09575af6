"""Fixtures for Python checks: ``xai_model`` (parametrised over ``--model``), ``model``, ``dataset``,
``explain``, ``check``, ``xai_session``; shared with the YAML suites (computed once per run)."""

from __future__ import annotations

import json

import pytest

from harness.plugin.items import dataset_mismatch, load_visibly, not_applicable, unavailable_text
from harness.plugin.keys import MODELS, RESULT_PROPERTY
from harness.plugin.options import session_of


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Python checks that take ``xai_model`` run once per ``--model`` (and ``--checkpoint``)."""
    if "xai_model" in metafunc.fixturenames:
        names = list(metafunc.config.stash[MODELS])
        if metafunc.config.getoption("checkpoint"):
            names.append(session_of(metafunc.config).checkpoint_name)
        metafunc.parametrize("xai_model", names, indirect=True,
                             ids=names or None)


@pytest.fixture
def xai_model(request: pytest.FixtureRequest):
    """The ModelContext of one model under test: ``.model``, ``.dataset(split)``, ``.probs(split)``,
    ``.maps(explainer, split)``, ``.unit_maps(...)``; loaded once per run and shared with the suites."""
    if not hasattr(request, "param"):
        pytest.skip("pass --model NAME (or --checkpoint PATH) to run checks that use xai_model")
    from harness.session import ModelUnavailable

    marker = request.node.get_closest_marker("xai_datasets")
    datasets, what = (tuple(marker.args) if marker else ()), f"check {request.node.originalname!r}"
    reason = not_applicable(what, datasets, request.param)
    if reason:
        pytest.skip(reason)
    try:
        ctx = load_visibly(request.config, request.param)
    except ModelUnavailable as err:
        unavailable = err
    else:
        reason = dataset_mismatch(what, datasets, ctx.name, ctx.manifest["dataset"]["name"])
        if reason:
            pytest.skip(reason)
        return ctx
    pytest.fail(unavailable_text(unavailable), pytrace=False)  # outside ``except``: no chained traceback


@pytest.fixture
def model(xai_model):
    """The model under test (``torch.nn.Module`` in eval mode, on the run's device)."""
    return xai_model.model


@pytest.fixture
def dataset(xai_model):
    """The model's test split as an ImageSet (images, labels, lesion/lung/artifact masks)."""
    return xai_model.dataset("test")


@pytest.fixture
def explain(xai_model):
    """``explain(explainer="gradcam", images=None, *, split="test", target=None, unit=False) -> maps [N,1,H,W]``.

    Without ``images`` and ``target``, the cached maps of the whole split (shared with the suites);
    with ``images`` (float [N,1,H,W] in [0,1]) or another ``target`` class, fresh maps. The default
    target is the checked class (the positive class, or ``--finding`` for multi-label models).
    """
    from harness.explain.context import explain_batched

    def explain_maps(explainer: str = "gradcam", images=None, *, split: str = "test", target: int | None = None,
                     unit: bool = False):
        method = xai_model.explainer(explainer)
        if images is None and target is None:
            maps = xai_model.maps(explainer, split)
        else:
            images = xai_model.images(split) if images is None else images
            target = xai_model.target_class if target is None else target
            maps = explain_batched(xai_model.model, method, images, xai_model.batch_size, target=target)
        return method.unit_view(maps) if unit else maps

    return explain_maps


@pytest.fixture
def check(request: pytest.FixtureRequest, xai_model):
    """``check(name, explainer=None, *, require, severity="fail", **params)``: run a registered check on the
    model under test, record it in the report and raise AssertionError on fail or error.

    Example: ``check("diffgradcam", "gradcam", require="ci_low >= 0.10")``.
    """
    from harness.checks.api import evaluate
    from harness.checks.result import Verdict

    # the file and the model's dataset: the report compares models within one dataset, as within a YAML suite
    suite = f"{request.node.path.name} [{xai_model.manifest['dataset']['name']}]"

    def run(name: str, explainer: str | None = None, *, require: str, severity: str = "fail", **params):
        result = evaluate(name, xai_model, explainer, require=require, severity=severity, suite=suite, **params)
        request.node.user_properties.append((RESULT_PROPERTY, json.dumps(result.to_dict())))
        if result.verdict in (Verdict.FAIL, Verdict.ERROR):
            raise AssertionError(f"{name} [{xai_model.name} / {explainer or '-'}]: {result.message}")
        return result

    return run


@pytest.fixture
def xai_session(request: pytest.FixtureRequest):
    """The HarnessSession of this run (model contexts, run directory)."""
    return session_of(request.config)
