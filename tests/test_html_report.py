"""The HTML report (index.html), `xai-harness report` (re-render, merge, CSV/Parquet export) and the results schema."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.checks.result import CheckResult, Verdict
from harness.cli import main
from harness.report import Overlay, load_run, overlay_figure, start_run
from harness.report.export import COLUMNS, per_image_frame
from harness.report.html import load_runs
from harness.report.html_figures import roc_points
from harness.report.results_file import SCHEMA_VERSION, ResultsSchemaError
from harness.session import outcome_cases

MEAN_SAMPLES = {"kind": "mean", "split": "test", "dataset": "synth-cxr#abc", "image_index": [0, 2, 5],
                "patient": [10, 10, 11], "values": [0.5, 0.25, None]}
SCORES = [0.9, 0.8, 0.7, 0.6, 0.55, 0.2]
LABELS = [1, 1, 0, 1, 0, 0]
STAT_SAMPLES = {"kind": "statistic", "statistic": "auroc", "options": {}, "split": "test", "dataset": "synth-cxr#abc",
                "image_index": list(range(6)), "patient": [1, 1, 2, 3, 4, 4], "image_id": [f"img{i}" for i in range(6)],
                "scores": SCORES, "labels": LABELS}


def result(model: str, check: str, verdict: Verdict, **changes) -> CheckResult:
    fields = dict(suite="smoke", model=model, architecture="resnet18", explainer="gradcam", check=check,
                  category="localisation", metric=check, value=0.42, ci_low=0.31, ci_high=0.53, threshold=0.10,
                  direction=">=", verdict=verdict, n=3, n_patients=2, seed=0, gate_on="ci_low",
                  message=f"{check} sentence")
    fields.update(changes)
    return CheckResult(**fields)


def records(model: str) -> list[CheckResult]:
    curve = [["head", 0.8], ["layer4", 0.5], ["layer3", 0.1]]
    return [
        result(model, "pointing_game", Verdict.PASS, details={"samples": MEAN_SAMPLES}),
        result(model, "diffgradcam", Verdict.FAIL, value=0.01, ci_low=-0.02, ci_high=0.04),
        result(model, "relevance_rank", Verdict.SKIP, value=float("nan"), ci_low=float("nan"),
               ci_high=float("nan"), message="no lesion"),
        result(model, "pointing_game", Verdict.BEHAVED, explainer="random", role="control", value=0.02),
        result(model, "ehr_auc", Verdict.WARN, role="reported", gate_on="value", value=0.05),
        result(model, "model_randomisation", Verdict.PASS, category="randomisation", direction="<=", threshold=0.5,
               gate_on="ci_high", details={"curve": curve, "order": "cascading", "similarity": "spearman"}),
        result(model, "model_randomisation", Verdict.UNINFORMATIVE, explainer="random", role="control",
               category="randomisation", direction="<=", threshold=0.5,
               details={"curve": [[n, 0.0] for n, _ in curve]}),
        result(model, "perturbation_stability", Verdict.PASS, category="stability",
               details={"perturbation": "gaussian_noise(sigma=0.02)"}),
        result(model, "auroc", Verdict.PASS, explainer="-", category="performance", value=0.833, ci_low=0.5,
               ci_high=1.0, threshold=0.7, details={"samples": STAT_SAMPLES, "split": "test"}),
        result(model, "spray_clusters", Verdict.PASS, category="shortcut", direction="<=", threshold=0.3,
               details={"clusters": [{"cluster": 0, "size": 4, "outside_lungs_density": 2.5, "flagged": True,
                                      "artifact_shares": {"chest_drain": 0.4}, "prototypes": [1, 3]}]}),
    ]


def overlay(model: str, explainer: str = "gradcam") -> Overlay:
    rng = np.random.default_rng(0)
    masks = np.zeros((2, 24, 24), bool)
    masks[:, 8:14, 8:14] = True
    return Overlay(model=model, explainer=explainer, images=rng.random((2, 1, 24, 24)), maps01=rng.random((2, 24, 24)),
                   lesion_masks=masks, labels=[1, 0], scores=[0.9, 0.7], title=f"{model} cases",
                   captions=["true positive, p=0.90", "false positive, p=0.70"])


def make_run(report_dir: Path, run_id: str, model: str) -> Path:
    with start_run(report_dir, run_id=run_id, meta={"models": [model]}) as run:
        for r in records(model):
            run.add(r)
        run.add_skip(f"suites/x.yaml::relevance_rank[{model}-gradcam]", "no lesion", model=model)
        run.add_overlay(overlay(model))
        run.add_overlay(overlay(model, "gradcam-class-average"))
    return report_dir / run_id


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("reports")
    return make_run(root, "run-a", "resnet18"), make_run(root, "run-b", "densenet121")


def test_finish_writes_index_html_with_the_verdict_matrix(two_runs):
    run_a, _ = two_runs
    page = (run_a / "index.html").read_text()
    assert (run_a.parent / "latest" / "index.html").exists()  # mirrored with the run
    cells = re.findall(r'<td class="cell v-(\w+) role-(\w+)" data-verdict="(\w+)"', page)
    assert len(cells) == len(records("resnet18"))
    assert {(v, role) for v, role, _ in cells} == {
        ("pass", "gate"), ("fail", "gate"), ("skip", "gate"), ("behaved", "control"), ("warn", "reported"),
        ("uninformative", "control")}
    fail_cell = re.search(r'<td class="cell v-fail[^>]*>([^<]*)</td>', page).group(1)
    assert fail_cell == "FAIL 0.01"  # the diffgradcam record, with its value


def test_index_html_is_self_contained(two_runs):
    page = (two_runs[0] / "index.html").read_text()
    assert not re.search(r"https?://", page), "no network resources or links"
    assert "<script src" not in page and "<link" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # two overlays, the randomisation curves, the stability points and the ROC curve
    assert len(images) == 5
    import base64

    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)


def test_index_html_says_what_each_part_shows(two_runs):
    page = (two_runs[0] / "index.html").read_text()
    assert "the lower 95% CI bound of diffgradcam at least 0.1" in page  # the condition in words
    assert "[-0.02, 0.04]" in page  # the CI
    assert "Class-averaged maps over the positives" in page and "true positives, false negatives" in page
    assert "resnet18: model randomisation, similarity of maps vs randomised layer" in page
    assert "FLAGGED" in page and "chest_drain 0.4" in page  # the shortcut scan's cluster
    assert "Skipped items (1)" in page


def test_report_command_merges_two_runs_and_exports(two_runs, tmp_path, capsys):
    out = tmp_path / "merged"
    assert main(["report", str(two_runs[0]), str(two_runs[1]), "--out", str(out), "--csv", "--parquet"]) == 0
    page = (out / "index.html").read_text()
    assert "resnet18 (run-a)" in page and "densenet121 (run-b)" in page
    assert len(re.findall(r'data-verdict="', page)) == 2 * len(records("resnet18"))
    csv = pd.read_csv(out / "per_image.csv")
    assert list(csv.columns) == list(COLUMNS)
    assert len(csv) == 2 * (3 + 6)  # per run: three localisation values and six scores
    pointing = csv[(csv.run == "run-b") & (csv.check == "pointing_game")]
    assert pointing.image_index.tolist() == [0, 2, 5] and pointing.patient.tolist() == [10, 10, 11]
    assert pointing.value.iloc[:2].tolist() == [0.5, 0.25] and np.isnan(pointing.value.iloc[2])
    scores = csv[(csv.run == "run-a") & (csv.check == "auroc")]
    assert scores.quantity.unique().tolist() == ["score"] and scores.value.tolist() == SCORES
    assert scores.label.tolist() == LABELS and scores.image_id.tolist() == [f"img{i}" for i in range(6)]
    parquet = pd.read_parquet(out / "per_image.parquet")
    pd.testing.assert_series_equal(parquet.value, csv.value, check_names=False)
    assert str(out / "index.html") in capsys.readouterr().out


def test_report_command_rerenders_one_run_in_place(two_runs, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(two_runs[0], run)
    (run / "index.html").unlink()
    assert main(["report", str(run / "results.json")]) == 0
    assert 'data-verdict="fail"' in (run / "index.html").read_text()


def test_per_image_frame_reads_older_per_image_details():
    document = {"run_id": "old", "records": [result("m", "iou", Verdict.PASS, details={
        "per_image": [0.1, 0.2], "image_index": [4, 7], "split": "test"}).to_dict()]}
    frame = per_image_frame([(None, document)])
    assert frame.image_index.tolist() == [4, 7] and frame.value.tolist() == [0.1, 0.2]
    assert frame.patient.isna().all()


def test_results_json_carries_the_schema_and_newer_ones_are_refused(two_runs, tmp_path, capsys):
    document = json.loads((two_runs[0] / "results.json").read_text())
    assert document["schema"] == SCHEMA_VERSION
    legacy = {k: v for k, v in document.items() if k != "schema"}
    (tmp_path / "legacy.json").write_text(json.dumps(legacy))
    assert load_run(tmp_path / "legacy.json")["records"]  # written before schemas existed: read
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "results.json").write_text(json.dumps({**document, "schema": SCHEMA_VERSION + 1}))
    with pytest.raises(ResultsSchemaError, match="upgrade xai-harness"):
        load_run(newer)
    assert main(["report", str(newer)]) == 1
    assert "newer than this xai-harness reads" in capsys.readouterr().err
    (newer / "results.json").write_text(json.dumps({**document, "schema": "one"}))
    with pytest.raises(ResultsSchemaError, match="non-negative integer"):
        load_runs([newer])


def test_roc_points_match_sklearn():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(1)
    scores = np.round(rng.random(50), 1)  # ties
    labels = (rng.random(50) < 0.4).astype(int)
    fpr, tpr = roc_points(scores.tolist(), labels.tolist())
    ref_fpr, ref_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    assert roc_points([0.1, 0.2], [1, 1]) is None  # one class: no curve


def test_outcome_cases_take_each_group_in_turn():
    labels = torch.tensor([1, 1, 1, 1, 0, 0, 0, 1])
    predicted = torch.tensor([1, 0, 1, 1, 1, 0, 1, 1]).bool()
    assert outcome_cases(labels, predicted, 6) == [
        (0, "true positives"), (2, "true positives"), (3, "true positives"), (1, "false negatives"),
        (4, "false positives"), (6, "false positives")]
    assert outcome_cases(torch.zeros(3), torch.zeros(3).bool(), 6) == []


def test_overlay_captions_say_what_each_panel_shows():
    fig = overlay_figure(overlay("m"))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["true positive, p=0.90", "false positive, p=0.70"]


def not_blank(png: Path) -> tuple[bool, str]:
    """A screenshot shows something: pixel spread above a floor and several distinct colours."""
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB"))
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    return bool(pixels.std() > 10 and colours >= 8), f"pixel std {pixels.std():.1f}, {colours} colours"


def test_blank_screenshots_are_told_apart(tmp_path):
    from PIL import Image

    Image.new("RGB", (120, 90), "white").save(tmp_path / "blank.png")
    assert not not_blank(tmp_path / "blank.png")[0]


def test_headless_chromium_renders_the_report(two_runs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs Debian's chromium where apt-get is usable)")
    shot = tmp_path / "shot.png"
    try:
        done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                               "--window-size=1200,900", (two_runs[0] / "index.html").resolve().as_uri()],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"chromium could not start: {err}")
    if not shot.exists():
        pytest.skip(f"chromium could not start (exit {done.returncode}): {done.stderr[-300:]}")
    ok, why = not_blank(shot)
    assert ok, f"the rendered report looks blank: {why}"


def test_parquet_without_pyarrow_says_how_to_fix_it(tmp_path, monkeypatch):
    import importlib.util

    from harness.report.export import ExportError, write_exports

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with pytest.raises(ExportError, match="pip install pyarrow"):
        write_exports(pd.DataFrame({"value": [1.0]}), tmp_path, parquet=True)


def test_a_recorded_baseline_comparison_is_shown(two_runs):
    from harness.report.html import render_html

    run_dir, document = load_runs([two_runs[0]])[0]
    entry = {"check": "diffgradcam", "model": "resnet18", "candidate": 0.2, "baseline": 0.3, "delta": -0.1,
             "verdict": "regressed", "baseline_run": "run-0"}
    page = render_html([(run_dir, {**document, "baseline": [entry]})])
    assert "Compared with a baseline run" in page and 'class="badge v-fail">REGRESSED' in page
    assert "Compared with a baseline run" not in render_html([(run_dir, document)])
