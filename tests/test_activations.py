"""The activation store and `neuroscope record`: layout, lazy reading, float16 error, safe writing."""
import json
import os
import re
from collections import namedtuple

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neuroscope.record import _store as activations
from neuroscope.record import open_store, plan_store, write_store
from neuroscope.checkpoint import TextSpan, load_checkpoint
from neuroscope.cli import cli
from neuroscope.errors import UserError
from neuroscope.names import parse_quantity
from neuroscope.record import record


pytestmark = pytest.mark.usefixtures("one_thread")      # conftest: one torch thread


@pytest.fixture(scope="module")
def span(warpeace):
    return TextSpan(warpeace[300_000:301_500], 300_000, "warpeace.txt", None)


def test_store_holds_the_recorded_states_and_reads_lazily(tmp_path, wp_small, span):
    acts = write_store(tmp_path / "acts", wp_small, span, states=("h", "c", "f"))
    files = sorted(os.listdir(tmp_path / "acts"))
    assert files == ["l0_c.npy", "l0_f.npy", "l0_h.npy", "l1_c.npy", "l1_f.npy", "l1_h.npy", "meta.json", "text.txt"]
    assert sorted(os.listdir(tmp_path)) == ["acts"]                       # no temporary folder left behind
    meta = json.loads((tmp_path / "acts" / "meta.json").read_text())
    assert meta["shape"] == [1500, 128] and meta["dtype"] == "float32" and meta["exact"] is True
    assert meta["text"]["start"] == 300_000 and meta["text"]["end"] == 301_500
    assert meta["bytes"] == plan_store(wp_small.config, 1500, ("h", "c", "f")).bytes
    assert meta["max_abs"]["l1_h"] <= 1 and meta["max_abs"]["l1_c"] > 1
    assert sum(os.path.getsize(tmp_path / "acts" / f) for f in files if f.endswith(".npy")) == meta["bytes"]
    assert acts.text == span.text and len(acts) == 1500
    c = acts["l1_c"]
    assert isinstance(c, np.memmap) and c.shape == (1500, 128)             # memory-mapped, not read
    ref = record(wp_small.model, wp_small.vocab.encode(span.text), ("h", "c", "f"))
    np.testing.assert_array_equal(np.asarray(acts["rnn.l1.c"]), ref["rnn.l1.c"])
    np.testing.assert_array_equal(np.asarray(acts["l0.gate_f"]), ref["rnn.l0.gate_f"])
    np.testing.assert_array_equal(acts.unit("l1.h.17"), ref["rnn.l1.h"][:, 17])
    with pytest.raises(UserError, match="'l0_g' is not in the store"):
        acts["l0_g"]
    with pytest.raises(UserError, match="does not exist"):
        acts.unit("l1.h.128")


def test_float16_store_error_is_relative_to_the_size_of_c(tmp_path, wp_small, span):
    """float16 keeps 11 significant bits: each stored value is within 2**-11 of the float32 one, relative;
    that is 0.5 when |c| is near 1,000 (c of the 3x512 models reaches ~2,400, still far below 65,504)."""
    a32 = write_store(tmp_path / "a32", wp_small, span, states=("h", "c"))
    a16 = write_store(tmp_path / "a16", wp_small, span, states=("h", "c"), dtype="float16")
    assert a16["l1_c"].dtype == np.float16 and a16.meta["bytes"] < a32.meta["bytes"] / 1.9
    for key in ("l0_c", "l1_c", "l1_h"):
        x32, x16 = np.asarray(a32[key]), np.asarray(a16[key]).astype(np.float32)
        rel = np.abs(x16 - x32) / np.maximum(np.abs(x32), 2.0 ** -14)
        assert rel.max() <= 2.0 ** -11 + 1e-7
        assert np.abs(x16 - x32).max() > 0                                   # it is lossy


def test_float16_refuses_values_beyond_its_range(tmp_path, wp_small, span, monkeypatch):
    """Cells that integrate without forgetting grow past float16's 65,504 on long texts (the 3x512
    models reach 26,000 within 50k characters); such a store must fail, not hold inf."""
    def huge(*args, **kwargs):
        yield 0, {"rnn.l0.h": np.zeros((10, 128), np.float32), "rnn.l1.h": np.full((10, 128), 7e4, np.float32)}

    monkeypatch.setattr(activations, "iter_states", huge)
    with pytest.raises(UserError, match="l1_h reaches 70,000, beyond float16's 65,504"):
        write_store(tmp_path / "acts", wp_small, span, states=("h",), dtype="float16")
    assert os.listdir(tmp_path) == []


