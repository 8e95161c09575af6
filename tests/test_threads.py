"""Thread sharing between harness jobs: fair shares, live-job registry, explicit settings win."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from harness import threads


def test_fair_share_divides_the_cores_and_never_drops_below_one():
    assert threads.fair_threads(2, 1) == 2
    assert threads.fair_threads(2, 2) == 1
    assert threads.fair_threads(16, 3) == 5
    assert threads.fair_threads(2, 5) == 1
    assert threads.fair_threads(8, 1, workers=4) == 2  # xdist workers that have not registered yet count too


def test_dead_jobs_are_forgotten_and_other_hosts_ignored(tmp_path):
    folder = tmp_path / "jobs"
    folder.mkdir()
    host = threads._host()
    (folder / f"{host}-{os.getpid()}").write_text("")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / f"{host}-{dead.pid}").write_text("")
    (folder / f"otherhost-{os.getpid()}").write_text("")
    assert threads.live_jobs(folder) == 1
    assert not (folder / f"{host}-{dead.pid}").exists()
    assert (folder / f"otherhost-{os.getpid()}").exists()


def test_explicit_threads_win_and_bad_values_are_named(monkeypatch, tmp_path):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("XAI_HARNESS_THREADS", "1")
        assert threads.share_threads(tmp_path) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("XAI_HARNESS_THREADS", "two")
        with pytest.raises(ValueError, match="XAI_HARNESS_THREADS='two'"):
            threads.explicit_threads()
    finally:
        torch.set_num_threads(before)


def test_two_live_jobs_on_two_cores_take_one_thread_each(tmp_path):
    """A second process registered in the same folder halves the first one's share (on 2 cores)."""
    script = textwrap.dedent(f"""
        import os, sys, time
        os.environ.pop("XAI_HARNESS_THREADS", None); os.environ.pop("OMP_NUM_THREADS", None)
        os.sched_setaffinity(0, {{0, 1}}) if len(os.sched_getaffinity(0)) >= 2 else None
        from pathlib import Path
        from harness import threads
        folder = Path({str(tmp_path)!r})
        alone = threads.share_threads(folder)
        (folder / "go").write_text("")
        while not (folder / "done").exists():
            time.sleep(0.05)
        print(alone)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("XAI_HARNESS_THREADS", "OMP_NUM_THREADS")}
    first = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(600):
            if (tmp_path / "go").exists():
                break
            first.poll()
            assert first.returncode is None, "the first job ended early"
            import time
            time.sleep(0.05)
        cores = min(2, threads.cores_available())
        second = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import os
            os.sched_setaffinity(0, {{0, 1}}) if len(os.sched_getaffinity(0)) >= 2 else None
            from pathlib import Path
            from harness import threads
            print(threads.share_threads(Path({str(tmp_path)!r})), threads.live_jobs(Path({str(tmp_path)!r})))
        """)], capture_output=True, text=True, env=env, check=True)
    finally:
        (tmp_path / "done").write_text("")
    alone = int(first.communicate(timeout=60)[0].strip())
    shared, jobs = map(int, second.stdout.split())
    assert jobs == 2 and alone == cores and shared == max(1, cores // 2)
    assert not any(p.name.endswith(f"-{first.pid}") for p in tmp_path.iterdir())  # unregistered at exit
