"""Reliability, third round (issue 23), the training side: each rule a table of cases or a real run.

Rule 3: two runs never both succeed on one output (two real processes; a dead writer's lock is taken over).
Rule 4: untrusted training state is checked like a checkpoint: every tampered field of a real resume
state is one line and exit 1 from `train --resume`, the file untouched; a zip that would unpack to more
than its size, and tensors on the meta device, are refused before use.
Rule 5: what train writes, every command can read: the limits of loading apply when training starts,
seeds and durations out of range are one line, a run stopped before its first step writes nothing.
Rule 11: the demo trains a fixed, seeded number of steps; a sample that is only whitespace is shown as such.
"""
from __future__ import annotations

import copy
import math
import os
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

import neuroscope
import neuroscope.checkpoint._file as checkpoint_module
from neuroscope.checkpoint import CheckpointError, load_checkpoint
from neuroscope.cli import cli
from neuroscope.config import TrainConfig
from neuroscope.errors import UserError
from neuroscope.train import stdlib_corpus, train

pytestmark = pytest.mark.usefixtures("one_thread")

# A 1 x 16 LSTM that trains in milliseconds a step; the flags are the same settings for the command line.
TINY = TrainConfig(layers=1, hidden=16, batch=2, seq=8, steps=2, eval_every=1, val_chars=200, val_streams=1,
                   sample_at=(), sample_chars=5, final_sample_chars=5, test_chars=200, device="cpu")
TINY_FLAGS = ["--layers", "1", "--hidden", "16", "--batch", "2", "--seq", "8", "--eval-every", "1",
              "--val-chars", "200", "--sample-at", "", "--device", "cpu", "--json"]
