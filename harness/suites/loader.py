"""Declarative YAML suites: parsed, validated, and every error names the file and the line.

A suite::

    suite: pneumothorax
    defaults: {explainers: [gradcam], n_boot: 1000, seed: 0}
    checks:
      - id: localisation_diffgradcam
        check: diffgradcam
        require: ci_low >= 0.05          # the condition, read as a sentence
        severity: fail                   # or warn (reported, does not gate)
        params: {split: test}
        overrides:                       # per profile, architecture or zoo name
          profile:cpu: {severity: warn}
          vit_small_patch16_224: {require: ci_low >= 0.02}
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.checks.condition import Condition

SUITE_KEYS = {"suite", "description", "defaults", "checks", "datasets"}
DEFAULT_KEYS = {"explainers", "n_boot", "seed", "max_images"}
CHECK_KEYS = {"id", "check", "require", "severity", "explainers", "params", "overrides", "description"}
OVERRIDE_KEYS = {"require", "severity", "params", "skip"}


class SuiteError(Exception):
    """A malformed suite: the message starts with ``file:line:``."""

    def __init__(self, path: Path | str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line = str(path), line


@dataclass(frozen=True)
class SuiteCheck:
    """One check of a suite, before it is expanded over models and explainers."""

    id: str
    check: str
    condition: Condition
    explainers: tuple[str, ...]
    params: dict[str, Any]
    overrides: dict[str, dict[str, Any]]
    line: int
    description: str = ""

    def for_model(self, model: str, architecture: str, profile: str = "") -> tuple[Condition, dict[str, Any], bool]:
        """Condition, params and skip flag after the overrides for this model.

        Override keys, applied from general to specific: ``profile:<cpu|gpu>``, the architecture,
        the zoo name.
        """
        condition, params, skip = self.condition, dict(self.params), False
        for key in (f"profile:{profile}", architecture, model):
            o = self.overrides.get(key)
            if not o:
                continue
            severity = o.get("severity", condition.severity)
            if "require" in o or "severity" in o:
                condition = Condition.parse(o.get("require", str(condition)), severity=severity)
            params.update(o.get("params", {}))
            skip = bool(o.get("skip", skip))
        return condition, params, skip


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    checks: list[SuiteCheck]
    max_images: int | None = None
    description: str = ""
    datasets: tuple[str, ...] = ()  # the datasets the suite applies to (empty: any)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every mapping under the key ``__line__``."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    mapping["__keylines__"] = {k.value: k.start_mark.line + 1 for k, _ in node.value if hasattr(k, "value")}
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_suite(path: Path | str) -> Suite:
    """Parse and validate a suite file; raise SuiteError naming the file, line and valid choices."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_LineLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise SuiteError(path, (mark.line + 1) if mark else 1, f"invalid YAML: {err.problem}") from None
    if not isinstance(raw, dict):
        raise SuiteError(path, 1, "a suite is a mapping with keys 'suite' and 'checks'")
    _no_unknown(path, raw, SUITE_KEYS, "suite")
    for key in ("suite", "checks"):
        if key not in raw:
            raise SuiteError(path, 1, f"missing required key {key!r}")
    defaults = raw.get("defaults") or {"__line__": 1}
    _no_unknown(path, defaults, DEFAULT_KEYS, "defaults")
    if not isinstance(raw["checks"], list) or not raw["checks"]:
        raise SuiteError(path, raw["__line__"], "'checks' must be a non-empty list")
    checks = [_parse_check(path, entry, defaults) for entry in raw["checks"]]
    _unique_ids(path, checks)
    datasets = raw.get("datasets") or []
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise SuiteError(path, raw["__line__"], f"'datasets' must be a list of dataset names, got {datasets!r}")
    return Suite(str(raw["suite"]), path, checks, defaults.get("max_images"), str(raw.get("description", "")),
                 tuple(datasets))


def _parse_check(path: Path, entry: Any, defaults: dict) -> SuiteCheck:
    from harness.checks.registry import list_checks  # light: checks register on first use

    if not isinstance(entry, dict):
        raise SuiteError(path, defaults["__line__"], f"each check is a mapping, got {entry!r}")
    line = entry["__line__"]
    _no_unknown(path, entry, CHECK_KEYS, "check")
    specs = {s.name: s for s in list_checks()}
    name = entry.get("check")
    if name not in specs:
        raise SuiteError(path, _line(entry, "check"), f"unknown check {name!r}; valid checks: {', '.join(sorted(specs))}")
    spec = specs[name]
    condition = _condition(path, _line(entry, "require"), entry)
    params = _params(path, _line(entry, "params"), spec, {**_common(defaults), **_strip(entry.get("params") or {})})
    explainers = _explainers(path, _line(entry, "explainers"), spec, entry.get("explainers", defaults.get("explainers", ["gradcam"])))
    overrides = {}
    for key, o in _strip(entry.get("overrides") or {}).items():
        if not isinstance(o, dict):
            raise SuiteError(path, line, f"override {key!r} must be a mapping with keys {sorted(OVERRIDE_KEYS)}")
        _no_unknown(path, o, OVERRIDE_KEYS, f"override {key!r}")
        if "require" in o:
            _condition(path, o["__line__"], o)
        _params(path, o["__line__"], spec, _strip(o.get("params") or {}))
        overrides[str(key)] = _strip(o)
    return SuiteCheck(str(entry.get("id", name)), name, condition, explainers, params, overrides, line,
                      str(entry.get("description", spec.description)))


def _condition(path: Path, line: int, entry: dict) -> Condition:
    if "require" not in entry:
        raise SuiteError(path, line, "missing 'require', e.g. require: ci_low >= 0.10")
    try:
        return Condition.parse(entry["require"], severity=entry.get("severity", "fail"))
    except ValueError as err:
        raise SuiteError(path, line, str(err)) from None


def _params(path: Path, line: int, spec, params: dict) -> dict:
    valid = [p for p in inspect.signature(spec.fn).parameters if p not in ("ctx", "explainer")]
    for key in params:
        if key not in valid:
            raise SuiteError(path, line, f"check {spec.name!r} has no parameter {key!r}; valid: {', '.join(valid)}")
    return params


def _explainers(path: Path, line: int, spec, names: Any) -> tuple[str, ...]:
    if not spec.needs_explainer:
        return ("-",)
    from harness.explain import EXPLAINERS, list_explainers

    list_explainers()  # registers the built-in explainers
    names = [names] if isinstance(names, str) else list(names)
    for n in names:
        if n not in EXPLAINERS:
            raise SuiteError(path, line, f"unknown explainer {n!r}; valid explainers: {', '.join(EXPLAINERS.names())}")
    return tuple(names)


def _line(d: dict, key: str) -> int:
    """The line of ``key`` in mapping ``d`` (the mapping's first line if the key is absent)."""
    return d.get("__keylines__", {}).get(key, d.get("__line__", 1))


def _common(defaults: dict) -> dict:
    return {k: defaults[k] for k in ("n_boot", "seed") if k in defaults}


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("__line__", "__keylines__")}


def _no_unknown(path: Path, d: dict, valid: set[str], what: str) -> None:
    for key in d:
        if key not in ("__line__", "__keylines__") and key not in valid:
            raise SuiteError(path, _line(d, key), f"unknown {what} key {key!r}; valid keys: {', '.join(sorted(valid))}")


def _unique_ids(path: Path, checks: list[SuiteCheck]) -> None:
    seen: dict[str, int] = {}
    for c in checks:
        if c.id in seen:
            raise SuiteError(path, c.line, f"duplicate check id {c.id!r} (first at line {seen[c.id]})")
        seen[c.id] = c.line
