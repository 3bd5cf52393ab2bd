"""Training data: documents from ``--data`` specs, tokenization into fixed-length blocks.

A ``--data`` value is ``scheme:location`` resolved through the ``data_sources`` registry
(:func:`iter_documents`). The core registers ``file`` (text, Markdown, JSON Lines files or a
directory of them) and ``default`` (the embedded Shakespeare corpus; ``default:train``,
``default:eval``, ``default:all``). A value without a scheme is a file path, and the bare word
``default`` is the embedded corpus. Plugins add schemes such as ``hf:``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path

from apt_core.errors import APTError

__all__ = [
    "iter_documents",
    "parse_data_spec",
    "file_documents",
    "default_documents",
    "default_corpus_text",
    "tokenize_documents",
    "TokenBlocks",
    "split_tail",
    "EVAL_FRACTION",
]

#: Fraction of the embedded corpus (its tail) held out for evaluation.
EVAL_FRACTION = 0.05
_TEXT_SUFFIXES = {".txt", ".md", ".text"}
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):(.*)$", re.DOTALL)


# ---------------------------------------------------------------------------------------- specs
def parse_data_spec(spec: str) -> tuple[str, str]:
    """Split a ``--data`` value into ``(scheme, location)``.

    ``default`` -> ``("default", "")``; ``hf:wikitext`` -> ``("hf", "wikitext")``; a path (including
    ``C:\\...`` and existing files whose names contain a colon) -> ``("file", path)``.
    """
    spec = str(spec)
    if spec == "default":
        return "default", ""
    match = _SCHEME_RE.match(spec)
    if match and not Path(spec).exists():
        return match.group(1).lower(), match.group(2)
    return "file", spec


def iter_documents(spec: str, text_field: str = "text", streaming: bool = False) -> Iterator[str]:
    """Documents (strings) named by a ``--data`` spec, via the ``data_sources`` registry."""
    from apt_core.registry import get_registry

    scheme, location = parse_data_spec(spec)
    loader = get_registry("data_sources").get(scheme)
    yield from loader(location, text_field=text_field, streaming=streaming)


# ---------------------------------------------------------------------------------------- sources
def file_documents(location: str, *, text_field: str = "text", streaming: bool = False) -> Iterator[str]:
    """Documents from a text/Markdown file (one document), a JSON Lines file (one per line, the
    ``text_field`` value) or a directory of such files (sorted by name)."""
    path = Path(location).expanduser()
    if not path.exists():
        raise APTError(f"data not found: {location}")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _TEXT_SUFFIXES | _JSONL_SUFFIXES) \
        if path.is_dir() else [path]
    if not files:
        raise APTError(f"no .txt, .md or .jsonl files in {path}")
    for file in files:
        if file.suffix.lower() in _JSONL_SUFFIXES:
            yield from _jsonl_documents(file, text_field)
        else:
            try:
                yield file.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise APTError(f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _jsonl_documents(file: Path, text_field: str) -> Iterator[str]:
    with open(file, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise APTError(f"{file}:{number}: invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or text_field not in record:
                raise APTError(f"{file}:{number}: no {text_field!r} field (set --text-field)")
            value = record[text_field]
            if not isinstance(value, str):
                raise APTError(f"{file}:{number}: field {text_field!r} is not a string")
            yield value


def default_corpus_text(split: str = "train") -> str:
    """The embedded corpus: ``train`` (all but the tail), ``eval`` (the held-out tail) or ``all``."""
    text = resources.files("apt_core").joinpath("corpus", "shakespeare.txt").read_text(encoding="utf-8")
    if split == "all":
        return text
    cut = text.rfind("\n", 0, int(len(text) * (1 - EVAL_FRACTION))) + 1
    if split == "train":
        return text[:cut]
    if split == "eval":
        return text[cut:]
    raise APTError(f"unknown split {split!r} of the default corpus (use train, eval or all)")


def default_documents(location: str = "", *, text_field: str = "text", streaming: bool = False) -> Iterator[str]:
    """The embedded corpus split named by *location* (empty = ``train``) as one document."""
    yield default_corpus_text(location or "train")


# ---------------------------------------------------------------------------------------- tokens
def tokenize_documents(documents: Iterable[str], tokenizer, add_eos: bool = True, batch: int = 256):
    """Concatenate the token ids of all documents (each followed by EOS) into one 1-D LongTensor."""
    import torch

    chunks: list[list[int]] = []
    pending: list[str] = []

    def flush() -> None:
        for ids in tokenizer.encode_batch(pending):
            chunks.append(ids + ([tokenizer.eos_id] if add_eos else []))
        pending.clear()

    for doc in documents:
        pending.append(doc)
        if len(pending) >= batch:
            flush()
    flush()
    flat = [i for ids in chunks for i in ids]
    if not flat:
        raise APTError("the data contains no text")
    return torch.tensor(flat, dtype=torch.long)


def split_tail(tokens, fraction: float = EVAL_FRACTION):
    """``(head, tail)`` of a token stream: the tail (a fixed ``fraction``) is the held-out split."""
    cut = int(len(tokens) * (1 - fraction))
    return tokens[:cut], tokens[cut:]


class TokenBlocks:
    """A token stream cut into non-overlapping blocks of ``block_size`` ids.

    Item ``i`` is ``{"input_ids": block, "labels": block}``; the model shifts labels itself.
    The remainder shorter than a block is dropped.
    """

    def __init__(self, tokens, block_size: int) -> None:
        if block_size < 2:
            raise APTError("block size (sequence length) must be at least 2")
        self.tokens = tokens
        self.block_size = block_size
        if len(self) == 0:
            raise APTError(f"not enough data: {len(tokens)} tokens, one block needs {block_size}")

    def __len__(self) -> int:
        return len(self.tokens) // self.block_size

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(index)
        block = self.tokens[index * self.block_size : (index + 1) * self.block_size]
        return {"input_ids": block, "labels": block}

    @property
    def num_tokens(self) -> int:
        return len(self) * self.block_size
