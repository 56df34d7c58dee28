"""Recording h and c of every layer vs the fused nn.LSTM forward over the same characters; what
--streams and float16 cost in exactness."""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time

from analyses._paths import SHARED

from .timing import load_average, median, memory_mib, reset_peak

CASES = ("fused", "auto", "loop", "recover")           # the floor, then iter_states' strategies


def setup(ckpt_path: str, chars: int, threads: int):
    """(model, ids) for the record benchmark: the first `chars` characters of warpeace's test split."""
    import torch

    from neuroscope.checkpoint import load_checkpoint
    from neuroscope.text import read_text, split_span
    torch.set_num_threads(threads)
    ckpt = load_checkpoint(ckpt_path)
    text = read_text(SHARED / "data" / "warpeace.txt")
    lo, _ = split_span(len(text), "test")
    return ckpt.model, ckpt.vocab.encode(text[lo:lo + chars])


def run_case(model, ids, case: str, streams: int, warmup: int, chunk: int) -> None:
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


def case_peak(ckpt_path, chars, threads, case, streams, warmup, chunk) -> float:
    """Run one case once (in a fresh process): MiB by which its peak resident memory rose above the
    memory held after loading the model and the text."""
    model, ids = setup(ckpt_path, chars, threads)
    reset_peak()
    held = memory_mib("VmRSS")
    run_case(model, ids, case, streams, warmup, chunk)
    return max(0.0, memory_mib("VmHWM") - held)


def stream_deviation(model, ids, streams: int, warmups, chunk: int) -> tuple[list[dict], dict]:
    """How far --streams/--warmup states are from exact single-stream ones, per warmup; and the error
    of storing the exact states as float16."""
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
                  "max_rel_err": float((err / np.maximum(np.abs(x), 2.0 ** -14)).max()),
                  "mean_abs_err": float(err.mean())}
    return rows, f16


def peaks(ckpt, shapes: dict, threads: int, chunk: int) -> dict:
    """Peak memory of every (shape, case), each in a fresh process (spawned: a fork would inherit
    this process's memory)."""
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for s, (ids_, n, w) in shapes.items():
        for case in CASES:
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                out[s, case] = pool.submit(case_peak, ckpt, len(ids_), threads, case, n, w, chunk).result()
    return out


def run(ckpt, chars, streams, warmup, single_chars, chunk, deviation_chars, repeats, threads, memory) -> dict:
    """Time every case of a multi-stream and a single-stream shape, cases interleaved within each
    repeat so that a busy machine slows all of them alike; then peak memory and the deviation."""
    model, ids = setup(ckpt, max(chars, single_chars, deviation_chars), threads)
    shapes = {"streams": (ids[:chars], streams, warmup), "single": (ids[:single_chars], 1, 0)}
    for ids_, n, w in shapes.values():                                   # warm the allocator and caches
        for case in CASES:
            run_case(model, ids_[:2000], case, min(n, 4), min(w, 100), chunk)
    times = {(s, c): [] for s in shapes for c in CASES}
    for _ in range(repeats):
        for s, (ids_, n, w) in shapes.items():
            for case in CASES:
                t0 = time.perf_counter()
                run_case(model, ids_, case, n, w, chunk)
                times[s, case].append(time.perf_counter() - t0)
    med = {k: median(v) for k, v in times.items()}
    peak = peaks(ckpt, shapes, threads, chunk) if memory else {}
    res = {"device": f"cpu ({threads} threads)", "ckpt": os.path.basename(ckpt), "repeats": repeats,
           "load_average": load_average(), "chunk": chunk, "goal": 1.5, "cases": []}
    for s, (ids_, n, w) in shapes.items():
        for case in CASES:
            res["cases"].append({"shape": s, "chars": len(ids_), "streams": n, "warmup": w if case != "fused" else 0,
                                 "case": case, "seconds": round(med[s, case], 3),
                                 "chars_per_s": round(len(ids_) / med[s, case]),
                                 "ratio": round(med[s, case] / med[s, "fused"], 3),
                                 "peak_mib": round(peak[s, case], 1) if (s, case) in peak else None})
    if deviation_chars:
        # pieces as long as in the timed multi-stream case (the deviation fades with distance from a piece's start)
        dev_streams = max(1, deviation_chars // max(1, chars // streams))
        warmups = sorted({w for w in (0, 64, 256, 1024, warmup) if w <= deviation_chars // dev_streams})
        rows, f16 = stream_deviation(model, ids[:deviation_chars], dev_streams, warmups, chunk)
        res["deviation"] = {"chars": deviation_chars, "streams": dev_streams, "rows": rows}
        res["float16"] = f16
    res["peak_rss_mib"] = round(memory_mib(), 1)
    return res
