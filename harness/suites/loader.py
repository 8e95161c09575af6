"""Declarative YAML suites: parsed, validated, and every error names the file and the line.

A suite::

    suite: pneumothorax
    datasets: [synth-cxr]              # the datasets it applies to (registered names; absent: any)
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

Everything a typo could silently switch off is checked here, before any model is loaded: the names
of checks, explainers, datasets, perturbations and override targets, and the type and range of
every parameter. A mistake is a :class:`SuiteError` naming the file, the line and the valid choices.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from harness.checks.condition import Condition

SUITE_KEYS = {"suite", "description", "defaults", "checks", "datasets", "calibration"}
DEFAULT_KEYS = {"explainers", "n_boot", "seed", "max_images", "regression_margin"}
CHECK_KEYS = {"id", "check", "require", "severity", "explainers", "params", "overrides", "description",
              "regression_margin"}
#: The largest worsening against a ``--baseline`` run, in the check's own units, that is not a regression.
DEFAULT_REGRESSION_MARGIN = 0.02
OVERRIDE_KEYS = {"require", "severity", "params", "skip"}
PROFILE_TARGETS = ("profile:cpu", "profile:gpu")
FAMILY_TARGETS = ("family:cnn", "family:vit")  # convolutional networks / vision transformers
CHECKPOINT_TARGET = "checkpoint:"  # an external --checkpoint, by the stem of its file name
#: Parameters that name a perturbation, and whether it must be geometric (equivariance).
PERTURBATION_PARAMS = {"perturbation": False, "transform": True}
#: ``finding`` (multi-label models: the finding an item checks) is a parameter of every check.
FINDING_PARAM = inspect.Parameter("finding", inspect.Parameter.KEYWORD_ONLY, annotation="str")
#: Ranges of numeric parameters by name: (lowest, lowest allowed?, highest or None).
RANGES: dict[str, tuple[float, bool, float | None]] = {
    "n_boot": (1, True, None), "seed": (0, True, None), "label_seed": (0, True, None),
    "other_seed": (0, True, None), "min_kept": (1, True, None), "max_clusters": (1, True, None),
    "tolerance": (0, True, None), "dilate": (0, True, None), "radius": (0, False, None),
    "k_fraction": (0, False, 1), "top_fraction": (0, False, 1), "border": (0, True, 0.5),
    "max_images": (1, True, None),
}


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
    regression_margin: float = DEFAULT_REGRESSION_MARGIN  # see docs/baseline.md

    def for_model(self, model: str, architecture: str, profile: str = "",
                  family: str = "") -> tuple[Condition, dict[str, Any], bool]:
        """Condition, params and skip flag after the overrides for this model.

        Override keys, applied from general to specific: ``profile:<cpu|gpu>``, ``family:<cnn|vit>``,
        the architecture, the zoo name.
        """
        condition, params, skip = self.condition, dict(self.params), False
        for key in (f"profile:{profile}", f"family:{family}", architecture, model):
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
    calibration: Path | None = None  # the file its thresholds were calibrated from (``xai-harness calibrate``)

    def only(self, ids) -> Suite:
        """This suite with only the checks whose ids are in ``ids`` (suite order kept)."""
        wanted = set(ids)
        return replace(self, checks=[c for c in self.checks if c.id in wanted])


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every mapping under the key ``__line__``."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    mapping["__keylines__"] = {k.value: k.start_mark.line + 1 for k, _ in node.value if hasattr(k, "value")}
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_suite(path: Path | str, *, calibrating: bool = False) -> Suite:
    """Parse and validate a suite file; raise SuiteError naming the file, line and valid choices.

    ``calibrating``: the suite is being calibrated, so the calibration file it cites may not exist yet.
    """
    path = Path(path)
    raw = _read(path)
    _no_unknown(path, raw, SUITE_KEYS, "suite")
    for key in ("suite", "checks"):
        if key not in raw:
            raise SuiteError(path, 1, f"missing required key {key!r}")
    if not isinstance(raw["suite"], str) or not raw["suite"].strip():
        raise SuiteError(path, _line(raw, "suite"), f"'suite' must be a name, got {raw['suite']!r}")
    defaults = _defaults(path, raw)
    if not isinstance(raw["checks"], list) or not raw["checks"]:
        raise SuiteError(path, _line(raw, "checks"), "'checks' must be a non-empty list")
    checks = [_parse_check(path, entry, defaults) for entry in raw["checks"]]
    _unique_ids(path, checks)
    return Suite(str(raw["suite"]), path, checks, defaults.get("max_images"), str(raw.get("description", "")),
                 _datasets(path, raw), _calibration(path, raw, calibrating))


def _read(path: Path) -> dict:
    """The YAML mapping of a suite file (with line numbers)."""
    try:
        raw = yaml.load(path.read_text(), Loader=_LineLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise SuiteError(path, (mark.line + 1) if mark else 1, f"invalid YAML: {err.problem}") from None
    except OSError as err:
        raise SuiteError(path, 1, f"cannot read the suite file: {err.strerror or err}") from None
    if not isinstance(raw, dict):
        raise SuiteError(path, 1, "a suite is a mapping with keys 'suite' and 'checks'")
    return raw


def _defaults(path: Path, raw: dict) -> dict:
    """The ``defaults`` mapping, validated: explainers, n_boot, seed and max_images."""
    defaults = raw.get("defaults")
    if defaults is None:
        return {"__line__": _line(raw, "defaults")}
    if not isinstance(defaults, dict):
        raise SuiteError(path, _line(raw, "defaults"), f"'defaults' must be a mapping with keys "
                         f"{', '.join(sorted(DEFAULT_KEYS))}, got {defaults!r}")
    _no_unknown(path, defaults, DEFAULT_KEYS, "defaults")
    for key, kinds in (("n_boot", {"int"}), ("seed", {"int"}), ("max_images", {"int"})):
        if key in defaults:
            _check_value(path, _line(defaults, key), f"defaults key {key!r}", key, defaults[key], kinds)
    if "regression_margin" in defaults:
        _regression_margin(path, defaults, "defaults key 'regression_margin'")
    if "explainers" in defaults:
        _explainer_names(path, _line(defaults, "explainers"), defaults["explainers"])
    return defaults


def _datasets(path: Path, raw: dict) -> tuple[str, ...]:
    """The registered datasets the suite applies to (empty: any)."""
    if "datasets" not in raw:
        return ()
    line, datasets = _line(raw, "datasets"), raw["datasets"]
    if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
        raise SuiteError(path, line, f"'datasets' must be a non-empty list of dataset names (drop the key to apply "
                         f"the suite to every dataset), got {datasets!r}")
    from harness.data import list_datasets

    known = list_datasets()
    for name in datasets:
        if name not in known:
            raise SuiteError(path, line, f"unknown dataset {name!r}; valid datasets: {', '.join(known)}"
                             f"{_did_you_mean(name, known)}")
    return tuple(datasets)


def _calibration(path: Path, raw: dict, calibrating: bool) -> Path | None:
    """The calibration file a suite cites (relative to the suite's folder); it must exist."""
    if "calibration" not in raw:
        return None
    target = (path.parent / str(raw["calibration"])).resolve()
    if calibrating:
        return target
    if not target.is_file():
        raise SuiteError(path, _line(raw, "calibration"), f"calibration file {raw['calibration']!r} not found "
                         f"(looked for {target}); run `xai-harness calibrate --suite {path}` or drop the key")
    return target


def _parse_check(path: Path, entry: Any, defaults: dict) -> SuiteCheck:
    from harness.checks.registry import list_checks  # light: checks register on first use

    if not isinstance(entry, dict):
        raise SuiteError(path, defaults["__line__"], f"each check is a mapping, got {entry!r}")
    line = entry["__line__"]
    _no_unknown(path, entry, CHECK_KEYS, "check")
    specs = {s.name: s for s in list_checks()}
    name = entry.get("check")
    if name not in specs:
        raise SuiteError(path, _line(entry, "check"), f"unknown check {name!r}; valid checks: "
                         f"{', '.join(sorted(specs))}{_did_you_mean(name, specs)}")
    spec = specs[name]
    check_id = entry.get("id", name)
    if not isinstance(check_id, str) or not check_id.strip():
        raise SuiteError(path, _line(entry, "id"), f"'id' must be a name, got {check_id!r}")
    condition = _condition(path, _line(entry, "require"), entry)
    params = _params(path, entry, spec, {**_common(defaults), **_mapping(path, entry, "params")})
    explainers = _explainers(path, entry, spec, defaults)
    overrides = {}
    for key, o in _mapping(path, entry, "overrides").items():
        key_line = _line(entry.get("overrides") or {}, key)
        if not isinstance(o, dict):
            raise SuiteError(path, key_line, f"override {key!r} must be a mapping with keys {sorted(OVERRIDE_KEYS)}")
        _override_target(path, key_line, str(key))
        _no_unknown(path, o, OVERRIDE_KEYS, f"override {key!r}")
        if "require" in o or "severity" in o:
            _condition(path, o["__line__"], {"require": str(condition), **o})
        if "skip" in o and not isinstance(o["skip"], bool):
            raise SuiteError(path, _line(o, "skip"), f"override {key!r}: 'skip' must be true or false, got {o['skip']!r}")
        _params(path, o, spec, _mapping(path, o, "params"))
        overrides[str(key)] = {k: _strip(v) if k == "params" else v for k, v in _strip(o).items()}
    margin = _regression_margin(path, entry, "check key 'regression_margin'") if "regression_margin" in entry \
        else float(defaults.get("regression_margin", DEFAULT_REGRESSION_MARGIN))
    return SuiteCheck(check_id, name, condition, explainers, params, overrides, line,
                      str(entry.get("description", spec.description)), margin)


def _regression_margin(path: Path, owner: dict, what: str) -> float:
    """``owner["regression_margin"]``: a finite number >= 0, in the check's own units."""
    value = owner["regression_margin"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise SuiteError(path, _line(owner, "regression_margin"), f"{what} must be a number >= 0 (the largest "
                         f"worsening against a --baseline run, in the check's own units, that is not a "
                         f"regression; default {DEFAULT_REGRESSION_MARGIN}), got {value!r}")
    return float(value)


def _mapping(path: Path, d: dict, key: str) -> dict:
    """``d[key]`` as a plain mapping (absent or null: empty); anything else is a SuiteError."""
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SuiteError(path, _line(d, key), f"{key!r} must be a mapping, got {value!r}")
    return _strip(value)


def _condition(path: Path, line: int, entry: dict) -> Condition:
    if "require" not in entry:
        raise SuiteError(path, line, "missing 'require', e.g. require: ci_low >= 0.10")
    try:
        return Condition.parse(entry["require"], severity=entry.get("severity", "fail"))
    except ValueError as err:
        raise SuiteError(path, line, str(err)) from None


def _params(path: Path, owner: dict, spec, params: dict) -> dict:
    """Check every parameter's name, type and range against the check function's signature.

    ``owner``: the mapping that holds the ``params`` key (its lines locate the errors).
    """
    signature = {n: p for n, p in inspect.signature(spec.fn).parameters.items() if n not in ("ctx", "explainer")}
    written = owner.get("params") if isinstance(owner.get("params"), dict) else {}
    for key, value in params.items():
        line = _line(written, key) if key in written else _line(owner, "params")
        if key not in signature and key != "finding":  # every check takes finding: runner.finding_context
            raise SuiteError(path, line, f"check {spec.name!r} has no parameter {key!r}; valid: "
                             f"{', '.join(signature)}{_did_you_mean(key, signature)} (and 'finding', on "
                             "multi-label models)")
        _check_value(path, line, f"parameter {key!r} of check {spec.name!r}", key, value,
                     _kinds(signature.get(key, FINDING_PARAM).annotation))
        if key in PERTURBATION_PARAMS and isinstance(value, str):
            _perturbation(path, line, key, value, geometric=PERTURBATION_PARAMS[key])
    return params


_KIND_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false", "None": "null"}


def _kinds(annotation: Any) -> set[str] | None:
    """The plain kinds an annotation allows (``"float | str"`` -> {float, str}); None: not checked."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    kinds = {part.strip() for part in str(text).split("|")}
    return kinds if kinds <= set(_KIND_WORDS) else None


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "None":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def _check_value(path: Path, line: int, what: str, key: str, value: Any, kinds: set[str] | None) -> None:
    """Raise SuiteError when ``value`` is not of ``kinds`` or outside the range of parameter ``key``."""
    if kinds is None:
        return
    if not any(_is_kind(value, k) for k in kinds):
        words = " or ".join(_KIND_WORDS[k] for k in sorted(kinds, key=list(_KIND_WORDS).index))
        raise SuiteError(path, line, f"{what} must be {words}, got {value!r}")
    low, inclusive, high = RANGES.get(key, (None, True, None))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if value != value or (low is not None and (value < low or (value == low and not inclusive))) or \
            (high is not None and value > high):
        bounds = [f"{'at least' if inclusive else 'more than'} {low:g}"] if low is not None else []
        bounds += [f"at most {high:g}"] if high is not None else []
        raise SuiteError(path, line, f"{what} must be {' and '.join(bounds) or 'a finite number'}, got {value!r}")


def _perturbation(path: Path, line: int, key: str, text: str, *, geometric: bool) -> None:
    from harness.data.perturbations import parse_perturbation

    try:
        change = parse_perturbation(text)
    except (ValueError, TypeError, KeyError) as err:  # KeyError: an unknown name (UnknownNameError)
        raise SuiteError(path, line, f"parameter {key!r}: {err}") from None
    if geometric and not change.geometric:
        raise SuiteError(path, line, f"parameter {key!r} needs a geometric transform (hflip, vflip, rotate, "
                         f"shift), got {text!r}")


def _explainers(path: Path, entry: dict, spec, defaults: dict) -> tuple[str, ...]:
    """The check's explainers (``("-",)`` for checks that use none)."""
    if not spec.needs_explainer:
        if "explainers" in entry:
            raise SuiteError(path, _line(entry, "explainers"), f"check {spec.name!r} uses no explainer; "
                             "drop its 'explainers' key")
        return ("-",)
    if "explainers" in entry:
        return _explainer_names(path, _line(entry, "explainers"), entry["explainers"])
    if "explainers" in defaults:
        return _explainer_names(path, _line(defaults, "explainers"), defaults["explainers"])
    return ("gradcam",)


def _explainer_names(path: Path, line: int, names: Any) -> tuple[str, ...]:
    """A non-empty list of registered explainer names (a single name is a list of one)."""
    from harness.explain import EXPLAINERS, list_explainers

    list_explainers()  # registers the built-in explainers
    valid = ", ".join(EXPLAINERS.names())
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SuiteError(path, line, f"'explainers' must be a non-empty list of explainer names (an empty list "
                         f"makes no item), got {names!r}; valid explainers: {valid}")
    for n in names:
        if n not in EXPLAINERS:
            raise SuiteError(path, line, f"unknown explainer {n!r}; valid explainers: {valid}"
                             f"{_did_you_mean(n, EXPLAINERS.names())}")
    if len(set(names)) != len(names):
        raise SuiteError(path, line, f"explainer listed twice in {names!r}")
    return tuple(names)


def _override_target(path: Path, line: int, key: str) -> None:
    """An override applies to ``profile:<cpu|gpu>``, a registered architecture, a zoo model or
    ``checkpoint:<stem>``; anything else (a typo) would never apply, so it is an error."""
    if key in PROFILE_TARGETS + FAMILY_TARGETS or (key.startswith(CHECKPOINT_TARGET) and len(key) > len(CHECKPOINT_TARGET)):
        return
    if key.startswith("profile:"):
        raise SuiteError(path, line, f"unknown profile in override {key!r}; valid: {', '.join(PROFILE_TARGETS)}"
                         f"{_did_you_mean(key, PROFILE_TARGETS)}")
    if key.startswith("family:"):
        raise SuiteError(path, line, f"unknown family in override {key!r}; valid: {', '.join(FAMILY_TARGETS)}"
                         f"{_did_you_mean(key, FAMILY_TARGETS)}")
    models = _zoo_names()
    if key in models:
        return
    from harness.models.architectures import list_architectures

    architectures = list_architectures()
    if key in architectures:
        return
    raise SuiteError(path, line, f"override {key!r} names no profile, family, zoo model or architecture, so it "
                     f"would never apply; valid: {', '.join(PROFILE_TARGETS + FAMILY_TARGETS)}, a zoo model "
                     f"({', '.join(models) or 'none'}), an architecture (`xai-harness list architectures`) or "
                     f"checkpoint:<file stem>{_did_you_mean(key, [*PROFILE_TARGETS, *models, *architectures])}")


def _zoo_names() -> list[str]:
    """Model names of the active zoo and of the shipped one (a suite may be shared by both)."""
    from harness.models.zoo import DEFAULT_ZOO, ZooError, list_zoo

    names: list[str] = []
    for source in (None, DEFAULT_ZOO):
        try:
            names += [e.name for e in list_zoo(source) if e.name not in names]
        except ZooError:
            continue  # a broken zoo is reported where it is used (--model); here it names nothing
    return names


def _did_you_mean(name: Any, choices: Any) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


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
            raise SuiteError(path, _line(d, key), f"unknown {what} key {key!r}; valid keys: "
                             f"{', '.join(sorted(valid))}{_did_you_mean(key, valid)}")


def _unique_ids(path: Path, checks: list[SuiteCheck]) -> None:
    seen: dict[str, int] = {}
    for c in checks:
        if c.id in seen:
            raise SuiteError(path, c.line, f"duplicate check id {c.id!r} (first at line {seen[c.id]})")
        seen[c.id] = c.line
