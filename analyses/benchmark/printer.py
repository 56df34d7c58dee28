"""The benchmarks' output: a few lines per result, or the result as one JSON object."""
from __future__ import annotations

import json

import click


def show(command: str, res: dict, as_json: bool = False) -> None:
    """Print the result of `command`: its lines, or with as_json the dict itself (train's on one line)."""
    if as_json:
        click.echo(json.dumps(res, indent=None if command == "train" else 2))
        return
    for line in LINES[command](res):
        click.echo(line)


def _train(res):
    yield f"{res['model']}, B={res['batch']} T={res['seq']}, {res['device']}, median of {res['steps']} steps each"
    yield f"neuroscope Trainer.step: {res['neuroscope_chars_per_s']:,} chars/s"
    yield f"plain nn.LSTM loop:      {res['plain_chars_per_s']:,} chars/s"
    yield (f"ratio: {res['ratio']:.3f} of median wall times, {res['ratio_of_totals']:.3f} of total wall "
           f"times, {res['ratio_cpu_time']:.3f} of CPU times (goal >= 0.95)")


def _record(res):
    yield (f"{res['ckpt']}, h and c of every layer, {res['device']}, median of {res['repeats']} (interleaved), "
           f"load average {res['load_average'][0]:.1f}")
    for r in res["cases"]:
        yield (f"  {r['shape']:7s} {r['chars']:>7,} chars x{r['streams']:<3} warmup {r['warmup']:<4} "
               f"{r['case']:8s} {r['seconds']:8.2f} s  {r['ratio']:5.2f}x fused"
               + (f"  peak +{r['peak_mib']:,.0f} MiB" if r["peak_mib"] is not None else ""))
    if "deviation" in res:
        d = res["deviation"]
        yield f"--streams {d['streams']} vs exact, {d['chars']:,} chars (h: |diff|; c: |diff| / (1 + |c|)):"
        for r in d["rows"]:
            yield (f"  warmup {r['warmup']:4d}: h mean {r['h_mean_abs']:.2e} max {r['h_max_abs']:.3f}, "
                   f"values off by > 0.01: {r['h_values_off_by_0.01']:.2%} "
                   f"(chars with one: {r['chars_with_h_off_by_0.01']:.1%}); "
                   f"c mean {r['c_mean_rel']:.2e} max {r['c_max_rel']:.3f}")
        for q, r in res["float16"].items():
            yield (f"float16 {q}: max |{q}| {r['max_abs']:.1f}, max error {r['max_abs_err']:.3g} "
                   f"(relative {r['max_rel_err']:.2e}), mean error {r['mean_abs_err']:.2e}")


def _features(res):
    t_label, t_record, t_linux = res["label_all_s"], res["record_s"], res["linux_label_all_s"]
    yield (f"warpeace.txt, first {res['chars']:,} chars: all {res['features']} built-in features {t_label:.3f} s; "
           f"recording h and c (wp_lstm2x128, {res['record_mode']}) {t_record:.2f} s")
    yield f"  labelling / recording = {t_label / t_record:.4f}  (target < 0.1)"
    yield (f"linux.txt, {res['linux_chars']:,} chars: all features together {t_linux:.2f} s "
           f"({res['linux_chars'] / t_linux / 1e6:.1f} M chars/s); each alone, M chars/s:")
    for name, rate in res["linux_chars_per_s"].items():
        yield f"  {name:<16} {rate / 1e6:8.1f}"


def _probe(res):
    yield (f"{res['ckpt']}, first {res['chars']:,} chars of warpeace.txt, {res['streams']} streams (warmup "
           f"{res['warmup']}), {res['features']} features x {res['units']} units")
    yield (f"  fused nn.LSTM forward {res['fused_s']:.1f} s; ranking pass {res['ranking_s']:.1f} s = "
           f"{res['ratio']:.2f}x (goal <= 1.5x); peak +{res['peak_mib_ranking']:.0f} MiB")
    yield "  ranking parts (s): " + ", ".join(f"{k} {v}" for k, v in res["ranking_parts_s"].items())
    if "extras_s" in res:
        yield ("  extras (s): " + ", ".join(f"{k} {v} ({res['extras_ratio_to_fused'][k]:.2f}x fused)"
                                           for k, v in res["extras_s"].items())
               + f"; peak with extras +{res['peak_mib_all']:.0f} MiB")
    yield f"  labelling all features (not timed above) {res['label_s']:.1f} s; load average {res['load_average']}"


