"""neuroscope import and export: models made by the real tools (PyTorch modules, Keras 3 on its torch backend)
brought in with parity to 1e-5, run by the commands; ours written as ONNX and run by onnxruntime."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from neuroscope.checkpoint import load_checkpoint
from neuroscope.checkpoint._import import import_model
from neuroscope.cli import cli
from neuroscope.errors import UserError
from neuroscope.model import CharRNN, ModelConfig
from neuroscope.model.cells import LAYERS
from neuroscope.train import stdlib_corpus

os.environ.setdefault("KERAS_BACKEND", "torch")
if os.environ.get("CI"):                         # the test extra installs them (neuroscope[interop]): CI must run these
    import keras
    import onnxruntime as ort
else:
    keras = pytest.importorskip("keras")
    ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus():
    text = stdlib_corpus(40_000)
    chars = sorted(set(text))
    return text, chars, np.array([chars.index(c) for c in text])


class TheirLSTM(nn.Module):
    """A char-LSTM as people write one, with its own names: emb, lstm, fc."""

    def __init__(self, V, E=24, H=32, cell=nn.LSTM, embed=True):
        super().__init__()
        self.emb = nn.Embedding(V, E) if embed else None
        self.lstm = cell(E if embed else V, H, num_layers=2, batch_first=True)
        self.fc = nn.Linear(H, V)
        self.V = V

    def forward(self, ids):
        x = self.emb(ids) if self.emb is not None else nn.functional.one_hot(ids, self.V).float()
        return self.fc(self.lstm(x)[0])


def fit_torch(net, ids, steps=30):
    """A few real training steps, so the weights are not an initialiser's."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.as_tensor(ids[:64 * 33]).view(64, 33)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x[:, :-1]).reshape(-1, net.V), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.mark.parametrize("cell,embed", [(nn.LSTM, True), (nn.GRU, False), (nn.RNN, True)])
