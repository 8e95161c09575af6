"""The CI example (examples/ci/): gate.sh imports a candidate, runs the example gate suite on a team's data
declared in YAML and exits with pytest's code: 0 for a healthy model, 1 for a model that fails a gate
(and regresses against the healthy run as baseline), 4 for a missing dataset file.

The data (PNG images, a labels CSV, lesion masks) and the healthy model (timm's ``test_resnet``, trained
here for a few seconds) are written into ``tmp_path``; the suite is examples/ci/gate.yaml with fewer
bootstrap resamples.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from harness.models.testing import toy_imageset

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ci"
SIZE = 32
IMPORT_ARGS = f"--architecture test_resnet --input-size {SIZE} --in-chans 1 --mean harness"


def write_dataset(root: Path, n: int = 48) -> Path:
    """Toy test images (a bright disk = the lesion) as PNGs, labels.csv and lesion masks laid out as
    examples/ci/data.yaml expects them; returns the YAML (the template, unchanged)."""
    data = toy_imageset("test", size=SIZE, n=n, seed=0)
    (root / "images").mkdir(parents=True)
    (root / "masks" / "lesions").mkdir(parents=True)
    rows = [["image_id", "patient_id", "Pneumothorax"]]
    for i in range(n):
        Image.fromarray(data.images[i, 0].numpy()).save(root / "images" / f"img{i:03d}.png")
        if data.labels[i]:
            mask = data.lesion_masks[i, 0].numpy().astype(np.uint8) * 255
            Image.fromarray(mask).save(root / "masks" / "lesions" / f"img{i:03d}.png")
        rows.append([f"img{i:03d}", f"p{i:03d}", str(int(data.labels[i]))])
    with open(root / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    (root / "data.yaml").write_text((EXAMPLE / "data.yaml").read_text())  # the template as shipped
    return root / "data.yaml"


def write_model(path: Path, *, epochs: int, seed: int = 0) -> Path:
    """A 1-channel ``test_resnet`` trained ``epochs`` epochs on toy blobs (0: untrained), saved as safetensors."""
    import timm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from a second thread on a shared machine
    torch.manual_seed(seed)
    net = timm.create_model("test_resnet", pretrained=False, in_chans=1, num_classes=2)
    train = toy_imageset("train", size=SIZE, n=96, seed=0)
    images, labels = (train.images.float() / 255 - 0.5) / 0.25, train.labels  # the harness normalisation
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).split(16):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(net(images[batch]), labels[batch]).backward()
            optimiser.step()
    save_file({k: v.detach().contiguous() for k, v in net.eval().state_dict().items()}, str(path))
    torch.set_num_threads(threads)
    return path


def write_suite(path: Path) -> Path:
    """examples/ci/gate.yaml as shipped, with 100 bootstrap resamples instead of 1000 (speed)."""
    text = (EXAMPLE / "gate.yaml").read_text()
    assert "n_boot: 1000" in text
    path.write_text(text.replace("n_boot: 1000", "n_boot: 100"))
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ci")
    return {"root": root, "dataset": write_dataset(root / "data"), "suite": write_suite(root / "gate.yaml"),
            "healthy": write_model(root / "healthy.safetensors", epochs=3),
            "untrained": write_model(root / "untrained.safetensors", epochs=0, seed=1)}


def gate(ws: dict, name: str, *args: str, dataset: Path | None = None) -> subprocess.CompletedProcess:
    """Run gate.sh as a CI job would (caches in tmp, one thread); the artifacts go to ``<root>/<name>``."""
    root = ws["root"]
    env = {**os.environ, "GATE_PYTHON": sys.executable, "GATE_IMPORT_ARGS": IMPORT_ARGS, "OMP_NUM_THREADS": "1",
           "XAI_HARNESS_THREADS": "1",            "XAI_HARNESS_CACHE": str(root / "cache"), "XAI_HARNESS_CHECKPOINTS": str(root / "ckpt"),
           "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    command = ["bash", str(EXAMPLE / "gate.sh"), "--dataset", str(dataset or ws["dataset"]), "--suite",
               str(ws["suite"]), "--report-dir", str(root / "reports"), "--artifact-dir", str(root / name), *args]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def verdicts(results: Path) -> dict[tuple[str, str], str]:
    records = json.loads(results.read_text())["records"]
    return {(r["check"], r["explainer"]): r["verdict"] for r in records}


@pytest.mark.slow
def test_gate_passes_a_healthy_candidate_fails_a_bad_one_and_refuses_bad_usage(workspace):
    ws = workspace
    healthy = gate(ws, "healthy", "--weights", str(ws["healthy"]), "--strict")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert (ws["healthy"].with_suffix(".json")).is_file()  # imported once, by gate.sh
    assert (ws["root"] / "healthy" / "index.html").read_text().count("<html") == 1
    gates = verdicts(ws["root"] / "healthy" / "results.json")
    assert gates[("performance_auroc", "-")] == "pass" and gates[("localisation_diffgradcam", "gradcam")] == "pass"
    assert {v for (check, explainer), v in gates.items() if explainer != "random"} == {"pass"}
    assert "healthy/index.html" in healthy.stderr
    gated = json.loads((ws["root"] / "healthy" / "candidate-manifest.json").read_text())
    assert gated["sha256"] == hashlib.sha256(ws["healthy"].read_bytes()).hexdigest()
    run_meta = json.loads((ws["root"] / "healthy" / "results.json").read_text())["meta"]  # the report names them too
    assert run_meta["checkpoint"] == {"path": str(ws["healthy"].resolve()), "sha256": gated["sha256"]}

    # An untrained candidate, against the healthy run as the last release's baseline: AUROC fails its floor and
    # regresses.
    bad = gate(ws, "bad", "--weights", str(ws["untrained"]), "--baseline", str(ws["root"] / "healthy" / "results.json"))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    results = json.loads((ws["root"] / "bad" / "results.json").read_text())
    assert verdicts(ws["root"] / "bad" / "results.json")[("performance_auroc", "-")] == "fail"
    compared = {(e["check"], e["explainer"]): e["verdict"] for e in results["baseline"]}
    assert compared[("performance_auroc", "-")] == "regressed"
    assert (ws["root"] / "bad" / "index.html").is_file()

    missing = gate(ws, "missing", "--weights", str(ws["healthy"]), dataset=ws["root"] / "absent.yaml")
    assert missing.returncode == 4, missing.stdout + missing.stderr
    assert "absent.yaml does not exist" in missing.stdout + missing.stderr
    assert not (ws["root"] / "missing" / "index.html").exists()


def test_example_files_are_consistent():
    """Every threshold of the example suite is marked a placeholder; the workflow runs gate.sh and always
    uploads the report; gate.sh parses."""
    import yaml

    suite = (EXAMPLE / "gate.yaml").read_text()
    requires = [line for line in suite.splitlines() if re.match(r"\s*require:", line)]
    assert len(requires) == len(yaml.safe_load(suite)["checks"]) >= 5
    assert [line for line in requires if "PLACEHOLDER" not in line] == []
    steps = yaml.safe_load((EXAMPLE / "release-gate.yml").read_text())["jobs"]["gate"]["steps"]
    assert any("examples/ci/gate.sh" in step.get("run", "") for step in steps)
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    assert subprocess.run(["bash", "-n", str(EXAMPLE / "gate.sh")]).returncode == 0
