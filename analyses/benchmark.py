"""Benchmarks: every number is a ratio against the natural floor, measured in the same run.

    python analyses/benchmark.py train      # training throughput vs a hand-written nn.LSTM loop
    python analyses/benchmark.py record     # recording h and c vs the fused nn.LSTM forward
    python analyses/benchmark.py features   # labelling all features vs recording the same text
    python analyses/benchmark.py probe      # the ranking pass vs the fused forward
    python analyses/benchmark.py headline   # `neuroscope probe` / `record` as whole processes vs the fused forward
    python analyses/benchmark.py match      # match vs recording the same text; peak memory at 10M chars
    python analyses/benchmark.py explain    # explaining all 3,072 units vs the fused forward
    python analyses/benchmark.py floor ...  # the fused forward alone (headline runs it in a fresh process)

Each prints a few lines of results and, with --json, one JSON object. Timings are medians of
repeats on whatever machine runs them; they are never asserted in tests.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"


def median_time(fn, repeats: int = 3) -> float:
    """Median wall time of fn() over `repeats` runs, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def memory_mib(key: str = "VmHWM") -> float:
    """This process's memory from /proc/self/status, in MiB: "VmHWM" the peak resident set so far
    (not ru_maxrss, which keeps a parent's size across fork and exec), "VmRSS" the current one."""
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith(key + ":")) / 1024


@click.group()
def cli():
    """neuroscope benchmarks (ratios against a floor measured in the same run)."""


# ---------------------------------------------------------------- train

