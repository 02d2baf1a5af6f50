"""Word-level text corpora in the WikiText / Penn Treebank token-file format, for language models.

A corpus directory holds ``train.txt``, ``valid.txt`` and ``test.txt``: whitespace-separated
tokens, one sentence per line, rare words already replaced by ``<unk>``. Every line ends with an
``<eos>`` token (added here, as Distiller's ``data.Corpus`` does). The vocabulary is built from
the training file in order of first appearance; what happens to a validation or test token that
is not in it is the ``oov`` option:

* ``error`` (default) -- refuse the corpus, naming the file, line, column and token;
* ``unk`` -- read it as ``<unk>`` (which must then be in the vocabulary);
* ``extend`` -- add it to the vocabulary, as Distiller did (ids over all three files).

Batches follow Distiller's word-language-model example: each split is one token stream cut into
``batch_size`` columns (``batchify``), walked in order in chunks of ``bptt`` tokens; the target
of each token is the next one. The order never changes, so the hidden state can be carried from
one chunk to the next (truncated back-propagation through time).
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from prunecli.data.bundle import DataBundle
from prunecli.errors import DataError, SourceLocation

EOS = "<eos>"
UNK = "<unk>"
SPLIT_FILES = {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}
OOV_POLICIES = ("error", "unk", "extend")
#: Distiller's defaults: 35-token chunks, evaluation in 10 columns
DEFAULT_BPTT = 35
EVAL_BATCH_SIZE = 10
TEXT_HOW = (
    "put train.txt, valid.txt and test.txt there (WikiText-2 or Penn Treebank token files, "
    "one sentence per line)"
)


class Vocabulary:
    """Word <-> id, ids in order of first appearance."""

    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add(self, word: str) -> int:
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)

    def __contains__(self, word: str) -> bool:
        return word in self.word2idx


class TokenStream(Dataset):
    """One split as a 1-D tensor of token ids; item ``i`` is ``(token i, token i + 1)``."""

    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return max(int(self.ids.numel()) - 1, 0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[index], self.ids[index + 1]


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``(steps, batch_size)``: the stream cut into ``batch_size`` contiguous columns (tail dropped)."""
    steps = ids.numel() // batch_size
    return ids[: steps * batch_size].view(batch_size, steps).t().contiguous()


class _InOrder:
    """Stands in for a shuffling sampler: language-model chunks are always read in order."""

    def set_epoch(self, epoch: int) -> None:
        return None


class BpttLoader:
    """Chunks ``(inputs, targets)`` of ``bptt`` steps x ``batch_size`` columns, in stream order."""

    def __init__(self, stream: TokenStream, batch_size: int, bptt: int) -> None:
        self.data = batchify(stream.ids, batch_size)
        self.batch_size, self.bptt = batch_size, bptt
        self.sampler = _InOrder()

    def __len__(self) -> int:
        return math.ceil(max(self.data.size(0) - 1, 0) / self.bptt)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        last = self.data.size(0) - 1
        for start in range(0, last, self.bptt):
            length = min(self.bptt, last - start)
            yield self.data[start : start + length], self.data[start + 1 : start + 1 + length]


@dataclass
class TextBundle(DataBundle):
    """A corpus: token streams per split, the vocabulary, and BPTT loaders instead of shuffling ones.

    ``num_classes`` is the vocabulary size (what the decoder predicts); ``input_shape`` is
    ``(1,)``: one token per step, so a ``(1, 1)`` example input counts the MACs of one token.
    """

    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    bptt: int = DEFAULT_BPTT
    task: str = "language_model"

    def loaders(self, batch_size: int, workers: int = 0, seed: int = 0) -> tuple[BpttLoader, ...]:  # type: ignore[override]
        """(train, val, test); evaluation uses Distiller's 10 columns. Workers and seed do not apply."""
        train = BpttLoader(self.train, batch_size, self.bptt)  # type: ignore[arg-type]
        val = BpttLoader(self.val, EVAL_BATCH_SIZE, self.bptt)  # type: ignore[arg-type]
        test = BpttLoader(self.test, EVAL_BATCH_SIZE, self.bptt)  # type: ignore[arg-type]
        return train, val, test


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            location=SourceLocation(path),
            hint="token files must be UTF-8 text, one sentence per line",
        ) from None


def _tokenize(path: str, vocab: Vocabulary, oov: str, grow: bool) -> torch.Tensor:
    """Ids of every token of the file (plus ``<eos>`` per line); see the module doc for ``oov``."""
    ids: list[int] = []
    for number, line in enumerate(_read_lines(path), start=1):
        for match in _TOKEN.finditer(line):
            ids.append(
                _token_id(match.group(), vocab, oov, grow, SourceLocation(path, number, match.start() + 1))
            )
        ids.append(vocab.add(EOS) if grow or EOS in vocab or oov == "extend" else _eos_missing(path, number))
    return torch.tensor(ids, dtype=torch.long)