def test_existing_store_is_refused_then_replaced_with_force(tmp_path, wp_small, span):
    out = tmp_path / "acts"
    write_store(out, wp_small, span, states=("h", "c"))
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    with pytest.raises(UserError, match="exists; set force to replace it") as exc:
        write_store(out, wp_small, span)
    assert exc.value.param == "force"
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before
    write_store(out, wp_small, span, states=("h",), force=True)
    assert sorted(os.listdir(out)) == ["l0_h.npy", "l1_h.npy", "meta.json", "text.txt"]
    assert sorted(os.listdir(tmp_path)) == ["acts"]


def test_force_does_not_replace_a_folder_that_is_not_a_store(tmp_path, wp_small, span):
    out = tmp_path / "acts"
    out.mkdir()
    (out / "old.txt").write_bytes(b"keep me\r\n\x00")
    with pytest.raises(UserError, match="exists; set force") as exc:
        write_store(out, wp_small, span)
    assert exc.value.param == "force"
    with pytest.raises(UserError, match="is a folder that is not an activation store"):
        write_store(out, wp_small, span, states=("h",), force=True)
    assert os.listdir(out) == ["old.txt"] and (out / "old.txt").read_bytes() == b"keep me\r\n\x00"
    assert sorted(os.listdir(tmp_path)) == ["acts"]                       # no temporary folder left behind


def test_a_folder_holding_the_input_checkpoint_is_refused(tmp_path, shared_models, span):
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.pt").write_bytes((shared_models / "wp_lstm2x128.pt").read_bytes())
    ckpt = load_checkpoint(models / "m.pt")
    for force in (False, True):
        with pytest.raises(UserError, match="is an input of this command"):
            write_store(models, ckpt, span, states=("h",), force=force)
    assert os.listdir(models) == ["m.pt"]
    assert (models / "m.pt").read_bytes() == (shared_models / "wp_lstm2x128.pt").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["models"]


def test_a_stale_temporary_folder_of_a_killed_run_is_removed_by_the_next_record(tmp_path, wp_small, span):
    """Temporaries are ".{name}.neuroscope-tmp-{host}-{pid}-{start}-{random}" (neuroscope.files); one whose
    process on this machine is gone is removed, one of a live process is left alone."""
    import subprocess
    import sys
    from neuroscope.files import _host_tag, _start_time
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".acts.neuroscope-tmp-{_host_tag()}-{dead.pid}-1-k1lled"
    stale.mkdir()
    (stale / "l0_h.npy").write_bytes(b"half")
    parent = os.getppid()
    live = tmp_path / f".other.neuroscope-tmp-{_host_tag()}-{parent}-{_start_time(parent)}-running"
    live.mkdir()
    write_store(tmp_path / "acts", wp_small, span, states=("h",))
    assert sorted(os.listdir(tmp_path)) == [live.name, "acts"]


def test_a_failed_recording_leaves_nothing_half_written(tmp_path, wp_small, span, monkeypatch):
    out = tmp_path / "acts"
    write_store(out, wp_small, span, states=("h",))
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}

    def broken(*args, **kwargs):
        yield 0, {"rnn.l0.h": np.zeros((10, 128), np.float32), "rnn.l1.h": np.zeros((10, 128), np.float32)}
        raise KeyboardInterrupt

    monkeypatch.setattr(activations, "iter_states", broken)
    with pytest.raises(KeyboardInterrupt):
        write_store(out, wp_small, span, states=("h",), force=True)
    assert sorted(os.listdir(tmp_path)) == ["acts"]                       # the temp folder is gone
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before  # the old store is intact