def test_a_pytorch_state_dict_imports_with_parity_and_runs_every_command(cell, embed, corpus, tmp_path):
    text, chars, ids = corpus
    net = fit_torch(TheirLSTM(len(chars), cell=cell, embed=embed), ids)
    torch.save({"model": net.state_dict(), "epoch": 3}, tmp_path / "their.pth")
    vocab = {c: i for i, c in enumerate(chars)} if embed else chars          # both spellings of a vocabulary
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(cli, ["import", str(tmp_path / "their.pth"), "--vocab", str(tmp_path / "vocab.json"),
                              "--out", str(tmp_path / "ours.pt"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["parity"] <= 1e-5 and info["compared"] == "logits"
    assert info["mapping"]["decoder.weight"] == "fc.weight" and info["mapping"]["rnn.weight_hh_l1"] == "lstm.weight_hh_l1"
    assert info["mapping"]["encoder.weight"] == ("emb.weight" if embed else "(one-hot: identity)")
    ckpt = load_checkpoint(tmp_path / "ours.pt")
    x = torch.as_tensor(ids[:300])[None]
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x)[0], net(x), rtol=0, atol=1e-5)
    common = ["--ckpt", str(tmp_path / "ours.pt"), "--text", str(tmp_path / "text.txt"), "--chars", "3000"]
    for args in (["probe", "--feature", "line_position"], ["explain", "--top-units", "2"],
                 ["report", "--feature", "line_position", "--out", str(tmp_path / "r.html")]):
        res = runner.invoke(cli, [*args, *common])
        assert res.exit_code == 0, (args, res.output)
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_an_ambiguous_state_dict_asks_for_a_map_and_takes_one(corpus, tmp_path):
    text, chars, ids = corpus
    net = TheirLSTM(len(chars), E=32, H=32)
    state = dict(net.state_dict()) | {"aux.weight": torch.randn(len(chars), 32), "aux.bias": torch.randn(len(chars))}
    with pytest.raises(UserError, match=r"more than one decoder .*: fc\., aux\.; name it with mapping decoder=PREFIX"):
        import_model_from(state, chars, tmp_path)
    imported = import_model_from(state, chars, tmp_path, {"decoder": "fc."})
    assert imported.mapping["decoder.bias"] == "fc.bias" and imported.parity <= 1e-5


def import_model_from(state, chars, tmp_path, mapping=None):
    torch.save(state, tmp_path / "s.pt")
    return import_model(tmp_path / "s.pt", vocab=chars, mapping=mapping)


def test_hostile_or_wrong_files_are_refused_in_one_line(corpus, tmp_path):
    text, chars, ids = corpus

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))
    torch.save({"lstm.weight_ih_l0": torch.zeros(4, 1), "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="not a PyTorch state_dict that loads without running code"):
        import_model(tmp_path / "evil.pt", vocab=chars)
    assert not (tmp_path / "pwned").exists()
    net = TheirLSTM(len(chars))
    torch.save(net.state_dict(), tmp_path / "ok.pt")
    with pytest.raises(UserError, match=f"the vocabulary has 3 characters; the model reads and predicts {len(chars)}"):
        import_model(tmp_path / "ok.pt", vocab=["a", "b", "c"])
    with pytest.raises(UserError, match="holds no vocabulary"):
        import_model(tmp_path / "ok.pt")
    bidi = nn.LSTM(4, 8, bidirectional=True).state_dict() | {"fc.weight": torch.zeros(5, 8), "fc.bias": torch.zeros(5)}
    torch.save(bidi, tmp_path / "bidi.pt")
    with pytest.raises(UserError, match="bidirectional"):
        import_model(tmp_path / "bidi.pt", vocab=list("abcde"))
    (tmp_path / "vocab.json").write_text('{"a": 0, "b": 5}', encoding="utf-8")
    with pytest.raises(UserError, match="indices 0..V-1"):
        import_model(tmp_path / "ok.pt", vocab=str(tmp_path / "vocab.json"))
    res = CliRunner().invoke(cli, ["import", str(tmp_path / "ok.pt"), "--out", str(tmp_path / "ok.pt"),
                                   "--vocab", str(tmp_path / "vocab.json"), "--force"])
    assert res.exit_code == 1 and "is an input of this command" in res.output


def keras_model(rnn: str, V: int, ids, **kw):
    keras.utils.set_random_seed(0)
    layer = getattr(keras.layers, rnn)
    model = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(V, 16),
                              layer(24, return_sequences=True, **kw), keras.layers.Dropout(0.1),
                              layer(24, return_sequences=True, **kw), keras.layers.Dense(V, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x = ids[:32 * 41].reshape(32, 41)
    model.fit(x[:, :-1], x[:, 1:], epochs=3, batch_size=8, verbose=0)     # trained: peaked predictions
    return model


@pytest.mark.parametrize("rnn", ["LSTM", "GRU", "SimpleRNN"])
def test_a_keras_model_imports_with_parity_against_keras_predict(rnn, corpus, tmp_path):
    text, chars, ids = corpus
    model = keras_model(rnn, len(chars), ids)
    model.save(tmp_path / "m.keras")
    (tmp_path / "vocab.json").write_text(json.dumps(chars), encoding="utf-8")
    res = CliRunner().invoke(cli, ["import", str(tmp_path / "m.keras"), "--vocab", str(tmp_path / "vocab.json"),
                                   "--out", str(tmp_path / "m.pt")])
    assert res.exit_code == 0, res.output
    assert "parity: the probabilities differ from the source's own forward by at most" in res.output
    ckpt = load_checkpoint(tmp_path / "m.pt")
    x = ids[:400][None]
    with torch.no_grad():
        ours = torch.softmax(ckpt.model(torch.as_tensor(x))[0], -1).numpy()
    theirs = model.predict(x, verbose=0)
    assert theirs.max() > 10 / len(chars)                                   # trained: far from uniform
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    assert ckpt.config.cell == {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "rnn"}[rnn]


def test_keras_files_that_cannot_be_converted_are_refused_before_keras_runs_them(corpus, tmp_path):
    text, chars, ids = corpus
    keras_model("GRU", len(chars), ids, reset_after=False).save(tmp_path / "gru.keras")
    with pytest.raises(UserError, match="reset_after=False applies the reset gate before the recurrent product"):
        import_model(tmp_path / "gru.keras", vocab=chars)
    keras.utils.set_random_seed(0)
    lam = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(len(chars), 8),
                            keras.layers.Lambda(lambda t: t * 2), keras.layers.LSTM(8, return_sequences=True),
                            keras.layers.Dense(len(chars))])
    lam.save(tmp_path / "lambda.keras")
    with pytest.raises(UserError, match="a Lambda layer is not part of a char-RNN .* nothing in the file ran"):
        import_model(tmp_path / "lambda.keras", vocab=chars)
    with zipfile.ZipFile(tmp_path / "lambda.keras") as z, zipfile.ZipFile(tmp_path / "bomb.keras", "w",
                                                                          zipfile.ZIP_DEFLATED) as out:
        out.writestr("config.json", z.read("config.json"))
        out.writestr("model.weights.h5", b"\0" * 50_000_000)                  # 50 MB of zeros packs into 50 kB
    with pytest.raises(UserError, match="would unpack to far more than it holds"):
        import_model(tmp_path / "bomb.keras", vocab=chars)


@pytest.mark.parametrize("cell", ("lstm", "gru", "rnn") + tuple(LAYERS))
def test_export_to_onnx_runs_in_onnxruntime_as_in_torch(cell, tmp_path):
    from neuroscope.checkpoint import Checkpoint, save_checkpoint
    from neuroscope.text import Vocab
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=12, cell=cell, hidden_size=8, num_layers=2)).eval()
    save_checkpoint(tmp_path / "m.pt", Checkpoint(model, Vocab(tuple("abcdefghijkl"))))
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "m.pt"), "--to", "onnx", "--out", str(tmp_path / "m.onnx"),
                                   "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["gap"] <= 1e-5 and info["outputs"][0] == "logits" and "rnn.l1.h" in info["outputs"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    state = model.zero_state(3)
    state = state if isinstance(state, tuple) else (state,)
    feed = {"ids": np.array([1, 2, 3])} | {f"state_{i}": s.numpy() for i, s in enumerate(state)}
    out = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})
    with torch.no_grad():
        logits, _ = model(torch.tensor([[1], [2], [3]]))
    np.testing.assert_allclose(out[0], logits[:, 0].numpy(), rtol=0, atol=1e-5)
    again = CliRunner().invoke(cli, ["export", str(tmp_path / "m.pt"), "--out", str(tmp_path / "m.onnx")])
    assert again.exit_code == 1 and "--force" in again.output
