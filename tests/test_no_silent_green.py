"""No silent green: every mistake in a suite, an option or the store is one clear error, never a skip
or exit 0; a run that did not run every item says so and leaves ``reports/latest`` alone; degenerate
data and models that cannot be loaded are reported once, with the reason, and the report is written.

The plugin runs on the toy zoo (``harness.models.testing``; a model trains in about a second); most
runs are subprocesses (torch does not survive pytester's in-process module snapshot), but the
property-based test runs in process: a suite mistake stops the run at collection, before torch work.
"""

from __future__ import annotations

import functools
import inspect
import json
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.models.testing import TOY_ZOO, toy_project

# Training in this process imports torch._dynamo; pytester restores sys.modules after each test, and a
# second import of it fails (a C++ op library registers once per process): import it before any test.
import torch._dynamo  # noqa: E402,F401

ZOO = TOY_ZOO + """\
  toy_multi:
    architecture: test_resnet
    dataset: toy-multilabel
    dataset_options: {n: 96}
    recipe: toy
    seed: 0
"""

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

#: A conftest for the pytester runs: the toy registries, a Ctrl-C at item $INTERRUPT_AT, an internal error
#: after item $INTERNAL_ERROR_AT.
CONFTEST = """\
import os
from harness.models.testing import install_toy
install_toy()
_calls = [0]

def pytest_runtest_call(item):
    _calls[0] += 1
    if _calls[0] == int(os.environ.get("INTERRUPT_AT", "0")):
        raise KeyboardInterrupt

def pytest_runtest_logfinish(nodeid, location):
    at = os.environ.get("INTERNAL_ERROR_AT")
    if at and _calls[0] == int(at):
        raise RuntimeError("a plugin broke")
"""


@pytest.fixture
def toy(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path):
    toy_project(pytester, monkeypatch, tmp_path, zoo=ZOO, conftest=CONFTEST)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("INTERRUPT_AT", raising=False)
    monkeypatch.delenv("INTERNAL_ERROR_AT", raising=False)
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "toy.yaml").write_text(SUITE)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--report-dir", str(pytester.path / "reports"),
                                         *args)


def _output(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


def _latest(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())


def _runs(pytester: pytest.Pytester) -> list[dict]:
    """Every run written under reports/ (latest excluded), oldest first."""
    folders = sorted(p for p in (pytester.path / "reports").iterdir() if p.name != "latest" and p.is_dir())
    return [json.loads((p / "results.json").read_text()) for p in folders if (p / "results.json").exists()]


def _trained_toy(tmp_path):
    from harness.models import CheckpointStore, ensure_trained, get_zoo_entry

    return ensure_trained(get_zoo_entry("toy"), profile="cpu", store=CheckpointStore(tmp_path / "ckpt"),
                          progress=False)


# --- suite mistakes: a collection error naming file, line and choices, before any model is trained


def test_misspelled_dataset_is_a_collection_error_not_a_silent_skip(toy, tmp_path):
    text = SUITE.replace("suite: toy\n", "suite: toy\ndatasets: [toy-blobz]\n")
    (toy.path / "suites" / "toy.yaml").write_text(text)
    result = _run(toy, "suites", "--model", "toy")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*toy.yaml:2: unknown dataset 'toy-blobz'; valid datasets: *toy-blobs*"
                                 "did you mean 'toy-blobs'?"])
    assert not (tmp_path / "ckpt").exists(), "nothing is trained before the suites are valid"
    assert not (toy.path / "reports" / "latest").exists()


@pytest.mark.parametrize("change, expect", [
    (("explainers: [gradcam, random]", "explainers: []"), "*toy.yaml:9: 'explainers' must be a non-empty list*"),
    (("    require: value >= 1.01\n", "    require: value >= 1.01\n    overrides: {toyy: {skip: true}}\n"),
     "*toy.yaml:14: override 'toyy' names no profile, family, zoo model or architecture*did you mean 'toy'?"),
    (("n_boot: 200", "n_boot: many"), "*toy.yaml:2: defaults key 'n_boot' must be an integer, got 'many'"),
])
def test_suite_mistakes_that_used_to_end_green_stop_the_run(toy, change, expect):
    (toy.path / "suites" / "toy.yaml").write_text(SUITE.replace(*change))
    result = _run(toy, "suites", "--model", "toy")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([expect])