def test_a_store_larger_than_free_disk_is_refused_before_writing(tmp_path, wp_small, span, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(activations.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(UserError, match=r"needs 1\.5 MiB but only 1\.0 MiB are free"):
        write_store(tmp_path / "acts", wp_small, span, states=("h",))
    assert os.listdir(tmp_path) == []


def test_recorder_names_from_file_and_cli_names():
    def recorder_name(key):
        return parse_quantity(key).name
    assert recorder_name("l2_c") == recorder_name("l2.c") == recorder_name("rnn.l2.c") == "rnn.l2.c"
    assert recorder_name("l0_f") == recorder_name("l0.gate_f") == "rnn.l0.gate_f"
    assert parse_quantity("rnn.l0.gate_f").stem == "l0_f" and parse_quantity("l2.c").stem == "l2_c"
    with pytest.raises(UserError, match="bad quantity name"):
        recorder_name("layer2.c")


# --------------------------------------------------------------- the CLI

def test_cli_record_writes_a_store_and_reports_it(tmp_path, shared_models, shared_data):
    out = tmp_path / "acts"
    args = ["record", "--ckpt", str(shared_models / "wp_lstm2x128.pt"), "--text", str(shared_data / "warpeace.txt"),
            "--split", "val", "--chars", "800", "--states", "h,c,gates", "--dtype", "float16", "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "recording 800 characters" in res.output and "12 arrays of [800 x 128] float16" in res.output
    acts = open_store(out)
    assert acts.meta["text"]["chars"] == 800 and acts.meta["text"]["split"] == "val"
    assert sorted(os.listdir(out))[:4] == ["l0_c.npy", "l0_f.npy", "l0_g.npy", "l0_h.npy"]
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and re.search(r"exists; set --force to replace it$", again.output.strip())
    assert "Traceback" not in again.output
    res = CliRunner().invoke(cli, args[:-2] + ["--streams", "4", "--warmup", "50", "--out", str(out), "--force",
                                                "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["streams"] == 4 and summary["warmup"] == 50 and summary["exact"] is False
    assert summary["shape"] == [800, 128] and summary["bytes"] == open_store(out).meta["bytes"]


def test_cli_record_a_disk_that_fills_up_mid_way_is_one_line(tmp_path, shared_models, shared_data, monkeypatch):
    """Writing the store hits ENOSPC: one line, exit 1, no --out and no temporary folder left."""
    import errno
    calls = []

    def full(self, start, v):
        calls.append(start)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(activations._NpyFile, "write_rows", full)
    out = tmp_path / "acts"
    res = CliRunner().invoke(cli, ["record", "--ckpt", str(shared_models / "wp_lstm2x128.pt"), "--text",
                                   str(shared_data / "warpeace.txt"), "--chars", "9000", "--out", str(out)])
    assert res.exit_code == 1 and "Traceback" not in res.output and len(calls) >= 3
    assert res.output.strip().splitlines()[-1] == "Error: No space left on device; nothing was left half-written"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("extra, message", [
    (["--states", "h,q"], "unknown state 'q'"),
    (["--chars", "10", "--start", "5000"], "lies outside the test split"),
    (["--chars", "0"], "--chars must be >= 1"),
    (["--warmup", "10"], "--warmup applies to --streams N > 1"),
])
def test_cli_record_bad_input(tmp_path, shared_models, extra, message):
    text = tmp_path / "t.txt"
    text.write_text("Hello, world. " * 100)
    res = CliRunner().invoke(cli, ["record", "--ckpt", str(shared_models / "wp_lstm2x128.pt"), "--text", str(text),
                                   "--out", str(tmp_path / "acts")] + extra)
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "acts").exists()


def test_cli_record_counts_characters_outside_the_vocabulary(tmp_path, shared_models):
    text = tmp_path / "t.txt"
    text.write_text("Naïve café ☃ " * 20)
    vocab = set(load_checkpoint(shared_models / "wp_lstm2x128.pt").vocab.chars)
    assert "é" in vocab and "ï" not in vocab and "☃" not in vocab          # so 2 of every 13 are unknown
    res = CliRunner().invoke(cli, ["record", "--ckpt", str(shared_models / "wp_lstm2x128.pt"), "--text", str(text),
                                   "--split", "all", "--out", str(tmp_path / "acts")])
    assert res.exit_code == 0, res.output
    assert "note: 40 characters not in the vocabulary were read as ' '" in res.output
    assert open_store(tmp_path / "acts").meta["text"]["unknown_chars"] == 40


# --------------------------------------------------------------- values a store cannot hold

def _poisoned(ckpt, value):
    """A copy of a checkpoint whose first layer's input weights are all `value` (NaN or inf)."""
    import copy
    bad = copy.deepcopy(ckpt)
    with torch.no_grad():
        bad.model.rnn.weight_ih_l0.fill_(value)
    return bad


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_nan_weights_are_refused_before_a_store_is_written(tmp_path, wp_small, span, dtype):
    """NaN states used to be stored with meta.json saying max |value| 0 (Python's max drops a NaN)."""
    with pytest.raises(UserError, match=r"^l0_h is NaN at character 0 of the span \(unit l0\.h\.0\)"):
        write_store(tmp_path / "acts", _poisoned(wp_small, float("nan")), span, states=("h", "c"), dtype=dtype)
    assert os.listdir(tmp_path) == []                                      # nothing written, no temporary


@pytest.mark.parametrize("value, shown", [(float("inf"), "inf"), (-float("inf"), "-inf"), (float("nan"), "NaN")])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_states_that_are_not_finite_are_refused_naming_the_first_position(tmp_path, wp_small, span, monkeypatch,
                                                                          value, shown, dtype):
    def poisoned(*args, **kwargs):
        yield 0, {"rnn.l0.h": np.zeros((10, 128), np.float32), "rnn.l1.h": np.zeros((10, 128), np.float32)}
        l1 = np.ones((10, 128), np.float32)
        l1[7, 5] = l1[8, 2] = value
        yield 10, {"rnn.l0.h": np.zeros((10, 128), np.float32), "rnn.l1.h": l1}

    monkeypatch.setattr(activations, "iter_states", poisoned)
    with pytest.raises(UserError, match=rf"^l1_h is {shown} at character 17 of the span \(unit l1\.h\.5\)"):
        write_store(tmp_path / "acts", wp_small, span, states=("h",), dtype=dtype)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("value, shown", [(np.nextafter(np.float32(65504), np.float32(np.inf)), "65,504.004"),
                                          (-65505.0, "65,505"), (1e6, "1,000,000")])
def test_float16_refuses_values_just_beyond_its_range(tmp_path, wp_small, span, monkeypatch, value, shown):
    """65,504 is float16's largest value; anything beyond it is refused, even what would round down to it."""
    def big(*args, **kwargs):
        h = np.full((10, 128), 65504.0, np.float32)                         # the limit itself is fine
        h[4, 9] = value
        yield 0, {"rnn.l0.h": h, "rnn.l1.h": np.zeros((10, 128), np.float32)}

    monkeypatch.setattr(activations, "iter_states", big)
    with pytest.raises(UserError, match=rf"^l0_h reaches {shown}, beyond float16's 65,504, at character 4") as exc:
        write_store(tmp_path / "acts", wp_small, span, states=("h",), dtype="float16")
    assert exc.value.param == "dtype"
    assert os.listdir(tmp_path) == []
    acts = write_store(tmp_path / "a32", wp_small, span, states=("h",))      # float32 holds it
    assert acts.meta["max_abs"]["l0_h"] == abs(float(value))


def test_states_the_model_does_not_have_are_refused(tmp_path, wp_small, span):
    """`r` is a GRU gate: on an LSTM it used to give an empty store and exit 0."""
    for states in (("r",), ("h", "z")):
        with pytest.raises(UserError, match="states .* this lstm model, which has h, c, gates") as exc:
            write_store(tmp_path / "acts", wp_small, span, states=states)
        assert exc.value.param == "states"
    with pytest.raises(UserError, match="states") as exc:
        plan_store(wp_small.config, 100, ("n",))
    assert exc.value.param == "states"
    assert os.listdir(tmp_path) == []


def test_cli_record_refuses_states_the_model_does_not_have(tmp_path, shared_models):
    text = tmp_path / "t.txt"
    text.write_text("Hello, world. " * 100)
    res = CliRunner().invoke(cli, ["record", "--ckpt", str(shared_models / "wp_lstm2x128.pt"), "--text", str(text),
                                   "--split", "all", "--states", "r", "--out", str(tmp_path / "acts")])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert re.fullmatch(r"Error: (--)?states r name nothing in this lstm model, which has h, c, gates \(i, f, g, o\)",
                        res.output.strip())
    assert sorted(os.listdir(tmp_path)) == ["t.txt"]
