"""The model: CharRNN (embedding, a recurrent module, decoder), the cells beyond PyTorch's own, and its
loss on a text.

    >>> model = CharRNN(ModelConfig(vocab_size=84, cell="lstm", hidden_size=512, num_layers=3))
    >>> logits, state = model(ids)          # ids: int64 [B, T] -> logits [B, T, V]
    >>> text = model.sample(vocab, length=200, temperature=1.0, prime="The ")
    >>> result = evaluate(model, ids)       # ids: int64 [N] of a span
    >>> result.loss_nats, result.bits_per_char, result.chars

`_charrnn` holds the model and its sizes, `_evaluate` the loss and the chunked forward, `cells` the
newer recurrent cells (minGRU, minLSTM, sLSTM, mLSTM, a selective SSM layer).
"""
from ..config import CELLS, MAX_SAMPLE_CHARS, ModelConfig
from ._charrnn import (CharRNN, count_parameters, hidden_for_parameters, recurrent_module, state_shapes,
                       weight_shapes)
from ._evaluate import EvalResult, evaluate, iter_logits

__all__ = ["CELLS", "MAX_SAMPLE_CHARS", "CharRNN", "EvalResult", "ModelConfig", "count_parameters", "evaluate",
           "hidden_for_parameters", "iter_logits", "recurrent_module", "state_shapes", "weight_shapes"]
