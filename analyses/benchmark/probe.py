"""The ranking pass of neuroscope's probe for all built-in features vs the fused nn.LSTM forward over
the same characters; the control, the null and the sparse probes as extras."""
from __future__ import annotations

import os
import time

from analyses._paths import SHARED

from .timing import fused_forward, load_average, median, memory_mib


def run(ckpt, chars, streams, warmup, repeats, extras, threads) -> dict:
    """The ranking pass is probe() without control, null and sparse probes: recording h and c (streams,
    warmup), the streamed r of every unit with every feature, and AUROC/Spearman on the sample; it and
    the fused forward alternate in each repeat. Peak memory is the rise of the resident set above what
    the model, text and labels hold. The extras are timed in one further probe call."""
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
    fused_forward(c.model, ids[:20_000], streams)                       # warm the allocator
    held = memory_mib("VmRSS")
    fused, ranking, meta = [], [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = probe(c, text, labels, control=False, null=False, sparse=False, streams=streams, warmup=warmup)
        ranking.append(time.perf_counter() - t0)
        meta = res.meta
        t0 = time.perf_counter()
        fused_forward(c.model, ids, streams)
        fused.append(time.perf_counter() - t0)
    peak_ranking = memory_mib() - held
    t_fused, t_rank = median(fused), median(ranking)
    out = {"device": f"cpu ({threads} threads)", "ckpt": os.path.basename(ckpt), "chars": len(text),
           "streams": streams, "warmup": warmup, "features": len(meta["features"]), "units": meta["units"],
           "skipped": [n for n in meta["notes"] if n.startswith("skipped")], "label_s": round(t_label, 2),
           "fused_s": round(t_fused, 2), "ranking_s": round(t_rank, 2), "ratio": round(t_rank / t_fused, 3),
           "goal": 1.5, "ranking_parts_s": {k: round(v, 2) for k, v in meta["seconds"].items()},
           "sample_chars": meta["sample"]["chars"], "peak_mib_ranking": round(peak_ranking, 1),
           "load_average": load_average(), "repeats": repeats}
    if extras:
        res = probe(c, text, labels, streams=streams, warmup=warmup)
        s = res.meta["seconds"]
        out["extras_s"] = {k: round(s[k], 2) for k in ("control", "null", "sparse")}
        out["extras_ratio_to_fused"] = {k: round(s[k] / t_fused, 3) for k in ("control", "null", "sparse")}
        out["peak_mib_all"] = round(memory_mib() - held, 1)
    return out
