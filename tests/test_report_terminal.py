"""The terminal table: checks x explainers as rows, models as columns, coloured verdicts and a total."""

from __future__ import annotations

import io
import math

from rich.console import Console

from harness.checks.result import CheckResult, Verdict
from harness.report import render_terminal_table, total_line


def make_result(model: str, check: str, explainer: str, verdict: Verdict, value: float) -> CheckResult:
    return CheckResult(
        suite="smoke", model=model, architecture=model.split("-")[0], explainer=explainer,
        check=check, category="localisation", metric=check, value=value, ci_low=math.nan,
        ci_high=math.nan, threshold=0.1, direction=">=", verdict=verdict, n=32, seed=0,
    )


RECORDS = [
    make_result("resnet18", "auroc", "", Verdict.PASS, 0.93),
    make_result("resnet18", "pointing_game", "gradcam", Verdict.PASS, 0.61),
    make_result("resnet18", "pointing_game", "ig", Verdict.WARN, 0.12),
    make_result("vit_small-shortcut", "auroc", "", Verdict.PASS, 0.88),
    make_result("vit_small-shortcut", "pointing_game", "gradcam", Verdict.FAIL, 0.04),
    make_result("vit_small-shortcut", "pointing_game", "ig", Verdict.ERROR, math.nan),
    make_result("vit_small-shortcut", "randomisation", "gradcam", Verdict.SKIP, math.nan),
]


def render(records) -> tuple[str, Console]:
    console = Console(record=True, width=120, color_system="truecolor", file=io.StringIO())
    render_terminal_table(records, console)
    return console.export_text(styles=False, clear=False), console


def test_table_lists_models_checks_and_verdicts() -> None:
    text, _ = render(RECORDS)
    for expected in ("resnet18", "vit_small-shortcut", "auroc", "pointing_game", "randomisation"):
        assert expected in text
    lines = text.splitlines()
    row = {(c[0], c[1]): c[2:] for c in ([p.strip() for p in line.strip("│┃ ").split("│")] for line in lines)
           if len(c) >= 5}
    assert row[("auroc", "-")][1:] == ["PASS 0.93", "PASS 0.88"]
    assert row[("pointing_game", "gradcam")][1:] == ["PASS 0.61", "FAIL 0.04"]
    assert row[("pointing_game", "ig")][1:] == ["WARN 0.12", "ERROR"]
    assert row[("randomisation", "gradcam")][1:] == ["-", "SKIP"]
    assert row[("auroc", "-")][0] == "value >= 0.1"
    assert "SKIP" in text
    assert "FAILED 7 items: gates 3 pass, 1 fail, 1 error, 1 skip; reported only 1 condition does not hold" in text


def test_verdicts_are_coloured() -> None:
    text, console = render(RECORDS)
    html = console.export_html(inline_styles=True)
    assert 'color: #800000; font-weight: bold">FAIL' in html  # fail in bold red
    assert 'color: #008000">PASS' in html  # pass in green


def test_dict_records_and_a_passing_total() -> None:
    text, _ = render([r.to_dict() for r in RECORDS[:2]])
    assert "PASSED 2 items: gates 2 pass" in text
    assert str(total_line([])) == "PASSED 0 items"


def test_controls_and_reported_checks_are_counted_apart_never_as_passes() -> None:
    import dataclasses

    control = dataclasses.replace(RECORDS[1], explainer="random", verdict=Verdict.UNINFORMATIVE, role="control")
    behaved = dataclasses.replace(RECORDS[1], explainer="random", check="x", verdict=Verdict.BEHAVED, role="control")
    reported = dataclasses.replace(RECORDS[0], check="ehr", verdict=Verdict.PASS, role="reported")
    line = str(total_line([RECORDS[0], control, behaved, reported]))
    assert line == ("PASSED 4 items: gates 1 pass; reported only 1 condition holds; "
                    "controls 1 control behaved, 1 control passed: condition uninformative")
