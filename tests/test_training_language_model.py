"""Distiller's word language model: names, tied weights, truncated BPTT, perplexity, a full run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from prunecli.data import load_dataset
from prunecli.data.text import BpttLoader, TokenStream, write_markov_corpus
from prunecli.models import create_model, default_input_shape
from prunecli.training.loop import NoCompression, train_epoch
from prunecli.training.tasks import LANGUAGE_MODEL, LanguageModelObjective, evaluate_language_model

CPU = torch.device("cpu")


def _small(ntoken: int = 20, **kwargs):
    torch.manual_seed(0)
    spec = f"word_language_model?num_classes={ntoken}&emsize=8&nhid=8&dropout=0"
    return create_model(spec, **kwargs)[0]


def test_parameter_names_are_distillers_and_tied_weights_share_storage() -> None:
    model, spec = create_model("word_language_model")
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    # Distiller's defaults: WikiText-2's 33,278 words, 200 wide, two LSTM layers (4 gates x 200 rows)
    assert shapes["encoder.weight"] == (33_278, 200)
    assert shapes["rnn.weight_ih_l0"] == shapes["rnn.weight_hh_l1"] == (800, 200)
    assert shapes["decoder.weight"] == (33_278, 200)
    assert default_input_shape(spec) == (1, 1)
    tied, _ = create_model("word_language_model?num_classes=50&emsize=16&nhid=16&tied=true")
    names = [n for n, _ in tied.named_parameters()]
    assert "decoder.weight" not in names and tied.decoder.weight is tied.encoder.weight
    gru, _ = create_model("word_language_model?num_classes=50&rnn_type=GRU")
    assert tuple(gru.rnn.weight_ih_l0.shape) == (600, 200)  # 3 gates


def test_truncated_bptt_detaches_the_hidden_state_between_chunks() -> None:
    """The second chunk's gradient is that of a pass starting from the first chunk's final state
    as a constant: not from zeros (the state is carried), not through the first chunk (detached)."""
    model = _small()
    ids = torch.randint(0, 20, (41,), generator=torch.Generator().manual_seed(1))
    (x0, y0), (x1, y1) = list(BpttLoader(TokenStream(ids), batch_size=2, bptt=5))[:2]

    def grad_of_second_chunk(start) -> torch.Tensor:
        model.zero_grad()
        logits, _ = model(x1, start)
        torch.nn.functional.cross_entropy(logits.reshape(-1, 20), y1.reshape(-1)).backward()
        return model.rnn.weight_hh_l0.grad.clone()

    objective = LanguageModelObjective(clip=0)
    objective.begin(model)
    objective.loss(model, (x0, y0), CPU)
    attached = objective.hidden  # still part of the first chunk's graph
    constant = tuple(h.detach().clone() for h in attached)
    model.zero_grad()
    objective.loss(model, (x1, y1), CPU)[0].backward()
    got = model.rnn.weight_hh_l0.grad.clone()
    assert torch.allclose(got, grad_of_second_chunk(constant), rtol=1e-5, atol=1e-9)
    assert not torch.allclose(got, grad_of_second_chunk(None), rtol=1e-3)
    assert not torch.allclose(got, grad_of_second_chunk(attached), rtol=1e-3)


def test_perplexity_is_exp_of_the_mean_token_cross_entropy() -> None:
    model = _small().eval()
    ids = torch.randint(0, 20, (63,), generator=torch.Generator().manual_seed(2))
    loader = BpttLoader(TokenStream(ids), batch_size=3, bptt=4)
    stats = evaluate_language_model(model, loader, CPU)
    # by hand: one column at a time, token by token, log-softmax of the true next token
    columns = loader.data.t()
    nll, count, hits = 0.0, 0, 0
    with torch.no_grad():
        for column in columns:
            hidden = None
            for t in range(len(column) - 1):
                logits, hidden = model(column[t : t + 1].view(1, 1), hidden)
                logp = torch.log_softmax(logits.view(-1), dim=0)
                nll -= float(logp[column[t + 1]])
                hits += int(logp.argmax() == column[t + 1])
                count += 1
    assert stats.samples == count == 60
    assert stats.loss == pytest.approx(nll / count, rel=1e-5)
    assert LANGUAGE_MODEL.metrics(stats)["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert stats.top1 == pytest.approx(hits / count)


def test_training_learns_the_generated_corpus(tmp_path: Path) -> None:
    bundle = load_dataset("text", write_markov_corpus(tmp_path, seed=0))
    train, val, _ = bundle.loaders(4)
    torch.manual_seed(0)
    model, _ = create_model("word_language_model?emsize=32&nhid=32&dropout=0", num_classes=bundle.num_classes)
    before = LANGUAGE_MODEL.metrics(evaluate_language_model(model, val, CPU))["perplexity"]
    optimizer = torch.optim.SGD(model.parameters(), lr=20)  # Distiller's default
    for epoch in range(10):
        stats = train_epoch(model, train, None, optimizer, NoCompression(), epoch, len(train), CPU,
                            objective=LanguageModelObjective())  # fmt: skip
    after = LANGUAGE_MODEL.metrics(evaluate_language_model(model, val, CPU))["perplexity"]
    # an untrained model is near the uniform perplexity (the vocabulary size, 52); the corpus
    # follows its successor rule 80 % of the time, so a trained model is far below it
    assert before > 0.8 * bundle.num_classes
    assert after < 0.35 * bundle.num_classes
    assert stats.samples == sum(y.numel() for _, y in train)  # loss averaged over tokens


@pytest.mark.slow
def test_run_writes_perplexity_to_metrics_and_report(tmp_path: Path) -> None:
    from prunecli.training.app import run_training
    from prunecli.training.config import merge_config

    corpus = write_markov_corpus(tmp_path / "corpus", sentences=(120, 20, 20))
    schedule = tmp_path / "agp.yaml"
    schedule.write_text(
        "version: 1\npruners:\n  p:\n    class: AutomatedGradualPruner\n    initial_sparsity: 0.05\n"
        "    final_sparsity: 0.5\n    weights: [rnn.weight_ih_l0, rnn.weight_hh_l0, encoder.weight]\n"
        "policies:\n  - pruner: {instance_name: p}\n    starting_epoch: 0\n    ending_epoch: 2\n    frequency: 1\n"
    )
    config = merge_config({
        "schedule": str(schedule), "model": "word_language_model?emsize=16&nhid=16", "dataset": "text",
        "data_dir": corpus, "epochs": 2, "batch_size": 4, "lr": 20.0, "momentum": 0.0,
        "out_dir": str(tmp_path / "run"), "quiet": True,
    })  # fmt: skip
    result = run_training(config)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    for row in rows:
        assert row["perplexity"] == pytest.approx(math.exp(row["val_loss"]))
    assert result.test["perplexity"] == pytest.approx(math.exp(result.test["loss"]))
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["perplexity"] == pytest.approx(result.test["perplexity"])
    assert report["headline"]["dense"]["perplexity"] is not None
