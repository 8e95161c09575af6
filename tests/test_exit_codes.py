"""The exit codes a CI gate reads (docs/ci-gating.md): 0 every gate holds, 1 a gate failed or a check
errored, 2 interrupted, 3 internal error, 4 usage error, 5 nothing collected. A check that raised is
never 0, even with severity ``warn``.

Runs that train the toy model (about a second) are subprocesses (torch does not survive pytester's
in-process module snapshot); the ones that stop before any model is loaded run in process.
"""

from __future__ import annotations

import json

import pytest

from harness.models.testing import toy_project


#: The toy registries; with $WITH_BUGGY_CHECK a check ``explodes`` that raises (subprocess runs only: it
#: must not stay registered in this process); a Ctrl-C at the call of item $INTERRUPT_AT; a
#: plugin hook that raises after collection when $HOOK_CRASH is set.
CONFTEST = """\
import os

from harness.checks.registry import CHECKS, register_check
from harness.models.testing import install_toy

install_toy()
if os.environ.get("WITH_BUGGY_CHECK") and "explodes" not in CHECKS:
    @register_check("explodes", category="performance", needs_explainer=False)
    def check_explodes(ctx, explainer=None, *, split="test", n_boot=1000, seed=0):
        \"\"\"Stands for a check with a bug: it raises.\"\"\"
        raise RuntimeError("the check itself crashed")

_calls = [0]

def pytest_runtest_call(item):
    _calls[0] += 1
    if _calls[0] == int(os.environ.get("INTERRUPT_AT", "0")):
        raise KeyboardInterrupt

def pytest_collection_finish(session):
    if os.environ.get("HOOK_CRASH"):
        raise RuntimeError("a plugin hook broke")
"""

PASSING = """\
suite: gate
defaults: {n_boot: 50, seed: 0}
checks:
  - id: auroc_floor
    check: auroc
    require: ci_low >= 0.6
  - id: auroc_estimate
    check: auroc
    require: value >= 0.9
"""

FAILING = PASSING + """\
  - id: impossible_auroc
    check: auroc
    require: value >= 1.01
"""

ERRORING = PASSING + """\
  - id: buggy_check
    check: explodes
    require: value >= 0.5
    severity: warn
"""


@pytest.fixture
def gate(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> pytest.Pytester:
    # the toy model is trained once for this module
    toy_project(pytester, monkeypatch, tmp_path_factory.getbasetemp() / "exit-codes", conftest=CONFTEST)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("INTERRUPT_AT", "HOOK_CRASH", "WITH_BUGGY_CHECK"):
        monkeypatch.delenv(name, raising=False)
    (pytester.path / "gate").mkdir()
    return pytester


def _run(pytester: pytest.Pytester, suite: str, *args: str) -> pytest.RunResult:
    (pytester.path / "gate" / "release.yaml").write_text(suite)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--report-dir", str(pytester.path / "reports"),
                                         "gate", "--model", "toy", *args)


def _session(pytester: pytest.Pytester) -> dict:
    runs = sorted(p for p in (pytester.path / "reports").iterdir() if p.name != "latest")
    return json.loads((runs[-1] / "results.json").read_text())["session"]


def test_every_gate_holds_exits_0(gate):
    result = _run(gate, PASSING)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK == 0


def test_a_failing_gate_exits_1(gate):
    result = _run(gate, FAILING)
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED == 1


def test_a_check_that_raised_exits_1_even_with_severity_warn(gate, monkeypatch):
    monkeypatch.setenv("WITH_BUGGY_CHECK", "1")
    result = _run(gate, ERRORING)
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED == 1
    result.stdout.fnmatch_lines(["*ERROR: buggy_check*", "*RuntimeError: the check itself crashed*"])
    assert _session(gate)["exit_status"] == 1


def test_an_interrupt_during_an_item_exits_2(gate, monkeypatch):
    monkeypatch.setenv("INTERRUPT_AT", "2")  # after one gate passed
    result = _run(gate, PASSING)
    assert result.ret == pytest.ExitCode.INTERRUPTED == 2
    assert _session(gate)["reason"] == "interrupted (Ctrl-C)"


def test_an_internal_error_in_a_plugin_hook_exits_3(gate, monkeypatch):
    monkeypatch.setenv("HOOK_CRASH", "1")
    (gate.path / "gate" / "release.yaml").write_text(PASSING)
    result = gate.runpytest_inprocess("-p", "no:cacheprovider", "gate", "--model", "toy")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR == 3
    result.stdout.fnmatch_lines(["INTERNALERROR*RuntimeError: a plugin hook broke"])


@pytest.mark.parametrize("args, expect", [
    (("--max-images", "0"), "*--max-images must be at least 1, got 0*"),
    (("--model", "nosuchmodel"), "*unknown model 'nosuchmodel'; known models: toy*"),
    (("--profile", "tpu"), "*argument --profile: invalid choice: 'tpu'*"),
])
def test_a_bad_option_exits_4(gate, args, expect):
    (gate.path / "gate" / "release.yaml").write_text(PASSING)
    result = gate.runpytest_inprocess("-p", "no:cacheprovider", "gate", "--model", "toy", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR == 4
    result.stderr.fnmatch_lines([expect])


def test_nothing_selected_exits_5(gate):
    (gate.path / "gate" / "release.yaml").write_text(PASSING)
    result = gate.runpytest_inprocess("-p", "no:cacheprovider", "gate", "--model", "toy", "-k", "no_such_check")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED == 5
