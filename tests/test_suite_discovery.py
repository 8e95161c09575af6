"""Suite discovery: any YAML with a top-level ``suite:`` key is a suite, in any folder; other YAML is
ignored silently; ``xai_suite_glob`` narrows the files; a command-line path with nothing to check is a
usage error (exit 4) naming the path and what was looked for.

The pytester runs are collection only (``--collect-only``) or stop before any item runs, so no model
is trained and they run in process, except the xdist one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.models.testing import toy_project
from harness.plugin.discovery import SCAN_BYTES, has_suite_key, is_suite_file, matches_glob

REPO = Path(__file__).resolve().parents[1]


SUITE = """\
suite: {name}
checks:
  - id: auroc_floor
    check: auroc
    require: ci_low >= 0.6
    params: {{n_boot: 50}}
"""

WORKFLOW = """\
name: ci
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: pytest suites/ --model resnet18
"""

#: A dataset declaration that is not even valid YAML: not a suite, so never parsed, never an error.
BROKEN_DECLARATION = "dataset: siim\nroot: /data/siim\n  labels: [unclosed\n"


# --- the cheap test: a line scan, no YAML parsing


@pytest.mark.parametrize("text, expected", [
    (SUITE.format(name="a"), True),
    ("description: checks for the release\nsuite: late\nchecks: []\n", True),  # the key need not be first
    ("---\n# a comment\n'suite': quoted\n", True),
    ('"suite" : spaced\n', True),
    ("\ufeffsuite: with a byte-order mark\n", True),
    ("'suite\": mismatched quotes\n", False),
    ("suite:\n  nested: mapping\n", True),
    (WORKFLOW, False),
    (BROKEN_DECLARATION, False),
    ("models:\n  toy: {suite: nested}\n", False),
    ("config:\n  suite: indented, so not top-level\n", False),
    ("# suite: a comment\nname: x\n", False),
    ("suites: a longer key\nsuite_name: another\n", False),
    ("suite:x\n", False),  # a plain scalar, not a key
    ("", False),
])
def test_a_suite_is_a_yaml_with_a_top_level_suite_key(tmp_path, text, expected):
    path = tmp_path / "file.yaml"
    path.write_text(text, encoding="utf-8")
    assert has_suite_key(path) is expected


def test_a_large_unrelated_file_is_not_read_past_the_scan_limit(tmp_path):
    path = tmp_path / "annotations.yaml"
    filler = b"- {image: x.png, label: 1}\n" * (SCAN_BYTES // 27 + 10)
    path.write_bytes(filler + b"suite: too-late\n")
    assert not has_suite_key(path)
    path.write_bytes(b"x: " + b"y" * (3 * SCAN_BYTES) + b"\nsuite: after one huge line\n")
    assert not has_suite_key(path)
    path.write_bytes(b"\x00\xff\xfe binary\n" * 100)
    assert not has_suite_key(path)


def test_an_unreadable_yaml_counts_as_a_suite_so_the_loader_names_it(tmp_path):
    folder = tmp_path / "looks-like.yaml"
    folder.mkdir()  # opening it raises OSError (IsADirectoryError)
    assert has_suite_key(folder)


@pytest.mark.parametrize("path, patterns, expected", [
    ("/r/suites/real/siim.yaml", ["*.yaml", "*.yml"], True),
    ("/r/suites/real/siim.yml", ["*.yaml"], False),
    ("/r/suites/real/siim.yaml", ["suites/*.yaml"], True),  # '*' spans folders, as in python_files
    ("/r/tests/xai/gate.yaml", ["suites/*.yaml"], False),
    ("/r/tests/xai/gate.yaml", ["xai/gate*.yaml", "suites/*.yaml"], True),
    ("/r/tests/xai/gate.yaml", ["gate_*.yaml"], False),
    ("/r/tests/xai/gate.yaml", ["/r/tests/*"], True),  # an absolute pattern matches the whole path
])
def test_suite_glob_matches_like_python_files(path, patterns, expected):
    assert matches_glob(Path(path), patterns) is expected


def test_the_repository_collects_its_suites_and_nothing_else(pytestconfig):
    """Every YAML that declares ``suite:`` is one; no other YAML (zoo, workflows, dataset declarations) is
    collected as a suite by accident."""
    import yaml

    skip = {".venv", ".git", "node_modules", "reports", ".hypothesis", ".pytest_cache"}
    files = [p for p in REPO.rglob("*") if p.suffix in (".yaml", ".yml") and not skip & set(p.relative_to(REPO).parts)]
    assert "fixtures/zoo.yaml" in {p.relative_to(REPO).as_posix() for p in files}
    for path in files:
        declares = "suite" in (yaml.safe_load(path.read_text()) or {})
        assert is_suite_file(pytestconfig, path) is declares, path
    assert "suites/pneumothorax.yaml" in {p.relative_to(REPO).as_posix() for p in files
                                          if is_suite_file(pytestconfig, p)}


# --- collection in a project laid out the way a team keeps it


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path) -> pytest.Pytester:
    """Suites in two unusual folders, beside YAML that is not a suite and a JSON calibration file."""
    toy_project(pytester, monkeypatch, tmp_path)
    files = {
        "suites/real/siim.yaml": SUITE.format(name="siim"),
        "tests/xai/gate.yml": SUITE.format(name="gate"),
        ".github/workflows/ci.yml": WORKFLOW,
        "examples/workflow.yaml": WORKFLOW,
        "data/siim-declaration.yaml": BROKEN_DECLARATION,
        "suites/calibration/siim_cpu.json": '{"profile": "cpu"}',
        "empty/notes.yaml": "title: not a suite\n",
    }
    for name, text in files.items():
        (pytester.path / name).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / name).write_text(text)
    return pytester


def _collect(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "--report-dir", str(pytester.path / "reports"),
                                        *args)


def _collected_ids(result: pytest.RunResult) -> set[str]:
    return {line for line in result.outlines if "::" in line}


def test_suites_are_found_in_any_folder_and_other_yaml_is_ignored(project):
    result = _collect(project, ".", "--model", "toy", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert _collected_ids(result) == {"suites/real/siim.yaml::auroc_floor[toy]", "tests/xai/gate.yml::auroc_floor[toy]"}
    assert "error" not in "\n".join(result.outlines).lower()


def test_a_broken_suite_in_any_folder_is_a_collection_error_with_file_and_line(project):
    (project.path / "tests" / "xai" / "gate.yml").write_text(SUITE.format(name="gate").replace("auroc\n", "aurok\n"))
    result = _collect(project, "tests", "--model", "toy")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*tests/xai/gate.yml:4: unknown check 'aurok'; valid checks: *did you mean 'auroc'?*"])


def test_the_ini_option_narrows_which_yaml_may_be_suites(project):
    project.makeini("[pytest]\nxai_suite_glob = suites/*.yaml\n")
    result = _collect(project, ".", "--model", "toy", "--collect-only", "-q")
    assert _collected_ids(result) == {"suites/real/siim.yaml::auroc_floor[toy]"}
    named = _collect(project, "tests/xai/gate.yml", "--model", "toy", "--collect-only", "-q")  # named: collected
    assert _collected_ids(named) == {"tests/xai/gate.yml::auroc_floor[toy]"}
    result = _collect(project, "tests", "--model", "toy", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no YAML with a top-level `suite:` key under tests (looked for files matching "
                                 "xai_suite_glob = suites/*.yaml, subfolders included)*"])


def test_a_path_without_a_suite_is_a_usage_error_naming_it(project):
    result = _collect(project, "empty", "--model", "toy")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*no YAML with a top-level `suite:` key under empty (looked for files matching xai_suite_glob = *.yaml "
        "*.yml, subfolders included), and no test either: nothing to check",
        "*Point pytest at the folder or file of your suites*docs/ci-gating.md",
    ])
    both = _collect(project, "suites", "empty", "--model", "toy", "--collect-only")  # one empty path is enough
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    assert "under empty" in "\n".join(both.errlines) and "under suites" not in "\n".join(both.errlines)


def test_a_named_yaml_that_is_not_a_suite_is_a_usage_error_saying_why(project):
    result = _collect(project, "data/siim-declaration.yaml", "--model", "toy")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*data/siim-declaration.yaml: no top-level `suite:` key, so it is not an "
                                 "xai-harness suite*"])
    plain = _collect(project, "data/siim-declaration.yaml")  # no --model: left to pytest (and its YAML plugins)
    assert plain.ret == pytest.ExitCode.USAGE_ERROR
    assert "not found" in "\n".join(plain.errlines) and "suite:" not in "\n".join(plain.errlines)


def test_a_suite_without_its_suite_key_is_not_collected_but_named_in_a_warning(project):
    typo = SUITE.format(name="siim").replace("suite: siim", "suit: siim")
    (project.path / "suites" / "real" / "siim.yaml").write_text(typo)
    result = _collect(project, "suites", "tests", "--model", "toy", "--collect-only", "-q")
    assert _collected_ids(result) == {"tests/xai/gate.yml::auroc_floor[toy]"}
    result.stdout.fnmatch_lines(["*SuiteKeyMissing: *suites/real/siim.yaml: a top-level `checks:` key but no "
                                 "`suite:` key, so it is not collected as a suite; add `suite: NAME` if it is one"])


def test_python_tests_alone_are_something_to_check(project):
    (project.path / "empty" / "test_mine.py").write_text("def test_plain():\n    pass\n")
    result = _collect(project, "empty", "--model", "toy", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert _collected_ids(result) == {"empty/test_mine.py::test_plain"}


def test_deselecting_everything_and_plain_runs_keep_pytest_exit_5(project):
    deselected = _collect(project, "suites", "--model", "toy", "-k", "no_such_check")
    assert deselected.ret == pytest.ExitCode.NO_TESTS_COLLECTED  # the path holds a suite: not a usage error
    plain = _collect(project, "empty")  # no --model: a plain pytest run, pytest's own answer
    assert plain.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_under_xdist_a_path_without_a_suite_is_still_a_usage_error(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "empty", "--model", "toy", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*ERROR: no YAML with a top-level `suite:` key under empty*"])
