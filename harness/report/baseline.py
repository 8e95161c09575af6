"""Compare a run with a baseline run (``--baseline``): a paired bootstrap over patients per check.

Each measured check of the candidate is matched with the baseline's record of the same check id,
explainer and split. Where both recorded per-image samples (``details["samples"]``, see
``harness.checks.samples``) of the same images, both statistics are recomputed on every bootstrap
resample of the shared patients and the CI of the difference ``candidate - baseline`` is read
(Efron & Tibshirani 1993, the paired bootstrap; patients resampled with all their images). Where
either side has no per-image values, the two CIs are combined as independent normal intervals (an
unpaired, wider comparison) and the entry says so. A comparison that cannot be made says why
(``not compared: ...``); nothing is skipped silently.

Verdicts, with the direction taken from the check's condition (``>=``: higher is better):
``regressed`` when the CI of the difference lies entirely beyond ``-margin`` in the failing
direction; ``improved`` when it lies entirely on the better side of 0; else ``no significant change``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from harness.report.formatting import explainer_label, format_number

if TYPE_CHECKING:
    from rich.console import Console

    from harness.checks.result import CheckResult

#: Where a record keeps its comparison (``details``) and where the run lists them (results.json).
BASELINE_KEY = "baseline"
REGRESSED, IMPROVED, NO_CHANGE, NOT_COMPARED = "regressed", "improved", "no significant change", "not compared"
N_BOOT = 1000
_Z95 = 1.959963984540054


class BaselineError(ValueError):
    """A baseline that cannot be read: the message names the file and what to pass instead."""


@dataclass(frozen=True)
class Baseline:
    """A previous run's records, loaded from its ``results.json`` (or its run directory)."""

    path: Path
    run_id: str
    records: tuple[dict[str, Any], ...]

    @classmethod
    def load(cls, path: Path | str) -> Baseline:
        """Read a baseline run; raise :class:`BaselineError` naming the file when it is unreadable."""
        from harness.report.results_file import load_run

        path = Path(path).expanduser()
        hint = "pass a results.json written by xai-harness, or its run directory (reports/<run-id>)"
        try:
            document = load_run(path)
        except (OSError, ValueError) as err:  # missing, not JSON, no records, a newer schema
            raise BaselineError(f"--baseline {path}: cannot read it as a results file ({err}); {hint}") from None
        records = document["records"]
        bad = next((i for i, r in enumerate(records)
                    if not isinstance(r, dict) or not {"check", "verdict"} <= set(r)), None)
        if bad is not None:
            raise BaselineError(f"--baseline {path}: record {bad} has no 'check' and 'verdict': not a results file "
                                f"of xai-harness; {hint}")
        if not records:
            raise BaselineError(f"--baseline {path}: the run has no check records, so there is nothing to compare "
                                f"with; {hint}")
        return cls(path, str(document.get("run_id", path.stem)), tuple(records))

    def models(self) -> list[str]:
        return sorted({str(r.get("model")) for r in self.records})

    def find(self, candidate: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """The baseline record matching ``candidate`` (same check id, explainer, split), or None and why not."""
        same = [r for r in self.records
                if r.get("check") == candidate.get("check") and r.get("explainer") == candidate.get("explainer")]
        models = self.models()
        if candidate.get("model") in models:
            same = [r for r in same if r.get("model") == candidate.get("model")]
        elif len(models) > 1:
            return None, (f"the baseline has no record of model {candidate.get('model')!r} and several models "
                          f"({', '.join(models)}), so none is its counterpart")
        if not same:
            return None, (f"the baseline has no check {candidate.get('check')!r} with explainer "
                          f"{explainer_label(candidate)}")
        split = _split(candidate)
        matching = [r for r in same if _split(r) == split]
        if not matching:
            return None, f"the baseline measured split {_split(same[0])!r}, the candidate split {split!r}"
        return matching[0], ""

    def compare(self, candidate: Mapping[str, Any], margin: float) -> dict[str, Any]:
        """The comparison entry of one candidate record (a dict from ``CheckResult.to_dict``)."""
        entry = _entry(candidate, margin)
        entry["baseline_run"] = self.run_id
        if _unmeasured(candidate):
            return _not_compared(entry, f"the candidate's check did not measure a value ({candidate.get('verdict')})")
        base, why = self.find(candidate)
        if base is None:
            return _not_compared(entry, why)
        entry["baseline_model"] = base.get("model")
        if _unmeasured(base):
            return _not_compared(entry, f"the baseline's check did not measure a value ({base.get('verdict')}: "
                                        f"{base.get('message') or 'no message'})")
        entry = compare_records(candidate, base, margin, entry)
        if base.get("model") != candidate.get("model"):  # a single-model baseline stands for any model name
            entry["reason"] = "; ".join(filter(None, [f"baseline model {base.get('model')}", entry["reason"]]))
        return entry


def compare_records(candidate: Mapping[str, Any], base: Mapping[str, Any], margin: float,
                    entry: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compare two measured records of the same check: paired on per-image samples where both have them."""
    entry = entry if entry is not None else _entry(candidate, margin)
    mine, theirs = _samples(candidate), _samples(base)
    if mine and theirs:
        try:
            result = paired_comparison(mine, theirs, seed=int(candidate.get("seed") or 0))
        except (KeyError, TypeError, ValueError) as err:
            return _not_compared(entry, f"the per-image samples cannot be paired ({err})")
        if isinstance(result, str):
            return _not_compared(entry, result)
        entry.update(result)
    else:
        missing = "the candidate" if not mine else "the baseline"
        result = ci_comparison(candidate, base)
        if result is None:
            return _not_compared(entry, f"{missing} has no per-image values and the two records have no CIs")
        entry.update(result, reason=f"compared by the two 95% CIs (unpaired, normal approximation): {missing} "
                                    "has no per-image values for this check")
    return _judge(entry)


def paired_comparison(mine: Mapping[str, Any], theirs: Mapping[str, Any], *, seed: int = 0,
                      n_boot: int = N_BOOT) -> dict[str, Any] | str:
    """Paired cluster bootstrap of ``candidate - baseline`` on the images both sample sets hold.

    Returns the entry fields (``candidate``, ``baseline``, ``delta``, ``ci_low``, ``ci_high``,
    ``n_paired``, ``n_patients``, ``method``, ``reason``), or why the samples cannot be paired.
    """
    import torch

    from harness.metrics.stats import bootstrap_ci, paired_bootstrap

    if mine.get("kind") != theirs.get("kind") or mine.get("statistic") != theirs.get("statistic") or \
            (mine.get("options") or {}) != (theirs.get("options") or {}):
        return (f"the statistics differ (candidate {_statistic_words(mine)}, baseline {_statistic_words(theirs)})")
    if mine.get("dataset") != theirs.get("dataset"):
        return f"the images differ: candidate dataset {mine.get('dataset')}, baseline {theirs.get('dataset')}"
    rows_a, rows_b, patients = _pair_rows(mine, theirs)
    if isinstance(rows_a, str):
        return rows_a
    if len(set(patients)) < 2:
        return f"only {len(set(patients))} patient in common: a bootstrap over patients needs at least 2"
    groups = torch.tensor(patients)
    if mine.get("kind") == "statistic":
        fn, a, b, labels = _statistic_inputs(mine, theirs, rows_a, rows_b)
        if isinstance(fn, str):
            return fn
        boot = paired_bootstrap(a, b, labels, statistic=fn, groups=groups, n_boot=n_boot, seed=seed)
        both = ~(a.isnan() | b.isnan() | labels.isnan())  # the rows the bootstrap kept
        candidate, baseline = float(fn(a[both], labels[both])), float(fn(b[both], labels[both]))
    else:
        a, b = _column(mine["values"], rows_a), _column(theirs["values"], rows_b)
        both = ~(a.isnan() | b.isnan())
        boot = bootstrap_ci(a - b, groups=groups, n_boot=n_boot, seed=seed)  # = the paired bootstrap of the means
        candidate, baseline = float(a[both].mean()), float(b[both].mean())
    n_a, n_b = len(mine["image_index"]), len(theirs["image_index"])
    note = "" if n_a == n_b == len(rows_a) else f"paired on the {len(rows_a)} images both measured ({n_a} in the " \
                                                f"candidate, {n_b} in the baseline)"
    return {"candidate": candidate, "baseline": baseline, "delta": boot.estimate, "ci_low": boot.low,
            "ci_high": boot.high, "n_paired": boot.n, "n_patients": boot.n_groups, "method": "paired bootstrap",
            "reason": note}


def ci_comparison(candidate: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any] | None:
    """``candidate - baseline`` with a CI from the two records' CIs as independent normal intervals."""
    values = [_float(r.get(k)) for r in (candidate, base) for k in ("value", "ci_low", "ci_high")]
    if not all(math.isfinite(v) for v in values):
        return None
    (v_a, lo_a, hi_a), (v_b, lo_b, hi_b) = values[:3], values[3:]
    half = _Z95 * math.hypot((hi_a - lo_a) / (2 * _Z95), (hi_b - lo_b) / (2 * _Z95))
    delta = v_a - v_b
    return {"candidate": v_a, "baseline": v_b, "delta": delta, "ci_low": delta - half, "ci_high": delta + half,
            "method": "CIs"}


def verdict_of(ci_low: float, ci_high: float, direction: str, margin: float) -> str:
    """``regressed``, ``improved`` or ``no significant change`` for the CI of ``candidate - baseline``."""
    sign = -1.0 if direction == "<=" else 1.0  # make "better" positive
    low, high = sorted((sign * ci_low, sign * ci_high))
    if high < -margin:
        return REGRESSED
    if low > 0:
        return IMPROVED
    return NO_CHANGE


def judge_against_baseline(record: CheckResult, entry: dict[str, Any]) -> CheckResult:
    """``record`` with its comparison in ``details["baseline"]`` and a sentence appended to its message.

    A regressed gate that passed its condition fails (a reported check warns); controls and
    records that already fail keep their verdict.
    """
    from harness.checks.result import Verdict

    verdict = record.verdict
    if entry["verdict"] == REGRESSED and verdict is Verdict.PASS and record.role != "control":
        verdict = Verdict.FAIL if record.role == "gate" else Verdict.WARN
    if record.role == "control" and entry["verdict"] != NOT_COMPARED:
        entry = {**entry, "reason": "; ".join(filter(None, [entry["reason"], "a control: shown, never judged"]))}
    return dataclasses.replace(record, verdict=verdict, message=f"{record.message} {sentence(entry)}".strip(),
                               details={**record.details, BASELINE_KEY: entry})


def sentence(entry: Mapping[str, Any]) -> str:
    """The comparison as a sentence, e.g. ``Against baseline run X: REGRESSED: 0.412 vs 0.530, ...``."""
    head = f"Against baseline run {entry.get('baseline_run', '?')}:"
    if entry["verdict"] == NOT_COMPARED:
        return f"{head} not compared: {entry['reason']}."
    words = {REGRESSED: "REGRESSED (the CI of the difference lies beyond the margin in the failing direction)",
             IMPROVED: "improved", NO_CHANGE: "no significant change"}[entry["verdict"]]
    note = f"; {entry['reason']}" if entry.get("reason") else ""
    return (f"{head} {words}: {format_number(entry['candidate'])} vs {format_number(entry['baseline'])}, delta "
            f"{_delta_words(entry)}, margin {entry['margin']:g}{note}.")


def baseline_entries(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The comparison entries of a run's records, in record order (empty without ``--baseline``)."""
    return [dict(r["details"][BASELINE_KEY]) for r in records
            if isinstance(r.get("details"), Mapping) and isinstance(r["details"].get(BASELINE_KEY), Mapping)]


def render_baseline_markdown(document: Mapping[str, Any]) -> str:
    """The ``## Compared with the baseline`` section of summary.md ("" without a baseline)."""
    entries = document.get(BASELINE_KEY) or baseline_entries(document.get("records") or [])
    if not entries:
        return ""
    runs = sorted({str(e.get("baseline_run")) for e in entries})
    lines = [f"## Compared with the baseline (run {', '.join(runs)})", "",
             "Paired bootstrap over patients of candidate minus baseline on the same images; **regressed**: the "
             "95% CI of the difference lies beyond the check's margin in the failing direction (the item fails "
             "even when its absolute condition holds).", "",
             "| Check | Explainer | Model | Candidate | Baseline | Delta (95% CI) | Margin | Verdict | Note |",
             "|---|---|---|---:|---:|---|---:|---|---|"]
    for e in entries:
        cells = [f"`{e.get('check')}`", str(e.get("explainer")), str(e.get("model")),
                 format_number(e.get("candidate")), format_number(e.get("baseline")), _delta_words(e),
                 f"{e.get('margin', 0):g}", f"**{e['verdict']}**" if e["verdict"] == REGRESSED else e["verdict"],
                 e.get("reason") or ""]
        lines.append("| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def render_baseline_table(records: Iterable[Mapping[str, Any]], console: Console) -> None:
    """Print the comparison with the baseline under the verdict table (nothing without one); notes below it."""
    from rich.markup import escape
    from rich.table import Table

    entries = baseline_entries(records)
    if not entries:
        return
    runs = ", ".join(sorted({str(e.get("baseline_run")) for e in entries}))
    table = Table(title=f"compared with baseline run {runs}", title_justify="left")
    table.add_column("item", overflow="fold", min_width=24)  # long item names wrap; the numbers never do
    for name in ("candidate vs baseline", "delta [95% CI]", "verdict"):
        table.add_column(name, no_wrap=True)
    styles = {REGRESSED: "bold red", IMPROVED: "green", NO_CHANGE: "", NOT_COMPARED: "dim"}
    for e in entries:
        style = styles.get(e["verdict"], "")
        values = f"{format_number(e.get('candidate'))} vs {format_number(e.get('baseline'))}"
        table.add_row(escape(_item_name(e)), values, escape(_delta_words(e, brackets=True)),
                      f"[{style}]{e['verdict']}[/]" if style else e["verdict"])
    console.print(table)
    for e in entries:
        if e.get("reason"):
            console.print(f"  {_item_name(e)}: {e['reason']}", highlight=False, markup=False)


def _item_name(entry: Mapping[str, Any]) -> str:
    """``check[model-explainer]``, as pytest names the item."""
    explainer = entry.get("explainer")
    suffix = f"-{explainer}" if explainer not in (None, "-") else ""
    return f"{entry.get('check')}[{entry.get('model')}{suffix}]"


def _entry(candidate: Mapping[str, Any], margin: float) -> dict[str, Any]:
    return {"check": candidate.get("check"), "explainer": candidate.get("explainer"), "model": candidate.get("model"),
            "split": _split(candidate), "direction": candidate.get("direction"), "candidate": None, "baseline": None,
            "delta": None, "ci_low": None, "ci_high": None, "margin": float(margin), "verdict": NOT_COMPARED,
            "reason": ""}


def _judge(entry: dict[str, Any]) -> dict[str, Any]:
    low, high = _float(entry["ci_low"]), _float(entry["ci_high"])
    if not (math.isfinite(low) and math.isfinite(high)):
        return _not_compared(entry, "the bootstrap of the difference gave no CI (no pair with a finite statistic)")
    entry["verdict"] = verdict_of(low, high, str(entry.get("direction") or ">="), entry["margin"])
    if entry["verdict"] == NO_CHANGE and (low > 0 or high < 0):  # then the CI lies on the worse side
        entry["reason"] = "; ".join(filter(None, [entry.get("reason"), "worse than the baseline (the CI excludes 0), "
                                                  "but within the margin"]))
    for key in ("candidate", "baseline", "delta", "ci_low", "ci_high"):
        entry[key] = None if not math.isfinite(_float(entry[key])) else round(float(entry[key]), 5)
    return entry


def _not_compared(entry: dict[str, Any], reason: str) -> dict[str, Any]:
    entry.update(verdict=NOT_COMPARED, reason=reason)
    return entry


def _pair_rows(mine: Mapping[str, Any], theirs: Mapping[str, Any]):
    """Rows of each side for the images both hold (by image id, else index), and their patient ids."""
    key = "image_id" if "image_id" in mine and "image_id" in theirs else "image_index"
    where = {k: i for i, k in enumerate(theirs[key])}
    rows_a = [i for i, k in enumerate(mine[key]) if k in where]
    rows_b = [where[mine[key][i]] for i in rows_a]
    if not rows_a:
        return "no image in common with the baseline (same dataset, other images)", None, None
    patients = [mine["patient"][i] for i in rows_a]
    if patients != [theirs["patient"][j] for j in rows_b]:
        return "the images differ: the same image indices belong to other patients in the baseline", None, None
    return rows_a, rows_b, patients


def _statistic_inputs(mine, theirs, rows_a, rows_b):
    """The metric function, both sides' scores and the shared labels of a set-level statistic."""
    from harness.metrics import get_metric

    labels = _column(mine["labels"], rows_a)
    if not labels.equal(_column(theirs["labels"], rows_b)):
        return "the labels of the same images differ between the runs", None, None, None
    options = dict(mine.get("options") or {})
    metric = get_metric(mine["statistic"]).fn

    def fn(scores, y):
        return metric(scores, y, **options)

    return fn, _column(mine["scores"], rows_a), _column(theirs["scores"], rows_b), labels


def _column(values: list, rows: list[int]):
    import torch

    return torch.tensor([math.nan if values[i] is None else float(values[i]) for i in rows], dtype=torch.float64)


def _samples(record: Mapping[str, Any]) -> dict[str, Any] | None:
    samples = (record.get("details") or {}).get("samples")
    return samples if isinstance(samples, dict) and samples.get("image_index") is not None else None


def _split(record: Mapping[str, Any]) -> str:
    details = record.get("details") or {}
    return str(details.get("split") or (details.get("samples") or {}).get("split") or "test")


def _unmeasured(record: Mapping[str, Any]) -> bool:
    return record.get("verdict") in ("skip", "error") or not math.isfinite(_float(record.get("value")))


def _statistic_words(samples: Mapping[str, Any]) -> str:
    if samples.get("kind") == "statistic":
        return f"{samples.get('statistic')} {samples.get('options') or ''}".strip()
    return "a mean of per-image values"


def _delta_words(entry: Mapping[str, Any], *, brackets: bool = False) -> str:
    """``-0.050 (-0.07 to -0.03)``, or ``-0.050 [-0.07, -0.03]`` where space is short; ``*``: from the two CIs."""
    if entry.get("delta") is None:
        return "n/a"
    low, high = format_number(entry.get("ci_low")), format_number(entry.get("ci_high"))
    ci = f"[{low}, {high}]" if brackets else f"({low} to {high})"
    return f"{entry['delta']:+.3f} {ci}" + (" (from the CIs)" if entry.get("method") == "CIs" and not brackets else
                                          "*" if entry.get("method") == "CIs" else "")


def _float(x: Any) -> float:
    try:
        return math.nan if x is None else float(x)
    except (TypeError, ValueError):
        return math.nan
