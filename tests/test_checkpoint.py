"""Checkpoints: the plain-char-rnn/1 format, safe loading, atomic saving, the stored excerpt."""
import os
import pickle
import random
import threading
import time

import pytest
import torch

import neuroscope.checkpoint._file as checkpoint_module
from neuroscope.checkpoint import (Checkpoint, CheckpointError, choose_text, load_checkpoint, save_checkpoint)
from neuroscope.errors import UserError
from neuroscope.model import CharRNN, ModelConfig
import neuroscope.text as text_module
from neuroscope.text import Vocab, read_text


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
@pytest.mark.parametrize("content", [b"", b"just some text\n", random.Random(0).randbytes(3000),
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


# Hostile inputs. Each case: what a bad checkpoint changes in a small valid one, and the piece of the
# one-line error it must end in. Extend the tables to pin down a new refusal.

def valid_blob() -> dict:
    return checkpoint_module.checkpoint_to_dict(tiny_checkpoint())


def with_config(**changes):
    return lambda b: b["config"].update(changes)


def with_weight(key, value):
    return lambda b: b["state_dict"].__setitem__(key, value)


def with_train(**changes):
    return lambda b: b["train"].update(changes)


def set_key(key, value):
    return lambda b: b.__setitem__(key, value)


def nan_at(key, value=float("nan")):
    def change(b):
        b["state_dict"][key] = b["state_dict"][key].clone()
        b["state_dict"][key].view(-1)[3] = value
    return change


BAD_BLOBS = {
    "config not a dict": (set_key("config", [8, 2]), "config must be a dict"),
    "unknown cell": (with_config(cell="transformer"), "unknown cell 'transformer'"),
    "negative hidden size": (with_config(hidden_size=-3), "hidden_size must be an integer in [1, "),
    "zero layers": (with_config(num_layers=0), "num_layers must be an integer in [1, "),
    "fractional hidden size": (with_config(hidden_size=2.5), "hidden_size must be an integer"),
    "boolean layers": (with_config(num_layers=True), "num_layers must be an integer"),
    "string embedding": (with_config(embedding_dim="4"), "embedding_dim must be an integer"),
    "absurd hidden size": (with_config(hidden_size=10 ** 12), "hidden_size must be an integer in [1, "),
    "dropout 5": (with_config(dropout=5), "dropout must be a number in [0, 1)"),
    "dropout nan": (with_config(dropout=float("nan")), "dropout must be a number in [0, 1)"),
    "dropout a string": (with_config(dropout="0.1"), "dropout must be a number in [0, 1)"),
    "hidden size the weights do not have": (with_config(hidden_size=9000),
                                            "'rnn.weight_ih_l0' has shape [32, 4]; the config needs [36000, 4]"),
    "one layer more than stored": (with_config(num_layers=3), "lacks the weight 'rnn.weight_ih_l2'"),
    "a weight too many": (with_weight("rnn.extra", torch.zeros(3)), "holds 'rnn.extra', which the config has no"),
    "a transposed weight": (with_weight("decoder.weight", torch.zeros(8, 10)),
                            "'decoder.weight' has shape [8, 10]; the config needs [10, 8]"),
    "state_dict a list": (set_key("state_dict", [1, 2]), "state_dict must be a dict"),
    "state_dict key not a string": (with_weight(7, torch.zeros(3)), "state_dict key 7 is not a string"),
    "weight not a tensor": (with_weight("decoder.bias", [0.0] * 10), "'decoder.bias' is not a tensor"),
    "integer weights": (with_weight("decoder.bias", torch.zeros(10, dtype=torch.int64)),
                        "weights must be floating point ('decoder.bias' is torch.int64)"),
    "complex weights": (with_weight("decoder.bias", torch.zeros(10, dtype=torch.complex64)),
                        "weights must be floating point"),
    "a NaN weight": (nan_at("rnn.weight_hh_l1"), "'rnn.weight_hh_l1' holds NaN or infinite values"),
    "an infinite weight": (nan_at("encoder.weight", float("inf")), "'encoder.weight' holds NaN or infinite"),
    "a weight on the meta device": (with_weight("decoder.bias", torch.empty(10, device="meta")),
                                    "'decoder.bias' is a tensor on the meta device"),
    "vocab empty": (set_key("vocab", []), "vocab is empty"),
    "vocab a string": (set_key("vocab", "abc"), "vocab must be a list of one-character strings"),
    "vocab duplicate": (lambda b: b["vocab"].__setitem__(5, b["vocab"][1]),
                        "vocab holds ' ' twice (at 1 and 5)"),
    "vocab lone surrogate": (lambda b: b["vocab"].__setitem__(2, "\ud800"),
                             "vocab entry 2 ('\\ud800') is a lone surrogate"),
    "train not a dict": (set_key("train", "abc"), "train must be a dict"),
    "sample key not a step": (with_train(samples={"abc": "x"}), "train.samples key 'abc' is not a step number"),
    "sample key an int": (with_train(samples={5: "x"}), "train.samples key 5 is not a step number"),
    "sample not a string": (with_train(samples={"5": 17}), "train.samples['5'] must be a string"),
    "sample with a lone surrogate": (with_train(samples={"5": "a\udfffb"}), "train.samples['5'] holds a lone surrogate"),
    "samples a list": (with_train(samples=["x"]), "train.samples must be a dict"),
    "curve an int": (with_train(curve=7), "train.curve must be a list"),
    "curve point a string": (with_train(curve=["step"]), "train.curve[0] must be a dict"),
    "curve value a string": (with_train(curve=[{"step": 1, "val_loss": 2.0}, {"step": "two"}]),
                             "train.curve[1]['step'] must be a number"),
    "test loss a string": (with_train(test_loss_nats="low"), "train.test_loss_nats must be a finite number"),
    "test loss NaN": (with_train(test_loss_nats=float("nan")), "train.test_loss_nats must be a finite number"),
    "steps a float": (with_train(steps=2.5), "train.steps must be an integer"),
    "final sample a list": (with_train(final_sample_t1=["x"]), "train.final_sample_t1 must be a string"),
    "corpus a number": (with_train(text=3), "train.text must be a string"),
    "excerpt a list": (set_key("excerpt", ["hello"]), "excerpt must be a dict"),
    "excerpt without text": (set_key("excerpt", {"start": 3}), "excerpt['text'] must be a string"),
    "excerpt text bytes": (set_key("excerpt", {"text": b"abc"}), "excerpt['text'] must be a string"),
    "excerpt start a string": (set_key("excerpt", {"text": "abc", "start": "9"}), "excerpt['start'] must be an integer"),
    "excerpt source a number": (set_key("excerpt", {"text": "abc", "source": 1}), "excerpt['source'] must be a string"),
    "resume a string": (set_key("resume", "yes"), "resume must be a dict"),
}


@pytest.mark.parametrize("case", sorted(BAD_BLOBS))
def test_a_malformed_checkpoint_is_refused_in_one_line_before_a_model_is_built(tmp_path, monkeypatch, case):
    change, message = BAD_BLOBS[case]
    blob = valid_blob()
    change(blob)
    torch.save(blob, tmp_path / "bad.pt")

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built from a checkpoint that should have been refused")

    monkeypatch.setattr(CharRNN, "__init__", no_model)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "bad.pt")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "bad.pt"))


