"""Token-file corpora (WikiText/PTB format): ids, vocabulary, BPTT batches and the OOV policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from prunecli.cli.main import cli
from prunecli.data import load_dataset
from prunecli.data.text import BpttLoader, TokenStream, batchify, write_markov_corpus
from prunecli.errors import DataError


def _corpus(root: Path, train: str, valid: str, test: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("train.txt", train), ("valid.txt", valid), ("test.txt", test)):
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_ids_follow_first_appearance_with_eos_per_line(tmp_path: Path) -> None:
    root = _corpus(tmp_path, " the cat <unk> \n the dog \n", "the <unk> dog\n", "cat\n")
    bundle = load_dataset("text", root)
    # by hand: the=0 cat=1 <unk>=2 <eos>=3 dog=4
    assert bundle.vocabulary.idx2word == ["the", "cat", "<unk>", "<eos>", "dog"]
    assert bundle.num_classes == 5
    assert bundle.train.ids.tolist() == [0, 1, 2, 3, 0, 4, 3]
    assert bundle.val.ids.tolist() == [0, 2, 4, 3]
    assert bundle.test.ids.tolist() == [1, 3]
    assert bundle.task == "language_model"


def test_batchify_and_bptt_chunks_match_distillers_layout() -> None:
    ids = torch.arange(11)
    # 11 tokens in 2 columns: 5 steps each, the last token dropped; column j holds ids[5j:5j+5]
    assert batchify(ids, 2).tolist() == [[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]]
    chunks = list(BpttLoader(TokenStream(ids), batch_size=2, bptt=3))
    assert len(chunks) == len(BpttLoader(TokenStream(ids), 2, 3)) == 2
    (x0, y0), (x1, y1) = chunks
    assert x0.tolist() == [[0, 5], [1, 6], [2, 7]] and y0.tolist() == [[1, 6], [2, 7], [3, 8]]
    assert x1.tolist() == [[3, 8]] and y1.tolist() == [[4, 9]]  # the tail chunk is shorter


def test_out_of_vocabulary_token_is_refused_with_its_position(tmp_path: Path) -> None:
    root = _corpus(tmp_path, "a b <unk>\n", "a b\nb zebra a\n", "a\n")
    with pytest.raises(DataError) as info:
        load_dataset("text", root)
    err = info.value
    assert err.location.file.endswith("valid.txt") and (err.location.line, err.location.column) == (2, 3)
    assert "'zebra'" in err.message and "dataset_options.oov=unk" in err.hint


def test_oov_policies_unk_and_extend(tmp_path: Path) -> None:
    root = _corpus(tmp_path, "a b <unk>\n", "a zebra\n", "b\n")
    unk = load_dataset("text", root, oov="unk")
    assert unk.val.ids.tolist() == [0, 2, 3]  # zebra read as <unk>
    extend = load_dataset("text", root, oov="extend")  # Distiller's vocabulary over all files
    assert extend.vocabulary.idx2word == ["a", "b", "<unk>", "<eos>", "zebra"]
    assert extend.val.ids.tolist() == [0, 4, 3]
    no_unk = _corpus(tmp_path / "no_unk", "a b\n", "a zebra\n", "b\n")
    with pytest.raises(DataError, match="no <unk>"):
        load_dataset("text", no_unk, oov="unk")


def test_cli_exits_2_naming_the_file_and_the_token(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus", "a b <unk>\n", "a b\n", "b q\n")
    result = CliRunner().invoke(
        cli,
        ["run", "--model", "word_language_model", "--dataset", "text", "--data-dir", str(root),
         "--epochs", "1", "--out-dir", str(tmp_path / "run")],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    text = "".join(result.output.split())  # the console wraps long lines
    assert "test.txt:1:3:" in text and "token'q'" in text and "oov=unk" in text
    assert "Traceback" not in result.output


def test_missing_split_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a\n")
    with pytest.raises(DataError, match="lacks valid.txt, test.txt"):
        load_dataset("text", tmp_path)


def test_generated_corpus_is_deterministic_and_closed(tmp_path: Path) -> None:
    a = load_dataset("text", write_markov_corpus(tmp_path / "a", seed=3))
    b = load_dataset("text", write_markov_corpus(tmp_path / "b", seed=3))
    assert torch.equal(a.train.ids, b.train.ids) and torch.equal(a.test.ids, b.test.ids)
    assert a.num_classes == 52  # w0..w49, <unk>, <eos>
    assert json.dumps(a.info["tokens"])  # plain data for the run directory
