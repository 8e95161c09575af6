"""On-disk cache: location, atomic npz round trip without pickle, corrupt files regenerated."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import harness.data.synth_cxr as synth_module
from harness.data.cache import config_hash, data_cache_dir, load_arrays, save_arrays
from harness.data.synth_cxr import synth_cxr

OPTS = {"size": 64, "n_patients": 12, "seed": 5}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("synth-cxr-*.npz"))


def _assert_same(a, b) -> None:
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.lesion_masks, b.lesion_masks) and torch.equal(a.lung_masks, b.lung_masks)
    assert torch.equal(a.patient_ids, b.patient_ids) and a.config == b.config and a.name == b.name
    assert a.artifact_masks.keys() == b.artifact_masks.keys()
    assert all(torch.equal(a.artifact_masks[k], b.artifact_masks[k]) for k in a.artifact_masks)


def test_cache_dir_precedence(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XAI_HARNESS_CACHE", str(tmp_path / "x"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_cache_dir("/explicit") == Path("/explicit")
    assert data_cache_dir() == tmp_path / "x" / "data"
    monkeypatch.delenv("XAI_HARNESS_CACHE")
    assert data_cache_dir() == tmp_path / "xdg" / "xai-harness" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data_cache_dir() == Path.home() / ".cache" / "xai-harness" / "data"


def test_config_hash_is_order_independent() -> None:
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_save_load_round_trip_leaves_no_temp_files(tmp_path) -> None:
    arrays = {"x": np.arange(6, dtype=np.uint8).reshape(2, 3), "s": np.str_('{"k": 1}'), "m": np.ones(4, bool)}
    path = save_arrays(tmp_path / "sub" / "a.npz", arrays)
    loaded = load_arrays(path)
    assert loaded is not None and set(loaded) == set(arrays)
    assert all(np.array_equal(loaded[k], arrays[k]) for k in arrays)
    assert [p.name for p in path.parent.iterdir()] == ["a.npz"]


def test_save_refuses_object_arrays(tmp_path) -> None:
    with pytest.raises(TypeError):
        save_arrays(tmp_path / "o.npz", {"o": np.array([{"a": 1}], dtype=object)})
    assert not list(tmp_path.iterdir())


def test_load_missing_and_corrupt(tmp_path, caplog) -> None:
    assert load_arrays(tmp_path / "absent.npz") is None
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with caplog.at_level(logging.WARNING):
        assert load_arrays(bad) is None
    assert "bad.npz" in caplog.text


def test_dataset_cache_hit_equals_fresh_generation(tmp_path, monkeypatch) -> None:
    fresh = synth_cxr("val", cache_dir=str(tmp_path), **OPTS)
    files = _cache_files(tmp_path)
    assert len(files) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("generate() called although the cache holds this config")

    monkeypatch.setattr(synth_module, "generate", refuse)
    cached = synth_cxr("val", cache_dir=str(tmp_path), **OPTS)
    _assert_same(fresh, cached)


def test_other_config_other_file(tmp_path) -> None:
    synth_cxr("val", cache_dir=str(tmp_path), **OPTS)
    synth_cxr("val", cache_dir=str(tmp_path), **{**OPTS, "seed": 6})
    synth_cxr("test", cache_dir=str(tmp_path), **OPTS)
    assert len(_cache_files(tmp_path)) == 3


@pytest.mark.parametrize("damage", ["garbage", "truncate", "wrong_config"])
def test_corrupt_dataset_cache_is_regenerated(tmp_path, caplog, damage) -> None:
    fresh = synth_cxr("val", cache_dir=str(tmp_path), **OPTS)
    (path,) = _cache_files(tmp_path)
    if damage == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        arrays = load_arrays(path)
        arrays["config"] = np.str_('{"dataset": "something else"}')
        save_arrays(path, arrays)
    with caplog.at_level(logging.WARNING):
        again = synth_cxr("val", cache_dir=str(tmp_path), **OPTS)
    assert "regenerat" in caplog.text
    _assert_same(fresh, again)
    assert load_arrays(path) is not None  # rewritten, readable again