def _headline(res):
    yield (f"{res['ckpt']}, {res['device']}, torch {res['torch']}, median of {res['repeats']}; "
           f"load average after: {', '.join(f'{x:.1f}' for x in res['load_average'])}")
    for r in res["runs"]:
        yield (f"  {r['commit']:>9} {r['case']:3s} {r['chars']:>9,} chars ({r['features']} features, streams "
               f"{r['streams']}, warmup {r['warmup']}): {r['seconds']:7.1f} s = {r['ratio']:5.2f}x fused "
               f"({r['fused_s']:.1f} s); peak {r['peak_mib']:,} MiB")
        yield ("      " + ", ".join(f"{k} {v:.1f} s ({r['share'].get(k, 0):.0%})" for k, v in r["stages_s"].items()
                                    if k != "total") + f"; outside probe() {r['outside_probe_s']:.1f} s")
    for r in res.get("record", []):
        yield (f"  {r['commit']:>9} record {r['chars']:,} chars, streams {r['streams']}: {r['seconds']:.1f} s "
               f"= {r['ratio_to_fused']:.2f}x fused ({r['fused_s']:.1f} s), {r['ratio_to_floor']:.2f}x fused + "
               f"disk ({r['disk_s']:.1f} s for {r['bytes'] / 2**30:.2f} GiB); peak {r['peak_mib']:,} MiB")


def _match(res):
    yield (f"{res['device']}, {res['streams']} streams (warmup {res['warmup']}), "
           f"load average {res['load_average'][0]:.1f}")
    for r in res["cases"]:
        rec, mat = r["record"], r["match"]
        yield (f"  {r['shape']:6s} {r['ckpt']} {r['chars']:,} chars: recording {rec['seconds']:.1f} s "
               f"(peak +{rec['peak_mib']:,.0f} MiB), match {mat['seconds']:.1f} s (peak +{mat['peak_mib']:,.0f} "
               f"MiB) = {r['ratio']:.2f}x (goal <= 1.5x); {mat['hits']:,} hits, {mat['best_feature']}; "
               f"parts (s) {mat['parts_s']}")


def match_part(shape: str, which: str, part: dict) -> None:
    """One finished process of the match benchmark, to stderr as it ends (partial results survive a kill)."""
    click.echo(f"{shape} {which}: {json.dumps(part)}", err=True)


def _explain(res):
    yield (f"{res['ckpt']}, {res['chars']:,} chars of the warpeace.txt test split, {res['units']:,} units (h and c), "
           f"{res['streams']} streams (warmup {res['warmup']}); {res['atoms']} atoms in {res['groups']:,} groups")
    yield (f"  fused nn.LSTM forward {res['fused_s']:.1f} s; recording {res['record_s']:.1f} s "
           f"({res['record_ratio_to_fused']:.2f}x); search {res['search_s']:.1f} s = "
           f"{res['search_ms_per_unit']:.1f} ms per unit; total {res['total_ratio_to_fused']:.2f}x fused")
    yield (f"  peak +{res['peak_mib']:.0f} MiB; explained {res['explained']} of {res['units']} units "
           f"({res['explained_share']:.1%}); load average {res['load_average']}")


def _cells(res):
    yield (f"{res['layers']} layers, about {res['parameters']:,} weights each, B={res['batch']} T={res['seq']}, "
           f"{res['device']}; training: median of {res['steps']} steps alternated with nn.LSTM's; recording: "
           f"{res['chars']:,} characters, one stream, median of 3")
    for r in res["rows"]:
        yield (f"  {r['cell']:<8} H={r['hidden']:<4} {r['parameters']:>9,} weights  train {r['train_chars_per_s']:>7,} "
               f"chars/s = {r['train_ratio_to_lstm']:.2f}x LSTM   forward {r['forward_s']:.2f} s, recording every "
               f"state {r['record_s']:.2f} s = {r['record_ratio']:.2f}x")
    yield f"  load average {res['load_average']}"


