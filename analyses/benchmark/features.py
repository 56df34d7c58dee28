"""Labelling every built-in feature vs recording h and c of wp_lstm2x128 on the same text; each
feature's rate alone on linux.txt."""
from __future__ import annotations

from analyses._paths import SHARED

from .timing import median_time, memory_mib


def run(chars, streams, fallback_chars, repeats, threads) -> dict:
    """Times of labelling and recording the first `chars` characters of warpeace.txt; if the recorder
    does not take `streams`, `fallback_chars` recorded in one stream and extrapolated linearly."""
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
        rates[name] = len(linux) / median_time(lambda name=name: F.label(linux, name), repeats)
    t_all_linux = median_time(lambda: F.resolve(linux, names=names), repeats)
    return {"chars": len(text), "features": len(names), "label_all_s": t_label, "record_s": t_record,
            "record_mode": record_mode, "ratio_label_over_record": t_label / t_record, "target_ratio": 0.1,
            "linux_chars": len(linux), "linux_label_all_s": t_all_linux,
            "linux_chars_per_s": {k: round(v) for k, v in rates.items()}, "threads": threads,
            "peak_rss_mb": memory_mib()}
