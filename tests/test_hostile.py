"""Hostile input, command by command: every case ends in one line starting `Error:`, a non-zero exit,
no traceback, within a time bound, and every file it names in `keep` byte-identical afterwards.

To add a case, add a row to CASES: an id, the command's arguments, a piece of the expected error,
and the paths that must survive. Paths are written with placeholders filled per test:
{ckpt} a small valid checkpoint, {text} a text file it can read, {tmp} the test's folder.
Files a case needs beyond those are made by its `setup` (a function of the test's folder).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from click.testing import CliRunner

from neuroscope.cli import cli
from neuroscope.checkpoint import FORMAT

SECONDS = 60          # no case may take longer than this: a hang is a failure, not a stuck suite
VOCAB = list("\n !\"'(),-.:;?abcdefghijklmnopqrstuvwxyz")
TEXT = ('He said, "the war is over." And she said nothing at all.\n' * 80)


def tiny_blob(hidden: int = 16, layers: int = 2, cell: str = "lstm") -> dict:
    """A valid plain-char-rnn/1 checkpoint dict with random weights (float32)."""
    from neuroscope.model import CharRNN, ModelConfig
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(VOCAB), cell=cell, embedding_dim=hidden, hidden_size=hidden,
                         num_layers=layers, dropout=0.0)
    model = CharRNN(config)
    return {"format": FORMAT, "vocab": list(VOCAB), "config": config.to_dict(),
            "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
            "train": {"samples": {"100": "abc"}, "curve": [{"step": 1, "train_loss": 3.0}]}}


def digest(path: Path) -> str:
    if path.is_dir():
        return json.dumps({str(p.relative_to(path)): digest(p) for p in sorted(path.rglob("*")) if p.is_file()})
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Case:
    id: str
    args: list[str]
    error: str                                   # a piece of the one-line error
    keep: tuple[str, ...] = ()                    # paths that must be byte-identical afterwards
    setup: Callable[[Path], None] | None = None
    absent: tuple[str, ...] = ()                  # paths that must not exist afterwards


def _write(rel: str, content: str | bytes) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return make


def _fifo(rel: str) -> Callable[[Path], None]:
    return lambda tmp: os.mkfifo(tmp / rel)


def _blob(rel: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        blob = tiny_blob()
        change(blob)
        torch.save(blob, tmp / rel)
    return make


def _store_like(tmp: Path) -> None:
    """A folder that is not an activation store, holding the command's input and a note."""
    (tmp / "p").mkdir()
    torch.save(tiny_blob(), tmp / "p" / "in.pt")
    (tmp / "p" / "notes.txt").write_text("my notes")


def _chain(*fns):
    def make(tmp):
        for f in fns:
            f(tmp)
    return make


def _set(path: list, value):
    def change(blob):
        d = blob
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return change


def _dead_unit(blob):
    """Unit 0 of layer 0 gets no input and no bias: every gate constant, c stays 0."""
    sd, H = blob["state_dict"], blob["config"]["hidden_size"]
    for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        sd[f"rnn.{k}"][0::H] = 0.0


CT = ["--ckpt", "{ckpt}", "--text", "{text}", "--split", "all"]    # the small test files are read whole
SMALL = ["--batch", "2", "--seq", "16", "--hidden", "8", "--layers", "1"]
RUNAWAY = "x=(a|aa)+$"                       # backtracks exponentially in re and in regex

