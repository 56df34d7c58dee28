"""`neuroscope probe` and `neuroscope record` as whole processes, from one or more checkouts, vs the
fused 64-stream nn.LSTM forward over the same characters in the same run (timed in a fresh process of
its own before each repeat: see timing.fused_seconds)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from analyses._paths import ROOT, SHARED

from .timing import commits, fused_seconds, load_average, median, run_cli

CORPUS = SHARED / "data" / "warpeace.txt"


def run(ckpt, chars_list, feature, cases, trees, probe_args, record_chars, record_streams, repeats,
        threads) -> dict:
    """Each case of `cases` ("one", "all", "record": a comma list) from each checkout in `trees`, at each
    of `chars_list` characters; the runs of one repeat interleaved, the median run reported."""
    import torch

    from neuroscope.text import read_text

    torch.set_num_threads(threads)
    wanted = [c.strip() for c in cases.split(",") if c.strip()]
    full = read_text(CORPUS)
    described = commits(trees)
    res = {"device": f"cpu ({threads} threads)", "ckpt": os.path.basename(ckpt), "torch": torch.__version__,
           "trees": described, "repeats": repeats, "goal": {"100k": 3.0, "1M": 2.0, "record": 1.3}, "runs": []}
    scratch = Path(tempfile.mkdtemp(prefix="headline-", dir=ROOT))
    try:
        for chars in chars_list:
            res["runs"] += probe_runs(full, ckpt, chars, feature, wanted, trees, described, probe_args.split(),
                                      repeats, threads)
        if "record" in wanted:
            res["record"] = record_runs(full, ckpt, record_chars, record_streams, trees, described, scratch,
                                        repeats, threads)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    res["load_average"] = load_average()
    return res


def probe_runs(full, ckpt, chars, feature, wanted, trees, described, extra, repeats, threads) -> list[dict]:
    """The "one" and "all" cases of `wanted` at `chars` characters, one row per checkout and case."""
    span, where, lo = span_args(len(full), chars)
    base = ["probe", "--ckpt", ckpt, "--text", str(CORPUS), *span, "--json", *extra]
    cmds = {"one": base + ["--feature", feature], "all": base + ["--all-features"]}
    fused, times = [], {}
    for _ in range(repeats):
        fused.append(fused_seconds(ckpt, lo, chars, 64, threads))
        for tree in trees:
            for case in (k for k in ("one", "all") if k in wanted):
                times.setdefault((str(tree), case), []).append(run_cli(tree, cmds[case], threads))
    t_fused = median(fused)
    rows = []
    for (tree, case), runs in times.items():
        run = median(runs, key=lambda r: r["seconds"])
        meta = run["out"]["meta"]
        secs = meta["seconds"]
        rows.append({
            "tree": tree, "commit": described[tree], "case": case, "chars": chars, "where": where,
            "command": "neuroscope " + " ".join(cmds[case]), "features": len(meta["features"]),
            "streams": meta.get("streams"), "warmup": meta.get("warmup"),
            "fused_s": round(t_fused, 2), "seconds": round(run["seconds"], 2),
            "ratio": round(run["seconds"] / t_fused, 2), "peak_mib": round(run["peak_mib"] or 0),
            "stages_s": {k: round(v, 2) for k, v in secs.items()},
            "outside_probe_s": round(run["seconds"] - secs["total"], 2),
            "share": {k: round(v / run["seconds"], 3) for k, v in secs.items() if k != "total"},
            "all_seconds": [round(r["seconds"], 2) for r in runs],
            "findings": findings(run["out"])})
    return rows


def findings(out: dict) -> dict:
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


def record_runs(full, ckpt, chars, streams, trees, described, scratch: Path, repeats, threads) -> list[dict]:
    """`neuroscope record` of `chars` characters (h and c, float32) vs the fused forward in as many
    streams plus a sequential write + fsync of the store's bytes, same run."""
    span, where, lo = span_args(len(full), chars)
    warm = ["--warmup", "256"] if streams > 1 else []
    rows = []
    for tree in trees:
        fused, disk, runs = [], [], []
        for _ in range(repeats):
            fused.append(fused_seconds(ckpt, lo, chars, streams, threads))
            out = scratch / "store"
            args = ["record", "--ckpt", ckpt, "--text", str(CORPUS), *span, "--streams", str(streams), *warm,
                    "--out", str(out), "--json"]
            runs.append(run_cli(tree, args, threads))
            n_bytes = sum(f.stat().st_size for f in out.iterdir())
            shutil.rmtree(out)
            disk.append(disk_write_seconds(scratch, n_bytes))
        run = median(runs, key=lambda r: r["seconds"])
        t_fused, t_disk = median(fused), median(disk)
        rows.append({"tree": str(tree), "commit": described[str(tree)], "chars": chars, "where": where,
                     "streams": streams, "command": "neuroscope " + " ".join(args), "bytes": n_bytes,
                     "seconds": round(run["seconds"], 2), "inside_s": run["out"].get("seconds"),
                     "fused_s": round(t_fused, 2), "disk_s": round(t_disk, 2),
                     "ratio_to_fused": round(run["seconds"] / t_fused, 2),
                     "ratio_to_floor": round(run["seconds"] / (t_fused + t_disk), 2),
                     "peak_mib": round(run["peak_mib"] or 0)})
    return rows


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


def span_args(text_len: int, chars: int) -> tuple[list[str], str, int]:
    """The CLI's span flags for `chars` characters, their description and their first character: the
    start of warpeace's test split when it is long enough, else the start of the whole file."""
    from neuroscope.text import split_span
    lo, hi = split_span(text_len, "test")
    split = "test" if chars <= hi - lo else "all"
    where = "test split" if split == "test" else "whole file"
    return (["--split", split, "--chars", str(chars)], f"first {chars:,} chars of warpeace.txt's {where}",
            lo if split == "test" else 0)