def plain_lstm_steps(vocab_size: int, streams, config, device):
    """The floor: a minimal hand-written char-LSTM training loop (embedding + nn.LSTM + linear, Adam,
    the same gradient clipping), over the same [B, L] streams. Returns a function running n steps."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(vocab_size, config.hidden)
            self.lstm = nn.LSTM(config.hidden, config.hidden, config.layers, batch_first=True,
                                dropout=config.dropout if config.layers > 1 else 0.0)
            self.out = nn.Linear(config.hidden, vocab_size)

    torch.manual_seed(0)
    net = Plain().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, fused=device.type == "cuda")
    T = config.seq
    state = {"p": 0, "hc": None}

    def run(n: int) -> None:
        for _ in range(n):
            p = state["p"] if state["p"] + T + 1 <= streams.shape[1] else 0
            x, y = streams[:, p:p + T], streams[:, p + 1:p + T + 1]
            h, hc = net.lstm(net.emb(x), state["hc"])
            loss = F.cross_entropy(net.out(F.dropout(h, config.dropout)).reshape(-1, vocab_size), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip)
            opt.step()
            state["hc"], state["p"] = tuple(s.detach() for s in hc), p + T
    return run


@cli.command("train")
@click.option("--layers", default=None, type=int, help="LSTM layers [default: 2 on CPU, 3 on CUDA].")
@click.option("--hidden", default=None, type=int, help="Units per layer [default: 256 on CPU, 512 on CUDA].")
@click.option("--batch", default=None, type=int, help="Streams B [default: 32 on CPU, 128 on CUDA].")
@click.option("--seq", default=128, show_default=True, help="Characters per window T.")
@click.option("--dropout", default=0.25, show_default=True, help="Dropout (both loops).")
@click.option("--steps", default=None, type=int, help="Timed steps of each loop [default: 30 on CPU, 200 on CUDA].")
@click.option("--threads", default=2, show_default=True, help="torch threads.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_train(layers, hidden, batch, seq, dropout, steps, threads, device, as_json):
    """Training throughput (chars/s) of neuroscope's training step vs a minimal nn.LSTM loop; goal ratio >= 0.95."""
    import torch

    from neuroscope.model import CharRNN
    from neuroscope.text import Vocab, read_text, split_span
    from neuroscope.train import TrainConfig, Trainer, pick_device, stdlib_corpus

    torch.set_num_threads(threads)
    dev = pick_device(device)
    gpu = dev.type == "cuda"
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True          # as neuroscope.train does on a GPU
    config = TrainConfig(cell="lstm", layers=layers or (3 if gpu else 2), hidden=hidden or (512 if gpu else 256),
                         batch=batch or (128 if gpu else 32), seq=seq, dropout=dropout, device=dev.type)
    steps = steps or (200 if gpu else 30)
    path = SHARED / "data" / "warpeace.txt"
    text = read_text(path) if path.exists() else stdlib_corpus(3_000_000)
    vocab = Vocab.from_text(text)
    ids = torch.as_tensor(vocab.encode(text))
    a, b = split_span(len(text), "train")
    torch.manual_seed(0)
    trainer = Trainer(CharRNN(config.model_config(len(vocab))).to(dev), ids[a:b], config)

    def ours(n):
        for _ in range(n):
            trainer.step()

    plain = plain_lstm_steps(len(vocab), trainer.streams, config, dev)

    def timed(fn, wall: list, cpu: list):
        if gpu:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn(1)
        if gpu:
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)

    ours(3), plain(3)                                          # warm-up: allocations, kernels, lazy imports
    t_ours, t_plain, c_ours, c_plain = [], [], [], []
    for _ in range(steps):                                     # alternate step by step: both see the same load
        timed(ours, t_ours, c_ours)
        timed(plain, t_plain, c_plain)
    chars = config.batch * config.seq                          # per step
    med = lambda ts: sorted(ts)[len(ts) // 2]                  # noqa: E731
    res = {"device": torch.cuda.get_device_name(dev) if gpu else f"cpu ({threads} threads)",
           "model": f"LSTM {config.layers}x{config.hidden}", "batch": config.batch, "seq": config.seq,
           "dropout": dropout, "steps": steps,
           "neuroscope_chars_per_s": round(chars / med(t_ours)), "plain_chars_per_s": round(chars / med(t_plain)),
           "ratio": round(med(t_plain) / med(t_ours), 3), "ratio_of_totals": round(sum(t_plain) / sum(t_ours), 3),
           # CPU seconds of this process: less sensitive than wall time to other jobs on the machine.
           "ratio_cpu_time": round(sum(c_plain) / sum(c_ours), 3), "goal": 0.95}
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(f"{res['model']}, B={res['batch']} T={res['seq']}, {res['device']}, median of {steps} steps each")
    click.echo(f"neuroscope Trainer.step: {res['neuroscope_chars_per_s']:,} chars/s")
    click.echo(f"plain nn.LSTM loop:      {res['plain_chars_per_s']:,} chars/s")
    click.echo(f"ratio: {res['ratio']:.3f} of median wall times, {res['ratio_of_totals']:.3f} of total wall "
               f"times, {res['ratio_cpu_time']:.3f} of CPU times (goal >= 0.95)")

# ---------------------------------------------------------------- record

def _record_setup(ckpt_path: str, chars: int, threads: int):
    """(model, ids) for the record benchmark: the first `chars` characters of warpeace's test split."""
    import torch

    from neuroscope.checkpoint import load_checkpoint
    from neuroscope.text import read_text, split_span
    torch.set_num_threads(threads)
    ckpt = load_checkpoint(ckpt_path)
    text = read_text(SHARED / "data" / "warpeace.txt")
    lo, _ = split_span(len(text), "test")
    return ckpt.model, ckpt.vocab.encode(text[lo:lo + chars])


def _record_run(model, ids, case: str, streams: int, warmup: int, chunk: int) -> None:
    """One timed unit: the fused forward ("fused") or recording h and c with a strategy."""
    import torch

    from neuroscope.record import iter_states
    if case == "fused":                              # the floor: nn.LSTM's own kernel, same characters
        m = len(ids) // streams
        with torch.no_grad():
            model.rnn(model.encoder(torch.as_tensor(ids[:streams * m]).view(streams, m)))
        return
    for _ in iter_states(model, ids, ("h", "c"), chunk=chunk, streams=streams, warmup=warmup, strategy=case):
        pass


def _record_peak(ckpt_path, chars, threads, case, streams, warmup, chunk) -> float:
    """Run one case once in a fresh process: MiB by which its peak resident memory rose above the
    memory held after loading the model and the text (VmHWM, reset after the setup where Linux allows;
    not ru_maxrss, which keeps the parent's size across fork and exec)."""
    model, ids = _record_setup(ckpt_path, chars, threads)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")                            # reset the peak to the current size
    except OSError:
        pass
    held = memory_mib("VmRSS")
    _record_run(model, ids, case, streams, warmup, chunk)
    return max(0.0, memory_mib("VmHWM") - held)


def _stream_deviation(model, ids, streams: int, warmups, chunk: int) -> list[dict]:
    """How far --streams/--warmup states are from exact single-stream ones, per warmup."""
    import numpy as np

    from neuroscope.record import record
    exact = record(model, ids, ("h", "c"), chunk=chunk)
    rows = []
    for w in warmups:
        got = record(model, ids, ("h", "c"), chunk=chunk, streams=streams, warmup=w)
        h = np.concatenate([np.abs(got[k] - exact[k]) for k in exact if k.endswith(".h")], 1)
        c = np.concatenate([np.abs(got[k] - exact[k]) / (1 + np.abs(exact[k])) for k in exact if k.endswith(".c")], 1)
        rows.append({"warmup": w, "h_mean_abs": float(h.mean()), "h_max_abs": float(h.max()),
                     "chars_with_h_off_by_0.01": float((h.max(1) > 0.01).mean()),
                     "h_values_off_by_0.01": float((h > 0.01).mean()),
                     "c_mean_rel": float(c.mean()), "c_max_rel": float(c.max())})
    f16 = {}
    for q in ("h", "c"):
        x = np.concatenate([exact[k] for k in exact if k.endswith("." + q)], 1)
        err = np.abs(x.astype(np.float16).astype(np.float32) - x)
        f16[q] = {"max_abs": float(np.abs(x).max()), "max_abs_err": float(err.max()),
                  "max_rel_err": float((err / np.maximum(np.abs(x), 2.0 ** -14)).max()), "mean_abs_err": float(err.mean())}
    return rows, f16


@cli.command("record")
@click.option("--ckpt", default=str(SHARED / "models" / "wp_lstm3x512.pt"), show_default=True, help="Checkpoint.")
@click.option("--chars", default=200_000, show_default=True, help="Characters for the multi-stream case.")
@click.option("--streams", default=64, show_default=True, help="Streams of the multi-stream case.")
@click.option("--warmup", default=256, show_default=True, help="Warmup of the multi-stream case.")
@click.option("--single-chars", default=20_000, show_default=True, help="Characters for the single-stream case.")
@click.option("--chunk", default=4096, show_default=True, help="iter_states chunk (characters per yield).")
@click.option("--deviation-chars", default=50_000, show_default=True,
              help="Characters for the streams-vs-exact deviation and the float16 error (0: skip).")
@click.option("--repeats", default=3, show_default=True, help="Timing repeats (median), interleaved.")
@click.option("--threads", default=2, show_default=True, help="torch threads.")
@click.option("--memory/--no-memory", default=True, show_default=True, help="Peak memory per case (subprocesses).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_record(ckpt, chars, streams, warmup, single_chars, chunk, deviation_chars, repeats, threads, memory,
                 as_json):
    """Recording h and c of every layer vs the fused nn.LSTM forward over the same characters.

    Goal: <= 1.5x on CPU for 200k chars in 64 streams with warmup 256 (against the fused forward
    in 64 streams, which has no warmup to pay) and for 20k chars single-stream (against batch 1). Cases
    are interleaved within each repeat so that a busy machine slows all of them alike.
    """
    import concurrent.futures
    import multiprocessing

    model, ids = _record_setup(ckpt, max(chars, single_chars, deviation_chars), threads)
    shapes = {"streams": (ids[:chars], streams, warmup), "single": (ids[:single_chars], 1, 0)}
    cases = ("fused", "auto", "loop", "recover")
    for ids_, n, w in shapes.values():                                   # warm the allocator and caches
        for case in cases:
            _record_run(model, ids_[:2000], case, min(n, 4), min(w, 100), chunk)
    times = {(s, c): [] for s in shapes for c in cases}
    for _ in range(repeats):
        for s, (ids_, n, w) in shapes.items():
            for case in cases:
                t0 = time.perf_counter()
                _record_run(model, ids_, case, n, w, chunk)
                times[s, case].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    peaks = {}
    if memory:
        ctx = multiprocessing.get_context("spawn")
        for s, (ids_, n, w) in shapes.items():
            for case in cases:
                with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                    peaks[s, case] = pool.submit(_record_peak, ckpt, len(ids_), threads, case, n, w, chunk).result()
    res = {"device": f"cpu ({threads} threads)", "ckpt": os.path.basename(ckpt), "repeats": repeats,
           "load_average": os.getloadavg(), "chunk": chunk, "goal": 1.5, "cases": []}
    for s, (ids_, n, w) in shapes.items():
        for case in cases:
            res["cases"].append({"shape": s, "chars": len(ids_), "streams": n, "warmup": w if case != "fused" else 0,
                                 "case": case, "seconds": round(med[s, case], 3),
                                 "chars_per_s": round(len(ids_) / med[s, case]),
                                 "ratio": round(med[s, case] / med[s, "fused"], 3),
                                 "peak_mib": round(peaks[s, case], 1) if (s, case) in peaks else None})
    if deviation_chars:
        # pieces as long as in the timed multi-stream case (the deviation fades with distance from a piece's start)
        dev_streams = max(1, deviation_chars // max(1, chars // streams))
        warmups = sorted({w for w in (0, 64, 256, 1024, warmup) if w <= deviation_chars // dev_streams})
        rows, f16 = _stream_deviation(model, ids[:deviation_chars], dev_streams, warmups, chunk)
        res["deviation"] = {"chars": deviation_chars, "streams": dev_streams, "rows": rows}
        res["float16"] = f16
    res["peak_rss_mib"] = round(memory_mib(), 1)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"{res['ckpt']}, h and c of every layer, {res['device']}, median of {repeats} (interleaved), "
               f"load average {res['load_average'][0]:.1f}")
    for r in res["cases"]:
        click.echo(f"  {r['shape']:7s} {r['chars']:>7,} chars x{r['streams']:<3} warmup {r['warmup']:<4} "
                   f"{r['case']:8s} {r['seconds']:8.2f} s  {r['ratio']:5.2f}x fused"
                   + (f"  peak +{r['peak_mib']:,.0f} MiB" if r["peak_mib"] is not None else ""))
    if deviation_chars:
        d = res["deviation"]
        click.echo(f"--streams {d['streams']} vs exact, {d['chars']:,} chars (h: |diff|; c: |diff| / (1 + |c|)):")
        for r in d["rows"]:
            click.echo(f"  warmup {r['warmup']:4d}: h mean {r['h_mean_abs']:.2e} max {r['h_max_abs']:.3f}, "
                       f"values off by > 0.01: {r['h_values_off_by_0.01']:.2%} "
                       f"(chars with one: {r['chars_with_h_off_by_0.01']:.1%}); "
                       f"c mean {r['c_mean_rel']:.2e} max {r['c_max_rel']:.3f}")
        for q, r in res["float16"].items():
            click.echo(f"float16 {q}: max |{q}| {r['max_abs']:.1f}, max error {r['max_abs_err']:.3g} "
                       f"(relative {r['max_rel_err']:.2e}), mean error {r['mean_abs_err']:.2e}")


# ---------------------------------------------------------------- features

@cli.command("features")
@click.option("--chars", default=1_000_000, show_default=True, help="Characters of warpeace.txt to label and record.")
@click.option("--streams", default=64, show_default=True, help="Recording streams.")
@click.option("--fallback-chars", default=20_000, show_default=True,
              help="If the recorder does not take --streams yet: record this many chars with streams=1 "
                   "and extrapolate linearly (said so in the output).")
@click.option("--repeats", default=3, show_default=True, help="Timing repeats (median).")
@click.option("--threads", default=2, show_default=True, help="torch threads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_features(chars, streams, fallback_chars, repeats, threads, as_json):
    """Labelling every built-in feature vs recording h and c of wp_lstm2x128 on the same text.

    Target: labelling < 1/10 of recording. Also the per-feature rate on linux.txt,
    each feature labelled alone (so each pays for the scan it needs).
    """
    import torch

    from neuroscope import features as F
    from neuroscope.checkpoint import load_checkpoint
    from neuroscope.record import iter_states
    from neuroscope.text import read_text

    torch.set_num_threads(threads)
    text = read_text(SHARED / "data" / "warpeace.txt")[:chars]
    names = F.builtin_names() + F.baseline_names()
    t_label = median_time(lambda: F.resolve(text, names=names), repeats)

    ckpt = load_checkpoint(SHARED / "models" / "wp_lstm2x128.pt")
    ids = ckpt.vocab.encode(text)

    def record(ids_, streams_):
        for _ in iter_states(ckpt.model, ids_, states=("h", "c"), streams=streams_):
            pass

    try:
        record(ids[:1000], streams)     # does the recorder take streams yet?
        t_record = median_time(lambda: record(ids, streams), repeats)
        record_mode = f"streams={streams}, {len(ids):,} chars"
    except (NotImplementedError, TypeError) as exc:
        part = ids[:fallback_chars]
        t_part = median_time(lambda: record(part, 1), 1)
        t_record = t_part * len(ids) / len(part)
        record_mode = (f"streams=1 (recorder says: {str(exc).splitlines()[0]}); timed on {len(part):,} chars, "
                       f"extrapolated linearly to {len(ids):,}")

    linux = read_text(SHARED / "data" / "linux.txt")
    rates = {}
    for name in names:
        rates[name] = len(linux) / median_time(lambda: F.label(linux, name), repeats)
    t_all_linux = median_time(lambda: F.resolve(linux, names=names), repeats)
    out = {"chars": len(text), "features": len(names), "label_all_s": t_label, "record_s": t_record,
           "record_mode": record_mode, "ratio_label_over_record": t_label / t_record, "target_ratio": 0.1,
           "linux_chars": len(linux), "linux_label_all_s": t_all_linux,
           "linux_chars_per_s": {k: round(v) for k, v in rates.items()}, "threads": threads,
           "peak_rss_mb": memory_mib()}
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"warpeace.txt, first {len(text):,} chars: all {len(names)} built-in features {t_label:.3f} s; "
               f"recording h and c (wp_lstm2x128, {record_mode}) {t_record:.2f} s")
    click.echo(f"  labelling / recording = {t_label / t_record:.4f}  (target < 0.1)")
    click.echo(f"linux.txt, {len(linux):,} chars: all features together {t_all_linux:.2f} s "
               f"({len(linux) / t_all_linux / 1e6:.1f} M chars/s); each alone, M chars/s:")
    for name, rate in rates.items():
        click.echo(f"  {name:<16} {rate / 1e6:8.1f}")


# ---------------------------------------------------------------- probe

def _fused_forward(model, ids, streams: int, step: int = 256) -> None:
    """The floor: nn.LSTM's fused forward over the same characters in the same streams, `step`
    time steps per call with the state carried (all at once would hold [B, T, H] of outputs)."""
    import torch
    m = len(ids) // streams
    x = torch.as_tensor(ids[:streams * m]).view(streams, m)
    state = None
    with torch.no_grad():
        for t in range(0, m, step):
            _, state = model.rnn(model.encoder(x[:, t:t + step]), state)


@cli.command("floor")
@click.option("--ckpt", required=True)
@click.option("--start", type=int, required=True, help="First character of warpeace.txt.")
@click.option("--chars", type=int, required=True)
@click.option("--streams", type=int, required=True)
@click.option("--threads", default=2, show_default=True)
def bench_floor(ckpt, start, chars, streams, threads):
    """Print the seconds of the fused forward over warpeace.txt[start:start + chars] in `streams`
    streams, timed inside this process after loading (headline runs it as a fresh process)."""
    import torch

    from neuroscope.checkpoint import load_checkpoint
    from neuroscope.text import read_text
    torch.set_num_threads(threads)
    c = load_checkpoint(ckpt)
    ids = c.vocab.encode(read_text(SHARED / "data" / "warpeace.txt")[start:start + chars])
    _fused_forward(c.model, ids[:20_000], 64)                  # warm the allocator, as the parent did
    t0 = time.perf_counter()
    _fused_forward(c.model, ids, streams)
    click.echo(json.dumps({"seconds": time.perf_counter() - t0}))


def fused_seconds(ckpt: str, start: int, chars: int, streams: int, threads: int) -> float:
    """The floor timed in a fresh process, like the commands it is compared with: a process's speed
    varies by up to 20% from one start to the next on this machine (the same forward took 8.2 s and
    10.2 s per 50,000 characters in two processes), so one long-lived process would lend the floor
    its own luck in every repeat."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "floor", "--ckpt", ckpt, "--start",
                           str(start), "--chars", str(chars), "--streams", str(streams), "--threads", str(threads)],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"the floor failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)["seconds"]


@cli.command("probe")
@click.option("--ckpt", default=str(SHARED / "models" / "wp_lstm3x512.pt"), show_default=True, help="Checkpoint.")
@click.option("--chars", default=1_000_000, show_default=True, help="First characters of warpeace.txt.")
@click.option("--streams", default=64, show_default=True, help="Streams, for the probe and the fused forward alike.")
@click.option("--warmup", default=256, show_default=True, help="Recorder warmup per stream.")
@click.option("--repeats", default=1, show_default=True, help="Timing repeats (median), fused and ranking interleaved.")
@click.option("--extras/--no-extras", default=True, show_default=True,
              help="Also time the control model, the null and the sparse probes.")
@click.option("--threads", default=2, show_default=True, help="torch threads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_probe(ckpt, chars, streams, warmup, repeats, extras, threads, as_json):
    """The ranking pass for all built-in features vs the fused nn.LSTM forward over the same chars.

    Goal: <= 1.5x. The ranking pass is neuroscope.probe.probe without control, null and
    sparse probes: recording h and c (streams, warmup), the streamed r of every unit with every
    feature, and AUROC/Spearman on the sample. Peak memory is the rise of the resident set above
    what the model, text and labels hold. The extras are timed in one further probe call.
    """
    import torch

    from neuroscope.checkpoint import load_checkpoint
    from neuroscope.features import resolve
    from neuroscope.probe import probe
    from neuroscope.text import read_text

    torch.set_num_threads(threads)
    c = load_checkpoint(ckpt)
    text = read_text(SHARED / "data" / "warpeace.txt")[:chars]
    t0 = time.perf_counter()
    labels = resolve(text, all_features=True)
    t_label = time.perf_counter() - t0
    ids = c.vocab.encode(text)
    _fused_forward(c.model, ids[:20_000], streams)                      # warm the allocator
    held = memory_mib("VmRSS")
    fused, ranking, meta = [], [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = probe(c, text, labels, control=False, null=False, sparse=False, streams=streams, warmup=warmup)
        ranking.append(time.perf_counter() - t0)
        meta = res.meta
        t0 = time.perf_counter()
        _fused_forward(c.model, ids, streams)
        fused.append(time.perf_counter() - t0)
    peak_ranking = memory_mib() - held
    t_fused, t_rank = sorted(fused)[len(fused) // 2], sorted(ranking)[len(ranking) // 2]
    out = {"device": f"cpu ({threads} threads)", "ckpt": os.path.basename(ckpt), "chars": len(text),
           "streams": streams, "warmup": warmup, "features": len(meta["features"]), "units": meta["units"],
           "skipped": [n for n in meta["notes"] if n.startswith("skipped")], "label_s": round(t_label, 2),
           "fused_s": round(t_fused, 2), "ranking_s": round(t_rank, 2), "ratio": round(t_rank / t_fused, 3),
           "goal": 1.5, "ranking_parts_s": {k: round(v, 2) for k, v in meta["seconds"].items()},
           "sample_chars": meta["sample"]["chars"], "peak_mib_ranking": round(peak_ranking, 1),
           "load_average": os.getloadavg(), "repeats": repeats}
    if extras:
        res = probe(c, text, labels, streams=streams, warmup=warmup)
        s = res.meta["seconds"]
        out["extras_s"] = {k: round(s[k], 2) for k in ("control", "null", "sparse")}
        out["extras_ratio_to_fused"] = {k: round(s[k] / t_fused, 3) for k in ("control", "null", "sparse")}
        out["peak_mib_all"] = round(memory_mib() - held, 1)
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{out['ckpt']}, first {len(text):,} chars of warpeace.txt, {streams} streams (warmup {warmup}), "
               f"{out['features']} features x {out['units']} units")
    click.echo(f"  fused nn.LSTM forward {t_fused:.1f} s; ranking pass {t_rank:.1f} s = {out['ratio']:.2f}x "
               f"(goal <= 1.5x); peak +{peak_ranking:.0f} MiB")
    click.echo("  ranking parts (s): " + ", ".join(f"{k} {v}" for k, v in out["ranking_parts_s"].items()))
    if extras:
        click.echo("  extras (s): " + ", ".join(f"{k} {v} ({out['extras_ratio_to_fused'][k]:.2f}x fused)"
                                             for k, v in out["extras_s"].items())
                   + f"; peak with extras +{out['peak_mib_all']:.0f} MiB")
    click.echo(f"  labelling all features (not timed above) {t_label:.1f} s; load average {out['load_average']}")


# ---------------------------------------------------------------- headline

# Runs `python -m neuroscope.cli ...` and, at exit, writes the process's peak resident memory (VmHWM,
# KiB) to the file named by NEUROSCOPE_BENCH_PEAK: the child's own peak, which ru_maxrss is not (it
# keeps the size of the process that forked it).
_CHILD = """import atexit, os, runpy, sys
def _peak():
    with open("/proc/self/status") as fh, open(os.environ["NEUROSCOPE_BENCH_PEAK"], "w") as out:
        out.write(next(ln.split()[1] for ln in fh if ln.startswith("VmHWM:")))
atexit.register(_peak)
sys.argv[0] = "neuroscope"
runpy.run_module("neuroscope.cli", run_name="__main__", alter_sys=True)
"""


def run_cli(tree: Path, args: list[str], threads: int) -> dict:
    """`neuroscope ARGS` from the repository `tree` as a fresh process: {"seconds" (wall, the whole
    process: interpreter start, imports, loading, the work, writing), "peak_mib", "out" (parsed JSON
    stdout)}; RuntimeError with its stderr if it fails."""
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        env = {**os.environ, "PYTHONPATH": str(tree), "NEUROSCOPE_BENCH_PEAK": peak.name,
               "OMP_NUM_THREADS": str(threads)}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, *args], cwd=tree, env=env, capture_output=True,
                              text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            raise RuntimeError(f"neuroscope {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
        kib = peak.read().strip()
    return {"seconds": seconds, "peak_mib": int(kib) / 1024 if kib else None, "out": json.loads(proc.stdout)}


def disk_write_seconds(folder: Path, n_bytes: int, block: int = 64 * 2**20) -> float:
    """Seconds to write n_bytes to a new file in `folder` sequentially and fsync it: the disk's floor
    for a store of that size (the file is removed)."""
    buf = os.urandom(min(block, n_bytes)) if n_bytes else b""
    path = folder / "disk-floor.bin"
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        left = n_bytes
        while left > 0:
            left -= fh.write(buf[:min(left, len(buf))])
        fh.flush()
        os.fsync(fh.fileno())
    seconds = time.perf_counter() - t0
    path.unlink()
    return seconds


def _span_args(text_len: int, chars: int) -> tuple[list[str], str]:
    """The CLI's span flags for `chars` characters: the start of warpeace's test split when it is long
    enough, else the start of the whole file."""
    from neuroscope.text import split_span
    lo, hi = split_span(text_len, "test")
    split = "test" if chars <= hi - lo else "all"
    where = "test split" if split == "test" else "whole file"
    return ["--split", split, "--chars", str(chars)], f"first {chars:,} chars of warpeace.txt's {where}"


@cli.command("headline")
@click.option("--ckpt", default=str(SHARED / "models" / "wp_lstm3x512.pt"), show_default=True, help="Checkpoint.")
@click.option("--chars", "chars_list", multiple=True, type=int, default=[100_000], show_default=True,
              help="Characters (repeatable: 100000 and 1000000).")
@click.option("--feature", default="in_quote", show_default=True, help="The one-feature case's --feature.")
@click.option("--cases", default="one,all,record", show_default=True,
              help="Comma list: one (--feature), all (--all-features), record (into a store).")
@click.option("--tree", "trees", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Repository whose neuroscope the commands run (repeatable, e.g. a worktree of the "
                   "commit before a change, then this one: run back to back) [default: this one].")
@click.option("--probe-args", default="", help="Extra `neuroscope probe` flags, e.g. '--streams 1'.")
@click.option("--record-chars", default=100_000, show_default=True, help="Characters of the record case.")
@click.option("--record-streams", default=1, show_default=True,
              help="--streams of the record case (1 = its default; its floor is the fused forward at as many).")
@click.option("--repeats", default=1, show_default=True, help="Timing repeats (median), cases interleaved.")
@click.option("--threads", default=2, show_default=True, help="torch threads (here and in the commands).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_headline(ckpt, chars_list, feature, cases, trees, probe_args, record_chars, record_streams, repeats,
                   threads, as_json):
    """`neuroscope probe --ckpt M --text T --feature F` with its defaults, timed as a whole process,
    vs the fused 64-stream nn.LSTM forward over the same characters in the same run (the forward
    alone, timed inside a fresh process of its own before each repeat: see fused_seconds).

    Goal: <= 3x at 100k characters and <= 2x at 1M, for one feature and for --all-features. Also
    `neuroscope record` into a store vs the fused forward plus a plain sequential write + fsync of
    the same bytes (goal <= 1.3x of that sum). Each command runs in a fresh process (so its time
    holds interpreter start, imports and loading); its --json meta gives each stage's seconds, and
    its peak resident memory is its own VmHWM. --json only switches the progress bars off.
    """
    import torch

    from neuroscope.text import read_text

    torch.set_num_threads(threads)
    trees = [Path(t).resolve() for t in trees] or [ROOT]
    wanted = [c.strip() for c in cases.split(",") if c.strip()]
    corpus = SHARED / "data" / "warpeace.txt"
    full = read_text(corpus)
    extra = probe_args.split()
    commits = {str(t): subprocess.run(["git", "-C", str(t), "describe", "--always", "--dirty"], capture_output=True,
                                      text=True).stdout.strip() for t in trees}
    res = {"device": f"cpu ({threads} threads)", "ckpt": os.path.basename(ckpt), "torch": torch.__version__,
           "trees": commits, "repeats": repeats, "goal": {"100k": 3.0, "1M": 2.0, "record": 1.3}, "runs": []}
    scratch = Path(tempfile.mkdtemp(prefix="headline-", dir=ROOT))
    try:
        for chars in chars_list:
            span, where = _span_args(len(full), chars)
            lo = 0 if span[1] == "all" else _test_start(len(full))
            base = ["probe", "--ckpt", ckpt, "--text", str(corpus), *span, "--json", *extra]
            cmds = {"one": base + ["--feature", feature], "all": base + ["--all-features"]}
            times = {"fused": []}
            for _ in range(repeats):
                times["fused"].append(fused_seconds(ckpt, lo, chars, 64, threads))
                for tree in trees:
                    for case in (k for k in ("one", "all") if k in wanted):
                        times.setdefault((str(tree), case), []).append(run_cli(tree, cmds[case], threads))
            t_fused = _median(times["fused"])
            for key, runs in times.items():
                if key == "fused":
                    continue
                run = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
                meta = run["out"]["meta"]
                secs = meta["seconds"]
                res["runs"].append({
                    "tree": key[0], "commit": commits[key[0]], "case": key[1], "chars": chars, "where": where,
                    "command": "neuroscope " + " ".join(cmds[key[1]]), "features": len(meta["features"]),
                    "streams": meta.get("streams"), "warmup": meta.get("warmup"),
                    "fused_s": round(t_fused, 2), "seconds": round(run["seconds"], 2),
                    "ratio": round(run["seconds"] / t_fused, 2), "peak_mib": round(run["peak_mib"] or 0),
                    "stages_s": {k: round(v, 2) for k, v in secs.items()},
                    "outside_probe_s": round(run["seconds"] - secs["total"], 2),
                    "share": {k: round(v / run["seconds"], 3) for k, v in secs.items() if k != "total"},
                    "all_seconds": [round(r["seconds"], 2) for r in runs],
                    "findings": _findings(run["out"])})
        if "record" in wanted:
            res["record"] = _headline_record(full, ckpt, corpus, record_chars, record_streams, trees, commits,
                                             scratch, repeats, threads)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    res["load_average"] = os.getloadavg()
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"{res['ckpt']}, {res['device']}, torch {res['torch']}, median of {repeats}; "
               f"load average after: {', '.join(f'{x:.1f}' for x in res['load_average'])}")
    for r in res["runs"]:
        click.echo(f"  {r['commit']:>9} {r['case']:3s} {r['chars']:>9,} chars ({r['features']} features, streams "
                   f"{r['streams']}, warmup {r['warmup']}): {r['seconds']:7.1f} s = {r['ratio']:5.2f}x fused "
                   f"({r['fused_s']:.1f} s); peak {r['peak_mib']:,} MiB")
        click.echo("      " + ", ".join(f"{k} {v:.1f} s ({r['share'].get(k, 0):.0%})" for k, v in r["stages_s"].items()
                                        if k != "total") + f"; outside probe() {r['outside_probe_s']:.1f} s")
    for r in res.get("record", []):
        click.echo(f"  {r['commit']:>9} record {r['chars']:,} chars, streams {r['streams']}: {r['seconds']:.1f} s "
                   f"= {r['ratio_to_fused']:.2f}x fused ({r['fused_s']:.1f} s), {r['ratio_to_floor']:.2f}x fused + "
                   f"disk ({r['disk_s']:.1f} s for {r['bytes'] / 2**30:.2f} GiB); peak {r['peak_mib']:,} MiB")


def _findings(out: dict) -> dict:
    """Per feature, what a before/after comparison needs: the top unit, its r, whether it is significant,
    its selectivity, and the sparse probe's held-out score."""
    res = {}
    for f in out.get("features", [out]):          # one feature: its fields at the top level
        top = f["units"][0]
        sparse = f["sparse"][0] if f["sparse"] else {}
        res[f["feature"]] = {"unit": top["unit_id"], "r": top["r"], "significant": top.get("significant"),
                             "selectivity": top.get("selectivity"),
                             "sparse_heldout": sparse.get("score"), "sparse_units": sparse.get("n_nonzero"),
                             "topk_heldout": {t["k"]: t["score"] for t in f["topk"]}}
    return res


def _test_start(n: int) -> int:
    from neuroscope.text import split_span
    return split_span(n, "test")[0]


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def _headline_record(full, ckpt, corpus, chars, streams, trees, commits, scratch: Path, repeats, threads):
    """`neuroscope record` of `chars` characters (h and c, float32) vs the fused forward in as many
    streams plus a sequential write + fsync of the store's bytes, same run."""
    span, where = _span_args(len(full), chars)
    lo = 0 if span[1] == "all" else _test_start(len(full))
    warm = ["--warmup", "256"] if streams > 1 else []
    rows = []
    for tree in trees:
        fused, disk, runs = [], [], []
        for _ in range(repeats):
            fused.append(fused_seconds(ckpt, lo, chars, streams, threads))
            out = scratch / "store"
            args = ["record", "--ckpt", ckpt, "--text", str(corpus), *span, "--streams", str(streams), *warm,
                    "--out", str(out), "--json"]
            runs.append(run_cli(tree, args, threads))
            n_bytes = sum(f.stat().st_size for f in out.iterdir())
            shutil.rmtree(out)
            disk.append(disk_write_seconds(scratch, n_bytes))
        run = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        t_fused, t_disk = _median(fused), _median(disk)
        rows.append({"tree": str(tree), "commit": commits[str(tree)], "chars": chars, "where": where,
                     "streams": streams, "command": "neuroscope " + " ".join(args), "bytes": n_bytes,
                     "seconds": round(run["seconds"], 2), "inside_s": run["out"].get("seconds"),
                     "fused_s": round(t_fused, 2), "disk_s": round(t_disk, 2),
                     "ratio_to_fused": round(run["seconds"] / t_fused, 2),
                     "ratio_to_floor": round(run["seconds"] / (t_fused + t_disk), 2),
                     "peak_mib": round(run["peak_mib"] or 0)})
    return rows


# ---------------------------------------------------------------- match

def _corpora_text(chars: int, first: str) -> str:
    """The reference corpora, `first` at the front, repeated until `chars` characters."""
    from neuroscope.text import read_text
    names = [first] + [n for n in ("warpeace.txt", "linux.txt", "enwiki.xml", "tinyshakespeare.txt") if n != first]
    parts, n = [], 0
    while n < chars:
        for name in names:
            parts.append(read_text(SHARED / "data" / name))
            n += len(parts[-1])
    return "".join(parts)[:chars]


def _match_case(ckpt_path: str, corpus: str, pattern: str, chars: int, streams: int, warmup: int, threads: int,
                which: str) -> dict:
    """In a fresh process: time and peak memory (MiB above what the model and the text hold) of
    match() or of recording h and c of every layer (iter_states) over the same characters."""
    import re

    import torch

    from neuroscope.checkpoint import load_checkpoint
    from neuroscope.match import match
    from neuroscope.record import iter_states
    torch.set_num_threads(threads)
    ckpt = load_checkpoint(ckpt_path)
    text = _corpora_text(chars, corpus)
    m = re.search(pattern, text[1000:])
    span = (1000 + m.start(), 1000 + m.end())
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    held = memory_mib("VmRSS")
    t0, cpu0 = time.perf_counter(), time.process_time()
    out = {"span": list(span)}
    if which == "match":
        res = match(ckpt, text, span, streams=streams, warmup=warmup)
        f = res.features[res.features["scope"] == "top"].sort_values("precision", ascending=False).iloc[0]
        out.update(hits=res.meta["hits"], parts_s={k: round(v, 2) for k, v in res.meta["seconds"].items()},
                   best_feature=f"{f['feature']} precision {f['precision']:.3f}", units=len(res.query))
    else:
        for _ in iter_states(ckpt.model, ckpt.vocab.encode(text), ("h", "c"), streams=streams, warmup=warmup):
            pass
    out.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - cpu0,    # CPU: steadier when busy
               peak_mib=max(0.0, memory_mib("VmHWM") - held), held_mib=held)
    return out


@cli.command("match")
@click.option("--ckpt", default=str(SHARED / "models" / "linux_lstm3x512.pt"), show_default=True,
              help="Checkpoint of the time case.")
@click.option("--chars", default=1_000_000, show_default=True, help="Characters of the time case (linux.txt first).")
@click.option("--memory-ckpt", default=str(SHARED / "models" / "wp_lstm2x128.pt"), show_default=True,
              help="Checkpoint of the memory case.")
@click.option("--memory-chars", default=10_000_000, show_default=True,
              help="Characters of the memory case (the corpora repeated, warpeace.txt first; 0: skip).")
@click.option("--streams", default=64, show_default=True, help="Streams, for match and the recording alike.")
@click.option("--warmup", default=256, show_default=True, help="Warmup per stream.")
@click.option("--threads", default=2, show_default=True, help="torch threads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_match(ckpt, chars, memory_ckpt, memory_chars, streams, warmup, threads, as_json):
    """neuroscope.match (thresholds, query, the streamed search, hits, feature overlap) vs recording
    h and c of every layer over the same characters, each in a fresh process (time, peak memory).

    Goal: match <= 1.5x the recording; memory bounded (O(N) bytes for the bits, not O(N x units)).
    Time case: a /* comment */ span on linux.txt with linux_lstm3x512; memory case: a quote span on
    the corpora repeated to 10M characters with the small wp_lstm2x128.
    """
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    shapes = {"time": (ckpt, "linux.txt", r"/\*[^\n]{20,60}\*/", chars)}
    if memory_chars:
        shapes["memory"] = (memory_ckpt, "warpeace.txt", r'"[^"\n]{15,40}"', memory_chars)
    res = {"device": f"cpu ({threads} threads)", "streams": streams, "warmup": warmup, "goal": 1.5, "cases": []}
    for shape, (path, corpus, pattern, n) in shapes.items():
        row = {"shape": shape, "ckpt": os.path.basename(path), "chars": n}
        for which in ("record", "match"):
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                row[which] = pool.submit(_match_case, path, corpus, pattern, n, streams, warmup, threads,
                                         which).result()
            click.echo(f"{shape} {which}: {json.dumps(row[which])}", err=True)     # partial results survive a kill
        row["ratio"] = round(row["match"]["seconds"] / row["record"]["seconds"], 3)
        if "cpu_seconds" in row["match"] and "cpu_seconds" in row["record"]:
            row["cpu_ratio"] = round(row["match"]["cpu_seconds"] / row["record"]["cpu_seconds"], 3)
        res["cases"].append(row)
    res["load_average"] = os.getloadavg()
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(f"{res['device']}, {streams} streams (warmup {warmup}), load average {res['load_average'][0]:.1f}")
    for r in res["cases"]:
        rec, mat = r["record"], r["match"]
        click.echo(f"  {r['shape']:6s} {r['ckpt']} {r['chars']:,} chars: recording {rec['seconds']:.1f} s "
                   f"(peak +{rec['peak_mib']:,.0f} MiB), match {mat['seconds']:.1f} s (peak +{mat['peak_mib']:,.0f} "
                   f"MiB) = {r['ratio']:.2f}x (goal <= 1.5x); {mat['hits']:,} hits, {mat['best_feature']}; "
                   f"parts (s) {mat['parts_s']}")

# ---------------------------------------------------------------- explain

@cli.command("explain")
@click.option("--ckpt", default=str(SHARED / "models" / "wp_lstm3x512.pt"), show_default=True, help="Checkpoint.")
@click.option("--chars", default=100_000, show_default=True, help="First characters of warpeace.txt's test split.")
@click.option("--streams", default=64, show_default=True, help="Streams, for the recording and the fused forward alike.")
@click.option("--warmup", default=256, show_default=True, help="Recorder warmup per stream.")
@click.option("--threads", default=2, show_default=True, help="torch threads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_explain(ckpt, chars, streams, warmup, threads, as_json):
    """Explaining every h and c unit: recording vs search, seconds per unit, peak memory, against the
    fused nn.LSTM forward over the same characters. Peak memory is the rise of the resident set above
    what the model and text hold."""
    import torch

    from neuroscope.checkpoint import choose_text, load_checkpoint
    from neuroscope.explain import explain
    from neuroscope.names import parse_quantity, state_names

    torch.set_num_threads(threads)
    c = load_checkpoint(ckpt)
    span = choose_text(c, str(SHARED / "data" / "warpeace.txt"), "test")
    text = span.text[:chars]
    ids = c.vocab.encode(text)
    units = [parse_quantity(q).unit(i) for q in state_names(c.config, ("h", "c")) for i in range(c.config.hidden_size)]
    _fused_forward(c.model, ids[:20_000], streams)                      # warm the allocator
    t0 = time.perf_counter()
    _fused_forward(c.model, ids, streams)
    t_fused = time.perf_counter() - t0
    held = memory_mib("VmRSS")
    res = explain(c, text, units=units, offset=span.start, streams=streams, warmup=warmup, contexts=False,
                  progress=not as_json)
    s = res.meta["seconds"]
    best = res.table[res.table["rank"] == 1]
    out = {"device": f"cpu ({threads} threads)", "ckpt": os.path.basename(ckpt), "chars": len(text),
           "streams": streams, "warmup": warmup, "units": len(units), "atoms": res.meta["atoms"],
           "groups": res.meta["groups"], "fused_s": round(t_fused, 2), "record_s": round(s["record"], 2),
           "search_s": round(s["search"], 2), "search_ms_per_unit": round(1000 * s["per_unit_search"], 2),
           "record_ratio_to_fused": round(s["record"] / t_fused, 3),
           "total_ratio_to_fused": round((s["record"] + s["search"]) / t_fused, 3),
           "peak_mib": round(memory_mib() - held, 1), "explained": int(best["explained"].sum()),
           "explained_share": round(float(best["explained"].mean()), 4), "load_average": os.getloadavg()}
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{out['ckpt']}, {len(text):,} chars of the warpeace.txt test split, {len(units):,} units (h and c), "
               f"{streams} streams (warmup {warmup}); {out['atoms']} atoms in {out['groups']:,} groups")
    click.echo(f"  fused nn.LSTM forward {t_fused:.1f} s; recording {s['record']:.1f} s "
               f"({out['record_ratio_to_fused']:.2f}x); search {s['search']:.1f} s = "
               f"{out['search_ms_per_unit']:.1f} ms per unit; total {out['total_ratio_to_fused']:.2f}x fused")
    click.echo(f"  peak +{out['peak_mib']:.0f} MiB; explained {out['explained']} of {len(units)} units "
               f"({out['explained_share']:.1%}); load average {out['load_average']}")


if __name__ == "__main__":
    cli()