CASES = [
    # ---- data loss: an output never replaces an input, nor anything without --force
    Case("report-out-is-the-checkpoint", ["report", *CT, "--chars", "500", "--out", "{ckpt}"], "input", ("{ckpt}",)),
    Case("report-out-is-the-checkpoint-force", ["report", *CT, "--chars", "500", "--out", "{ckpt}", "--force"],
         "input", ("{ckpt}",)),
    Case("report-out-is-the-text", ["report", *CT, "--chars", "500", "--out", "{text}", "--force"], "input", ("{text}",)),
    Case("report-out-exists", ["report", *CT, "--chars", "500", "--out", "{tmp}/old.html"], "exists",
         ("{tmp}/old.html",), _write("old.html", "<!DOCTYPE html><p>mine")),
    Case("report-force-over-other-kind", ["report", *CT, "--chars", "500", "--out", "{tmp}/m.pt", "--force"],
         "not an HTML page", ("{tmp}/m.pt",), _blob("m.pt", lambda b: None)),
    Case("probe-csv-is-the-checkpoint", ["probe", *CT, "--chars", "3000", "--feature", "in_quote", "--csv", "{ckpt}"],
         "input", ("{ckpt}",)),
    Case("probe-csv-is-the-checkpoint-force", ["probe", *CT, "--chars", "3000", "--feature", "in_quote",
                                                "--csv", "{ckpt}", "--force"], "input", ("{ckpt}",)),
    Case("probe-report-is-the-checkpoint", ["probe", *CT, "--chars", "3000", "--feature", "in_quote",
                                            "--report", "{ckpt}"], "input", ("{ckpt}",)),
    Case("probe-csv-exists", ["probe", *CT, "--chars", "3000", "--feature", "in_quote", "--csv", "{tmp}/r.csv"],
         "set --force", ("{tmp}/r.csv",), _write("r.csv", "feature,unit\nmine,1\n")),
    Case("probe-csv-and-report-same-file", ["probe", *CT, "--chars", "3000", "--feature", "in_quote",
                                            "--csv", "{tmp}/r.out", "--report", "{tmp}/r.out"], "same file"),
    Case("probe-null-too-short", ["probe", *CT, "--chars", "300", "--feature", "in_quote"], "turn --null off"),
    Case("probe-csv-in-missing-folder", ["probe", *CT, "--chars", "3000", "--feature", "in_quote",
                                         "--csv", "{tmp}/nope/r.csv"], "does not exist"),
    Case("probe-csv-parent-is-a-file", ["probe", *CT, "--chars", "3000", "--feature", "in_quote",
                                        "--csv", "{tmp}/f.txt/r.csv"], "does not exist", ("{tmp}/f.txt",),
         _write("f.txt", "x")),
    Case("record-force-on-non-store", ["record", "--ckpt", "{tmp}/p/in.pt", "--text", "{text}", "--chars", "300",
                                       "--out", "{tmp}/p", "--force"], "input", ("{tmp}/p",), _store_like),
    Case("record-force-on-plain-folder", ["record", *CT, "--chars", "300", "--out", "{tmp}/q", "--force"],
         "not an activation store", ("{tmp}/q",), _write("q/notes.txt", "mine")),
    Case("record-out-exists", ["record", *CT, "--chars", "300", "--out", "{tmp}/q"], "exists", ("{tmp}/q",),
         _write("q/notes.txt", "mine")),
    Case("demo-keeps-existing-model", ["demo", "--out", "{tmp}/d", "--steps", "1"], "exists",
         ("{tmp}/d/model.pt",), _write("d/model.pt", b"my model")),
    Case("train-out-is-the-text", ["train", "{text}", "--out", "{text}", "--steps", "2", *SMALL, "--force"], "input",
         ("{text}",)),
    Case("train-out-exists", ["train", "{text}", "--out", "{ckpt}", "--steps", "2", *SMALL], "exists", ("{ckpt}",)),
    # ---- hangs and unbounded work
    Case("regex-backtracking-features", ["features", "--text", "{tmp}/a.txt", "--feature-regex", RUNAWAY],
         "took longer", (), _write("a.txt", "a" * 40 + "!\n")),
    Case("regex-backtracking-probe", ["probe", "--ckpt", "{ckpt}", "--text", "{tmp}/a.txt",
                                      "--feature-regex", RUNAWAY], "took longer", (), _write("a.txt", "a" * 400 + "!\n")),
    Case("regex-backtracking-report", ["report", "--ckpt", "{ckpt}", "--text", "{tmp}/a.txt", "--feature-regex",
                                       RUNAWAY, "--out", "{tmp}/r.html"], "took longer", (), _write("a.txt", "a" * 400 + "!\n"),
         ("{tmp}/r.html",)),
    Case("regex-huge-count-verbose", ["features", "--text", "{text}", "--feature-regex", "x=(?x)a{{ 1000000000 }}"],
         "too large"),
    Case("text-fifo", ["eval", "--ckpt", "{ckpt}", "--text", "{tmp}/fifo"], "not a regular file", (), _fifo("fifo")),
    Case("ckpt-fifo", ["eval", "--ckpt", "{tmp}/fifo", "--text", "{text}"], "not a regular file", (), _fifo("fifo")),
    Case("text-dev-zero", ["eval", "--ckpt", "{ckpt}", "--text", "/dev/zero"], "not a regular file"),
    Case("sample-absurd-length", ["sample", "--ckpt", "{ckpt}", "--length", "1000000000"], "length"),
    Case("ckpt-claims-huge-hidden", ["info", "--ckpt", "{tmp}/h.pt"], "weights do not fit", (),
         _blob("h.pt", _set(["config", "hidden_size"], 9000))),
    Case("ckpt-claims-huge-layers", ["eval", "--ckpt", "{tmp}/h.pt", "--text", "{text}"], "num_layers", (),
         _blob("h.pt", _set(["config", "num_layers"], 10 ** 6))),
    # ---- checkpoints and metadata of the wrong shape or type
    Case("ckpt-negative-hidden", ["info", "--ckpt", "{tmp}/b.pt"], "hidden_size", (),
         _blob("b.pt", _set(["config", "hidden_size"], -4))),
    Case("ckpt-zero-layers", ["info", "--ckpt", "{tmp}/b.pt"], "num_layers", (),
         _blob("b.pt", _set(["config", "num_layers"], 0))),
    Case("ckpt-dropout-5", ["info", "--ckpt", "{tmp}/b.pt"], "dropout", (), _blob("b.pt", _set(["config", "dropout"], 5))),
    Case("ckpt-config-is-a-list", ["info", "--ckpt", "{tmp}/b.pt"], "config", (), _blob("b.pt", _set(["config"], [1, 2]))),
    Case("ckpt-state-dict-is-a-string", ["info", "--ckpt", "{tmp}/b.pt"], "state_dict", (),
         _blob("b.pt", _set(["state_dict"], "weights"))),
    Case("ckpt-sample-key-abc", ["report", "--ckpt", "{tmp}/b.pt", "--text", "{text}", "--chars", "300",
                                 "--out", "{tmp}/r.html"], "samples", (),
         _blob("b.pt", _set(["train", "samples"], {"abc": "text"})), ("{tmp}/r.html",)),
    Case("ckpt-curve-is-an-int", ["report", "--ckpt", "{tmp}/b.pt", "--text", "{text}", "--chars", "300",
                                  "--out", "{tmp}/r.html"], "curve", (), _blob("b.pt", _set(["train", "curve"], 7)),
         ("{tmp}/r.html",)),
    Case("ckpt-excerpt-wrong-type", ["eval", "--ckpt", "{tmp}/b.pt"], "excerpt", (),
         _blob("b.pt", _set(["excerpt"], 42))),
    Case("ckpt-duplicate-vocab", ["info", "--ckpt", "{tmp}/b.pt"], "vocab", (),
         _blob("b.pt", lambda b: b["vocab"].__setitem__(1, "a"))),
    Case("ckpt-lone-surrogate-vocab", ["sample", "--ckpt", "{tmp}/b.pt", "--length", "20"], "vocab", (),
         _blob("b.pt", lambda b: b["vocab"].__setitem__(1, "\ud800"))),
    Case("ckpt-nan-weights", ["eval", "--ckpt", "{tmp}/b.pt", "--text", "{text}", "--json"], "finite", (),
         _blob("b.pt", lambda b: b["state_dict"]["decoder.bias"].fill_(float("nan")))),
    Case("ckpt-integer-weights", ["eval", "--ckpt", "{tmp}/b.pt", "--text", "{text}"], "float", (),
         _blob("b.pt", lambda b: b["state_dict"].__setitem__(
             "decoder.weight", b["state_dict"]["decoder.weight"].round().to(torch.int64)))),
    # ---- options out of range
    Case("sample-temperature-nan", ["sample", "--ckpt", "{ckpt}", "--temperature", "nan"], "temperature"),
    Case("eval-one-char", ["eval", "--ckpt", "{ckpt}", "--text", "{text}", "--chars", "1"], "chars"),
    Case("probe-ablate-too-many", ["probe", *CT, "--chars", "3000", "--feature", "in_quote", "--ablate", "40",
                                   "--no-sparse", "--no-null", "--no-control"], "ablate"),
    Case("explain-unit-does-not-exist", ["explain", *CT, "--unit", "l5.c.0"], "does not exist"),
    Case("explain-text-too-short", ["explain", *CT, "--chars", "1000", "--unit", "l0.c.0"], "at least 1,500"),
    Case("explain-top-units-out-of-range", ["explain", *CT, "--top-units", "65"], "--top-units must be between 1 and 64"),
    Case("explain-unit-and-top-units", ["explain", *CT, "--unit", "l0.c.0", "--top-units", "3"], "not both"),
    Case("explain-constant-unit", ["explain", "--ckpt", "{tmp}/z.pt", "--text", "{text}", "--split", "all", "--unit", "l0.c.0"],
         "constant", (), _blob("z.pt", _dead_unit)),
    Case("explain-csv-is-the-checkpoint", ["explain", *CT, "--unit", "l0.c.0", "--csv", "{ckpt}", "--force"], "input",
         ("{ckpt}",)),
    Case("record-states-r-on-lstm", ["record", *CT, "--chars", "300", "--states", "r", "--out", "{tmp}/s"], "states",
         (), None, ("{tmp}/s",)),
    Case("match-span-outside", ["match", *CT, "--split", "all", "--span", "5000:5010"], "inside the text"),
    Case("match-span-malformed", ["match", *CT, "--span", "12-40"], "--span takes START:END"),
    Case("match-span-no-unit-on", ["match", "--ckpt", "{ckpt}", "--text", "{tmp}/a.txt", "--split", "all",
                                   "--span", "2000:2010"], "no unit is on inside span", (), _write("a.txt", "a" * 3000)),
    Case("match-unknown-unit", ["match", *CT, "--span", "10:20", "--units", "l5.c.0"], "does not exist"),
    Case("match-threshold-out-of-range", ["match", *CT, "--span", "10:20", "--threshold", "1.5"],
         "--threshold must lie in (0, 1)"),
]


