"""Training: streams, loss going down, samples by step, best weights, atomic writes, exact resume."""
import collections
import math
import os
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import replace

import pytest
import torch

from neuroscope.checkpoint import load_checkpoint, save_checkpoint
from neuroscope.errors import UserError
from neuroscope.model import evaluate
from neuroscope.model import CharRNN, ModelConfig
from neuroscope.text import split_span
from neuroscope.train import TrainConfig, Trainer, pick_device, stdlib_corpus, train

# A tiny model on a real text (the Python standard library's sources, present wherever Python is).
TINY = TrainConfig(layers=1, hidden=32, batch=8, seq=16, lr=1e-2, dropout=0.1, steps=30, eval_every=10,
                   sample_at=(), sample_chars=20, final_sample_chars=20, val_chars=2000, test_chars=2000,
                   device="cpu", seed=3)
REFERENCE_TRAIN_KEYS = {"text", "chars", "split", "vocab_size", "args", "device", "curve", "samples", "epochs",
                        "best_step", "best_val_loss_nats", "test_loss_nats", "test_bits_per_char", "steps",
                        "seconds", "chars_per_second", "final_sample_t1", "final_sample_t05"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():   # module scope: set before the module-scoped training fixtures
    # Tiny matrices gain nothing from a second thread; on a shared machine the hand-offs cost a lot.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus():
    return stdlib_corpus(200_000)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """One real run: 1 x 64 LSTM, 160 steps, evaluations every 40, samples also at 5 and 50."""
    out = tmp_path_factory.mktemp("run") / "m.pt"
    config = TrainConfig(layers=1, hidden=64, batch=16, seq=64, lr=1e-2, dropout=0.0, steps=160, eval_every=40,
                         sample_at=(5, 50), sample_chars=50, final_sample_chars=100, val_chars=5000,
                         test_chars=5000, device="cpu", seed=0)
    return train(corpus, config, out, progress=False, source="stdlib"), out, config


def unigram_entropy(text: str) -> float:
    counts = collections.Counter(text)
    return -sum(c / len(text) * math.log(c / len(text)) for c in counts.values())


def weights(state: dict) -> dict:
    return {k: v.clone() for k, v in state.items()}


def test_stdlib_corpus_is_deterministic_python_source():
    a, b = stdlib_corpus(50_000), stdlib_corpus(50_000)
    assert a == b and len(a) == 50_000
    assert stdlib_corpus(1000) == a[:1000]
    root = sysconfig.get_paths()["stdlib"]
    first = sorted(f for f in os.listdir(root) if f.endswith(".py"))[0]
    with open(os.path.join(root, first), encoding="utf-8") as fh:
        assert a.startswith(fh.read()[:1000])
    assert a.count("def ") > 50


def test_trainer_reads_contiguous_streams_and_carries_state(monkeypatch):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=50, hidden_size=8, num_layers=1))
    config = TrainConfig(batch=2, seq=3, steps=10)
    trainer = Trainer(model, torch.arange(50), config)        # 2 streams of 25: 0..24 and 25..49
    seen = []
    model.encoder.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].clone()))
    states = []
    for _ in range(9):
        trainer.step()
        states.append(trainer.state)
    assert seen[0].tolist() == [[0, 1, 2], [25, 26, 27]]
    assert seen[1].tolist() == [[3, 4, 5], [28, 29, 30]]
    # 25 chars per stream hold 8 windows of 3 (+1 target); the 9th window starts a new epoch.
    assert seen[7].tolist() == [[21, 22, 23], [46, 47, 48]]
    assert seen[8].tolist() == [[0, 1, 2], [25, 26, 27]] and trainer.epoch == 1
    assert all(not s.requires_grad for s in states[0])


def test_training_loss_drops_below_the_unigram_entropy(trained, corpus):
    ckpt, _, _ = trained
    s, e = split_span(len(corpus), "test")
    test = corpus[s:s + 5000]
    # A model that learned nothing about context cannot beat the unigram entropy of the text.
    assert ckpt.train["test_loss_nats"] < unigram_entropy(test) - 0.6
    curve = ckpt.train["curve"]
    assert [p["step"] for p in curve] == [40, 80, 120, 160]
    assert curve[-1]["val_loss"] < curve[0]["val_loss"] - 0.2
    assert curve[-1]["train_loss"] < curve[0]["train_loss"]


