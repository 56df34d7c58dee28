"""Other dictionary designs against the default (4,096 latents, k 32): does a smaller dictionary, a nested
(Matryoshka) one or a BatchTopK one split the reference features less, and does a larger one explain
more directions?

Each design is trained like the default (1M training characters of its corpus, 2 epochs, every
other setting the command's), then measured as analyses/dictionary_reference.py measures the
default: held-out quality on the first 100,000 test characters, its case's reference features tracked
on the first 60,000 (best latent and best 4, chosen on explain's fitting blocks, scored on its
held-out blocks), and the latents explained by a structural formula. The default's numbers are read
from reports/dictionary_reference.json (the same measures, the same text).

    python analyses/dictionary_designs.py                  # every design: 10-70 minutes each, 2-core CPU
    python analyses/dictionary_designs.py nested           # one design; the others' results are kept

Writes reports/dictionary_designs.json (a design run again replaces its own entry).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPORTS, SHARED, setup  # noqa: E402
from dictionary_reference import dictionary_for, explained, tracked  # noqa: E402

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.dictionary import held_out_quality, latent_values
from neuroscope.features import kind_of, label
from neuroscope.files import write_json
from neuroscope.names import latent_id

NESTED = {"latents": 4096, "k": 32, "nested": (64, 256, 1024)}
BATCH = {"latents": 4096, "k": 32, "batch_topk": True}
FINE = {"latents": 4096, "k": 32, "nested": (4, 16, 64, 256, 1024)}
WP = ("wp_lstm3x512", "warpeace.txt", "rnn.l2.c", ("in_quote", "line_position"))
ENWIKI_L1 = ("enwiki_lstm2x512", "enwiki.xml", "rnn.l1.c", ("in_wikilink", "in_url"))
LINUX_L0 = ("linux_lstm3x512", "linux.txt", "rnn.l0.c", ("in_comment",))
LINUX_L1 = ("linux_lstm3x512", "linux.txt", "rnn.l1.c", ("brace_depth",))
DESIGNS = {                  # name: (model, corpus, quantity, features), train_dictionary's settings
    "1024_k32": (WP, {"latents": 1024, "k": 32}),
    "512_k32": (WP, {"latents": 512, "k": 32}),
    "nested": (WP, NESTED),
    "nested_enwiki_l1": (ENWIKI_L1, NESTED),
    "nested_linux_l0": (LINUX_L0, NESTED),
    "nested_linux_l1": (LINUX_L1, NESTED),
    "batch": (WP, BATCH),
    "16384_k32": (WP, {"latents": 16384, "k": 32}),
    "16384_k32_dead50k": (WP, {"latents": 16384, "k": 32, "dead_after": 50_000}),
    "32768_k32_dead50k": (WP, {"latents": 32768, "k": 32, "dead_after": 50_000}),
    "4096_k16": (WP, {"latents": 4096, "k": 16}),
    "16384_k64_dead50k": (WP, {"latents": 16384, "k": 64, "dead_after": 50_000}),
    "nested_fine": (WP, FINE),
    "nested_fine_linux_l0": (LINUX_L0, FINE),
    "nested_fine_enwiki_l1": (ENWIKI_L1, FINE),
    "nested_batch": (WP, {**NESTED, **BATCH}),
    "nested_batch_enwiki_l1": (ENWIKI_L1, {**NESTED, **BATCH}),
    "nested_batch_linux_l0": (LINUX_L0, {**NESTED, **BATCH}),
    "nested_batch_linux_l1": (LINUX_L1, {**NESTED, **BATCH}),
}


def one_design(shared: Path, dicts: Path, name: str, chars: int, read: dict) -> dict:
    (model, corpus_name, quantity, features), design = DESIGNS[name]
    ckpt = load_checkpoint(shared / "models" / f"{model}.pt")
    corpus = shared / "data" / corpus_name
    text = choose_text(ckpt, corpus, split="test").text
    folder = dicts / (f"{model}_l2_c_{name}" if model == WP[0] else f"{model}_{name}")
    t0 = time.perf_counter()
    latents = design["latents"]
    d = dictionary_for(ckpt.model, ckpt.vocab, corpus, quantity, folder, **design)
    trained = time.perf_counter() - t0
    test = choose_text(None, corpus, split="test", chars=100_000).text
    quality = held_out_quality(d, ckpt.model, ckpt.vocab.encode(test))
    part = text[:chars]
    values = latent_values(d, ckpt.model, ckpt.vocab.encode(part), **read)
    names = [latent_id(quantity, i) for i in range(latents)]
    feats = {}
    for f in features:
        y = label(part, f)
        feats[f] = tracked(values, names, y, kind_of(y) == "binary")
    ex = explained(values, part, names)
    ex.pop("formulas")
    return {"design": name, "model": model, "quantity": quantity, **design, "quality": quality,
            "seconds": round(trained, 1),
            "features": feats, "explained": ex}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("designs", nargs="*", default=list(DESIGNS), help=f"which designs to run: {', '.join(DESIGNS)}")
    p.add_argument("--shared", default=str(SHARED), help="folder with models/ and data/")
    p.add_argument("--dicts", default=str(REPORTS / "dictionaries"), help="where the dictionaries are kept")
    p.add_argument("--chars", type=int, default=60_000, help="first CHARS of the test split")
    p.add_argument("--out", default=str(REPORTS / "dictionary_designs.json"))
    args = p.parse_args(argv)
    if set(args.designs) - set(DESIGNS):
        p.error(f"unknown design {sorted(set(args.designs) - set(DESIGNS))[0]!r}; choose from {', '.join(DESIGNS)}")
    setup()
    read = {"streams": 64, "warmup": 256}
    path = Path(args.out)
    kept = json.loads(path.read_text())["designs"] if path.exists() else []
    done = {d["design"]: {"model": WP[0], "quantity": WP[2], **d} for d in kept}       # the first ones were all wp
    for name in args.designs:
        done[name] = one_design(Path(args.shared), Path(args.dicts), name, args.chars, read)
    out = {"script": "dictionary_designs", "chars": args.chars,
           "designs": [{"design": n, **done[n]} for n in DESIGNS if n in done]}
    print_table(out["designs"])
    write_json(args.out, out, force=True)          # the script regenerates its own file
    print(f"wrote {args.out}")
    return out


def print_table(designs: list[dict]) -> None:
    """One row per design and feature, beside the default dictionary and the units of the same case
    (reports/dictionary_reference.json): best single / best 4, held out."""
    cases = {(c["model"], c["quantity"]): c for c in json.loads((REPORTS / "dictionary_reference.json").read_text())["cases"]}
    pair = lambda t: f"{t['single_heldout']:.3f} / {t['probe4_heldout']:.3f}"      # noqa: E731
    print("| design | case | FVU | loss recovered | dead | feature | latents best / 4 | default dictionary | units "
          "| explained (structural): design / default / units |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for d in designs:
        c, q, ex = cases[(d["model"], d["quantity"])], d["quality"], d["explained"]
        counts = f"{ex['explained_structural']} / {c['explained']['latents']['explained_structural']} / " \
                 f"{c['explained']['units']['explained_structural']}"
        for f, t in d["features"].items():
            print(f"| {d['design']} | {d['model']} {d['quantity']} | {q['fvu']:.3f} | {q['loss_recovered']:.3f} | "
                  f"{q['dead']:.1%} | {f} | {pair(t)} | {pair(c['features'][f]['latents'])} | "
                  f"{pair(c['features'][f]['units'])} | {counts} |")


if __name__ == "__main__":
    main()
