"""The live section of a report (--live): its screenshot for README, and its size and speed in Chromium.

A demo-like report of wp_lstm2x128 (War and Peace, a 2 x 128 LSTM like the demo's): units ranked
for in_quote and line_position on the test split, the live section opened in headless Chromium
(networking off), the best in_quote unit picked, a quoted sentence typed. Then the numbers
docs/live.md quotes, each measured in the page with performance.now():
- the bytes --live adds to the report (2 x 128, and 3 x 512 with wp_lstm3x512);
- 2 x 128: reading and colouring 2,000 pasted characters, recolouring them by another unit, and
  reading them again under an intervention;
- 3 x 512: the time of one keystroke (one forward step, the three views updated, layout done), over
  100 keystrokes typed one at a time at the end of 2,000 characters.

    python analyses/live_section.py         # reports/live_section.png, .html, .json
"""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (REPORTS, SHARED, build_report, chromium, finding, load, open_report, parser,  # noqa: E402
                     resolve, run_probe, save, screenshot, setup)

from neuroscope.checkpoint import load_checkpoint  # noqa: E402
from neuroscope.files import write_json  # noqa: E402
from neuroscope.model import count_parameters  # noqa: E402

FEATURES = ("in_quote", "line_position")
LIVE_READY = "window.neuroscopeReady === true && !!window.neuroscopeLive"
TYPED = ('"Well, Prince, so Genoa and Lucca are now just family estates of the Buonapartes," '
         "said Anna Pavlovna, and\nPierre looked at her.")

# One paste of 2,000 characters (read + coloured), a switch of unit (recoloured), an intervention
# (read again); each awaited until the page is idle, so the slices it yields between are included.
PASTE = """
const [text, unit, done] = arguments, ui = neuroscopeLive.ui, t = [performance.now()];
ui.type(text).then(() => { t.push(performance.now()); ui.setUnit(unit); t.push(performance.now());
  return ui.addEdit({units: unit, op: 'zero', value: 0}); })
  .then(() => { t.push(performance.now()); document.body.offsetHeight; done(t.slice(1).map((x, i) => x - t[i])); });
"""
# Keystrokes typed one at a time at the end of the text: each is one input event, timed to layout.
KEYS = """
const [text, keys, done] = arguments, box = document.getElementById('live-text'), times = [];
neuroscopeLive.ui.type(text).then(() => {
  for (const ch of keys) {
    const t0 = performance.now();
    box.value += ch; box.dispatchEvent(new Event('input')); document.body.offsetHeight;
    times.push(performance.now() - t0);
  }
  done(times);
});
"""


# The forward pass alone, without the page's views: neuroscopeLive.run over n characters, ms per character.
FORWARD = """
const [text] = arguments, t0 = performance.now(); neuroscopeLive.run(text, []);
return (performance.now() - t0) / Array.from(text).length;
"""


def measure(driver, html: Path, script: str, *args):
    open_report(driver, html, LIVE_READY)
    driver.set_script_timeout(600)                  # 2,000 characters of a 3 x 512 model take seconds
    return driver.execute_async_script(script, *args)


def main(argv=None) -> dict:
    p = parser(__doc__, "wp_lstm2x128.pt", "warpeace.txt", chars=10_000)
    p.add_argument("--big", default=str(SHARED / "models" / "wp_lstm3x512.pt"), help="the 3 x 512 model timed")
    p.add_argument("--png", default=str(REPORTS / "live_section.png"), help="screenshot ('' = none)")
    p.set_defaults(show_chars=1000)
    args = p.parse_args(argv)
    setup()
    ckpt, span = load(args)
    features = resolve(span.text, names=FEATURES)
    result = run_probe(args, ckpt, span, features)
    report = build_report(ckpt, span, result, features, max_chars=args.show_chars, live=True)
    plain = build_report(ckpt, span, result, features, max_chars=args.show_chars)
    quote_unit = finding(result, "in_quote")["unit"]
    path = save("live_section", report, {})
    text = span.text[:2000].replace("\r", "")          # a text box holds line breaks as "\n"

    big = load_checkpoint(args.big)
    big_html = REPORTS / "live_section_3x512.html"      # measured, then removed: too big to commit
    build_report(big, replace(span, text=span.text[:300]), max_chars=300, live=True).save(big_html, force=True)
    with chromium() as driver:
        paste = measure(driver, path, PASTE, text, quote_unit) if driver else None
        step = driver.execute_script(FORWARD, text) if driver else None
        keys = measure(driver, big_html, KEYS, text, text[:100]) if driver else None
        big_step = driver.execute_script(FORWARD, text[:200]) if driver else None
    big_size = big_html.stat().st_size
    big_html.unlink()
    summary = {"script": "live_section", "model": ckpt.name, "quote_unit": quote_unit,
               "bytes_plain": len(plain.html.encode()), "bytes_live": len(report.html.encode()),
               "bytes_added": len(report.html.encode()) - len(plain.html.encode()),
               "big_model": big.name, "big_weights": count_parameters(big.model), "big_bytes_live": big_size}
    if paste:
        summary |= {"paste_2000_ms": paste[0], "recolour_2000_ms": paste[1], "intervene_2000_ms": paste[2],
                    "forward_ms_per_char": step, "big_forward_ms_per_char": big_step}
    summary["load_average_1min"] = os.getloadavg()[0]       # timings on a busy machine are longer
    if keys:
        keys = sorted(keys)
        summary |= {"big_keystroke_ms_median": keys[len(keys) // 2], "big_keystroke_ms_max": keys[-1]}
    for k, v in summary.items():
        print(f"{k}: {v:,.1f}" if isinstance(v, float) else f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}")
    write_json(path.with_suffix(".json"), summary, force=True)
    if args.png:
        screenshot(path, args.png, "#live", height=900, prepare=(
            f"neuroscopeLive.ui.setUnit({quote_unit!r}); neuroscopeLive.ui.type({TYPED!r}).then(arguments[0]);"))
    return summary


if __name__ == "__main__":
    main()
