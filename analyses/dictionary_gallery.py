"""The gallery page of a dictionary: enwiki_lstm2x512's dictionary over rnn.l1.c, its latents ranked
against the wiki markup features as wiki_markup.py ranks the cells (the same probe, null, control and
ablation), and the test text coloured by the best latents.

    python analyses/dictionary_gallery.py      # writes reports/dictionary_gallery.html and .json

The dictionary is the one analyses/dictionary_reference.py trains (reports/dictionaries/, --dict);
the verdicts against the units are in reports/README.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPORTS, build_report, describe, finding, load, parser, resolve, run_probe, save, setup  # noqa: E402
from wiki_markup import NAMES, www_count  # noqa: E402

from neuroscope.dictionary import load_dictionary
from neuroscope.features import FEATURES, register


def main(argv=None) -> dict:
    p = parser(__doc__, "enwiki_lstm2x512.pt", "enwiki.xml", chars=40_000)
    p.add_argument("--dict", default=str(REPORTS / "dictionaries" / "enwiki_lstm2x512_l1_c"),
                   help="a dictionary of the model (neuroscope dictionary's folder)")
    args = p.parse_args(argv)
    setup()
    if "www_count" not in FEATURES:
        register("www_count", www_count, kind="count", description="position inside \"www\" (1, 2, 3), else 0")
    ckpt, span = load(args)
    d = load_dictionary(args.dict, ckpt.model)
    features = resolve(span.text, names=NAMES + ("www_count",))
    result = run_probe(args, ckpt, span, features, dictionary=d)
    found = {f: finding(result, f) for f in NAMES + ("www_count",)}
    print(f"{ckpt.name}: {len(span.text):,} characters of the test split from {span.start:,}, "
          f"{d.sae.d_sae:,} latents of {d.quantity} (k {d.sae.k}), streams={args.streams} warmup={args.warmup}")
    for f in found.values():
        print(describe(f))
    report = build_report(ckpt, span, result, features, dictionary=d, max_chars=args.show_chars)
    summary = {"script": "dictionary_gallery", "model": ckpt.name, "dictionary": str(args.dict), "quantity": d.quantity,
               "latents": d.sae.d_sae, "k": d.sae.k, "chars": len(span.text), "start": span.start,
               "streams": args.streams, "warmup": args.warmup, "findings": found, "notes": result.meta["notes"]}
    save("dictionary_gallery", report, summary, args.out)
    return summary


if __name__ == "__main__":
    main()