def test_samples_are_stored_at_requested_steps_and_every_evaluation(trained):
    ckpt, _, config = trained
    samples = ckpt.train["samples"]
    assert sorted(samples, key=int) == ["5", "40", "50", "80", "120", "160"]
    assert all(len(t) == 1 + config.sample_chars for t in samples.values())   # prime + sample
    assert len(ckpt.train["final_sample_t1"]) == 1 + config.final_sample_chars


def test_checkpoint_holds_the_best_weights_and_reference_keys(trained, corpus):
    ckpt, out, config = trained
    back = load_checkpoint(out)
    assert REFERENCE_TRAIN_KEYS <= set(back.train)
    tr = back.train
    assert tr["best_val_loss_nats"] == min(p["val_loss"] for p in tr["curve"])
    assert tr["split"] == [int(len(corpus) * 0.8), int(len(corpus) * 0.9) - int(len(corpus) * 0.8),
                           len(corpus) - int(len(corpus) * 0.9)]
    assert tr["steps"] == 160 and tr["text"] == "stdlib" and tr["args"]["hidden"] == 64
    # The stored weights are the best ones: they reproduce the stored validation and test losses.
    vs, _ = split_span(len(corpus), "val")
    ts, _ = split_span(len(corpus), "test")
    val = evaluate(back.model, back.vocab.encode(corpus[vs:vs + config.val_chars]), streams=config.val_streams)
    assert abs(val.loss_nats - tr["best_val_loss_nats"]) < 1e-4
    test = evaluate(back.model, back.vocab.encode(corpus[ts:ts + config.test_chars]))
    assert abs(test.loss_nats - tr["test_loss_nats"]) < 1e-4
    assert back.excerpt == {"text": corpus[ts:ts + 20_000], "start": ts, "source": "stdlib"}


def test_resume_continues_exactly_where_the_run_stopped(corpus, tmp_path):
    straight = train(corpus, TINY, tmp_path / "a.pt", progress=False)
    train(corpus, replace(TINY, steps=20), tmp_path / "b.pt", progress=False)
    resumed = train(corpus, TINY, tmp_path / "b.pt", progress=False, resume=True)
    assert resumed.train["steps"] == 30
    assert [p["step"] for p in resumed.train["curve"]] == [10, 20, 30]
    assert resumed.train["curve"] == straight.train["curve"] or all(
        abs(p["val_loss"] - q["val_loss"]) < 1e-4 for p, q in zip(resumed.train["curve"], straight.train["curve"]))
    for k, v in straight.extra["resume"]["model"].items():
        torch.testing.assert_close(resumed.extra["resume"]["model"][k], v, atol=1e-6, rtol=0)
    assert resumed.train["samples"] == straight.train["samples"]


def test_resume_keeps_model_settings_of_the_checkpoint(corpus, tmp_path):
    train(corpus, replace(TINY, steps=10), tmp_path / "m.pt", progress=False)
    again = train(corpus, replace(TINY, steps=20, hidden=999, layers=3), tmp_path / "m.pt", progress=False,
                  resume=True)
    assert again.config.hidden_size == 32 and again.config.num_layers == 1 and again.train["steps"] == 20