# --- options and paths: usage errors (exit 4) before any model is loaded


@pytest.mark.parametrize("make, expect", [
    (lambda d: d / "absent.safetensors", "*--checkpoint: *absent.safetensors: no such checkpoint file*"),
    (lambda d: _file(d / "bare.safetensors", "weights"), "*--checkpoint: *manifest bare.json is missing*"),
    (lambda d: _file(_file(d / "bad.safetensors", "w").with_suffix(".json"), '{"architecture": ').with_suffix(
        ".safetensors"), "*--checkpoint: *bad.json: unreadable manifest*"),
])
def test_unusable_checkpoint_is_one_usage_error(toy, tmp_path, make, expect):
    result = _run(toy, "suites", "--checkpoint", str(make(tmp_path)))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expect])
    assert len(_output(result).splitlines()) < 10  # one message, not a traceback per item
    assert not (toy.path / "reports").exists()


def _file(path, text: str):
    path.write_text(text)
    return path


def test_bad_max_images_and_unwritable_report_dir_are_usage_errors(toy, tmp_path):
    result = _run(toy, "suites", "--model", "toy", "--max-images", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--max-images must be at least 1, got 0*"])
    blocker = _file(tmp_path / "a-file", "not a folder")
    result = toy.runpytest_subprocess("-p", "no:cacheprovider", "suites", "--model", "toy", "--report-dir",
                                      str(blocker / "reports"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--report-dir *a-file/reports is not writable*"])
    assert not (tmp_path / "ckpt").exists(), "found before any model is trained"


# --- models that cannot be loaded: one error with its cause, then one line per item


def test_damaged_store_run_is_one_error_with_its_cause_then_errors_without_traceback(toy, tmp_path):
    run = _trained_toy(tmp_path)
    run.checkpoint().unlink()
    result = _run(toy, "suites", "--model", "toy", "-rN")  # -rN: no short summary, so each text is counted once
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=4)
    text = _output(result)
    assert text.count("final weights epoch-002.safetensors are missing") == 1  # the cause in full, once
    assert text.count("Every other item of this model is reported as an error") == 1
    assert text.count("not retried") == 3 and "Traceback" not in text
    assert "--repair" in text
    records = _latest(toy)["records"]
    assert len(records) == 4 and {r["verdict"] for r in records} == {"error"}
    assert all("epoch-002.safetensors are missing" in r["message"] for r in records)


def test_corrupt_external_checkpoint_is_loaded_once(toy, tmp_path):
    weights = _trained_toy(tmp_path).checkpoint()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = _run(toy, "suites", "--checkpoint", str(weights), "-rN")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=4)
    assert _output(result).count("sha256 mismatch") == 1


# --- runs that did not run every item


def test_interrupted_run_is_incomplete_and_leaves_latest_alone(toy, monkeypatch):
    assert _run(toy, "suites", "--model", "toy").ret == pytest.ExitCode.TESTS_FAILED
    previous = _latest(toy)["run_id"]
    monkeypatch.setenv("INTERRUPT_AT", "3")
    result = _run(toy, "suites", "--model", "toy")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*xai-harness report (INCOMPLETE: interrupted (Ctrl-C), 2 of 4 collected items ran;"
                                 " reports/latest not updated)*"])
    assert _latest(toy)["run_id"] == previous
    interrupted = _runs(toy)[-1]
    assert interrupted["run_id"] != previous and interrupted["complete"] is False
    assert len(interrupted["records"]) == 2
    assert interrupted["session"] == {"exit_status": 2, "items_collected": 4, "items_run": 2,
                                      "reason": "interrupted (Ctrl-C)"}
    summary = (toy.path / "reports" / interrupted["run_id"] / "summary.md").read_text()
    assert "**INCOMPLETE**: interrupted (Ctrl-C); 2 of 4 collected items ran" in summary


