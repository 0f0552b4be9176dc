"""Reading a GGUF file's header: the few facts a memory plan needs.

A GGUF whose name does not say which Ornith size it is can still be planned
for, because the file describes itself: layer and head counts give the KV
cache per token, the trained context caps the context, and the chat template
says whether tool calls can be offered.  Only the metadata is read (a few MB
at most, however large the weights), and nothing but the standard library is
used, so any GGUF a user points at can be sized before a server is started.

Layout (GGUF v2 and v3; v1 files predate 2023-08 and are refused): magic
``GGUF``, u32 version, u64 tensor count, u64 key/value count, then the
key/values, each a string key, a u32 type and a value.  All little-endian.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel

# GGUF value types -> struct format of one scalar; 8 (string) and 9 (array) are read by hand.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9

FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4",
}  # fmt: skip
"""llama.cpp's ``general.file_type`` (enum llama_ftype), for naming the quant."""


class GgufError(ValueError):
    """The file is not a GGUF this reader understands; the message names the file."""


class GgufInfo(BaseModel):
    path: str
    size_bytes: int
    version: int
    tensor_count: int
    architecture: str
    name: str | None = None
    file_type: str | None = None
    block_count: int
    context_length: int
    head_count: int
    head_count_kv: int
    embedding_length: int
    key_length: int | None = None
    value_length: int | None = None
    expert_count: int | None = None
    expert_used_count: int | None = None
    vocab_size: int | None = None
    expert_bytes: int | None = None
    """Bytes of the routed experts' tensors (``*_exps``), from the tensor table:
    what ``--n-cpu-moe`` can move to RAM.  None when the file has none."""
    expert_layers: int | None = None
    chat_template: str | None = None

    @property
    def head_dim(self) -> int:
        """Keys and values may be longer than embedding / heads (Gemma, Qwen3); the
        file says so when they are, and the larger of the two is the safe bound."""
        given = [n for n in (self.key_length, self.value_length) if n]
        return max(given) if given else self.embedding_length // self.head_count

    @property
    def is_moe(self) -> bool:
        """Expert tensors, or an expert count, or an architecture named for experts."""
        return bool(self.expert_bytes or self.expert_count or "moe" in self.architecture.lower())

    @property
    def supports_tools(self) -> bool:
        """A template that never mentions ``tools`` cannot render a tool list."""
        return self.chat_template is not None and "tools" in self.chat_template


