"""Explaining every h and c unit: recording vs search, seconds per unit, peak memory, against the
fused nn.LSTM forward over the same characters."""
from __future__ import annotations

import os
import time

from analyses._paths import SHARED

from .timing import fused_forward, load_average, memory_mib


def run(ckpt, chars, streams, warmup, threads, progress: bool = True) -> dict:
    """The first `chars` characters of warpeace.txt's test split; peak memory is the rise of the
    resident set above what the model and text hold. `progress`: explain()'s progress bars."""
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
    fused_forward(c.model, ids[:20_000], streams)                       # warm the allocator
    t0 = time.perf_counter()
    fused_forward(c.model, ids, streams)
    t_fused = time.perf_counter() - t0
    held = memory_mib("VmRSS")
    res = explain(c, text, units=units, offset=span.start, streams=streams, warmup=warmup, contexts=False,
                  progress=progress)
    s = res.meta["seconds"]
    best = res.table[res.table["rank"] == 1]
    return {"device": f"cpu ({threads} threads)", "ckpt": os.path.basename(ckpt), "chars": len(text),
            "streams": streams, "warmup": warmup, "units": len(units), "atoms": res.meta["atoms"],
            "groups": res.meta["groups"], "fused_s": round(t_fused, 2), "record_s": round(s["record"], 2),
            "search_s": round(s["search"], 2), "search_ms_per_unit": round(1000 * s["per_unit_search"], 2),
            "record_ratio_to_fused": round(s["record"] / t_fused, 3),
            "total_ratio_to_fused": round((s["record"] + s["search"]) / t_fused, 3),
            "peak_mib": round(memory_mib() - held, 1), "explained": int(best["explained"].sum()),
            "explained_share": round(float(best["explained"].mean()), 4), "load_average": load_average()}
