"""Suite discovery: a YAML file with a top-level ``suite:`` key is a suite wherever a team keeps it
(``suites/real/siim.yaml``, ``tests/xai/gate.yaml``); a path on the command line that holds none is a
usage error (exit 4) saying what was looked for, never pytest's bare "no tests ran".

Deciding is cheap: the file is read line by line (no YAML parsing) until a line starts with
``suite:``, and never beyond its first :data:`SCAN_BYTES`. A YAML that is not a suite (a GitHub
workflow, a dataset declaration, a zoo file) is ignored silently; one with a ``suite:`` key is parsed
in full by the loader, whose errors name the file and the line.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

import pytest

from harness.plugin.keys import MODELS

SUITE_SUFFIXES = (".yaml", ".yml")

#: The ini option (``pytest.ini`` or ``[tool.pytest.ini_options]``) that narrows which YAML files may be suites.
SUITE_GLOB_INI = "xai_suite_glob"

DEFAULT_SUITE_GLOB = ("*.yaml", "*.yml")

#: How far into a file the ``suite:`` key is looked for: suites are small, and a large unrelated YAML
#: (annotations, a dataset index) is never read in full.
SCAN_BYTES = 1 << 20

#: A top-level key of a block mapping starts at column 0: ``suite:``, ``'suite':`` or ``"suite":`` (and
#: ``checks:``, the other required key, to warn about a suite whose ``suite:`` key is missing).
_TOP_LEVEL_KEY = re.compile(rb"""^(['"]?)(suite|checks)\1[ \t]*:(\s|$)""")

_DOCS = "docs/ci-gating.md"

_WORKER_OUTPUT = "xai_nothing_to_check"  # an xdist worker's message to the controller

_NOTHING_TO_CHECK = pytest.StashKey[str]()  # the controller's copy of it


def add_suite_glob_ini(parser: pytest.Parser) -> None:
    """Register the ini option ``xai_suite_glob`` (called from ``pytest_addoption``)."""
    parser.addini(SUITE_GLOB_INI, type="args", default=list(DEFAULT_SUITE_GLOB),
                  help="glob(s) a YAML suite file must match, like python_files: a pattern without '/' "
                       "matches the file name, one with '/' the end of its path (default: *.yaml *.yml); "
                       "only files with a top-level 'suite:' key are collected")


def suite_globs(config: pytest.Config) -> list[str]:
    """The patterns of ``xai_suite_glob`` (the default when the option is not set)."""
    try:
        return list(config.getini(SUITE_GLOB_INI)) or list(DEFAULT_SUITE_GLOB)
    except ValueError:  # the ini option is not registered (the plugin's addoption did not run)
        return list(DEFAULT_SUITE_GLOB)


def matches_glob(path: Path, patterns: list[str]) -> bool:
    """Whether ``path`` matches one of ``patterns``, with the rules of pytest's ``python_files``: a
    pattern without ``/`` matches the file name; one with ``/`` matches the end of the path (``*`` spans
    folders, so ``suites/*.yaml`` matches ``suites/real/siim.yaml``)."""
    for pattern in patterns:
        if "/" not in pattern:
            target = path.name
        else:
            target = path.as_posix()
            pattern = pattern if os.path.isabs(pattern) else f"*/{pattern}"
        if fnmatch.fnmatch(target, pattern):
            return True
    return False


class SuiteKeyMissing(UserWarning):
    """A YAML file has a top-level ``checks:`` key but no ``suite:`` key: not collected, perhaps by mistake."""


def has_suite_key(path: Path) -> bool:
    """Whether a YAML file has a top-level ``suite:`` key in its first :data:`SCAN_BYTES`, read line by
    line without parsing. A file that cannot be read counts as a suite, so that the loader names the
    file and the reason instead of a gate skipping it silently."""
    return "suite" in top_level_keys(path)


def top_level_keys(path: Path) -> set[str]:
    """Which of the top-level keys ``suite`` and ``checks`` a YAML file has, found by a line scan that
    stops at ``suite:`` or after :data:`SCAN_BYTES` (``{"suite"}`` for a file that cannot be read)."""
    found: set[str] = set()
    try:
        with path.open("rb") as handle:
            read = 0
            while read < SCAN_BYTES and "suite" not in found:
                line = handle.readline(SCAN_BYTES - read)
                if not line:
                    break
                key = _TOP_LEVEL_KEY.match(line.removeprefix(b"\xef\xbb\xbf") if read == 0 else line)
                if key:
                    found.add(key.group(2).decode())
                read += len(line)
    except OSError:
        return {"suite"}
    return found


def is_suite_file(config: pytest.Config, path: Path, *, named: bool = False) -> bool:
    """Whether pytest should collect ``path`` as a suite: a ``.yaml``/``.yml`` file with a top-level
    ``suite:`` key that matches ``xai_suite_glob`` (a file ``named`` on the command line need not match
    the glob, as with ``python_files``)."""
    if path.suffix not in SUITE_SUFFIXES:
        return False
    if not named and not matches_glob(path, suite_globs(config)):
        return False
    keys = top_level_keys(path)
    if keys == {"checks"}:
        import warnings

        warnings.warn(SuiteKeyMissing(f"{path}: a top-level `checks:` key but no `suite:` key, so it is not "
                                      "collected as a suite; add `suite: NAME` if it is one"), stacklevel=1)
    return "suite" in keys


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """In a run that checks models, a YAML file named on the command line that is not a suite is a usage
    error saying why (instead of pytest's "not found: ... (no match in any of [<Dir ...>])"); plain runs
    are left to pytest and its other plugins (which may collect YAML of their own)."""
    if not _checks_models(session.config):
        return
    for arg, path in _command_line_paths(session.config):
        if path.is_file() and path.suffix in SUITE_SUFFIXES and not has_suite_key(path):
            raise pytest.UsageError(
                f"{arg}: no top-level `suite:` key, so it is not an xai-harness suite; a suite is a YAML "
                f"mapping that starts with `suite: NAME` and lists its `checks:` (see {_DOCS})")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a run that checks models, a directory on the command line that yielded nothing (no suite, no
    test, no collection error) is a usage error naming it and what was looked for. Runs before ``-k``,
    ``-m`` and ``--deselect``, so a selection that leaves nothing stays pytest's exit 5."""
    if session.testsfailed or not _checks_models(config):
        return
    collected = {item.path for item in items}
    empty = [arg for arg, path in _command_line_paths(config)
             if path.is_dir() and not any(p == path or path in p.parents for p in collected)]
    if not empty:
        return
    message = nothing_to_check(config, empty)
    if hasattr(config, "workerinput"):  # an xdist worker: the controller reports it (pytest_testnodedown)
        config.workeroutput[_WORKER_OUTPUT] = message
        return
    raise pytest.UsageError(message)


def nothing_to_check(config: pytest.Config, paths: list[str]) -> str:
    """The usage error of command-line paths that hold no suite and no test."""
    globs = " ".join(suite_globs(config))
    lines = [f"no YAML with a top-level `suite:` key under {arg} (looked for files matching {SUITE_GLOB_INI} "
             f"= {globs}, subfolders included), and no test either: nothing to check" for arg in paths]
    return ("\n".join(lines) + "\nPoint pytest at the folder or file of your suites (e.g. `pytest suites/ "
            f"--model NAME`), or widen {SUITE_GLOB_INI}; see {_DOCS}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """xdist controller: keep a worker's "nothing to check" for ``pytest_sessionfinish``."""
    message = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT)
    if message:
        node.config.stash[_NOTHING_TO_CHECK] = message


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """xdist controller: the workers' "nothing to check" is a usage error (exit 4), as without xdist."""
    message = session.config.stash.get(_NOTHING_TO_CHECK, "")
    if message and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"ERROR: {message}", red=True, bold=True)


def _checks_models(config: pytest.Config) -> bool:
    """An xai-harness run: ``--model`` or ``--checkpoint`` was given."""
    return bool(config.stash[MODELS] or config.getoption("checkpoint"))


def _command_line_paths(config: pytest.Config) -> list[tuple[str, Path]]:
    """The existing paths given as arguments on the command line (not ``testpaths``), absolute."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return []
    paths = []
    for arg in config.args:
        path = Path(os.path.abspath(Path(config.invocation_params.dir, arg.split("::")[0])))
        if path.exists():
            paths.append((arg, path))
    return paths
