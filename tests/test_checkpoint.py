"""Checkpoints: the plain-char-rnn/1 format, safe loading, atomic saving, the stored excerpt."""
import os
import pickle

import pytest
import torch

import neuroscope.checkpoint as checkpoint_module
from neuroscope.checkpoint import (Checkpoint, CheckpointError, choose_text, load_checkpoint, save_checkpoint)
from neuroscope.errors import UserError
from neuroscope.model import CharRNN, ModelConfig
from neuroscope.text import Vocab


def tiny_checkpoint(cell="lstm", excerpt=True) -> Checkpoint:
    torch.manual_seed(1)
    vocab = Vocab.from_text("hello, world\n")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), cell=cell, hidden_size=8, num_layers=2, embedding_dim=4))
    extra = {"excerpt": {"text": "hello world, hello\n" * 3, "start": 900, "source": "x.txt"}} if excerpt else {}
    return Checkpoint(model=model.eval(), vocab=vocab, train={"steps": 7, "samples": {"5": "hel"}}, extra=extra)


class Payload:
    """Unpickling this would create a file: proof that loading ran no code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_save_then_load_gives_the_same_model(tmp_path, cell):
    ck = tiny_checkpoint(cell)
    path = tmp_path / "m.pt"
    save_checkpoint(path, ck)
    back = load_checkpoint(path)
    assert back.vocab == ck.vocab and back.config == ck.config
    assert back.train == ck.train and back.excerpt == ck.excerpt
    for k, v in ck.model.state_dict().items():
        assert torch.equal(back.model.state_dict()[k], v)
    ids = torch.as_tensor(ck.vocab.encode("hello world"))[None]
    assert torch.equal(back.model(ids)[0], ck.model(ids)[0])


def test_written_file_is_plain_char_rnn_1(tmp_path):
    save_checkpoint(tmp_path / "m.pt", tiny_checkpoint(), half=True)
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert blob["format"] == "plain-char-rnn/1"
    assert blob["vocab"] == list(Vocab.from_text("hello, world\n").chars)
    assert set(blob["config"]) == {"cell", "embedding_dim", "hidden_size", "num_layers", "dropout"}
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values())
    assert blob["excerpt"]["start"] == 900


def test_float16_weights_are_computed_in_float32(tmp_path):
    ck = tiny_checkpoint()
    save_checkpoint(tmp_path / "m.pt", ck, half=True)
    back = load_checkpoint(tmp_path / "m.pt")
    for k, v in back.model.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, ck.model.state_dict()[k].half().float())


def test_reference_checkpoint_loads_in_float32(wp_small):
    assert all(p.dtype == torch.float32 for p in wp_small.model.parameters())
    assert len(wp_small.vocab) == 84 and wp_small.config.hidden_size == 128


def test_checkpoint_with_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"format": "plain-char-rnn/1", "payload": Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a safe checkpoint") as info:
        load_checkpoint(tmp_path / "evil.pt")
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", [b"", b"just some text\n", os.urandom(3000),
                                     pickle.dumps({"format": "plain-char-rnn/1"})])
def test_bytes_that_are_not_a_checkpoint_are_refused(tmp_path, content):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "x.pt")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("blob, message", [
    ([1, 2, 3], "not a plain-char-rnn/1 checkpoint"),
    ({"format": "other/2"}, "not a plain-char-rnn/1 checkpoint"),
    ({"format": "plain-char-rnn/1", "vocab": ["a"], "config": {}}, "lacks the 'state_dict'"),
    ({"format": "plain-char-rnn/1", "vocab": ["ab"], "config": {}, "state_dict": {}}, "one-character strings"),
    ({"format": "plain-char-rnn/1", "vocab": ["a", "b"], "config": {"cell": "lstm", "hidden_size": 4,
      "num_layers": 1}, "state_dict": {}}, "do not fit the config"),
])
def test_torch_files_that_are_not_our_format_are_refused(tmp_path, blob, message):
    torch.save(blob, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "x.pt")


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint(tmp_path)


def test_a_save_interrupted_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_checkpoint())
    before = path.read_bytes()

    def torn_save(obj, fh):
        fh.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, tiny_checkpoint("gru"), force=True)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.pt"]          # no temp file left behind
    monkeypatch.undo()
    assert load_checkpoint(path).config.cell == "lstm"


def test_save_replaces_an_existing_file_only_with_force(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_checkpoint("lstm"))
    with pytest.raises(UserError, match="exists; set force to replace it") as info:
        save_checkpoint(path, tiny_checkpoint("gru"))
    assert info.value.param == "force" and load_checkpoint(path).config.cell == "lstm"
    save_checkpoint(path, tiny_checkpoint("gru"), force=True)
    assert load_checkpoint(path).config.cell == "gru"
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    with pytest.raises(UserError, match="not a checkpoint"):
        save_checkpoint(tmp_path / "notes.txt", tiny_checkpoint(), force=True)
    with pytest.raises(UserError, match="is an input"):
        save_checkpoint(path, tiny_checkpoint(), force=True, inputs=[path])


def test_summary_and_describe_report_config_size_and_stored_losses():
    ck = tiny_checkpoint()
    ck.path = "tiny.pt"
    info = ck.summary()
    assert info["config"] == {"cell": "lstm", "embedding_dim": 4, "hidden_size": 8, "num_layers": 2, "dropout": 0.0}
    assert info["parameters"] == sum(p.numel() for p in ck.model.parameters())
    assert (info["vocab_size"], info["steps"], info["sample_steps"], info["excerpt_chars"]) == (10, 7, ["5"], 57)
    assert info["test_loss_nats"] is None and info["curve_points"] == 0
    text = ck.describe()
    assert text.splitlines()[0] == "tiny.pt: LSTM 2 x 8, embedding 4, dropout 0.0"
    assert "steps: 7" in text and "test_loss_nats" not in text and text.endswith("samples at steps: 5")


def test_choose_text_falls_back_to_the_stored_excerpt(tmp_path):
    ck = tiny_checkpoint()
    span = choose_text(ck)
    assert (span.text, span.start, span.source) == (ck.excerpt["text"], 900, "<checkpoint excerpt>")
    part = choose_text(ck, start=6, chars=5)
    assert (part.text, part.start) == ("world", 906)
    with pytest.raises(UserError, match="needs text_path") as info:
        choose_text(ck, split="val")
    assert info.value.param == "text_path"
    with pytest.raises(UserError, match="pass text_path"):
        choose_text(tiny_checkpoint(excerpt=False))
    (tmp_path / "t.txt").write_text("0123456789" * 10)
    assert choose_text(ck, str(tmp_path / "t.txt")).text == "0123456789"      # default split: test
