"""CharRNN: the reference checkpoints' layout, state carry, sampling."""
import math

import pytest
import torch

from neuroscope.model import evaluate
from neuroscope.errors import UserError
from neuroscope.model import MAX_SAMPLE_CHARS, CharRNN, ModelConfig, count_parameters, weight_shapes
from neuroscope.text import Vocab, read_text, split_span

REFERENCE = {"wp_lstm2x128": "warpeace.txt", "wp_lstm3x512": "warpeace.txt",
             "linux_lstm3x512": "linux.txt", "enwiki_lstm2x512": "enwiki.xml"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Batch-1 steps of small matrices gain nothing from a second thread, and on a shared
    # machine OpenMP's thread hand-offs make them many times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_charrnn_loads_every_reference_checkpoint_strictly(name, shared_models, shared_data):
    blob = torch.load(shared_models / f"{name}.pt", map_location="cpu", weights_only=True)
    cfg = blob["config"]
    model = CharRNN(ModelConfig(vocab_size=len(blob["vocab"]), cell=cfg["cell"], embedding_dim=cfg["embedding_dim"],
                                hidden_size=cfg["hidden_size"], num_layers=cfg["num_layers"],
                                dropout=cfg["dropout"]))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in blob["state_dict"].items()}
    assert ours == theirs
    model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()}, strict=True)
    assert count_parameters(model) == sum(v.numel() for v in blob["state_dict"].values())
    # The right layout (gate order, embedding vs decoder) predicts held-out text well; a scrambled
    # one would be near log(V) = 4.4..6.5 nats.
    text = read_text(shared_data / REFERENCE[name])
    s, _ = split_span(len(text), "test")
    loss = evaluate(model, Vocab(tuple(blob["vocab"])).encode(text[s:s + 1500])).loss_nats
    assert loss < blob["train"]["test_loss_nats"] + 0.35, loss


def test_state_dict_names_follow_plain_char_rnn_layout():
    model = CharRNN(ModelConfig(vocab_size=10, cell="gru", hidden_size=8, num_layers=2))
    expected = {"encoder.weight"} | {f"rnn.{w}_{kind}_l{k}" for w in ("weight", "bias")
                                     for kind in ("ih", "hh") for k in range(2)} | {"decoder.weight", "decoder.bias"}
    assert set(model.state_dict()) == expected
    assert model.state_dict()["rnn.weight_ih_l0"].shape == (3 * 8, 8)     # GRU: 3 gates, E = H by default


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_forward_in_chunks_with_carried_state_equals_one_forward(cell):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=12, cell=cell, hidden_size=16, num_layers=2, embedding_dim=6)).eval()
    ids = torch.randint(0, 12, (3, 40))
    whole, _ = model(ids)
    a, state = model(ids[:, :17])
    b, _ = model(ids[:, 17:], state)
    assert whole.shape == (3, 40, 12)
    torch.testing.assert_close(torch.cat([a, b], 1), whole, atol=1e-5, rtol=0)


def test_model_config_defaults_and_bad_cell():
    assert ModelConfig(vocab_size=5, hidden_size=32).embedding_dim == 32
    with pytest.raises(ValueError, match="unknown cell"):
        ModelConfig(vocab_size=5, cell="transformer")


def test_sample_is_deterministic_with_a_seeded_generator(wp_small):
    def run(seed):
        return wp_small.model.sample(wp_small.vocab, 60, temperature=1.0, prime="The ",
                                     generator=torch.Generator().manual_seed(seed))
    a, b, c = run(5), run(5), run(6)
    assert a == b and a != c
    assert a.startswith("The ") and len(a) == 4 + 60
    assert set(a) <= set(wp_small.vocab.chars)


def test_greedy_sample_equals_argmax_of_full_forward(wp_small):
    model, vocab = wp_small.model, wp_small.vocab
    out = model.sample(vocab, 25, temperature=0, prime="Prince Andrew")
    # Re-derive each character from a forward over the whole prefix (no carried state).
    text = "Prince Andrew"
    with torch.no_grad():
        for _ in range(25):
            logits, _ = model(torch.as_tensor(vocab.encode(text))[None])
            text += vocab.chars[int(logits[0, -1].argmax())]
    assert out == text


def test_sample_at_low_temperature_is_more_likely_text(wp_small):
    model, vocab = wp_small.model, wp_small.vocab
    gen = torch.Generator().manual_seed(0)
    hot = model.sample(vocab, 400, temperature=1.5, prime="\n", generator=gen)
    cold = model.sample(vocab, 400, temperature=0.5, prime="\n", generator=gen)
    loss = {t: evaluate(model, vocab.encode(s)).loss_nats for t, s in (("hot", hot), ("cold", cold))}
    assert loss["cold"] < loss["hot"] - 0.3
    assert loss["cold"] < math.log(len(vocab))


def tiny_model():
    torch.manual_seed(0)
    vocab = Vocab.from_text("abc \n")
    return CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=4, num_layers=1)).eval(), vocab


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -0.5])
def test_sample_refuses_a_temperature_that_is_not_a_number_at_least_0(temperature):
    model, vocab = tiny_model()
    with pytest.raises(UserError, match="temperature must be a finite number >= 0") as info:
        model.sample(vocab, 5, temperature=temperature)
    assert info.value.param == "temperature"


@pytest.mark.parametrize("length", [MAX_SAMPLE_CHARS + 1, 10 ** 9, -1])
def test_sample_refuses_a_length_beyond_its_bound_before_sampling(monkeypatch, length):
    model, vocab = tiny_model()
    monkeypatch.setattr(CharRNN, "forward", lambda *a, **k: pytest.fail("sampled before checking length"))
    with pytest.raises(UserError, match=f"length must be in \\[0, {MAX_SAMPLE_CHARS:,}\\]") as info:
        model.sample(vocab, length)
    assert info.value.param == "length"


def test_sample_at_a_tiny_temperature_is_greedy_not_nan():
    model, vocab = tiny_model()
    assert model.sample(vocab, 30, temperature=1e-300, prime="ab") == model.sample(vocab, 30, temperature=0, prime="ab")


def test_weight_shapes_match_the_built_model():
    for cell in ("lstm", "gru", "rnn"):
        config = ModelConfig(vocab_size=7, cell=cell, hidden_size=5, num_layers=3, embedding_dim=2)
        built = {k: tuple(v.shape) for k, v in CharRNN(config).state_dict().items()}
        assert weight_shapes(config) == built
        assert list(weight_shapes(config)) == list(built)