def test_stopping_at_the_first_failure_is_incomplete(toy):
    failing_first = SUITE.replace("checks:\n", "checks:\n  - id: first_fails\n    check: auroc\n"
                                  "    require: value >= 1.01\n")
    (toy.path / "suites" / "toy.yaml").write_text(failing_first)
    result = _run(toy, "suites", "--model", "toy", "-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    run = _runs(toy)[-1]
    assert run["complete"] is False and run["session"]["items_run"] == 1
    assert "stopping after 1 failures" in run["session"]["reason"]
    assert not (toy.path / "reports" / "latest").exists()


def test_internal_error_is_incomplete(toy, monkeypatch):
    monkeypatch.setenv("INTERNAL_ERROR_AT", "1")
    result = _run(toy, "suites", "--model", "toy")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    run = _runs(toy)[-1]
    assert run["complete"] is False and run["session"]["reason"] == "an internal error stopped the session"
    assert len(run["records"]) == 1 and not (toy.path / "reports" / "latest").exists()


# --- degenerate data: the reason, no crash, the report written


def test_one_image_names_the_data_problem_and_keeps_every_record(toy):
    result = _run(toy, "suites", "--model", "toy", "--max-images", "1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    document = _latest(toy)
    assert document["complete"] is True and len(document["records"]) == 4  # overlays no longer lose records
    for record in document["records"]:
        if record["verdict"] == "error":
            assert "only 1 image" in record["message"] and "too little data for this check" in record["message"]
    assert "INTERNALERROR" not in _output(result)


# --- skips are visible; --strict fails them


MULTI_SUITE = """\
suite: multi
datasets: [toy-multilabel]
checks:
  - id: disk_auroc
    check: auroc
    require: ci_low >= 0.5
    params: {n_boot: 50}
"""


def test_skips_are_listed_with_reasons_and_strict_fails_them(toy):
    (toy.path / "suites" / "toy.yaml").unlink()
    (toy.path / "suites" / "multi.yaml").write_text(MULTI_SUITE)
    result = _run(toy, "suites", "--model", "toy")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([
        "*xai-harness: 1 skipped (not checked; --strict makes skips failures)*",
        "SKIPPED suites/multi.yaml::multi?toy?: suite 'multi' applies to datasets toy-multilabel; toy is trained on "
        "toy-blobs",
    ])
    document = _latest(toy)  # a run of skips still writes its report
    assert document["records"] == [] and document["skipped"][0]["reason"].startswith("suite 'multi' applies")
    summary = (toy.path / "reports" / "latest" / "summary.md").read_text()
    assert "## Skipped items (1)" in summary and "toy is trained on toy-blobs" in summary
    assert "Result: **NOTHING CHECKED**" in summary  # a run of skips is not a pass
    strict = _run(toy, "suites", "--model", "toy", "--strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*skipped, and --strict counts a skip as a failure: suite 'multi' applies*"])


def test_override_skip_is_listed_and_strict_makes_it_an_error(toy):
    (toy.path / "suites" / "toy.yaml").write_text(SUITE.replace(
        "    require: value >= 1.01\n", "    require: value >= 1.01\n    overrides: {toy: {skip: true}}\n"))
    result = _run(toy, "suites", "--model", "toy", "-k", "impossible")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["SKIPPED *impossible_auroc?toy?: skipped for toy by the suite's overrides"])
    strict = _run(toy, "suites", "--model", "toy", "-k", "impossible", "--strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    assert _latest(toy)["records"][0]["verdict"] == "error"


def test_a_failing_record_never_exits_0(toy):
    (toy.path / "suites" / "toy.yaml").unlink()
    (toy.path / "suites" / "test_swallow.py").write_text(
        "def test_swallows_the_failure(check):\n"
        "    try:\n"
        "        check('auroc', require='value >= 1.01', n_boot=50)\n"
        "    except AssertionError:\n"
        "        pass\n")
    result = _run(toy, "suites/test_swallow.py", "--model", "toy")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert _latest(toy)["session"]["exit_status"] == 1


# --- property: any single mistake in a suite is a non-zero exit naming the mistake


NAMES = st.text(alphabet=string.ascii_lowercase + "_", min_size=4, max_size=12)


def _base_suite() -> dict:
    return {
        "suite": "toy",
        "defaults": {"explainers": ["gradcam"], "n_boot": 50, "seed": 0},
        "checks": [
            {"id": "auroc_floor", "check": "auroc", "require": "ci_low >= 0.6"},
            {"id": "localisation", "check": "diffgradcam", "explainers": ["gradcam", "random"],
             "require": "ci_low >= 0.05"},
            {"id": "stability", "check": "perturbation_stability", "explainers": ["gradient"],
             "require": "ci_low >= 0.5", "params": {"perturbation": "gaussian_noise(sigma=0.02)"}},
        ],
    }


@functools.lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    """Every registered name a random name must not be (so that it is a mistake)."""
    from harness.checks.registry import list_checks
    from harness.data import list_datasets
    from harness.explain import EXPLAINERS, list_explainers
    from harness.models.architectures import list_architectures
    from harness.models.zoo import DEFAULT_ZOO, list_zoo

    list_explainers()
    return frozenset({s.name for s in list_checks()} | set(list_datasets()) | set(EXPLAINERS.names())
            | set(list_architectures()) | {e.name for e in list_zoo(DEFAULT_ZOO)} | {"toy", "toy_multi"}
            | {p for s in list_checks() for p in inspect.signature(s.fn).parameters}
            | {"suite", "description", "defaults", "checks", "datasets", "calibration", "fail", "warn", "value",
               "ci_low", "ci_high"})


@st.composite
def one_mistake(draw) -> tuple[dict, str]:
    """A valid suite with exactly one mistake, and a piece of text the error message must contain."""
    suite, name = _base_suite(), draw(NAMES.filter(lambda n: n not in _known()))
    check = suite["checks"][draw(st.integers(0, 2))]
    kind = draw(st.sampled_from([
        "dataset", "check", "explainer", "no_explainers", "override", "profile", "param", "n_boot_text",
        "n_boot_range", "condition", "severity", "suite_key", "duplicate", "perturbation", "max_images", "skip",
    ]))
    if kind == "dataset":
        suite["datasets"] = ["toy-blobs", name]
        return suite, f"unknown dataset {name!r}"
    if kind == "check":
        check["check"] = name
        return suite, f"unknown check {name!r}"
    if kind == "explainer":
        suite["checks"][1]["explainers"] = ["gradcam", name]
        return suite, f"unknown explainer {name!r}"
    if kind == "no_explainers":
        owner = draw(st.sampled_from([suite["defaults"], suite["checks"][1]]))
        owner["explainers"] = []
        return suite, "'explainers' must be a non-empty list"
    if kind == "override":
        check["overrides"] = {"toy": {"severity": "warn"}, name: {"skip": True}}
        return suite, f"override {name!r} names no profile, family, zoo model or architecture"
    if kind == "profile":
        check["overrides"] = {f"profile:{name}": {"severity": "warn"}}
        return suite, f"unknown profile in override 'profile:{name}'"
    if kind == "param":
        check.setdefault("params", {})[name] = 1
        return suite, f"has no parameter {name!r}"
    if kind == "n_boot_text":
        target = draw(st.sampled_from([suite["defaults"], check.setdefault("params", {})]))
        target["n_boot"] = name
        return suite, "'n_boot'"
    if kind == "n_boot_range":
        check.setdefault("params", {})["n_boot"] = draw(st.integers(-1000, 0))
        return suite, "'n_boot' of check"
    if kind == "condition":
        check["require"] = f"{name} >= 0.5"
        return suite, "cannot read condition"
    if kind == "severity":
        check["severity"] = name
        return suite, f"severity must be 'fail' or 'warn', not {name!r}"
    if kind == "suite_key":
        suite[name] = 1
        return suite, f"unknown suite key {name!r}"
    if kind == "duplicate":
        suite["checks"][2]["id"] = suite["checks"][0]["id"]
        return suite, "duplicate check id 'auroc_floor'"
    if kind == "perturbation":
        suite["checks"][2]["params"]["perturbation"] = f"{name}(sigma=0.02)"
        return suite, name
    if kind == "max_images":
        suite["defaults"]["max_images"] = draw(st.integers(-5, 0))
        return suite, "defaults key 'max_images' must be at least 1"
    check.setdefault("overrides", {})["toy"] = {"skip": name}
    return suite, "'skip' must be true or false"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=one_mistake())
def test_any_single_suite_mistake_fails_the_run_naming_it(toy, case):
    suite, expected = case
    path = toy.path / "suites" / "toy.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    result = toy.runpytest_inprocess("-p", "no:cacheprovider", "--report-dir", str(toy.path / "reports"),
                                     "suites", "--model", "toy")
    assert result.ret != pytest.ExitCode.OK
    text = _output(result)
    assert f"{path}:" in text and expected in text, (expected, text[-2000:])
    assert not (toy.path / "reports").exists(), "a suite mistake writes no report"
