"""Shared plumbing of the analysis scripts: paths, arguments, the probe call, the key numbers.

Every script reads the reference models and corpora from ../shared (beside the repository) and
writes reports/<script name>.html plus reports/<script name>.json (the numbers the gallery quotes).
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.features import resolve
from neuroscope.files import json_ready, write_json
from neuroscope.probe import probe
from neuroscope.report import Report, build_report

from _paths import REPORTS, SHARED


def parser(doc: str, model: str, text: str, chars: int) -> argparse.ArgumentParser:
    """The common options: model and text paths (defaults in ../shared), the span, the recording."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--model", default=str(SHARED / "models" / model), help="checkpoint (.pt)")
    p.add_argument("--text", default=str(SHARED / "data" / text), help="corpus; its test split is read")
    p.add_argument("--chars", type=int, default=chars, help="characters of the test split to probe (from its start)")
    p.add_argument("--streams", type=int, default=64, help="parallel streams for recording")
    p.add_argument("--warmup", type=int, default=256, help="warm-up characters per stream")
    p.add_argument("--ablate", type=int, default=4, help="units zeroed per feature in the ablation")
    p.add_argument("--ablate-chars", type=int, default=2000, help="characters the ablation runs over")
    p.add_argument("--ablate-draws", type=int, default=5, help="random unit sets to compare the ablation with")
    p.add_argument("--show-chars", type=int, default=3000, help="characters shown coloured in the report")
    p.add_argument("--out", default=None, help="report path (default reports/<script>.html)")
    return p


def setup() -> None:
    torch.set_num_threads(2)          # a fixed thread count, so the times the scripts print compare across runs


def load(args):
    """(Checkpoint, TextSpan of the first args.chars characters of the test split)."""
    ckpt = load_checkpoint(args.model)
    span = choose_text(ckpt, args.text, split="test")
    return ckpt, replace(span, text=span.text[:args.chars])


def run_probe(args, ckpt, span, features: dict, states=("c",), dictionary=None):
    """probe() with the script's recording and ablation settings; sample = the whole span; with a
    dictionary, its latents in place of the units."""
    return probe(ckpt, span.text, features, states=states, ablate=args.ablate, streams=args.streams,
                 warmup=args.warmup, progress=True, ablate_chars=args.ablate_chars,
                 ablate_draws=args.ablate_draws, sample_chars=args.chars, dictionary=dictionary)


def finding(result, feature: str) -> dict:
    """The best unit of a feature with its statistics, and the ablation of the top units."""
    rows = result.ranking[result.ranking["feature"] == feature]
    if rows.empty:
        return {"feature": feature, "note": "not probed (constant on this text)"}
    top = rows.iloc[0]
    out = {"feature": feature, "kind": str(top["kind"]), "unit": str(top["unit_id"]),
           **{k: top[k] for k in ("r", "auroc", "spearman", "p_adjusted", "selectivity", "control_max_abs_r")},
           "baseline_best": str(top["baseline_best"]), "baseline_max_abs_r": top["baseline_max_abs_r"],
           "flag": str(top["flag"]),
           "next_units": [f"{u} ({r:+.3f})" for u, r in zip(rows["unit_id"].iloc[1:4], rows["r"].iloc[1:4])]}
    abl = result.ablation[result.ablation["feature"] == feature] if len(result.ablation) else result.ablation
    if len(abl):
        a = abl.iloc[0]
        out["ablation"] = {"units": str(a["units"]), "chars": int(a["chars"]),
                           **{k: a[k] for k in ("delta_on", "delta_off", "random_on_mean", "random_on_std")},
                           "draws": int(a["draws"])}
    sp = result.sparse[result.sparse["feature"] == feature] if len(result.sparse) else result.sparse
    if len(sp):
        out["sparse_probe"] = {"metric": str(sp.iloc[0]["metric"]), "score": sp.iloc[0]["score"],
                               "n_nonzero": int(sp.iloc[0]["n_nonzero"])}
    return json_ready(out)           # numpy numbers -> Python, NaN -> None


