"""Other dictionary designs on wp_lstm3x512's l2.c, against the default (4,096 latents, k 32): does a
smaller dictionary, or a nested (Matryoshka) one, split the quote and line features less?

Each design is trained like the default (1M training characters of War and Peace, 2 epochs, every
other setting the command's), then measured as analyses/dictionary_reference.py measures the
default: held-out quality on the first 100,000 test characters, the two reference features tracked
on the first 60,000 (best latent and best 4, chosen on explain's fitting blocks, scored on its
held-out blocks), and the latents explained by a structural formula. The default's numbers are read
from reports/dictionary_reference.json (the same measures, the same text).

    python analyses/dictionary_designs.py                  # every design: about 13 minutes each, 2-core CPU
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

MODEL, CORPUS, QUANTITY = "wp_lstm3x512", "warpeace.txt", "rnn.l2.c"
DESIGNS = {                                          # name: train_dictionary's settings
    "1024_k32": {"latents": 1024, "k": 32},
    "512_k32": {"latents": 512, "k": 32},
    "nested": {"latents": 4096, "k": 32, "nested": (64, 256, 1024)},
}
FEATURES = ("in_quote", "line_position")


def one_design(ckpt, corpus: Path, folder: Path, name: str, text: str, chars: int, read: dict) -> dict:
    t0 = time.perf_counter()
    design = DESIGNS[name]
    latents = design["latents"]
    d = dictionary_for(ckpt.model, ckpt.vocab, corpus, QUANTITY, folder, **design)
    trained = time.perf_counter() - t0
    test = choose_text(None, corpus, split="test", chars=100_000).text
    quality = held_out_quality(d, ckpt.model, ckpt.vocab.encode(test))
    part = text[:chars]
    values = latent_values(d, ckpt.model, ckpt.vocab.encode(part), **read)
    names = [latent_id(QUANTITY, i) for i in range(latents)]
    feats = {}
    for f in FEATURES:
        y = label(part, f)
        feats[f] = tracked(values, names, y, kind_of(y) == "binary")
    ex = explained(values, part, names)
    ex.pop("formulas")
    return {"design": name, **design, "quality": quality, "seconds": round(trained, 1),
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
    ckpt = load_checkpoint(Path(args.shared) / "models" / f"{MODEL}.pt")
    corpus = Path(args.shared) / "data" / CORPUS
    text = choose_text(ckpt, corpus, split="test").text
    read = {"streams": 64, "warmup": 256}
    path = Path(args.out)
    kept = json.loads(path.read_text())["designs"] if path.exists() else []
    done = {d.get("design", f"{d['latents']}_k{d['k']}"): d for d in kept}
    for name in args.designs:
        done[name] = one_design(ckpt, corpus, Path(args.dicts) / f"{MODEL}_l2_c_{name}", name, text, args.chars, read)
    out = {"script": "dictionary_designs", "model": MODEL, "quantity": QUANTITY, "chars": args.chars,
           "designs": [{"design": n, **done[n]} for n in DESIGNS if n in done]}
    default = next(c for c in json.loads((REPORTS / "dictionary_reference.json").read_text())["cases"]
                   if c["model"] == MODEL)
    print("| design | FVU | loss recovered | dead | " + " | ".join(f"{f} best / 4" for f in FEATURES)
          + " | explained (structural) |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in FEATURES) + " | --- |")
    rows = [("4,096, k 32 (default)", default["quality"], {f: default["features"][f]["latents"] for f in FEATURES},
             default["explained"]["latents"])]
    rows += [(f"{d['latents']:,}, k {d['k']}" + (f", nested {d['nested']}" if d.get("nested") else ""), d["quality"],
              d["features"], d["explained"]) for d in out["designs"]]
    for name, q, feats, ex in rows:
        cells = " | ".join(f"{feats[f]['single_heldout']:.3f} / {feats[f]['probe4_heldout']:.3f}" for f in FEATURES)
        print(f"| {name} | {q['fvu']:.3f} | {q['loss_recovered']:.3f} | {q['dead']:.1%} | {cells} | "
              f"{ex['explained_structural']} ({ex['share_structural']:.1%}) |")
    units = default["features"]
    print("units (best / 4): " + ", ".join(f"{f} {units[f]['units']['single_heldout']:.3f} / "
                                             f"{units[f]['units']['probe4_heldout']:.3f}" for f in FEATURES))
    write_json(args.out, out, force=True)          # the script regenerates its own file
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
