"""APT tokenizer <-> ``transformers`` fast tokenizer.

An APT tokenizer is a ``tokenizers.Tokenizer`` with ``<pad> <unk> <bos> <eos>`` at ids 0-3 and no
post-processor, so wrapping it in ``PreTrainedTokenizerFast`` with those special tokens gives an
``AutoTokenizer`` that encodes and decodes exactly like APT (no BOS/EOS added, no space clean-up).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["to_hf_tokenizer", "save_hf_tokenizer", "apt_tokenizer_from_hf_dir"]


def to_hf_tokenizer(tokenizer, model_max_length: int):
    """A ``PreTrainedTokenizerFast`` around an :class:`~apt_core.tokenizer.APTTokenizer`'s backend."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend,
        bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>",
        model_max_length=model_max_length,
        # APT decodes byte-exactly; the transformers default would collapse " ." and the like.
        clean_up_tokenization_spaces=False,
    )


def save_hf_tokenizer(tokenizer, directory: Path, model_max_length: int) -> None:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` loadable by ``AutoTokenizer``.

    ``tokenizer.json`` is APT's own file, byte for byte: transformers would add an (empty) template
    post-processor when saving, which changes nothing when encoding but would make export -> import
    differ from the original checkpoint.
    """
    to_hf_tokenizer(tokenizer, model_max_length).save_pretrained(str(directory))
    tokenizer.save(directory)


def apt_tokenizer_from_hf_dir(directory: Path):
    """The APT tokenizer stored in an exported folder (its ``tokenizer.json``)."""
    from apt_core.tokenizer import APTTokenizer

    return APTTokenizer.from_pretrained(directory)