def describe(f: dict) -> str:
    """One line of a finding, as printed and quoted in the gallery."""
    if "unit" not in f:
        return f"{f['feature']}: {f.get('note', '')}"
    s = (f"{f['feature']}: {f['unit']} r={f['r']:+.3f} p_adj={_fmt(f['p_adjusted'], '.2g')} "
         f"selectivity={_fmt(f['selectivity'], '.3f')} (control max |r| {_fmt(f['control_max_abs_r'], '.3f')})")
    if f.get("auroc") is not None:
        s += f" AUROC={f['auroc']:.3f}"
    if f.get("flag"):
        s += f" flag={f['flag']}"
    a = f.get("ablation")
    if a:
        s += (f"; zeroing {a['units']}: {_fmt(a['delta_on'], '+.4f')} nats/char where on "
              f"(random sets {_fmt(a['random_on_mean'], '+.4f')} ± {_fmt(a['random_on_std'], '.4f')}), "
              f"{_fmt(a['delta_off'], '+.4f')} where off")
    return s


def save(name: str, report: Report, summary: dict, out: str | None = None) -> Path:
    """Write reports/<name>.html and reports/<name>.json (the numbers the gallery quotes).

    A script regenerates its own gallery files, so they are replaced (force); neuroscope.files still
    refuses to replace a file of another kind or one of the script's inputs.
    """
    path = Path(out) if out else REPORTS / f"{name}.html"
    report.save(path, force=True)
    write_json(path.with_suffix(".json"), summary, force=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.json').name}")
    return path


def findings_script(name: str, args, features: tuple[str, ...], lang: str = "auto") -> tuple[dict, Path]:
    """The common run of a findings script: probe the cell states for `features`, print and save the
    findings (reports/<name>.html and .json). Returns (summary, path of the page)."""
    setup()
    ckpt, span = load(args)
    labels = resolve(span.text, names=features, lang=lang)
    result = run_probe(args, ckpt, span, labels)
    found = {f: finding(result, f) for f in features}
    print(f"{ckpt.name}: {len(span.text):,} characters of the test split from {span.start:,}, "
          f"{result.meta['units']:,} cell-state units, streams={args.streams} warmup={args.warmup}")
    for f in found.values():
        print(describe(f))
    report = build_report(ckpt, span, result, labels, max_chars=args.show_chars)
    summary = {"script": name, "model": ckpt.name, "chars": len(span.text), "start": span.start,
               "streams": args.streams, "warmup": args.warmup, "states": "c", "findings": found,
               "notes": result.meta["notes"]}
    return summary, save(name, report, summary, args.out)


@contextmanager
def chromium(width: int = 1100, height: int = 900):
    """Headless Chromium with networking off (as tests/test_browser.py), or None (with a message)
    without selenium, chromium or chromedriver; quit on exit."""
    import shutil
    import tempfile
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        print("no browser: selenium is not installed")
        yield None
        return
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver_path):
        print("no browser: chromium / chromedriver not found")
        yield None
        return
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    profile = tempfile.mkdtemp(prefix="ns-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_report(driver, html_path: Path, ready: str = "window.neuroscopeReady === true") -> None:
    """Open a report from disk and wait until its script has run (`ready`: a JS condition)."""
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(Path(html_path).resolve().as_uri())
    WebDriverWait(driver, 120).until(lambda d: d.execute_script(f"return {ready}"))


def screenshot(html_path: Path, png_path: Path, selector: str, height: int = 520, prepare: str = "") -> Path | None:
    """PNG of one element of a report, opened from disk in headless Chromium (as tests/test_browser.py
    does, networking off); the element is cut to `height` pixels. `prepare`: JavaScript run first, as
    an async script (it calls arguments[0] when the page is ready). None (with a message) without a browser."""
    from neuroscope.files import write_with
    with chromium() as driver:
        if driver is None:
            return None
        from selenium.webdriver.common.by import By
        open_report(driver, html_path)
        if prepare:
            driver.execute_async_script(prepare)
        el = driver.find_element(By.CSS_SELECTOR, selector)
        driver.execute_script(f"arguments[0].style.maxHeight = '{height}px'; arguments[0].style.overflow = 'hidden';"
                              "arguments[0].scrollIntoView();", el)
        png = el.screenshot_as_png
        write_with(png_path, lambda fh: fh.write(png), "png", force=True)     # the gallery's own picture
    print(f"wrote {png_path}")
    return Path(png_path)


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


__all__ = ["SHARED", "REPORTS", "parser", "setup", "load", "run_probe", "finding", "describe", "save",
           "Report", "build_report", "resolve", "np"]
