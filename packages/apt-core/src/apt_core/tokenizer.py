"""APTTokenizer: byte-level BPE on the ``tokenizers`` library, with fixed special-token ids.

Ids 0-3 are always ``<pad> <unk> <bos> <eos>``. Byte-level pre-tokenization means every byte
sequence is representable, so ``<unk>`` never appears in practice (it exists for compatibility
with tokenizers that expect it). :meth:`APTTokenizer.byte_level` needs no training: 4 specials + 256
byte symbols and no merges.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from apt_core.errors import APTError

__all__ = ["APTTokenizer", "SPECIAL_TOKENS", "TOKENIZER_FILE"]

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
TOKENIZER_FILE = "tokenizer.json"


def _byte_level_parts() -> tuple[pre_tokenizers.PreTokenizer, decoders.Decoder]:
    # add_prefix_space=False: "ROMEO:" at the start of a prompt encodes like it does mid-text after "\n".
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), decoders.ByteLevel()


class APTTokenizer:
    """Wraps a :class:`tokenizers.Tokenizer`; ``encode`` / ``decode`` / ``save`` / ``from_pretrained``."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        for expected_id, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != expected_id:
                raise APTError(f"tokenizer does not have {token} at id {expected_id}; not an APT tokenizer")
        self._tok = tokenizer

    # ------------------------------------------------------------------ construction
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2) -> APTTokenizer:
        """Train byte-level BPE on *texts* (an iterable of documents)."""
        if vocab_size < len(SPECIAL_TOKENS) + 256:
            raise APTError(f"vocab_size must be at least {len(SPECIAL_TOKENS) + 256} for byte-level BPE")
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer, tok.decoder = _byte_level_parts()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def byte_level(cls) -> APTTokenizer:
        """The untrained fallback: one token per byte (vocab 260), no merges."""
        alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
        vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
        for symbol in alphabet:
            vocab[symbol] = len(vocab)
        tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
        tok.add_special_tokens(list(SPECIAL_TOKENS))
        tok.pre_tokenizer, tok.decoder = _byte_level_parts()
        return cls(tok)

    @classmethod
    def from_file(cls, path: str | Path) -> APTTokenizer:
        """Load a ``tokenizer.json`` file."""
        path = Path(path)
        if not path.is_file():
            raise APTError(f"missing tokenizer: {path} not found")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise APTError(f"invalid tokenizer file {path}: {str(exc).splitlines()[0]}") from None
        return cls(tok)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> APTTokenizer:
        """Load ``tokenizer.json`` from a checkpoint or model directory."""
        directory = Path(directory)
        if directory.is_file():
            return cls.from_file(directory)
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise APTError(f"missing tokenizer: {directory} has no {TOKENIZER_FILE}")
        return cls.from_file(path)

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` into *directory*; returns the file path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / TOKENIZER_FILE
        self._tok.save(str(path))
        return path

    # ------------------------------------------------------------------ use
    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Token ids of *text* (no special tokens unless asked)."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of several texts, encoded in parallel by the Rust core."""
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of *ids*; special tokens are dropped unless ``skip_special_tokens`` is false."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def backend(self) -> Tokenizer:
        """The underlying :class:`tokenizers.Tokenizer` (e.g. for ``PreTrainedTokenizerFast``)."""
        return self._tok

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3
    pad_token, unk_token, bos_token, eos_token = SPECIAL_TOKENS

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"APTTokenizer(vocab_size={self.vocab_size})"
