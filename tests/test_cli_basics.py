"""The train, sample, eval and info commands, and what they do with bad input."""
import builtins
import json
import os
import re
import signal

import pytest
import torch
from click.testing import CliRunner

from neuroscope.cli import cli
from neuroscope.cli._options import flag_message
from neuroscope.errors import UserError
from neuroscope.train import TrainConfig, stdlib_corpus

REFERENCE = {"wp_lstm2x128": "warpeace.txt", "wp_lstm3x512": "warpeace.txt",
             "linux_lstm3x512": "linux.txt", "enwiki_lstm2x512": "enwiki.xml"}
TINY_ARGS = ["--layers", "1", "--hidden", "32", "--batch", "8", "--seq", "16", "--steps", "20", "--eval-every", "10",
             "--val-chars", "2000", "--sample-at", "5", "--device", "cpu"]
SENTINEL = b"an existing file that no failed command may touch\n"


@pytest.fixture(autouse=True, scope="module")
def one_thread():   # module scope: set before the module-scoped training fixture
    # Batch-1 steps gain little from a second thread (one stream is sequential), and on a shared
    # machine OpenMP's thread hand-offs make them many times slower (measured: 19x at load 9).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "py.txt").write_text(stdlib_corpus(60_000))
    (d / "empty.txt").write_bytes(b"")
    (d / "short.txt").write_text("def f(): pass\n")
    (d / "latin1.txt").write_bytes("caf\u00e9 au lait, na\u00efve\n".encode("latin-1") * 50)
    (d / "notes.pt").write_text("these are notes, not weights\n")
    (d / "folder").mkdir()

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    torch.save({"format": "plain-char-rnn/1", "payload": Payload()}, d / "evil.pt")
    return d


@pytest.fixture(scope="module")
def model(files):
    out = files / "tiny.pt"
    result = CliRunner().invoke(cli, ["train", str(files / "py.txt"), "--out", str(out), *TINY_ARGS, "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, contains=""):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert contains in errors[0], result.output


# wp_lstm2x128 is read as one exact stream (the default); the 512-unit models as 64 streams, each warmed
# on the 256 characters before it: on wp_lstm3x512's test split 1.08764 nats against 1.08714 exact
# (+0.0005; cold streams +0.0036) in 56% of the one stream's CPU time.
EXACT = "wp_lstm2x128"
WARM_STREAMS = ["--streams", "64", "--warmup", "256"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == EXACT else pytest.mark.slow)
                                  for n in sorted(REFERENCE)])
def test_eval_reproduces_every_reference_test_loss(name, shared_models, shared_data):
    path = shared_models / f"{name}.pt"
    result = run("eval", "--ckpt", path, "--text", shared_data / REFERENCE[name], "--split", "test", "--json",
                 *([] if name == EXACT else WARM_STREAMS))
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    stored = torch.load(path, weights_only=True)["train"]
    assert abs(got["loss_nats"] - stored["test_loss_nats"]) < 0.01
    assert got["chars"] == stored["split"][2] - 1
    assert abs(got["bits_per_char"] - got["loss_nats"] / 0.6931471805599453) < 1e-9


def test_info_reports_config_and_stored_losses(shared_models):
    result = run("info", "--ckpt", shared_models / "wp_lstm2x128.pt", "--json")
    info = json.loads(result.stdout)
    blob = torch.load(shared_models / "wp_lstm2x128.pt", weights_only=True)
    assert info["parameters"] == sum(v.numel() for v in blob["state_dict"].values())
    assert (info["vocab_size"], info["test_loss_nats"]) == (84, 1.2229)
    assert info["sample_steps"] == ["100", "300", "500", "700", "1200", "2000"]


def test_train_writes_a_checkpoint_that_eval_and_info_agree_with(model, files):
    out, summary = model
    assert summary["steps"] == 20 and summary["best_step"] in (10, 20)
    info = json.loads(run("info", "--ckpt", out, "--json").stdout)
    assert info["sample_steps"] == ["5", "10", "20"] and info["excerpt_chars"] > 0
    assert info["test_loss_nats"] == summary["test_loss_nats"]
    ev = json.loads(run("eval", "--ckpt", out, "--text", files / "py.txt", "--split", "test", "--json").stdout)
    assert abs(ev["loss_nats"] - summary["test_loss_nats"]) < 1e-4
    # Without --text, eval reads the held-out excerpt stored in the checkpoint (all of this short test split).
    ev2 = json.loads(run("eval", "--ckpt", out, "--json").stdout)
    assert ev2["source"] == "<checkpoint excerpt>" and abs(ev2["loss_nats"] - ev["loss_nats"]) < 1e-6