def _fill(s: str, tmp: Path, ckpt: Path, text: Path) -> str:
    return s.format(tmp=tmp, ckpt=ckpt, text=text)


@pytest.fixture(autouse=True)
def short_regex_limit(monkeypatch):
    """A runaway pattern is stopped after 1 s of CPU here (10 s by default) to keep the table quick."""
    import neuroscope.features.patterns as patterns
    monkeypatch.setattr(patterns, "SECONDS", 1.0)


@pytest.fixture
def inputs(tmp_path):
    ckpt, text = tmp_path / "model.pt", tmp_path / "text.txt"
    torch.save(tiny_blob(), ckpt)
    text.write_text(TEXT)
    return ckpt, text


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_line_and_keeps_files(case, tmp_path, inputs):
    ckpt, text = inputs
    if case.setup:
        case.setup(tmp_path)
    keep = [Path(_fill(k, tmp_path, ckpt, text)) for k in case.keep]
    before = {p: digest(p) for p in keep}
    args = [_fill(a, tmp_path, ckpt, text) for a in case.args]
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SECONDS)
    try:
        result = CliRunner().invoke(cli, args)
    except _Hang:
        pytest.fail(f"{case.id}: still running after {SECONDS} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert result.exit_code == 1, (case.id, result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert case.error in errors[0], (case.id, errors[0])
    for p, h in before.items():
        assert digest(p) == h, f"{case.id}: {p} changed"
    for a in case.absent:
        assert not Path(_fill(a, tmp_path, ckpt, text)).exists(), f"{case.id}: {a} was written"
    leftovers = [p.name for p in tmp_path.rglob("*neuroscope-tmp*")]
    assert not leftovers, leftovers


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_write_errors_are_one_line_and_leave_nothing(tmp_path, inputs, monkeypatch, err):
    """A full disk, a read-only file system or a folder the user may not write (simulated: root may
    write anywhere) ends in one line naming the output, with no temporary left behind."""
    import neuroscope.files as files
    ckpt, text = inputs
    real = os.fsync

    def failing_fsync(fd):
        real(fd)
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", "--ckpt", str(ckpt), "--text", str(text), "--chars", "300",
                                      "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and str(out) in errors[0] and os.strerror(err) in errors[0], result.output
    assert not out.exists() and not list(tmp_path.glob("*neuroscope-tmp*"))
