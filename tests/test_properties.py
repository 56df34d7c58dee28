"""Properties over random text: every built-in feature labels it, and record() reads it, without a traceback.

Texts are any Unicode string of 0..2,000 characters, astral characters included, lone surrogates
(U+D800..U+DFFF) excluded: the CLI reads text as strict UTF-8, which cannot hold them, so no command
hands one to the library. Half the characters are drawn from code and prose punctuation so that the
features' scanners (quotes, comments, brackets, words) have something to track.

Derandomized (a fixed sequence of examples, no example database), so CI runs the same cases every time.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuroscope.errors import UserError
from neuroscope.features import builtin_names, label
from neuroscope.model import CharRNN, ModelConfig
from neuroscope.names import state_names
from neuroscope.record import record
from neuroscope.text import Vocab

PROPERTY = settings(derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CODE = list(" \n\r\t\"'`#/*\\{}()[]<>;:=.,!?-_+%$@abcdefxyzABCXYZ0123456789")
CHARS = st.one_of(st.sampled_from(CODE), st.characters())           # st.characters(): no surrogates
SHORT = st.text(CHARS, max_size=2000)
# Hypothesis favours short strings; a repeated piece also reaches the long end (and its patterns).
LONG = st.builds(lambda piece, n: (piece * n)[:2000], st.text(CHARS, min_size=1, max_size=60), st.integers(1, 2000))
TEXTS = st.one_of(SHORT, LONG)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small per-step work: one thread avoids OpenMP stalls when other processes hold the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@settings(PROPERTY, max_examples=200)
@given(text=TEXTS)
def test_every_builtin_feature_labels_any_text(text):
    for name in builtin_names():
        try:
            labels = label(text, name)
        except UserError:
            continue
        assert labels.shape == (len(text),), name
        assert labels.dtype in (np.uint8, np.int32), (name, labels.dtype)


# One vocabulary for every model: the code characters plus a few beyond ASCII; the rest of a random
# text falls back to " ", as a checkpoint reads characters it never saw.
VOCAB = Vocab(tuple(sorted(set(CODE) | set("éü€😀"))))
MODELS = {}


def small_model(cell: str) -> CharRNN:
    if cell not in MODELS:
        torch.manual_seed(0)
        MODELS[cell] = CharRNN(ModelConfig(vocab_size=len(VOCAB), cell=cell, hidden_size=8, num_layers=2)).eval()
    return MODELS[cell]


@settings(PROPERTY, max_examples=60)
@given(text=TEXTS, cell=st.sampled_from(["lstm", "gru", "rnn"]), strategy=st.sampled_from(["loop", "recover"]),
       streams=st.sampled_from([1, 3]), warmup=st.integers(0, 40), chunk=st.sampled_from([7, 256, 4096]))
def test_record_reads_any_text_into_finite_states(text, cell, strategy, streams, warmup, chunk):
    model = small_model(cell)
    ids = VOCAB.encode(text)
    kwargs = dict(strategy=strategy, streams=streams, warmup=warmup if streams > 1 else 0, chunk=chunk)
    if not text:
        with pytest.raises(UserError, match="empty"):
            record(model, ids, ("h", "c", "gates"), **kwargs)
        return
    acts = record(model, ids, ("h", "c", "gates"), **kwargs)
    assert sorted(acts) == sorted(state_names(model.config, ("h", "c", "gates")))
    for name, values in acts.items():
        assert values.shape == (len(text), 8) and values.dtype == np.float32, name
        assert np.isfinite(values).all(), name
    if streams == 1:                      # one stream is exact: the model's own fused forward
        with torch.no_grad():
            top, _ = model.rnn(model.encoder(torch.as_tensor(ids)[None]))
        np.testing.assert_allclose(acts["rnn.l1.h"], top[0].numpy(), atol=1e-5)


def test_a_lone_surrogate_is_labelled_or_refused_with_a_user_error():
    text = 'a "b\ud800c" # d\n'
    for name in builtin_names():
        try:
            assert label(text, name).shape == (len(text),)
        except UserError:
            pass