def test_train_resume_via_cli_continues_to_the_new_step_count(model, files, tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(model[0].read_bytes())
    result = run("train", files / "py.txt", "--out", out, "--steps", "30", "--eval-every", "10", "--device", "cpu",
                 "--resume", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 30


def test_sample_is_deterministic_with_seed(model):
    out, _ = model
    a = run("sample", "--ckpt", out, "--length", "80", "--seed", "7", "--prime", "def ")
    b = run("sample", "--ckpt", out, "--length", "80", "--seed", "7", "--prime", "def ")
    c = run("sample", "--ckpt", out, "--length", "80", "--seed", "8", "--prime", "def ")
    assert a.exit_code == 0 and a.stdout == b.stdout != c.stdout
    assert a.stdout.startswith("def ") and len(a.stdout) == len("def ") + 80 + 1        # + newline
    greedy = [json.loads(run("sample", "--ckpt", out, "--length", "30", "--temperature", "0", "--seed", seed,
                             "--json").stdout) for seed in (1, 2)]
    g1, g2 = greedy
    assert g1["text"] == g2["text"] and len(g1["text"]) == 31


def test_train_help_shows_the_train_config_defaults():
    help_text = " ".join(CliRunner().invoke(cli, ["train", "--help"]).output.split())
    config = TrainConfig()
    for name in ("cell", "layers", "hidden", "embedding", "dropout", "batch", "seq", "lr", "seed", "eval_every",
                 "val_chars", "max_chars", "sample_at", "device"):
        value = getattr(config, name)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        flag = "--" + name.replace("_", "-")
        choices = r"(\[[\w|]+\] )?"       # --cell [lstm|gru|rnn]
        assert re.search(rf"{flag} {choices}[^\[]*\[default: {re.escape(shown)}\]", help_text), (name, help_text)
    assert f"[default: {config.steps} unless --minutes]" in help_text


def test_library_parameter_names_come_back_as_the_commands_flags(model, files, tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(model[0].read_bytes())
    # train(resume=True) says "set steps above it"; the CLI says "--steps".
    result = run("train", files / "py.txt", "--out", out, "--steps", "20", "--resume", "--device", "cpu")
    assert_one_line_error(result, "is already at step 20; set --steps above it to continue")
    assert result.exit_code == 1
    result = run("train", files / "py.txt", "--out", out, "--steps", "5", "--device", "cpu")
    assert_one_line_error(result, f"{out} exists; set resume to continue its run, or --force to replace it")
    assert_one_line_error(run("eval", "--ckpt", out, "--text", files / "py.txt", "--start", "-3"),
                          "--start must be >= 0, got -3")
    assert_one_line_error(run("eval", "--ckpt", out, "--text", files / "py.txt", "--chars", "0"),
                          "--chars must be >= 1, got 0")
    assert_one_line_error(run("eval", "--ckpt", out, "--split", "val"), "a split needs --text")


def test_flag_message_replaces_the_last_whole_word_and_leaves_paths_alone():
    command = cli.commands["report"]
    assert flag_message(UserError("max_chars must be >= 1, got 0", param="max_chars"), command) == \
        "--max-chars must be >= 1, got 0"
    assert flag_message(UserError("out/force.html exists; set force to replace it", param="force"), command) == \
        "out/force.html exists; set --force to replace it"
    assert flag_message(UserError("cannot write /tmp/out/r.html: no space", param="out"), command) == \
        "cannot write /tmp/out/r.html: no space"
    assert flag_message(UserError("no text given: pass text (a file)", param="text"), command) == \
        "no text given: pass --text (a file)"
    assert flag_message(UserError("regexes x: bad pattern 'regexes(': missing )", param="regexes"),
                        cli.commands["features"]) == "--feature-regex x: bad pattern 'regexes(': missing )"
    # A parameter the command has no option for, or no parameter at all: the message as it is.
    assert flag_message(UserError("clip must be > 0", param="clip"), command) == "clip must be > 0"
    # A message on several lines stays one line, its line break escaped (nothing cut, nothing forged).
    assert flag_message(UserError("first line\nsecond"), command) == "first line\\nsecond"


# Each bad input: one `Error:` line, non-zero exit, no traceback, and the existing --out untouched.
@pytest.mark.parametrize("text, extra, message", [
    ("missing.txt", [], "not found"),
    ("folder", [], "directory"),
    ("empty.txt", [], "holds 0 characters"),
    ("short.txt", [], "too few"),
    ("latin1.txt", [], "not UTF-8"),
    ("py.txt", ["--cell", "transformer"], "Invalid value for '--cell'"),
    ("py.txt", ["--device", "tpu"], "Invalid value for '--device'"),
    ("py.txt", ["--layers", "0"], "layers must be >= 1"),
    ("py.txt", ["--batch", "4096", "--seq", "4096"], "too few for batch 4096"),
    ("py.txt", ["--sample-at", "100,soon"], "--sample-at"),
    ("py.txt", ["--steps", "many"], "Invalid value for '--steps'"),
    ("py.txt", ["--resume"], "not a readable PyTorch checkpoint"),
    ("py.txt", ["--force", "--max-chars", "5"], "too few"),
    ("py.txt", [], "exists"),
])
def test_train_bad_input_is_one_line_and_leaves_out_untouched(files, tmp_path, text, extra, message):
    out = tmp_path / "out.pt"
    out.write_bytes(SENTINEL)
    args = ["--steps", "5", "--device", "cpu"] if "--steps" not in extra and "--device" not in extra else []
    if message != "exists" and "--resume" not in extra and "--force" not in extra:
        args.append("--force")           # so that each case reaches the check it is about
    result = run("train", files / text, "--out", out, *args, *extra)
    assert_one_line_error(result, message)
    assert out.read_bytes() == SENTINEL


def test_train_unreadable_text_is_one_line(files, tmp_path, monkeypatch):
    path = files / "secret.txt"
    path.write_text("x" * 10_000)
    path.chmod(0)
    real_open = builtins.open

    def no_read(file, *args, **kwargs):     # as root, chmod 0 does not stop reading: refuse here instead
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_read)
    out = tmp_path / "out.pt"
    out.write_bytes(SENTINEL)
    assert_one_line_error(run("train", path, "--out", out, "--force", "--device", "cpu"), "Permission denied")
    assert out.read_bytes() == SENTINEL


def test_device_cuda_without_gpu_is_one_line(files, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out.pt"
    out.write_bytes(SENTINEL)
    assert_one_line_error(run("train", files / "py.txt", "--out", out, "--force", "--device", "cuda"), "no CUDA GPU")
    assert out.read_bytes() == SENTINEL
    assert_one_line_error(run("sample", "--ckpt", files / "notes.pt", "--device", "cuda"), "no CUDA GPU")


@pytest.mark.parametrize("command", ["sample", "info", "eval"])
@pytest.mark.parametrize("ckpt, message", [
    ("missing.pt", "not found"),
    ("folder", "directory"),
    ("notes.pt", "not a readable PyTorch checkpoint"),
    ("evil.pt", "not a safe checkpoint: loading it would run code"),
    ("py.txt", "not a readable PyTorch checkpoint"),
])
def test_bad_checkpoints_are_one_line_errors(files, command, ckpt, message):
    extra = ["--text", files / "py.txt"] if command == "eval" else []
    assert_one_line_error(run(command, "--ckpt", files / ckpt, *extra), message)


@pytest.mark.parametrize("args, message", [
    (["--length", "0"], "Invalid value for '--length'"),
    (["--temperature", "-1"], "Invalid value for '--temperature'"),
    (["--seed", "x"], "Invalid value for '--seed'"),
])
def test_sample_bad_option_values(model, args, message):
    assert_one_line_error(run("sample", "--ckpt", model[0], *args), message)


def test_eval_bad_text_and_span(model, files):
    out = model[0]
    assert_one_line_error(run("eval", "--ckpt", out, "--text", files / "latin1.txt"), "not UTF-8")
    assert_one_line_error(run("eval", "--ckpt", out, "--text", files / "missing.txt"), "not found")
    assert_one_line_error(run("eval", "--ckpt", out, "--text", files / "py.txt", "--split", "dev"),
                          "Invalid value for '--split'")
    assert_one_line_error(run("eval", "--ckpt", out, "--text", files / "py.txt", "--start", "10", "--chars",
                              "999999999"), "outside")
    assert_one_line_error(run("eval", "--ckpt", out, "--text", files / "py.txt", "--warmup", "10"), "--streams N > 1")


def test_ctrl_c_during_train_keeps_the_progress_and_says_how_to_resume(files, tmp_path, monkeypatch):
    from neuroscope.checkpoint import load_checkpoint
    from neuroscope.train import Trainer
    real_step, calls = Trainer.step, []

    def ctrl_c_at_step_3(self):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", ctrl_c_at_step_3)
    out = tmp_path / "m.pt"
    assert_one_line_error(run("train", files / "py.txt", "--out", out, *TINY_ARGS), "continue it with --resume")
    assert load_checkpoint(out).extra["resume"]["step"] == 3
