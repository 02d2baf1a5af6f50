"""Distiller's word language model (``examples/word_language_model``): ``RNNModel``.

An embedding ``encoder``, a recurrent ``rnn`` (LSTM, GRU or a plain tanh/ReLU RNN, ``nlayers``
deep) and a ``decoder`` Linear back to the vocabulary, whose weight can be tied to the
embedding's (Press & Wolf 2016; Inan et al. 2016). The parameter names are what Distiller's
schedules prune: ``encoder.weight``, ``rnn.weight_ih_l0``, ``rnn.weight_hh_l1``,
``decoder.weight``. With tied weights the decoder shares the embedding, so the model lists
only ``encoder.weight``.

``forward(tokens, hidden=None)`` takes a ``(seq_len, batch)`` tensor of token ids and returns
``(logits, hidden)`` with logits ``(seq_len, batch, ntoken)``: the hidden state is returned so
truncated back-propagation through time can carry it (detached) into the next chunk.
"""

from __future__ import annotations

import torch
from torch import nn

from prunecli.errors import ModelError

RNN_TYPES = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")

#: Distiller's defaults (examples/word_language_model/main.py): WikiText-2's vocabulary,
#: 200-wide embedding and hidden state, two layers, dropout 0.2
DEFAULT_NTOKEN = 33_278

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@torch.fx.wrap
def as_token_ids(tokens: torch.Tensor, ntoken: int) -> torch.Tensor:
    """Token ids as given; a float tensor is mapped into ``[0, ntoken)``.

    Tools that know only an input's shape (MAC counting, latency, tracing) feed zeros or random
    floats; those become valid ids, so the same tools work on language models. Wrapped for
    ``torch.fx``, so tracing keeps this check as one call instead of branching on a proxy.
    """
    if tokens.is_floating_point():
        return tokens.abs().long() % ntoken
    return tokens


class RNNModel(nn.Module):
    """Embedding -> recurrent layers -> Linear decoder, as Distiller's ``RNNModel``."""

    def __init__(
        self,
        rnn_type: str,
        ntoken: int,
        ninp: int,
        nhid: int,
        nlayers: int,
        dropout: float = 0.5,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        if rnn_type not in RNN_TYPES:
            raise ModelError(
                f"word language model: unknown rnn_type {rnn_type!r}",
                hint=f"give one of {', '.join(RNN_TYPES)}",
            )
        if tie_weights and nhid != ninp:
            raise ModelError(
                f"word language model: tied weights need nhid == emsize (got {nhid} and {ninp})",
                hint="give the same emsize and nhid, or tied=false",
            )
        self.rnn_type, self.ntoken, self.ninp, self.nhid, self.nlayers = rnn_type, ntoken, ninp, nhid, nlayers
        self.tie_weights = tie_weights
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ("LSTM", "GRU"):
            self.rnn: nn.RNNBase = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            nonlinearity = "tanh" if rnn_type == "RNN_TANH" else "relu"
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.init_weights()

    def init_weights(self) -> None:
        """Distiller's initialisation: uniform(-0.1, 0.1) embedding and decoder, zero decoder bias."""
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, tokens: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        emb = self.drop(self.encoder(as_token_ids(tokens, self.ntoken)))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        return self.decoder(output), hidden

    def init_hidden(self, batch_size: int) -> Hidden:
        weight = next(self.parameters())
        zeros = weight.new_zeros(self.nlayers, batch_size, self.nhid)
        return (zeros, zeros.clone()) if self.rnn_type == "LSTM" else zeros


def word_language_model(
    num_classes: int = DEFAULT_NTOKEN,
    rnn_type: str = "LSTM",
    emsize: int = 200,
    nhid: int = 200,
    nlayers: int = 2,
    dropout: float = 0.2,
    tied: bool = False,
) -> RNNModel:
    """Distiller's word language model; ``num_classes`` is the vocabulary size (the data set's).

    Argument names follow Distiller's command line (``--emsize 1500 --nhid 1500 --dropout 0.65
    --tied`` is the large model of its schedules).
    """
    return RNNModel(rnn_type, int(num_classes), emsize, nhid, nlayers, dropout, tied)