def _causes(res):
    yield (f"{res['ckpt']}, {res['chars']:,} chars of the warpeace.txt test split, {res['device']}; "
           f"fused nn.LSTM forward over them {res['fused_s'] * 1000:.0f} ms")
    yield (f"  patch (every state, forced, base and source side by side): {res['patch_s'] * 1000:.0f} ms = "
           f"{res['patch_ratio']:.2f}x the fused forward over both texts")
    yield (f"  occlusion of {res['window']} characters, one batched pass: {res['occlusion_s'] * 1000:.0f} ms = "
           f"{res['occlusion_ratio']:.2f}x one fused forward ({res['prefix_s'] * 1000:.0f} ms of it the prefix, "
           f"{res['occlusions_beyond_prefix_s'] * 1000:.0f} ms the {res['window'] + 2} rows of the window)")
    yield (f"  integrated gradients: {res['ig_s']:.2f} s, completeness error {res['ig_completeness']:.2%}; "
           f"load average {res['load_average']}")


def _imports(res):
    yield (f"python {res['python']}, torch {res['torch']}, seconds of a fresh process, median (min-max) of "
           f"{res['repeats']}; load average after: {', '.join(f'{x:.1f}' for x in res['load_average'])}")
    floor = {r["tree"]: r["seconds"]["median"] for r in res["runs"] if r["case"] == "python -c pass"}
    for r in res["runs"]:
        s = r["seconds"]
        above = s["median"] - floor[r["tree"]]
        yield (f"  {r['commit']:>9} {r['case']:<36} {s['median']:6.3f} s ({s['min']:.3f}-{s['max']:.3f})"
               + (f"  {above:+.3f} s over python -c pass" if r["case"] != "python -c pass" else ""))


def _contention(res):
    yield (f"{res['model']} on {res['chars']:,} characters of {res['text']} (the floor: {res['floor_chars']:,}, 16 "
           f"streams); seconds of a fresh process, median (min-max) of {res['repeats']}; load average after: "
           f"{', '.join(f'{x:.1f}' for x in res['load_average'])}")
    by = {(r["case"], r["condition"], r["threads"]): r["seconds"] for r in res["runs"]}
    yield f"  {'case':<22} {'threads':>7} {'idle':>15} {'busy':>15}  busy / one-thread idle"
    for case in dict.fromkeys(r["case"] for r in res["runs"]):
        one = by[case, "idle", "1"]["median"]
        for threads in ("auto", "1", "2"):
            if (case, "idle", threads) not in by:
                continue
            idle, busy = by[case, "idle", threads], by[case, "busy", threads]
            yield (f"  {case:<22} {threads:>7} {idle['median']:6.2f} ({idle['min']:.1f}-{idle['max']:.1f})"
                   f" {busy['median']:6.2f} ({busy['min']:.1f}-{busy['max']:.1f})  {busy['median'] / one:5.2f}x")


def _dictionary(res):
    yield (f"{res['ckpt']} {res['quantity']}: {res['latents']:,} latents, k {res['k']}, batch {res['batch']}, "
           f"{res['device']}, load average {res['load_average'][0]:.1f}")
    yield (f"training: {res['rows_per_s']:,} rows/s ({res['steps']} steps in {res['train_s']} s); the {len(res['products'])} dense "
           f"products alone {res['dense_products_s']} s = {res['dense_share_of_step']:.0%} of the step")
    for name, r in res["products"].items():
        yield f"  {name}: {r['ms']} ms, {r['gflops']} GFLOP/s"
    yield (f"encoding {res['chars']:,} chars: record {res['record_s']} s, record + encode {res['record_and_encode_s']} s "
           f"= {res['encode_ratio']:.2f}x")


LINES = {"dictionary": _dictionary, "contention": _contention, "train": _train, "record": _record, "features": _features, "probe": _probe, "headline": _headline,
         "match": _match, "explain": _explain, "imports": _imports, "causes": _causes, "cells": _cells}