def read_header(path: Path | str) -> GgufInfo:
    """Read the metadata of a GGUF file; raise :class:`GgufError` saying what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            version, tensors, values, experts = _read_metadata(fh, size)
    except OSError as exc:
        raise GgufError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (struct.error, UnicodeDecodeError, _Truncated):
        raise GgufError(f"{path}: the GGUF header is truncated or corrupt") from None
    except GgufError as exc:
        raise GgufError(f"{path}: {exc}") from None
    arch = values.get("general.architecture")
    if not isinstance(arch, str):
        raise GgufError(f"{path}: no general.architecture in the GGUF header")

    def number(key: str, required: bool = True) -> int | None:
        value = values.get(f"{arch}.{key}")
        if isinstance(value, list):  # per-layer counts (e.g. OpenELM): the largest layer bounds the cache
            value = max(value, default=None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if required:
            raise GgufError(f"{path}: the GGUF header has no usable {arch}.{key}")
        return None

    heads = number("attention.head_count")
    file_type = values.get("general.file_type")
    tokens = values.get("tokenizer.ggml.tokens")
    vocab = number("vocab_size", required=False) or (tokens.count if isinstance(tokens, _Skipped) else None)
    return GgufInfo(
        path=str(path),
        size_bytes=size,
        version=version,
        tensor_count=tensors,
        architecture=arch,
        name=values.get("general.name") if isinstance(values.get("general.name"), str) else None,
        file_type=FILE_TYPES.get(file_type, f"type {file_type}") if isinstance(file_type, int) else None,
        block_count=number("block_count"),
        context_length=number("context_length"),
        head_count=heads,
        head_count_kv=number("attention.head_count_kv", required=False) or heads,
        embedding_length=number("embedding_length"),
        key_length=number("attention.key_length", required=False),
        value_length=number("attention.value_length", required=False),
        expert_count=number("expert_count", required=False),
        expert_used_count=number("expert_used_count", required=False),
        vocab_size=vocab,
        expert_bytes=experts[0] or None,
        expert_layers=experts[1] or None,
        chat_template=values.get("tokenizer.chat_template") if isinstance(values.get("tokenizer.chat_template"), str) else None,
    )


class _Truncated(Exception):
    pass


class _Skipped:
    """An array not kept in memory; only its length is remembered (a vocabulary's size)."""

    def __init__(self, count: int) -> None:
        self.count = count


_WANTED_ARRAYS = (".attention.head_count", ".attention.head_count_kv")
"""The only arrays worth keeping; the rest (vocabularies of 100k+ strings) are skipped."""


def _read_metadata(fh: BinaryIO, size: int) -> tuple[int, int, dict[str, Any], tuple[int, int]]:
    reader = _Reader(fh, size)
    if reader.raw(4) != b"GGUF":
        raise GgufError("not a GGUF file (no 'GGUF' magic)")
    version = reader.scalar("<I")
    if version not in (2, 3):
        raise GgufError(f"GGUF version {version} is not supported (2 and 3 are)")
    tensors, count = reader.scalar("<Q"), reader.scalar("<Q")
    values: dict[str, Any] = {}
    for _ in range(count):
        key = reader.string()
        kind = reader.scalar("<I")
        keep = kind != _ARRAY or key.endswith(_WANTED_ARRAYS)
        values[key] = reader.value(kind, keep)
    return version, tensors, values, _expert_tensors(reader, tensors, values)


def _expert_tensors(reader: _Reader, count: int, values: dict[str, Any]) -> tuple[int, int]:
    """(bytes, layers) of the routed-expert tensors, from the tensor table.

    Each entry is a name, its dimensions, a type and an offset into the data
    section; a tensor's size is the distance to the next offset (the last one
    runs to the end of the file), so no table of quantization block sizes is
    needed.  Layers are the distinct ``blk.N`` holding such tensors.
    """
    entries: list[tuple[int, str]] = []
    for _ in range(count):
        name = reader.string()
        dims = reader.scalar("<I")
        reader.skip(8 * dims)
        reader.scalar("<I")
        entries.append((reader.scalar("<Q"), name))
    if not entries:
        return 0, 0
    alignment = values.get("general.alignment")
    alignment = alignment if isinstance(alignment, int) and alignment > 0 else 32
    start = -(-reader.fh.tell() // alignment) * alignment
    entries.sort()
    total, layers = 0, set()
    for i, (offset, name) in enumerate(entries):
        end = entries[i + 1][0] if i + 1 < len(entries) else reader.size - start
        if "_exps" in name:
            total += max(0, end - offset)
            layers.add(name.split(".")[1] if name.startswith("blk.") else name)
    return total, len(layers)


class _Reader:
    """Sequential reads with a bound: a corrupt length must not make us allocate gigabytes."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh = fh
        self.size = size

    def raw(self, n: int) -> bytes:
        if n > self.size - self.fh.tell():
            raise _Truncated
        data = self.fh.read(n)
        if len(data) != n:
            raise _Truncated
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.raw(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.raw(self.scalar("<Q")).decode("utf-8")

    def skip(self, n: int) -> None:
        if n > self.size - self.fh.tell():
            raise _Truncated
        self.fh.seek(n, 1)

    def value(self, kind: int, keep: bool = True) -> Any:
        if kind == _STRING:
            return self.string()
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind != _ARRAY:
            raise GgufError(f"unknown GGUF value type {kind}")
        item, count = self.scalar("<I"), self.scalar("<Q")
        if not keep and item in _SCALARS:
            self.skip(count * struct.calcsize(_SCALARS[item]))
            return _Skipped(count)
        if not keep and item == _STRING:
            for _ in range(count):
                self.skip(self.scalar("<Q"))
            return _Skipped(count)
        return [self.value(item, keep) for _ in range(count)]
