"""Data specs, file/JSONL/default sources, token blocks, model specs."""

from __future__ import annotations

import json

import pytest
import torch

from apt_core import hookimpl
from apt_core.data import (
    TokenBlocks,
    default_corpus_text,
    iter_documents,
    parse_data_spec,
    split_tail,
    tokenize_documents,
)
from apt_core.errors import APTError
from apt_core.models import load_model, parse_model_spec
from apt_core.tokenizer import APTTokenizer


def test_parse_data_spec():
    assert parse_data_spec("default") == ("default", "")
    assert parse_data_spec("default:eval") == ("default", "eval")
    assert parse_data_spec("hf:wikitext:wikitext-2-raw-v1") == ("hf", "wikitext:wikitext-2-raw-v1")
    assert parse_data_spec("data/train.txt") == ("file", "data/train.txt")
    assert parse_data_spec("C:\\data\\x.txt") == ("file", "C:\\data\\x.txt")


def test_existing_path_with_colon_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes:v2.txt").write_text("hello")
    assert parse_data_spec("notes:v2.txt") == ("file", "notes:v2.txt")


def test_embedded_corpus_is_shipped_and_split(apt_pm):
    apt_pm()
    train, held_out = default_corpus_text("train"), default_corpus_text("eval")
    assert 900_000 < len(train) + len(held_out) < 1_100_000
    assert train + held_out == default_corpus_text("all")
    assert 0.04 < len(held_out) / (len(train) + len(held_out)) < 0.06
    assert "ROMEO:" in train and "Gutenberg" not in default_corpus_text("all")
    assert list(iter_documents("default")) == [train]
    assert list(iter_documents("default:eval")) == [held_out]
    with pytest.raises(APTError, match="unknown split"):
        list(iter_documents("default:test"))


def test_file_sources_text_jsonl_and_directories(apt_pm, tmp_path):
    apt_pm()
    (tmp_path / "a.txt").write_text("first document")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "second"}) + "\n\n" + json.dumps({"text": "third"}) + "\n")
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    assert list(iter_documents(str(tmp_path / "a.txt"))) == ["first document"]
    assert list(iter_documents(f"file:{tmp_path / 'b.jsonl'}")) == ["second", "third"]
    assert list(iter_documents(str(tmp_path))) == ["first document", "second", "third"]
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    assert list(iter_documents(str(tmp_path / "c.jsonl"), text_field="body")) == ["x"]
    with pytest.raises(APTError, match="no 'text' field"):
        list(iter_documents(str(tmp_path / "c.jsonl")))
    (tmp_path / "d.jsonl").write_text("{broken\n")
    with pytest.raises(APTError, match="d.jsonl:1: invalid JSON"):
        list(iter_documents(str(tmp_path / "d.jsonl")))
    with pytest.raises(APTError, match="data not found"):
        list(iter_documents(str(tmp_path / "missing.txt")))


def test_unknown_scheme_and_plugin_scheme(apt_pm):
    class Source:
        @hookimpl
        def apt_register_data_sources(self, register):
            register("mem", lambda location, *, text_field, streaming: iter([location.upper(), text_field]))

    apt_pm(Source())
    assert list(iter_documents("mem:abc", text_field="body")) == ["ABC", "body"]
    with pytest.raises(APTError, match="unknown data source scheme 'nope'"):
        list(iter_documents("nope:thing"))


def test_tokenize_blocks_and_split():
    tok = APTTokenizer.byte_level()
    tokens = tokenize_documents(["ab", "cde"], tok)
    assert tokens.tolist() == tok.encode("ab") + [tok.eos_id] + tok.encode("cde") + [tok.eos_id]
    blocks = TokenBlocks(torch.arange(10), 4)
    assert len(blocks) == 2 and blocks[1]["input_ids"].tolist() == [4, 5, 6, 7]
    with pytest.raises(IndexError):
        blocks[2]
    with pytest.raises(APTError, match="not enough data"):
        TokenBlocks(torch.arange(3), 4)
    head, tail = split_tail(torch.arange(100), 0.05)
    assert len(head) == 95 and tail.tolist() == list(range(95, 100))


def test_load_model_resolves_bare_paths_and_apt_scheme(apt_pm, tiny_checkpoint):
    apt_pm()
    assert parse_model_spec(str(tiny_checkpoint)) == ("apt", str(tiny_checkpoint))
    assert parse_model_spec("hf:gpt2") == ("hf", "gpt2")
    ids = torch.randint(4, 200, (1, 8))
    a, b = load_model(str(tiny_checkpoint)), load_model(f"apt:{tiny_checkpoint}")
    assert not a.training
    assert torch.equal(a(ids).logits, b(ids).logits)
    with pytest.raises(APTError, match="unknown model scheme 'hf'"):
        load_model("hf:gpt2")
