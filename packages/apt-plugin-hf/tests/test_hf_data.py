"""The ``hf:`` data source: local parquet/json/csv/text through ``datasets``, streaming, text-field errors."""

from __future__ import annotations

import json

import pytest

ROWS = [{"text": f"document number {i} " * 3, "label": i, "body": f"body {i}"} for i in range(12)]


@pytest.fixture
def data_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = {}
    files["parquet"] = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), files["parquet"])
    files["jsonl"] = tmp_path / "rows.jsonl"
    files["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    files["csv"] = tmp_path / "rows.csv"
    files["csv"].write_text("text,label,body\n" + "".join(f"{r['text']},{r['label']},{r['body']}\n" for r in ROWS))
    files["txt"] = tmp_path / "rows.txt"
    files["txt"].write_text("".join(r["text"] + "\n" for r in ROWS))
    return files


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "csv", "txt"])
@pytest.mark.parametrize("streaming", [False, True])
def test_local_files_through_iter_documents(data_files, kind, streaming):
    from apt_core.data import iter_documents

    docs = list(iter_documents(f"hf:{data_files[kind]}", text_field="text", streaming=streaming))
    assert docs == [r["text"] for r in ROWS]


@pytest.mark.parametrize("streaming", [False, True])
def test_missing_text_field_names_the_columns(data_files, streaming):
    from apt_core.data import iter_documents
    from apt_core.errors import APTError

    with pytest.raises(APTError, match=r"no 'content' column; available columns: text, label, body"):
        list(iter_documents(f"hf:{data_files['parquet']}", text_field="content", streaming=streaming))


def test_other_text_field_and_non_text_column(data_files):
    from apt_core.data import iter_documents
    from apt_core.errors import APTError

    assert list(iter_documents(f"hf:{data_files['jsonl']}", text_field="body"))[:2] == ["body 0", "body 1"]
    with pytest.raises(APTError, match="'label' is int, not text"):
        list(iter_documents(f"hf:{data_files['jsonl']}", text_field="label"))


def test_location_parsing_and_bad_locations(tmp_path):
    from apt_core.errors import APTError
    from apt_plugin_hf.datasets_source import parse_location

    assert parse_location("wikitext:wikitext-2-raw-v1:test") == \
        {"path": "wikitext", "name": "wikitext-2-raw-v1", "split": "test", "kwargs": {}}
    assert parse_location("user/data::validation")["split"] == "validation"
    assert parse_location("user/data")["name"] is None and parse_location("user/data")["split"] == "train"
    with pytest.raises(APTError, match="data file not found"):
        parse_location(str(tmp_path / "absent.parquet"))
    odd = tmp_path / "table.xlsx"
    odd.write_text("x")
    with pytest.raises(APTError, match="cannot read"):
        parse_location(str(odd))
    with pytest.raises(APTError, match="NAME\\[:CONFIG\\]\\[:SPLIT\\]"):
        parse_location("a:b:c:d")


def test_cli_train_accepts_hf_data_with_text_field(apt_cli, data_files, tmp_path):
    """The core trainer reads the hf: source through the registry (--text-field reaches it)."""
    bad = apt_cli("train", "--config", "tiny", "--steps", "1", "--out", tmp_path / "run",
                  "--data", f"hf:{data_files['parquet']}", "--text-field", "nope")
    assert bad.exit_code == 2 and "available columns: text, label, body" in bad.stderr


def test_hub_dataset_by_name_in_a_fresh_process(hub, tmp_path):
    """``hf:NAME`` through ``datasets`` against the Hub-protocol server.

    ``datasets`` (like ``huggingface_hub``) reads HF_ENDPOINT when it is imported, so this runs in a new
    process whose environment has it from the start, as a user's shell would.
    """
    import os
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo("tester/rows", repo_type="dataset", private=True)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "train.parquet")
    api.upload_file(path_or_fileobj=str(tmp_path / "train.parquet"), repo_id="tester/rows", repo_type="dataset",
                    path_in_repo="data/train-00000-of-00001.parquet")
    code = (
        "import json\n"
        "from apt_core.data import iter_documents\n"
        "from apt_core.errors import APTError\n"
        "out = {s: list(iter_documents('hf:tester/rows', text_field='text', streaming=s)) for s in (False, True)}\n"
        "try:\n"
        "    list(iter_documents('hf:tester/rows::train', text_field='content'))\n"
        "except APTError as exc:\n"
        "    out['error'] = str(exc)\n"
        "print(json.dumps({str(k): v for k, v in out.items()}))\n"
    )
    env = {**os.environ, "APT_LOAD_PLUGINS": "hf", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["False"] == out["True"] == [r["text"] for r in ROWS]
    assert "available columns: text, label, body" in out["error"]