def test_a_huge_claimed_size_fails_fast_without_allocating(tmp_path):
    blob = valid_blob()
    blob["config"].update(hidden_size=9000, embedding_dim=9000, num_layers=8)
    torch.save(blob, tmp_path / "huge.pt")
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match="do not fit the config"):
        load_checkpoint(tmp_path / "huge.pt")
    assert time.monotonic() - t0 < 2.0          # building it would take seconds and gigabytes


def test_the_valid_blob_of_the_bad_cases_loads():
    ck = checkpoint_module.checkpoint_from_dict(valid_blob())
    assert ck.config.hidden_size == 8


def test_malformed_metadata_passed_as_a_dict_is_refused_with_the_generic_name():
    blob = valid_blob()
    blob["train"]["samples"] = {"abc": "x"}
    with pytest.raises(CheckpointError, match="^checkpoint: train.samples key 'abc' is not a step number$"):
        checkpoint_module.checkpoint_from_dict(blob)


def call_or_release(fn, fifo):
    """Run fn() in a thread; if it blocks on the FIFO, open the FIFO's other end so that the test ends."""
    result = {}

    def run():
        try:
            fn()
        except Exception as exc:            # noqa: BLE001 - the test inspects it
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5)
        pytest.fail("opening a FIFO blocked")
    return result.get("error")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("reader", ["text", "checkpoint"])
def test_a_fifo_is_refused_without_opening_it(tmp_path, reader):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    fn = (lambda: read_text(fifo)) if reader == "text" else (lambda: load_checkpoint(fifo))
    error = call_or_release(fn, fifo)
    assert isinstance(error, UserError) and f"{fifo} is not a regular file" in str(error)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("reader", [read_text, load_checkpoint])
def test_a_device_is_refused_without_reading_it(reader):
    t0 = time.monotonic()
    with pytest.raises(UserError, match="/dev/zero is not a regular file"):
        reader("/dev/zero")
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("reader", [read_text, load_checkpoint])
def test_a_directory_is_not_a_regular_file(tmp_path, reader):
    with pytest.raises(UserError, match="is not a regular file"):
        reader(tmp_path)


def test_a_text_above_the_size_limit_is_refused_by_its_size(tmp_path, monkeypatch):
    (tmp_path / "t.txt").write_text("x" * 1000)
    monkeypatch.setattr(text_module, "MAX_TEXT_BYTES", 999)
    monkeypatch.setattr("builtins.open", lambda *a, **k: pytest.fail("opened a file above the limit"))
    with pytest.raises(UserError, match=r"t.txt is 1,000 bytes; text files above 999 bytes are refused"):
        read_text(tmp_path / "t.txt")


def test_a_checkpoint_above_the_size_limit_is_refused_by_its_size(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "m.pt", tiny_checkpoint())
    size = os.path.getsize(tmp_path / "m.pt")
    monkeypatch.setattr(checkpoint_module, "MAX_CHECKPOINT_BYTES", size - 1)
    monkeypatch.setattr(checkpoint_module.torch, "load", lambda *a, **k: pytest.fail("read a file above the limit"))
    with pytest.raises(CheckpointError, match=f"m.pt is {size:,} bytes; checkpoints above {size - 1:,} bytes"):
        load_checkpoint(tmp_path / "m.pt")
