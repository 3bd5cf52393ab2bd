"""APTTokenizer: byte-level BPE, fixed special ids, fallback, save/load."""

from __future__ import annotations

import pydoc_data.topics

import pytest

from apt_core.errors import APTError
from apt_core.tokenizer import SPECIAL_TOKENS, APTTokenizer

TEXTS = list(pydoc_data.topics.topics.values())


def test_byte_level_fallback_round_trips_any_text():
    tok = APTTokenizer.byte_level()
    assert tok.vocab_size == 260
    text = "ROMEO: héllo\twörld 🙂\n\n  x"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert min(ids) >= 4


def test_trained_bpe_compresses_and_round_trips(tmp_path):
    tok = APTTokenizer.train(TEXTS, vocab_size=600)
    assert tok.vocab_size == 600
    text = TEXTS[3][:500] + " ünïcödé"
    ids = tok.encode(text)
    assert len(ids) < len(text.encode("utf-8")) * 0.6
    assert tok.decode(ids) == text
    assert tok.unk_id not in ids
    tok.save(tmp_path)
    again = APTTokenizer.from_pretrained(tmp_path)
    assert again.encode(text) == ids


def test_special_ids_are_fixed():
    for tok in (APTTokenizer.byte_level(), APTTokenizer.train(TEXTS[:50], vocab_size=300)):
        assert [tok.backend.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
        assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
        ids = tok.encode("abc", add_bos=True, add_eos=True)
        assert ids[0] == 2 and ids[-1] == 3
        assert tok.decode(ids) == "abc"
        assert "<eos>" in tok.decode(ids, skip_special_tokens=False)


def test_missing_or_invalid_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(APTError, match="missing tokenizer"):
        APTTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(APTError, match="invalid tokenizer"):
        APTTokenizer.from_pretrained(tmp_path)
    with pytest.raises(APTError, match="vocab_size"):
        APTTokenizer.train(TEXTS[:5], vocab_size=100)