_TOKEN = re.compile(r"\S+")


def _token_id(word: str, vocab: Vocabulary, oov: str, grow: bool, where: SourceLocation) -> int:
    if word in vocab or grow or oov == "extend":
        return vocab.add(word)
    if oov == "unk" and UNK in vocab:
        return vocab.word2idx[UNK]
    why = (
        f"token '{word}' is not in the vocabulary of train.txt, which has no {UNK} to read it as"
        if oov == "unk"
        else f"token '{word}' is not in the vocabulary of train.txt (out-of-vocabulary policy: error)"
    )
    raise DataError(
        why,
        location=where,
        hint="set an out-of-vocabulary policy: --set dataset_options.oov=unk reads it as "
        f"{UNK}, --set dataset_options.oov=extend adds it to the vocabulary (Distiller's "
        "behaviour); or replace rare words by <unk> in the files",
    )


def _eos_missing(path: str, line: int) -> int:
    raise DataError(
        f"{EOS} is not in the vocabulary", location=SourceLocation(path, line),
        hint="train.txt must hold at least one line",
    )  # fmt: skip


def load_text(
    data_dir=None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    oov: str = "error",
    bptt: int = DEFAULT_BPTT,
    max_samples: int | None = None,
) -> TextBundle:
    """A WikiText/PTB-style corpus directory (see the module doc). ``val_fraction`` does not apply
    (``valid.txt`` is the validation split); ``max_samples`` keeps the first that many tokens of
    each split, for smoke runs."""
    from prunecli.data.sources import require_dir  # sources registers this loader

    root = require_dir(data_dir, "text", "train.txt, valid.txt and test.txt", TEXT_HOW)
    if oov not in OOV_POLICIES:
        raise DataError(
            f"text data: unknown oov policy {oov!r}", hint=f"give one of {', '.join(OOV_POLICIES)}"
        )
    if not isinstance(bptt, int) or bptt < 1:
        raise DataError(f"text data: bptt must be a positive integer, got {bptt!r}")
    paths = {split: os.path.join(root, name) for split, name in SPLIT_FILES.items()}
    missing = [os.path.basename(p) for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"text data directory {root} lacks {', '.join(missing)}",
            location=SourceLocation(root),
            hint=TEXT_HOW,
        )
    vocab = Vocabulary()
    streams = {split: _tokenize(path, vocab, oov, grow=split == "train") for split, path in paths.items()}
    if max_samples is not None:
        streams = {split: ids[: max_samples + 1] for split, ids in streams.items()}
    for split, ids in streams.items():
        if ids.numel() < 2:
            raise DataError(
                f"{paths[split]} holds fewer than two tokens",
                location=SourceLocation(paths[split]),
                hint="a language model needs at least one token and its successor per split",
            )
    bundle = TextBundle(
        name="text",
        train=TokenStream(streams["train"]),
        val=TokenStream(streams["val"]),
        test=TokenStream(streams["test"]),
        num_classes=len(vocab),
        input_shape=(1,),  # type: ignore[arg-type]
        classes=list(vocab.idx2word),
        vocabulary=vocab,
        bptt=bptt,
    )
    bundle.info.update(
        source=root, oov=oov, bptt=bptt, vocabulary=len(vocab), seed=seed, max_samples=max_samples,
        tokens={split: int(ids.numel()) for split, ids in streams.items()},
    )  # fmt: skip
    return bundle


def write_markov_corpus(
    directory: str | os.PathLike,
    *,
    vocab_size: int = 50,
    sentences: tuple[int, int, int] = (400, 40, 40),
    seed: int = 0,
) -> str:
    """Write a small corpus in the token-file format whose text a model can learn.

    Words are ``w0`` .. ``w{vocab_size-1}`` plus ``<unk>``; sentences have 4-12 words, and each
    word is followed by ``w((3 * i + 1) mod vocab_size)`` with probability 0.8, else by a random
    word, so a language model can get far below the uniform perplexity. Every word of the
    validation and test files occurs in the training file. Returns the directory.
    """
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab_size)]

    def sentence() -> str:
        current = rng.randrange(vocab_size)
        out = [words[current]]
        for _ in range(rng.randint(3, 11)):
            current = (3 * current + 1) % vocab_size if rng.random() < 0.8 else rng.randrange(vocab_size)
            out.append(words[current] if rng.random() > 0.02 else UNK)
        return " " + " ".join(out) + " "  # WikiText lines start and end with a space

    os.makedirs(directory, exist_ok=True)
    train_lines = [" ".join([*words, UNK])] + [sentence() for _ in range(sentences[0])]
    texts = {
        "train.txt": train_lines,
        "valid.txt": [sentence() for _ in range(sentences[1])],
        "test.txt": [sentence() for _ in range(sentences[2])],
    }
    for name, lines in texts.items():
        with open(os.path.join(directory, name), "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return os.fspath(directory)
