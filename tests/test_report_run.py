"""The report run: results.json (incremental, atomic, NaN-free), summary.md and reports/latest/."""

from __future__ import annotations

import json
import math
import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from harness.checks.result import CheckResult, Verdict
from harness.report import (
    Overlay,
    atomic_write_json,
    load_results,
    load_run,
    mirror_latest,
    new_run_id,
    render_summary,
    start_run,
)


def make_result(model: str = "resnet18", verdict: Verdict = Verdict.PASS, **changes) -> CheckResult:
    fields = dict(
        suite="smoke", model=model, architecture="resnet18", explainer="gradcam",
        check="pointing_game", category="localisation", metric="pointing_game",
        value=0.42, ci_low=0.31, ci_high=0.53, threshold=0.10, direction=">=",
        verdict=verdict, n=64, seed=0, gate_on="ci_low",
        message="gradcam pointing game CI lower bound 0.31 >= 0.10",
    )
    fields.update(changes)
    return CheckResult(**fields)


FAILING = make_result(
    model="vit_small", architecture="vit_small_patch16_224", verdict=Verdict.FAIL,
    value=0.05, ci_low=0.01, ci_high=0.09,
    message="gradcam pointing game CI lower bound 0.01 < 0.10 | see overlay",
)
SKIPPED = make_result(
    model="vit_small", architecture="vit_small_patch16_224", verdict=Verdict.SKIP,
    check="randomisation_ssim", category="randomisation", metric="ssim",
    value=math.nan, ci_low=math.nan, ci_high=math.nan, threshold=math.nan,
    message="no checkpoint", details={"ratio": math.inf, "array": np.array([0.5, np.nan])},
)
RESULTS = [make_result(), FAILING, SKIPPED]


def small_overlay(model: str = "resnet18") -> Overlay:
    rng = np.random.default_rng(0)
    masks = np.zeros((2, 24, 24), bool)
    masks[:, 8:14, 8:14] = True
    return Overlay(
        model=model, explainer="gradcam", images=rng.random((2, 1, 24, 24)),
        maps01=rng.random((2, 24, 24)), lesion_masks=masks, labels=[1, 0], scores=[0.9, 0.2],
    )


def write_run(report_dir: Path, run_id: str, results=RESULTS, overlay: bool = True) -> Path:
    run = start_run(report_dir, run_id=run_id, meta={"models": ["resnet18", "vit_small"]})
    for result in results:
        run.add(result)
    if overlay:
        run.add_overlay(small_overlay())
    return run.finish()


