"""Properties over random text: every built-in feature labels it, and record() reads it, without a traceback.

Texts are any Unicode string of 0..2,000 characters, astral characters included, lone surrogates
(U+D800..U+DFFF) excluded: the CLI reads text as strict UTF-8, which cannot hold them, so no command
hands one to the library. Half the characters are drawn from code and prose punctuation so that the
features' scanners (quotes, comments, brackets, words) have something to track.

Derandomized (a fixed sequence of examples, no example database), so CI runs the same cases every time.
"""
import math

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


# Checkpoint loading: random bytes, and random structures of the right and wrong types, end in a
# one-line UserError (CheckpointError) or in a model that runs; never in another exception.

import io  # noqa: E402 - this section's own imports, kept beside it

from neuroscope.checkpoint import CheckpointError, checkpoint_from_dict, checkpoint_to_dict, load_checkpoint  # noqa: E402
from neuroscope.checkpoint import Checkpoint  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.float64, torch.bfloat16, torch.int64, torch.uint8, torch.bool,
          torch.complex64]
FILLS = [0.0, 1.0, -2.5, float("nan"), float("inf")]


def make_tensor(shape, dtype, fill, noise):
    t = torch.full(shape, fill) if dtype != torch.bool else torch.zeros(shape)
    if noise and t.numel():
        t = t + torch.linspace(-1, 1, t.numel()).reshape(shape)
    return t.to(dtype) if dtype.is_floating_point or dtype.is_complex or math.isfinite(fill) else t.nan_to_num().to(dtype)


TENSORS = st.builds(make_tensor, st.lists(st.integers(0, 5), max_size=3).map(tuple), st.sampled_from(DTYPES),
                    st.sampled_from(FILLS), st.booleans())
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 13, 10 ** 13), st.floats(), st.text(max_size=8),
                    st.binary(max_size=8))
JUNK = st.recursive(st.one_of(SCALARS, TENSORS),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner,
                                                            max_size=4)),
                    max_leaves=8)


def small_blob(cell: str, layers: int) -> dict:
    torch.manual_seed(0)
    vocab = Vocab(tuple("ab c\n"))
    model = CharRNN(ModelConfig(vocab_size=len(vocab), cell=cell, hidden_size=3, num_layers=layers, embedding_dim=2))
    ckpt = Checkpoint(model=model, vocab=vocab, train={"steps": 5, "samples": {"5": "ab"}, "test_loss_nats": 1.5,
                                                       "curve": [{"step": 5, "val_loss": 1.6}]},
                      extra={"excerpt": {"text": "ab c\nab", "start": 0, "source": "t.txt"}})
    return checkpoint_to_dict(ckpt)


# Places a change can hit: the top level, and inside config, state_dict, train, samples, curve, excerpt.
PLACES = [(), ("config",), ("state_dict",), ("train",), ("train", "samples"), ("train", "curve"), ("excerpt",)]
KEYS = st.one_of(st.sampled_from(["format", "vocab", "config", "state_dict", "train", "excerpt", "resume", "cell",
                                  "hidden_size", "num_layers", "embedding_dim", "dropout", "samples", "curve",
                                  "text", "start", "source", "encoder.weight", "rnn.weight_hh_l0",
                                  "rnn.bias_ih_l1", "decoder.bias", "test_loss_nats", "steps", "5"]),
                 st.text(max_size=6), st.integers(-3, 3))


@st.composite
def mutated_blobs(draw):
    blob = small_blob(draw(st.sampled_from(["lstm", "gru", "rnn"])), draw(st.integers(1, 2)))
    if draw(st.booleans()):         # a weight of the right shape, of any dtype, perhaps NaN or inf
        key = draw(st.sampled_from(sorted(blob["state_dict"])))
        shape = tuple(blob["state_dict"][key].shape)
        blob["state_dict"][key] = make_tensor(shape, draw(st.sampled_from(DTYPES)), draw(st.sampled_from(FILLS)),
                                              draw(st.booleans()))
    for _ in range(draw(st.integers(0, 3))):
        target = blob
        for step in draw(st.sampled_from(PLACES)):
            target = target.get(step) if isinstance(target, dict) else None
        value = draw(st.one_of(JUNK, TENSORS))
        if isinstance(target, dict):
            target[draw(KEYS)] = value
        elif isinstance(target, list):
            target.append(value)
    return blob


def loads_or_refuses(load) -> None:
    try:
        ckpt = load()
    except UserError as exc:
        assert isinstance(exc, CheckpointError) and "\n" not in str(exc)
        return
    with torch.no_grad():
        logits, _ = ckpt.model(torch.zeros(1, 1, dtype=torch.long))
    assert logits.shape == (1, 1, len(ckpt.vocab)) and torch.isfinite(logits).all()
    ckpt.describe()


@settings(PROPERTY, max_examples=150)
@given(blob=mutated_blobs(), through_file=st.booleans())
def test_any_checkpoint_structure_loads_or_is_refused_in_one_line(tmp_path_factory, blob, through_file):
    if through_file:
        path = tmp_path_factory.mktemp("ck") / "x.pt"
        torch.save(blob, path)
        loads_or_refuses(lambda: load_checkpoint(path))
    else:
        loads_or_refuses(lambda: checkpoint_from_dict(blob))


@settings(PROPERTY, max_examples=100)
@given(raw=st.one_of(st.binary(max_size=3000), JUNK.map(lambda v: _saved(v))))
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_any_bytes_load_or_are_refused_in_one_line(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("bytes") / "x.pt"
    path.write_bytes(raw)
    loads_or_refuses(lambda: load_checkpoint(path))


def _saved(value) -> bytes:
    """torch.save's bytes of `value`, cut at a random-looking place when long (a torn file)."""
    buf = io.BytesIO()
    torch.save(value, buf)
    data = buf.getvalue()
    return data if len(data) % 3 else data[: len(data) // 2]
