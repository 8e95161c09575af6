"""The pytest plugin end to end on a toy zoo: collection, ids, verdicts, exit codes, reports, errors.

The toy model (``harness.models.testing``) trains in about a second, so these run in the default
test run; the real synth-cxr end-to-end runs are in ``test_end_to_end.py`` (marked slow).
"""

from __future__ import annotations

import json
import textwrap

import pytest

from harness.models.testing import TOY_ZOO, toy_project


SUITE = """\
suite: toy
defaults: {explainers: [gradcam], n_boot: 200, seed: 0}
checks:
  - id: performance_auroc
    check: auroc
    require: ci_low >= 0.6
  - id: localisation_diffgradcam
    check: diffgradcam
    explainers: [gradcam, random]
    require: ci_low >= 0.05
  - id: impossible_auroc
    check: auroc
    require: value >= 1.01
"""


@pytest.fixture
def toy(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path):
    toy_project(pytester, monkeypatch, tmp_path)
    (pytester.path / "suites").mkdir()
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # a subprocess: torch does not survive pytester's in-process module snapshot and restore
    return pytester.runpytest_subprocess("--report-dir", str(pytester.path / "reports"), *args)


def test_items_verdicts_exit_code_and_report(toy):
    (toy.path / "suites" / "toy.yaml").write_text(SUITE)
    result = _run(toy, "suites", "--model", "toy", "-v")
    result.assert_outcomes(passed=3, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the gate
    result.stdout.fnmatch_lines([
        "*performance_auroc?toy? PASSED*",
        "*localisation_diffgradcam?toy-gradcam? PASSED*",
        "*localisation_diffgradcam?toy-random? PASSED*",  # a control the condition rejects behaved
        "*impossible_auroc?toy? FAILED*",
        "*FAIL: impossible_auroc*",
        "*required: auroc at least 1.01*the condition does not hold*",
        "*xai-harness: verdicts per model and check*",
    ])
    document = json.loads((toy.path / "reports" / "latest" / "results.json").read_text())
    records = {(r["check"], r["explainer"]): r for r in document["records"]}
    assert records[("impossible_auroc", "-")]["verdict"] == "fail"
    control = records[("localisation_diffgradcam", "random")]
    assert control["message"].startswith("control behaved") and control["verdict"] == "behaved"
    assert control["role"] == "control" and records[("performance_auroc", "-")]["role"] == "gate"
    keys = {"suite", "model", "architecture", "explainer", "check", "category", "metric", "value", "ci_low",
            "ci_high", "threshold", "direction", "verdict", "n", "seed"}
    assert keys <= set(records[("performance_auroc", "-")])
    assert document["complete"] is True and document["session"] == {
        "exit_status": 1, "items_collected": 4, "items_run": 4, "reason": None}
    assert document["overlays"], "localisation checks draw heatmap overlays"
    summary = (toy.path / "reports" / "latest" / "summary.md").read_text()
    assert "impossible_auroc" in summary and "toy" in summary


def test_keyword_and_marker_selection(toy):
    (toy.path / "suites" / "toy.yaml").write_text(SUITE)
    _run(toy, "suites", "--model", "toy", "-k", "auroc and not impossible").assert_outcomes(passed=1, deselected=3)
    _run(toy, "suites", "--model", "toy", "-m", "localisation").assert_outcomes(passed=2, deselected=2)


def test_unknown_model_is_a_usage_error_listing_known_models(toy):
    (toy.path / "suites" / "toy.yaml").write_text(SUITE)
    result = _run(toy, "suites", "--model", "nosuchmodel")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown model 'nosuchmodel'; known models: toy*"])


def test_suites_without_a_model_do_not_pass_silently(toy):
    (toy.path / "suites" / "toy.yaml").write_text(SUITE)
    result = _run(toy, "suites")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*pass --model NAME*"])


def test_malformed_suite_is_a_collection_error_with_file_and_line(toy):
    (toy.path / "suites" / "bad.yaml").write_text(SUITE.replace("check: diffgradcam", "check: difgradcam"))
    result = _run(toy, "suites", "--model", "toy")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*bad.yaml:8: unknown check 'difgradcam'; valid checks: *diffgradcam*"])


def test_corrupted_checkpoint_names_the_file_and_the_sha256_mismatch(toy, tmp_path):
    from harness.models import CheckpointStore, ensure_trained, get_zoo_entry

    run = ensure_trained(get_zoo_entry("toy"), profile="cpu", store=CheckpointStore(tmp_path / "ckpt"),
                         progress=False)
    weights = run.checkpoint()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    (toy.path / "suites" / "toy.yaml").write_text(SUITE)
    result = _run(toy, "suites", "--checkpoint", str(weights), "-k", "performance_auroc")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*{weights.name}*sha256 mismatch*"])


def test_python_checks_get_the_model_under_test(toy):
    (toy.path / "suites" / "test_mine.py").write_text(textwrap.dedent("""
        def test_model_has_test_data(xai_model):
            assert len(xai_model.dataset("test")) == 96
            assert xai_model.maps("gradcam", "test").shape == (96, 1, 64, 64)
    """))
    _run(toy, "suites/test_mine.py", "--model", "toy").assert_outcomes(passed=1)


def test_python_checks_marked_with_datasets_skip_models_trained_on_others(toy):
    (toy.path / "suites" / "test_mine.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.xai_datasets("synth-cxr")
        def test_for_chest_models(xai_model):
            raise AssertionError("must not run on the toy-blobs model")

        @pytest.mark.xai_datasets("toy-blobs", "synth-cxr")
        def test_for_toy_models(xai_model, check):
            assert xai_model.manifest["dataset"]["name"] == "toy-blobs"
            check("auroc", require="ci_low >= 0", n_boot=50)
    """))
    result = _run(toy, "suites/test_mine.py", "--model", "toy", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*check 'test_for_chest_models' applies to datasets synth-cxr; toy is trained on "
                                 "toy-blobs*"])
    records = json.loads((toy.path / "reports" / "latest" / "results.json").read_text())["records"]
    # grouped by dataset in the across-model comparison, like a YAML suite (one file may judge several datasets)
    assert [r["suite"] for r in records if r["check"] == "auroc"] == ["test_mine.py [toy-blobs]"]


def test_xdist_workers_report_to_one_run(toy):
    (toy.path / "suites" / "toy.yaml").write_text(SUITE)
    result = _run(toy, "suites", "--model", "toy", "-n", "2", "--dist", "loadgroup", "--junitxml", "junit.xml")
    result.assert_outcomes(passed=3, failed=1)
    document = json.loads((toy.path / "reports" / "latest" / "results.json").read_text())
    assert len(document["records"]) == 4
    assert document["complete"] is True and document["session"]["items_run"] == 4  # counted from the workers
    # per localisation explainer: the positives' overlays and the class-averaged maps, drawn by workers
    assert sorted(o["explainer"] for o in document["overlays"]) == [
        "gradcam", "gradcam-class-average", "random", "random-class-average"]
    assert "xai_result" in (toy.path / "junit.xml").read_text()  # records travel into JUnit XML


MULTILABEL_ZOO = TOY_ZOO + """\
  toy_multi:
    architecture: test_resnet
    dataset: toy-multilabel
    dataset_options: {n: 96}
    recipe: toy
    seed: 0
"""

MULTILABEL_SUITE = """\
suite: multi
datasets: [toy-multilabel]
defaults: {explainers: [gradient], n_boot: 200, seed: 0}
checks:
  - id: macro
    check: macro_auroc
    require: ci_low >= 0.6
  - id: disk_auroc
    check: auroc
    require: ci_low >= 0.6
  - id: localisation
    check: pointing_game
    explainers: [gradient, random]
    require: value >= 0.5
"""


def test_multilabel_model_is_checked_per_finding_and_other_suites_skip_it(toy, tmp_path):
    (tmp_path / "zoo.yaml").write_text(MULTILABEL_ZOO)
    (toy.path / "suites" / "multi.yaml").write_text(MULTILABEL_SUITE)
    result = _run(toy, "suites/", "--model", "toy_multi,toy", "--finding", "disk", "-rs")
    result.assert_outcomes(passed=4, skipped=1)  # the toy (binary) model is not on the suite's dataset
    result.stdout.fnmatch_lines(["*suite 'multi' applies to datasets toy-multilabel; toy is trained on toy-blobs*"])
    records = json.loads((toy.path / "reports" / "latest" / "results.json").read_text())["records"]
    macro = next(r for r in records if r["check"] == "macro")
    assert set(macro["details"]["per_finding_auroc"]) == {"disk", "bar"}