def test_results_json_round_trip_with_nan_as_null(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "run-a", overlay=False)
    text = (run_dir / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    document = json.loads(text)
    assert document["run_id"] == "run-a" and document["complete"] is True
    assert document["meta"]["models"] == ["resnet18", "vit_small"]
    assert {"python", "torch", "command", "device"} <= document["meta"].keys()
    records = load_results(run_dir)
    assert records == load_results(run_dir / "results.json")
    assert [r["verdict"] for r in records] == ["pass", "fail", "skip"]
    assert records[0] == RESULTS[0].to_dict()
    skipped = records[2]
    assert skipped["value"] is None and skipped["ci_low"] is None and skipped["threshold"] is None
    assert skipped["details"] == {"ratio": None, "array": [0.5, None]}


def test_results_are_written_as_they_arrive(tmp_path: Path) -> None:
    run = start_run(tmp_path, run_id="partial", meta={})
    assert load_run(run.run_dir)["records"] == []
    run.add(RESULTS[0])
    run.add(FAILING.to_dict())  # the dict form, as sent back by an xdist worker, works too
    document = load_run(run.results_path)  # the run "crashed" here: no finish()
    assert document["complete"] is False
    assert [r["model"] for r in document["records"]] == ["resnet18", "vit_small"]
    assert not (tmp_path / "latest").exists()


def test_failed_replace_leaves_previous_results_intact(tmp_path: Path, monkeypatch) -> None:
    run = start_run(tmp_path, run_id="atomic", meta={})
    run.add(RESULTS[0])
    before = run.results_path.read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        run.add(FAILING)
    monkeypatch.undo()
    assert run.results_path.read_text() == before
    assert len(json.loads(before)["records"]) == 1
    assert [p.name for p in run.run_dir.iterdir()] == ["results.json"]  # no temp file left


class Unprintable:
    def __str__(self) -> str:
        raise TypeError("cannot serialise")


def test_atomic_write_keeps_the_old_file_when_serialising_fails(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": Unprintable()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_summary_has_model_sections_failures_and_overlays(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "run-s")
    summary = (run_dir / "summary.md").read_text()
    assert "## Model `resnet18`" in summary
    assert "## Model `vit_small` (architecture `vit_small_patch16_224`)" in summary
    assert "| `pointing_game` | localisation | gradcam | pointing_game | 0.05 | [0.01, 0.09] " in summary
    assert ">= 0.10 on ci_low | **FAIL** |" in summary
    failure = "- **FAIL** `pointing_game` with gradcam: gradcam pointing game CI lower bound 0.01 < 0.10"
    assert failure + " | see overlay" in summary
    assert "| gates | PASS | 1 |\n| gates | **FAIL** | 1 |\n| gates | SKIP | 1 |" in summary
    assert "gates: 1 pass, 1 fail, 1 skip." in summary
    assert "![resnet18 / gradcam](overlays/resnet18__gradcam.png)" in summary
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", summary):
        assert (run_dir / link).is_file()


def test_summary_marks_incomplete_runs() -> None:
    document = {"run_id": "x", "created": "now", "complete": False, "meta": {}, "records": []}
    text = render_summary(document)
    assert "**INCOMPLETE**" in text and "0 of 0 items" in text


def test_latest_mirrors_the_run_and_the_next_run_replaces_it(tmp_path: Path) -> None:
    first = write_run(tmp_path, "run-1")
    latest = tmp_path / "latest"
    assert load_run(latest)["run_id"] == "run-1"
    assert sorted(p.relative_to(latest) for p in latest.rglob("*")) == sorted(
        p.relative_to(first) for p in first.rglob("*")
    )
    write_run(tmp_path, "run-2", results=[RESULTS[0]], overlay=False)
    assert load_run(latest)["run_id"] == "run-2"
    assert not (latest / "overlays").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run-1", "run-2"]


def test_figures_are_saved_and_linked(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [0, 1])
    run = start_run(tmp_path, run_id="fig", meta={})
    run.add(RESULTS[0])
    path = run.add_figure("roc curve", figure, model="resnet18")
    again = run.add_figure("roc curve", figure)
    summary = (run.finish(update_latest=False) / "summary.md").read_text()
    assert path.name == "roc-curve.png" and again.name == "roc-curve-2.png"
    assert "![roc curve](figures/roc-curve.png)" in summary
    assert "## Figures\n\n![roc curve](figures/roc-curve-2.png)" in summary
    with pytest.raises(RuntimeError):
        run.add(RESULTS[0])


def test_context_manager_marks_aborted_runs_incomplete(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        with start_run(tmp_path, run_id="aborted", meta={}) as run:
            run.add(RESULTS[0])
            raise KeyError("boom")
    assert load_run(tmp_path / "aborted")["complete"] is False
    assert "**INCOMPLETE**" in (tmp_path / "aborted" / "summary.md").read_text()
    assert not (tmp_path / "latest").exists()  # an aborted run never becomes latest


def test_incomplete_run_keeps_the_previous_latest_and_says_why(tmp_path: Path) -> None:
    write_run(tmp_path, "complete-1", overlay=False)
    run = start_run(tmp_path, run_id="stopped", meta={})
    run.add(RESULTS[0])
    run.finish(complete=False, session={"exit_status": 2, "items_collected": 72, "items_run": 5,
                                        "reason": "interrupted (Ctrl-C)"})
    assert load_run(tmp_path / "latest")["run_id"] == "complete-1"
    document = load_run(tmp_path / "stopped")
    assert document["complete"] is False and document["session"]["items_run"] == 5
    summary = (tmp_path / "stopped" / "summary.md").read_text()
    assert "**INCOMPLETE**: interrupted (Ctrl-C); 5 of 72 collected items ran" in summary
    assert "`reports/latest` was not updated" in summary
    assert "Result: **FAIL**" in summary and "pytest exit status 2" in summary  # no pass claimed


def test_skipped_items_are_listed_with_their_reasons(tmp_path: Path) -> None:
    run = start_run(tmp_path, run_id="skips", meta={})
    run.add(RESULTS[0])
    run.add_skip("suites/p.yaml::p[cxr14_model]", "suite 'p' applies to datasets synth-cxr; cxr14_model is trained "
                 "on synth-cxr14")
    assert load_run(run.run_dir)["skipped"][0]["item"] == "suites/p.yaml::p[cxr14_model]"  # on disk at once
    summary = (run.finish() / "summary.md").read_text()
    assert "## Skipped items (1)" in summary
    assert "- `suites/p.yaml::p[cxr14_model]`: suite 'p' applies to datasets synth-cxr; cxr14_model" in summary


def test_summary_of_an_older_document_lists_skip_records() -> None:
    document = {"run_id": "x", "created": "now", "meta": {}, "records": [SKIPPED.to_dict()]}
    text = render_summary(document)
    assert "## Skipped items (1)" in text and "- `randomisation_ssim [vit_small / gradcam]`: no checkpoint" in text


def test_run_ids_are_unique_and_validated(tmp_path: Path) -> None:
    now = datetime(2026, 5, 9, 7, 15, 2, tzinfo=timezone.utc)  # one second: only the suffix tells them apart
    ids = {new_run_id(now) for _ in range(5000)}
    assert len(ids) == 5000  # random 4-hex suffixes collided here in about 2% of runs of 50 ids
    assert all(re.fullmatch(r"\d{8}-\d{6}-\d+-[0-9a-f]{4}", i) for i in ids)
    run = start_run(tmp_path, meta={})
    assert re.fullmatch(r"\d{8}-\d{6}-.*", run.run_id) and run.run_dir.is_dir()
    for bad in ("latest", "../escape", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            start_run(tmp_path, run_id=bad, meta={})
    with pytest.raises(FileExistsError):
        start_run(tmp_path, run_id=run.run_id, meta={})


def test_parallel_mirrors_leave_one_complete_latest(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, f"par-{i}", results=[RESULTS[0]], overlay=False) for i in range(3)]

    def mirror_repeatedly(run_dir: Path) -> None:
        for _ in range(5):
            mirror_latest(run_dir)

    threads = [threading.Thread(target=mirror_repeatedly, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert load_run(tmp_path / "latest")["run_id"] in {"par-0", "par-1", "par-2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "par-0", "par-1", "par-2"]
