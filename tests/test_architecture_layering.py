"""The pipeline order is enforced: an earlier stage never imports a later one; only the plugin
imports pytest; importing the plugin does not import torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

STAGES = ["registry", "data", "models", "explain", "metrics", "checks", "suites", "report", "session", "meta"]
ROOT = Path(__file__).resolve().parents[1] / "harness"


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "harness" and parts[1] in STAGES else None


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_stage_imports_a_later_stage():
    bad = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        own = rel.parts[0]
        if own not in STAGES:
            continue
        for module in _imports(path):
            other = _stage(module)
            if other and STAGES.index(other) > STAGES.index(own):
                bad.append(f"{rel} imports {module}")
    assert not bad, bad


def test_metrics_never_depend_on_explainers():
    for path in (ROOT / "metrics").rglob("*.py"):
        assert not any(_stage(m) == "explain" for m in _imports(path)), path


def test_only_the_plugin_imports_pytest():
    offenders = [p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] != "plugin" and "pytest" in _imports(p)]
    assert not offenders, offenders


def test_plugin_import_is_cheap():
    code = "import sys, harness.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
