"""The ``hf:`` data source: documents from ``datasets``.

``--data hf:LOCATION`` where LOCATION is

* a local ``.parquet``, ``.json``/``.jsonl``, ``.csv``/``.tsv`` or ``.txt`` file (or a directory
  ``datasets`` can read), loaded with the matching packaged builder, split ``train``; or
* ``NAME[:CONFIG][:SPLIT]`` of a Hub dataset (split default ``train``; ``NAME::SPLIT`` skips the config).

``streaming=True`` iterates without materialising the Arrow cache. The text comes from
``text_field``; when the column is missing the error names the columns that exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from apt_core.errors import APTError, redact

__all__ = ["hf_documents", "parse_location", "BUILDERS"]

#: File suffix -> ``datasets`` packaged builder (and its extra arguments).
BUILDERS: dict[str, tuple[str, dict]] = {
    ".parquet": ("parquet", {}), ".json": ("json", {}), ".jsonl": ("json", {}), ".ndjson": ("json", {}),
    ".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t"}), ".txt": ("text", {}), ".text": ("text", {}),
    ".md": ("text", {"sample_by": "document"}),
}


def parse_location(location: str) -> dict:
    """``{"path": ..., "name": ..., "split": ..., "kwargs": {...}}`` for ``load_dataset``."""
    path = Path(location).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix not in BUILDERS:
            raise APTError(f"cannot read {path} with datasets: use .parquet, .json, .jsonl, .csv, .tsv or .txt")
        builder, extra = BUILDERS[suffix]
        return {"path": builder, "name": None, "split": "train", "kwargs": {"data_files": str(path), **extra}}
    if path.is_dir():
        return {"path": str(path), "name": None, "split": "train", "kwargs": {}}
    if not location:
        raise APTError("hf: data needs a dataset name or a file, e.g. hf:wikitext:wikitext-2-raw-v1:train")
    parts = location.split(":")
    if len(parts) > 3:
        raise APTError(f"invalid hf data spec {location!r}: use NAME[:CONFIG][:SPLIT] or a local file")
    name, config, split = (parts + [None, None])[:3]
    if name.startswith((".", "/", "~")) or Path(name).suffix.lower() in BUILDERS:
        raise APTError(f"data file not found: {name}")
    return {"path": name, "name": config or None, "split": split or "train", "kwargs": {}}


def _load(location: str, streaming: bool):
    import datasets

    from .hub import hub_errors

    spec = parse_location(location)
    try:
        # Hub failures (401/403/404 ...) get the same one-line messages as push/pull; datasets reads
        # HF_ENDPOINT and HF_TOKEN itself (the endpoint when it is imported, like huggingface_hub).
        with hub_errors("load dataset", spec["path"]):
            return datasets.load_dataset(spec["path"], spec["name"], split=spec["split"], streaming=streaming,
                                         **spec["kwargs"])
    except datasets.exceptions.DatasetNotFoundError as exc:
        raise APTError(f"dataset not found: {spec['path']} ({_first_line(exc)})") from None
    except (FileNotFoundError, ValueError, ConnectionError, OSError, KeyError) as exc:
        raise APTError(f"cannot load hf:{location}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0]) if text else type(exc).__name__


def _columns(dataset) -> list[str] | None:
    names = getattr(dataset, "column_names", None)
    return list(names) if names else None


def hf_documents(location: str, *, text_field: str, streaming: bool) -> Iterator[str]:
    """Yield the *text_field* of every row (rows whose value is null are skipped)."""
    dataset = _load(location, streaming)
    columns = _columns(dataset)
    rows = iter(dataset)
    first = None
    if columns is None:  # a streaming dataset may only know its columns once it yields a row
        first = next(rows, None)
        if first is None:
            return
        columns = list(first)
    if text_field not in columns:
        raise APTError(f"hf:{location} has no {text_field!r} column; available columns: "
                       f"{', '.join(columns) or 'none'} (choose one with --text-field)")
    if first is not None:
        rows = _chain(first, rows)
    for number, row in enumerate(rows, 1):
        value = row[text_field]
        if value is None:
            continue
        if not isinstance(value, str):
            raise APTError(f"hf:{location} row {number}: {text_field!r} is {type(value).__name__}, not text")
        yield value


def _chain(first, rest) -> Iterator:
    yield first
    yield from rest