ROOT = os.path.dirname(os.path.dirname(neuroscope.__file__))       # the checkout under test


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, contains: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    assert contains in lines[0], lines[0]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "py.txt"
    path.write_text(stdlib_corpus(30_000), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def resumable(text_file, tmp_path_factory):
    """A real checkpoint of a 2-step run (its resume state holds Adam's moments and a carried state), as
    the plain dict torch.load reads back."""
    out = tmp_path_factory.mktemp("run") / "m.pt"
    train(text_file.read_text(encoding="utf-8"), TINY, out, progress=False, source=str(text_file))
    return torch.load(out, weights_only=True)


# ---- rule 3: one output, one writer

def cli_process(*args) -> subprocess.Popen:
    script = "import torch; torch.set_num_threads(1); from neuroscope.cli import main; main()"
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_second_train_on_the_same_out_is_refused_naming_the_first(text_file, tmp_path):
    out, lock = tmp_path / "m.pt", tmp_path / ".m.pt.neuroscope-lock"
    first = cli_process("train", text_file, "--out", out, *TINY_FLAGS, "--steps", "10000000")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if lock.exists() and lock.read_text().strip() == str(first.pid) or out.exists():
                break
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        time.sleep(0.3)
        second = cli_process("train", text_file, "--out", out, *TINY_FLAGS, "--steps", "2", "--force")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 1, err
        assert err.strip().splitlines() == [f"Error: {out} is being written by another run (process {first.pid}); "
                                            f"wait for it to end, or write elsewhere"]
        assert first.poll() is None                 # the first goes on, its output its own
    finally:
        first.send_signal(signal.SIGKILL)           # a writer that dies without cleaning up
        first.wait()
    # Its lock file is left behind, and holds no lock: the next run takes it over.
    third = cli_process("train", text_file, "--out", out, *TINY_FLAGS, "--steps", "2", "--force")
    _, err = third.communicate(timeout=120)
    assert third.returncode == 0, err
    assert load_checkpoint(out).train["steps"] == 2 and not lock.exists()


def test_train_in_a_folder_that_does_not_exist_is_one_line(text_file, tmp_path):
    assert_one_line_error(run("train", text_file, "--out", tmp_path / "nope" / "m.pt", *TINY_FLAGS, "--steps", "2"),
                          "does not exist")


# ---- rule 4: the resume state, each field tampered

def at(*path):
    """A change that replaces the value at `path` (keys below extra["resume"]) with what `make(old)` returns."""
    def change(make):
        def apply(blob):
            node = blob["resume"]
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = make(node[path[-1]]) if callable(make) else make
        return apply
    return change


def drop(*path):
    def apply(blob):
        node = blob["resume"]
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return apply


def nan_in(t):
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


def meta(t):
    return torch.empty(t.shape, dtype=t.dtype, device="meta")


def garbage_rng(t):
    return torch.randint(0, 256, t.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


ADAM = ("optimizer", "state", 2)                      # Adam's state for rnn.weight_hh_l0 [64, 16]
TAMPERED = {
    "an extra key": (lambda b: b["resume"].__setitem__("surprise", 1), "resume holds 'surprise', which train"),
    "step missing": (drop("step"), "resume lacks 'step'"),
    "step a string": (at("step")("2"), "resume.step must be an integer"),
    "step NaN": (at("step")(float("nan")), "resume.step must be an integer"),
    "step negative": (at("step")(-1), "resume.step must be an integer in [1,"),
    "step 2**64": (at("step")(2 ** 64), "resume.step must be an integer in [1,"),
    "position negative": (at("position")(-8), "resume.position must be an integer in [0,"),
    "position past the streams": (at("position")(10 ** 12), "resume.position must be an integer in [0,"),
    "position a float": (at("position")(8.0), "resume.position must be an integer"),
    "position inside a window": (at("position")(3), "resume.position must be a multiple of seq 8"),
    "epoch negative": (at("epoch")(-1), "resume.epoch must be an integer"),
    "epoch a tensor": (at("epoch")(torch.tensor(0)), "resume.epoch must be an integer"),
    "config a list": (at("config")([1]), "resume.config must be a dict"),
    "config without hidden": (drop("config", "hidden"), "resume.config lacks 'hidden'"),
    "config hidden a string": (at("config", "hidden")("16"), "resume.config: hidden must be an integer"),
    "config layers past the limit": (at("config", "layers")(65), "resume.config: layers must be >= 1 and <= 64"),
    "config seed 2**64": (at("config", "seed")(2 ** 64), "resume.config: seed must be >= 0"),
    "config dropout NaN": (at("config", "dropout")(float("nan")), "resume.config: dropout must be a number"),
    "config another model": (at("config", "hidden")(32), "resume.config describes another model"),
    "config another batch": (at("config", "batch")(3), "resume.carried_state[0] has shape [1, 2, 16]; [1, 3, 16]"),
    "model a list": (at("model")([1]), "resume.model: state_dict must be a dict"),
    "model lacks a weight": (drop("model", "decoder.bias"), "resume.model: weights do not fit the config"),
    "model weight of another shape": (at("model", "decoder.bias")(torch.zeros(3)), "'decoder.bias' has shape [3]"),
    "model weight NaN": (at("model", "rnn.weight_hh_l0")(nan_in), "'rnn.weight_hh_l0' holds NaN"),
    "model weight on the meta device": (at("model", "encoder.weight")(meta), "on the meta device"),
    "optimizer a string": (at("optimizer")("adam"), "resume.optimizer must be a dict"),
    "optimizer without state": (drop("optimizer", "state"), "resume.optimizer lacks 'state'"),
    "optimizer lr NaN": (at("optimizer", "param_groups", 0, "lr")(float("nan")), "lr must be a number in (0, 1]"),
    "optimizer lr negative": (at("optimizer", "param_groups", 0, "lr")(-1.0), "lr must be a number in (0, 1]"),
    "optimizer params of another model": (at("optimizer", "param_groups", 0, "params")([0, 1]), "parameters in order"),
    "optimizer state of one parameter missing": (drop("optimizer", "state", 0), "holding each of the 7 parameters"),
    "exp_avg of another shape": (at(*ADAM, "exp_avg")(torch.zeros(3)), "['exp_avg'] has shape [3]; [64, 16]"),
    "exp_avg NaN": (at(*ADAM, "exp_avg")(nan_in), "['exp_avg'] holds NaN"),
    "exp_avg on the meta device": (at(*ADAM, "exp_avg")(meta), "on the meta device"),
    "exp_avg float64": (at(*ADAM, "exp_avg")(lambda t: t.double()), "['exp_avg'] is torch.float64"),
    "exp_avg_sq negative": (at(*ADAM, "exp_avg_sq")(lambda t: -t - 1), "['exp_avg_sq'] holds negative values"),
    "Adam's step 0": (at(*ADAM, "step")(torch.tensor(0.0)), "['step'] must be a number in [1,"),
    "Adam's step a float": (at(*ADAM, "step")(2.0), "['step'] must be a tensor"),
    "Adam's state with an extra key": (at(*ADAM, "momentum_buffer")(torch.zeros(1)), "holds 'momentum_buffer'"),
    "scheduler a list": (at("scheduler")([]), "resume.scheduler must be a dict"),
    "scheduler without best": (drop("scheduler", "best"), "resume.scheduler lacks 'best'"),
    "scheduler best NaN": (at("scheduler", "best")(float("nan")), "['best'] must be a number, not NaN"),
    "scheduler bad epochs negative": (at("scheduler", "num_bad_epochs")(-1), "['num_bad_epochs'] must be an integer"),
    "scheduler last epoch 2**64": (at("scheduler", "last_epoch")(2 ** 64), "['last_epoch'] must be an integer"),
    "rng a list": (at("rng_cpu")([1, 2]), "resume.rng_cpu must be a tensor"),
    "rng cut short": (at("rng_cpu")(lambda t: t[:100]), "resume.rng_cpu has shape [100]"),
    "rng garbage": (at("rng_cpu")(garbage_rng), "resume.rng_cpu is not a valid random-number state"),
    "rng float": (at("rng_cpu")(lambda t: t.float()), "resume.rng_cpu is torch.float32"),
    "rng on the meta device": (at("rng_cpu")(meta), "resume.rng_cpu is a tensor on the meta device"),
    "cuda rng a string": (at("rng_cuda")("x"), "resume.rng_cuda must be a tensor"),
    "carried state a string": (at("carried_state")("h"), "resume.carried_state must be a list of 2 tensors"),
    "carried state without c": (at("carried_state")(lambda s: s[:1]), "must be a list of 2 tensors for lstm"),
    "carried state of another shape": (at("carried_state", 0)(torch.zeros(1, 2, 3)), "has shape [1, 2, 3]"),
    "carried state NaN": (at("carried_state", 1)(nan_in), "resume.carried_state[1] holds NaN"),
    "carried state on the meta device": (at("carried_state", 0)(meta), "on the meta device"),
    "carried state integers": (at("carried_state", 0)(lambda t: t.long()), "is torch.int64"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_a_tampered_resume_state_is_one_line_and_leaves_the_file(text_file, resumable, tmp_path, case):
    change, message = TAMPERED[case]
    blob = copy.deepcopy(resumable)
    change(blob)
    out = tmp_path / "m.pt"
    torch.save(blob, out)
    before = out.read_bytes()
    result = run("train", text_file, "--out", out, *TINY_FLAGS, "--steps", "4", "--resume")
    assert_one_line_error(result, message)
    assert f"{out} cannot be resumed" in result.output or "resume must be" in result.output
    assert out.read_bytes() == before


def test_the_untampered_state_resumes(text_file, resumable, tmp_path):
    out = tmp_path / "m.pt"
    torch.save(resumable, out)
    result = run("train", text_file, "--out", out, *TINY_FLAGS, "--steps", "4", "--resume")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).train["steps"] == 4


def test_a_state_without_curve_or_samples_resumes(text_file, resumable, tmp_path):
    blob = copy.deepcopy(resumable)
    blob["train"].update(curve=None, samples=None, seconds=None)          # "not stored", as the format allows
    out = tmp_path / "m.pt"
    torch.save(blob, out)
    result = run("train", text_file, "--out", out, *TINY_FLAGS, "--steps", "3", "--resume")
    assert result.exit_code == 0, result.output
    assert [p["step"] for p in load_checkpoint(out).train["curve"]] == [3]


def packed(src, dst, extra_bytes: int = 0):
    """`src` (a torch.save zip) rewritten with every member compressed, plus an extra member of zeros."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        names = zin.namelist()
        for name in names:
            zout.writestr(name, zin.read(name))
        if extra_bytes:
            zout.writestr(names[0].split("/")[0] + "/data/999", bytes(extra_bytes))


def test_a_checkpoint_that_unpacks_past_its_size_is_refused_before_torch_reads_it(resumable, tmp_path, monkeypatch):
    torch.save(resumable, tmp_path / "m.pt")
    packed(tmp_path / "m.pt", tmp_path / "bomb.pt", extra_bytes=64 * 1024 ** 2)
    size = os.path.getsize(tmp_path / "bomb.pt")
    assert size < 2 * 1024 ** 2
    monkeypatch.setattr(checkpoint_module.torch, "load", lambda *a, **k: pytest.fail("torch.load read a zip bomb"))
    with pytest.raises(CheckpointError, match=rf"bomb.pt would unpack to [\d,]+ bytes from {size:,}; torch.save"):
        load_checkpoint(tmp_path / "bomb.pt")
    monkeypatch.undo()
    packed(tmp_path / "m.pt", tmp_path / "packed.pt")        # compressed, nothing more: still refused
    assert_one_line_error(run("info", "--ckpt", tmp_path / "packed.pt"), "would unpack to")


def test_weights_on_the_meta_device_are_refused_by_every_loader(resumable, tmp_path):
    blob = copy.deepcopy(resumable)
    blob["state_dict"]["rnn.weight_hh_l0"] = meta(blob["state_dict"]["rnn.weight_hh_l0"])
    torch.save(blob, tmp_path / "m.pt")
    assert_one_line_error(run("info", "--ckpt", tmp_path / "m.pt"),
                          "'rnn.weight_hh_l0' is a tensor on the meta device")


# ---- rule 5: what train writes, every command reads

@pytest.mark.parametrize("flags, message", [
    (["--layers", "65", "--hidden", "4"], "--layers must be >= 1 and <= 64 (got 65)"),
    (["--embedding", "16385"], "--embedding must be >= 0 and <= 16,384 (got 16385)"),
    (["--seed", str(2 ** 64)], "--seed must be >= 0 and <= 4,294,967,295"),
    (["--seed", str(2 ** 63)], "--seed must be >= 0 and <= 4,294,967,295"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--steps", str(2 ** 64), "--minutes", "0.01"], "--steps must be >= 1 and <= 1,099,511,627,776"),
    (["--minutes", "inf"], "--minutes must be > 0 and <= 527,040"),
    (["--minutes", "nan"], "--minutes must be a number"),
    (["--minutes", "-1"], "--minutes must be > 0"),
    (["--max-chars", str(2 ** 64)], "--max-chars must be >= 0 and <="),
    (["--val-chars", "-5"], "--val-chars must be >= 0"),
])
def test_settings_a_checkpoint_cannot_hold_are_one_line_before_training(text_file, tmp_path, flags, message):
    out = tmp_path / "m.pt"
    args = [*TINY_FLAGS, *(["--steps", "1"] if "--steps" not in flags else []), *flags]
    assert_one_line_error(run("train", text_file, "--out", out, *args), message)
    assert sorted(os.listdir(tmp_path)) == []


def test_a_run_at_the_limits_writes_what_info_reads(text_file, tmp_path):
    out = tmp_path / "m.pt"
    result = run("train", text_file, "--out", out, *TINY_FLAGS, "--steps", "1", "--layers", "64", "--hidden", "2",
                 "--seed", str(2 ** 32 - 1))
    assert result.exit_code == 0, result.output
    info = run("info", "--ckpt", out)
    assert info.exit_code == 0 and "LSTM 64 x 2" in info.output


@pytest.mark.parametrize("name, value", [("hidden", float("nan")), ("hidden", "16"), ("layers", True),
                                         ("seq", float("inf")), ("lr", "0.1"), ("lr_decay", 1.0),
                                         ("minutes", math.inf), ("sample_at", (0.5,)), ("sample_at", 5),
                                         ("final_sample_chars", 10 ** 7), ("clip", None)])
def test_train_config_check_refuses_any_value_in_one_line(name, value):
    with pytest.raises(UserError) as info:
        replace(TrainConfig(), **{name: value}).check()
    assert info.value.param == name and "\n" not in str(info.value)


def test_a_run_stopped_before_its_first_step_writes_nothing_and_says_so(text_file, tmp_path):
    out = tmp_path / "m.pt"
    assert_one_line_error(run("train", text_file, "--out", out, *TINY_FLAGS, "--minutes", "1e-12"),
                          "--minutes=1e-12 ran out before the first step; nothing was written")
    assert os.listdir(tmp_path) == []
    text = text_file.read_text(encoding="utf-8")
    train(text, TINY, out, progress=False)
    before = out.read_bytes()
    with pytest.raises(UserError, match=f"ran out before the first step; {out} is unchanged"):
        train(text, replace(TINY, steps=None, minutes=1e-12), out, progress=False, resume=True)
    assert out.read_bytes() == before


def test_a_diverging_run_stops_instead_of_writing_a_nan_loss(text_file, tmp_path, monkeypatch):
    run_module = sys.modules[train.__module__]     # the module whose loop calls evaluate
    real = run_module.evaluate

    def nan_from_step_3(model, ids, **kwargs):     # validations at steps 1, 2, 3 (eval_every 1), then the test
        result = real(model, ids, **kwargs)
        calls.append(1)
        return replace(result, loss_nats=math.nan) if len(calls) == 3 else result

    calls = []
    monkeypatch.setattr(run_module, "evaluate", nan_from_step_3)
    text = text_file.read_text(encoding="utf-8")
    with pytest.raises(UserError, match=rf"training diverged: the validation loss is nan at step 3; {tmp_path / 'm.pt'} "
                                        r"keeps the last state saved; try a lower lr"):
        train(text, replace(TINY, steps=5), tmp_path / "m.pt", progress=False)
    assert load_checkpoint(tmp_path / "m.pt").train["best_val_loss_nats"] < 10
    calls.clear()
    calls.extend([1, 1])                            # NaN at the first validation: nothing was saved yet
    with pytest.raises(UserError, match=r"validation loss is nan at step 1; nothing was written"):
        train(text, TINY, tmp_path / "n.pt", progress=False)
    assert not (tmp_path / "n.pt").exists()


@pytest.mark.parametrize("flags, message", [(["--lr", "1e38"], "--lr must be > 0 and <= 1"),
                                            (["--lr", "nan"], "--lr must be a number")])
def test_a_learning_rate_that_only_diverges_is_one_line(text_file, tmp_path, flags, message):
    assert_one_line_error(run("train", text_file, "--out", tmp_path / "m.pt", *TINY_FLAGS, "--steps", "1", *flags),
                          message)


def test_a_text_named_in_bytes_that_are_not_utf8_gives_a_readable_checkpoint(text_file, tmp_path):
    name = os.fsdecode(b"caf\xe9.txt")                  # as Python hands a non-UTF-8 file name: a lone surrogate
    (tmp_path / name).write_bytes(text_file.read_bytes())
    out = tmp_path / "m.pt"
    result = run("train", tmp_path / name, "--out", out, *TINY_FLAGS, "--steps", "1")
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out)
    assert ckpt.train["text"].endswith("caf\ufffd.txt") and ckpt.excerpt["source"].endswith("caf\ufffd.txt")


def test_a_text_with_a_lone_surrogate_is_refused(tmp_path):
    with pytest.raises(UserError, match="text holds a lone surrogate at 5"):
        train("hello\ud800" + "x" * 5000, TINY, tmp_path / "m.pt", progress=False)


# ---- rule 11: the demo

def test_the_demo_trains_a_fixed_seeded_number_of_steps(text_file, tmp_path):
    from neuroscope.report._demo import demo_config
    config = demo_config(steps=2, seed=5)
    assert (config.steps, config.minutes, config.seed) == (2, None, 5)
    small = replace(config, val_chars=2000, test_chars=2000, final_sample_chars=20)
    text = text_file.read_text(encoding="utf-8")
    a = train(text, small, tmp_path / "a.pt", progress=False)
    b = train(text, small, tmp_path / "b.pt", progress=False)
    untimed = [[{k: v for k, v in p.items() if k != "seconds"} for p in c.train["curve"]] for c in (a, b)]
    assert a.train["steps"] == 2 and len(untimed[0]) == 1 and untimed[0] == untimed[1]
    assert a.train["samples"] == b.train["samples"] and a.train["test_loss_nats"] == b.train["test_loss_nats"]


def test_the_demo_command_takes_steps_not_minutes(tmp_path):
    assert_one_line_error(run("demo", "--out", tmp_path / "d", "--steps", "0"), "--steps must be >= 1")
    assert not (tmp_path / "d").exists()
    result = run("demo", "--out", tmp_path / "d", "--minutes", "1")
    assert result.exit_code == 2 and "No such option '--minutes'" in result.output


def test_a_sample_of_only_whitespace_is_shown_as_such():
    from types import SimpleNamespace

    from neuroscope.report._sections import samples_section
    ckpt = SimpleNamespace(train={"samples": {"100": "  \n \t", "200": "def f():\n    pass"},
                                  "final_sample_t05": " " * 6})
    section, _ = samples_section(ckpt)
    (l1, t1), (l2, t2), (l3, t3) = section["samples"]
    assert l1.startswith("step 100: only whitespace, 5 characters") and t1 == "··↵\n·→"
    assert (l2, t2) == ("step 200", "def f():\n    pass")
    assert l3.startswith("final model, temperature 0.5: only whitespace, 6 characters") and t3 == "······"