def test_ctrl_c_finishes_the_step_and_leaves_a_resumable_file(corpus, tmp_path, monkeypatch):
    straight = train(corpus, TINY, tmp_path / "a.pt", progress=False)
    real_step, calls = Trainer.step, []

    def ctrl_c_during_step_25(self):
        calls.append(1)
        if len(calls) == 25:
            os.kill(os.getpid(), signal.SIGINT)      # a real Ctrl-C, in the middle of the step
        return real_step(self)

    found = signal.getsignal(signal.SIGINT)         # Python's default, or SIG_IGN in a job started with &
    if found is signal.SIG_IGN:                     # an ignored SIGINT would never reach the step: listen
        signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(Trainer, "step", ctrl_c_during_step_25)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(corpus, TINY, tmp_path / "b.pt", progress=False)
        assert signal.getsignal(signal.SIGINT) is before      # train put back the handler it found
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGINT, found)
    saved = load_checkpoint(tmp_path / "b.pt")
    assert saved.train["interrupted"] is True and saved.extra["resume"]["step"] == 25
    assert "test_loss_nats" not in saved.train
    resumed = train(corpus, TINY, tmp_path / "b.pt", progress=False, resume=True)
    assert resumed.train["interrupted"] is False and resumed.train["steps"] == 30
    for k, v in straight.extra["resume"]["model"].items():
        torch.testing.assert_close(resumed.extra["resume"]["model"][k], v, atol=1e-6, rtol=0)


def test_train_puts_back_an_ignored_sigint(corpus, tmp_path):
    found = signal.signal(signal.SIGINT, signal.SIG_IGN)       # as in a job started with & from a shell
    try:
        train(corpus, TrainConfig(**{**TINY.__dict__, "steps": 2}), tmp_path / "c.pt", progress=False)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, found)


def test_a_killed_run_never_leaves_a_torn_file(corpus, tmp_path):
    (tmp_path / "py.txt").write_text(corpus)
    out = tmp_path / "m.pt"
    # A 2 x 256 model written after every step (about 17 MB a write, most of each step's time),
    # so the kill most likely lands during a write.
    script = ("import torch; torch.set_num_threads(1); from neuroscope.train import TrainConfig, train; "
              "train(open('py.txt').read(), TrainConfig(layers=2, hidden=256, batch=2, seq=8, steps=100000, "
              "eval_every=1, val_chars=20, val_streams=1, sample_at=(), sample_chars=2, device='cpu'), "
              "'m.pt', progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        first = out.stat().st_mtime_ns
        while out.stat().st_mtime_ns == first and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.37)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    ckpt = load_checkpoint(out)
    assert ckpt.extra["resume"]["step"] >= 2 and ckpt.config.hidden_size == 256


def test_too_short_texts_and_bad_settings_are_user_errors(corpus, tmp_path):
    out = tmp_path / "m.pt"
    with pytest.raises(UserError, match="too few for batch 64 x seq 128"):
        train(corpus[:5000], replace(TINY, batch=64, seq=128), out, progress=False)
    with pytest.raises(UserError, match="too few for a val split"):
        train("abcdefghijklm", TINY, out, progress=False)
    for bad in (dict(layers=0), dict(dropout=1.0), dict(lr=0.0), dict(steps=None, minutes=None),
                dict(cell="lstmx"), dict(sample_at=(0,)), dict(minutes=-1.0), dict(device="tpu")):
        with pytest.raises(UserError):
            train(corpus, replace(TINY, **bad), out, progress=False)
    assert not out.exists()


def test_resume_refuses_what_it_cannot_continue(corpus, tmp_path):
    out = tmp_path / "m.pt"
    with pytest.raises(UserError, match="does not exist"):
        train(corpus, TINY, out, progress=False, resume=True)
    ckpt = train(corpus, replace(TINY, steps=10), out, progress=False)
    before = out.read_bytes()
    with pytest.raises(UserError, match="already at step 10"):
        train(corpus, replace(TINY, steps=10), out, progress=False, resume=True)
    with pytest.raises(UserError, match="another text"):
        train(corpus[:150_000], replace(TINY, steps=20), out, progress=False, resume=True)
    assert out.read_bytes() == before
    ckpt.extra = {}
    save_checkpoint(tmp_path / "plain.pt", ckpt)
    with pytest.raises(UserError, match="no training state"):
        train(corpus, TINY, tmp_path / "plain.pt", progress=False, resume=True)


def test_minutes_budget_stops_the_run(corpus, tmp_path):
    ckpt = train(corpus, replace(TINY, steps=None, minutes=0.02), tmp_path / "m.pt", progress=False)
    steps = ckpt.train["steps"]
    assert steps >= 1 and ckpt.train["curve"][-1]["step"] == steps and str(steps) in ckpt.train["samples"]


def test_cuda_without_a_gpu_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"
