"""neuroscope.match (thresholds, query, the streamed search, hits, feature overlap) vs recording h and
c of every layer over the same characters, each in a fresh process (time, peak memory)."""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time

from analyses._paths import SHARED

from .timing import load_average, memory_mib, reset_peak


def corpora_text(chars: int, first: str) -> str:
    """The reference corpora, `first` at the front, repeated until `chars` characters."""
    from neuroscope.text import read_text
    names = [first] + [n for n in ("warpeace.txt", "linux.txt", "enwiki.xml", "tinyshakespeare.txt") if n != first]
    parts, n = [], 0
    while n < chars:
        for name in names:
            parts.append(read_text(SHARED / "data" / name))
            n += len(parts[-1])
    return "".join(parts)[:chars]


def case(ckpt_path: str, corpus: str, pattern: str, chars: int, streams: int, warmup: int, threads: int,
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
    text = corpora_text(chars, corpus)
    m = re.search(pattern, text[1000:])
    span = (1000 + m.start(), 1000 + m.end())
    reset_peak()
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


def run(ckpt, chars, memory_ckpt, memory_chars, streams, warmup, threads, on_part=None) -> dict:
    """Time case: a /* comment */ span on linux.txt with `ckpt`; memory case (unless memory_chars is 0):
    a quote span on the corpora repeated to `memory_chars` characters with `memory_ckpt`.
    on_part(shape, which, result) is called as each process ends, so partial results survive a kill."""
    ctx = multiprocessing.get_context("spawn")
    shapes = {"time": (ckpt, "linux.txt", r"/\*[^\n]{20,60}\*/", chars)}
    if memory_chars:
        shapes["memory"] = (memory_ckpt, "warpeace.txt", r'"[^"\n]{15,40}"', memory_chars)
    res = {"device": f"cpu ({threads} threads)", "streams": streams, "warmup": warmup, "goal": 1.5, "cases": []}
    for shape, (path, corpus, pattern, n) in shapes.items():
        row = {"shape": shape, "ckpt": os.path.basename(path), "chars": n}
        for which in ("record", "match"):
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                row[which] = pool.submit(case, path, corpus, pattern, n, streams, warmup, threads, which).result()
            if on_part:
                on_part(shape, which, row[which])
        row["ratio"] = round(row["match"]["seconds"] / row["record"]["seconds"], 3)
        if "cpu_seconds" in row["match"] and "cpu_seconds" in row["record"]:
            row["cpu_ratio"] = round(row["match"]["cpu_seconds"] / row["record"]["cpu_seconds"], 3)
        res["cases"].append(row)
    res["load_average"] = load_average()
    return res
