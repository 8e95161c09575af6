"""The meta run: train the population on first use, then evaluate every subject's suite items on one split."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.explain import EXPLAINERS
from harness.meta.defects import Defect
from harness.meta.evaluate import evaluate_item, items_of, subject_fields
from harness.meta.families import Family
from harness.meta.subjects import Subject, build_context, needs_training, subjects_for
from harness.models.provision import ModelProvider
from harness.suites import Suite
from harness.threads import share_threads


@dataclass
class PopulationRun:
    """Records of one split plus what it cost."""

    split: str
    records: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    evaluate_seconds: float = 0.0
    subjects: list[str] = field(default_factory=list)


def population(families: Sequence[Family], defects: Sequence[Defect], seeds: Sequence[int]) -> list[Subject]:
    return [s for family in families for s in subjects_for(family, list(defects), tuple(seeds))]


def run_population(suite: Suite, subjects: Sequence[Subject], provider: ModelProvider, *, split: str,
                   console=None, progress: bool = True) -> PopulationRun:
    """Train what is missing (with the trainer's own progress), then evaluate each subject on ``split``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = PopulationRun(split)
    started = time.perf_counter()
    seen: set[str] = set()
    for subject in subjects:
        for entry in needs_training(subject):
            if entry.name not in seen:
                seen.add(entry.name)
                provider.run(entry)
    out.train_seconds = time.perf_counter() - started
    is_control = lambda name: bool(EXPLAINERS.meta(name)["is_control"]) if name in EXPLAINERS else False  # noqa: E731
    plan = [(s, items_of(suite, s, is_control)) for s in subjects]
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
        task = bar.add_task(f"meta: {split}", total=sum(len(items) for _, items in plan))
        for subject, items in plan:
            share_threads()  # re-balanced per model: other harness jobs may have started or ended
            ctx = build_context(subject, provider)
            bar.update(task, description=f"meta {split}: {subject.name}")
            for check, explainer in items:
                record = evaluate_item(ctx, suite, check, explainer, split=split, profile=provider.profile)
                bar.advance(task)
                if record is None:
                    continue
                record.update(subject_fields(subject, split))
                record["intended"] = bool(subject.defect and subject.defect.intends(
                    record["registered"], record["category"], record["params"]))
                out.records.append(record)
            out.subjects.append(subject.name)
            del ctx
            gc.collect()
    out.evaluate_seconds = time.perf_counter() - started
    return out


def reintend(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Saved records with ``intended`` recomputed from the current defect registry (values unchanged)."""
    from harness.meta.defects import DEFECTS

    out = []
    for record in records:
        defect = DEFECTS.get(record["defect"]) if record["defect"] in DEFECTS else None
        intended = bool(defect and defect.intends(record["registered"], record["category"], record.get("params", {})))
        out.append({**record, "intended": intended})
    return out


def rejudge(records: list[dict[str, Any]], suite: Suite, profile: str = "") -> list[dict[str, Any]]:
    """The records judged again with ``suite``'s current conditions (values do not depend on thresholds).

    The suite's overrides apply per record (profile, model family, architecture, model name), as in a
    run. Skips and errors stay as they are; a record whose item is no longer a gate for its model
    (removed, reported only or skipped) is dropped.
    """
    checks = {c.id: c for c in suite.checks}
    out = []
    for record in records:
        check = checks.get(record["check"])
        if check is None:
            continue
        condition, _, skip = check.for_model(record["subject"], record["architecture"], profile,
                                             record_model_family(record))
        if skip or condition.severity != "fail":
            continue
        record = dict(record)
        if record["verdict"] not in ("skip", "error"):
            nan = float("nan")
            value, low, high = (nan if record.get(k) is None else record[k] for k in ("value", "ci_low", "ci_high"))
            record["verdict"] = condition.judge(value, low, high).value
        record.update(threshold=condition.threshold, gate_on=condition.gate_on, direction=condition.direction)
        out.append(record)
    return out


def record_model_family(record: dict[str, Any]) -> str:
    """``cnn`` or ``vit`` (the suites' ``family:`` override key) of a record's model. Records written
    before ``model_family`` was stored name it through the meta family (only ``vit`` holds a ViT)."""
    return record.get("model_family") or ("vit" if record.get("family") == "vit" else "cnn")


def replace_checks(run: PopulationRun, fresh: PopulationRun, checks: Sequence[str]) -> PopulationRun:
    """``run`` whose records of ``checks`` for the subjects of ``fresh`` are ``fresh``'s (subject order kept)."""
    redone, wanted = set(fresh.subjects), set(checks)
    new_by_subject: dict[str, list[dict[str, Any]]] = {}
    for record in fresh.records:
        new_by_subject.setdefault(record["subject"], []).append(record)
    records, placed = [], set()
    for record in run.records:
        subject = record["subject"]
        if subject in redone and record["check"] in wanted:
            continue
        records.append(record)
        if subject in redone and subject not in placed:
            placed.add(subject)
            records.extend(new_by_subject.get(subject, []))
    for subject in fresh.subjects:
        if subject not in placed:
            records.extend(new_by_subject.get(subject, []))
    subjects = list(run.subjects) + [s for s in fresh.subjects if s not in set(run.subjects)]
    return PopulationRun(run.split, records, run.train_seconds + fresh.train_seconds, run.evaluate_seconds, subjects)
