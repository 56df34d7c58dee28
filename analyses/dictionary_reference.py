"""Dictionaries against units on the reference models: quality held out, features tracked, states explained.

For each case (a reference model and one quantity holding reference units) it trains a dictionary with
the command's defaults (1M training characters, 4,096 latents, k 32; or loads the one in --dicts), then
on the first CHARS characters of the test split (never trained on):

- quality: FVU, L0, dead share and loss recovered in the recurrence on the first 100,000 test
  characters, the reconstruction spliced into what the cell passes on and, for comparison, into its
  memory (neuroscope.dictionary's held_out_quality, into="output" and "memory");
- features: for each reference finding, the best unit of the quantity and the best latent, chosen on
  the first 2/3 of the text and scored on the last 1/3 (AUROC for a binary feature, Spearman for a
  count), and the best sparse probe on at most 4 of them (logistic or linear regression on the 4 best
  of the fitting part);
- explained: `explain` over every unit of the quantity and every latent that is ever on, the count
  whose formula uses a structural feature (explain_reference.structural), beside the same for a
  dictionary of random unit directions with the same k (the floor: what sparse random projections
  already give).

    python analyses/dictionary_reference.py               # about an hour on a 2-core CPU (training included)

Writes reports/dictionary_reference.json and prints the tables docs/performance.md quotes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LinearRegression, LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPORTS, SHARED, setup  # noqa: E402
from explain_reference import structural  # noqa: E402

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.dictionary import (Dictionary, TopKSAE, held_out_quality, latent_values, load_dictionary,
                                   train_dictionary)
from neuroscope.explain import explain_values
from neuroscope.features import kind_of, label
from neuroscope.files import write_json
from neuroscope.names import latent_id, parse_quantity
from neuroscope.record import every_unit, shown_values
from neuroscope.stats import auroc, spearman

# model, corpus, quantity, {feature: the reference unit (probe's best on the whole test split)}
CASES = [("enwiki_lstm2x512", "enwiki.xml", "rnn.l1.c", {"in_wikilink": "l1.c.0", "in_url": "l1.c.12"}),
         ("wp_lstm3x512", "warpeace.txt", "rnn.l2.c", {"in_quote": "l2.c.328", "line_position": "l2.h.498"}),
         ("linux_lstm3x512", "linux.txt", "rnn.l0.c", {"in_comment": "l0.c.338"}),
         ("linux_lstm3x512", "linux.txt", "rnn.l1.c", {"brace_depth": "l1.c.122"})]
FIT = 2 / 3


def score(values: np.ndarray, y: np.ndarray, binary: bool) -> np.ndarray:
    """|AUROC - 0.5| * 2 or |Spearman| of each column: how well it tracks y, either sign."""
    if binary:
        return np.abs(np.asarray(auroc(values, y), dtype=float) - 0.5) * 2
    return np.abs(np.asarray(spearman(values, y), dtype=float))


def tracked(values: np.ndarray, names: list[str], y: np.ndarray, binary: bool) -> dict:
    """The best single column and the best sparse probe on 4, chosen on the fitting part, scored held out."""
    n_fit = int(len(y) * FIT)
    fit = np.nan_to_num(score(values[:n_fit].astype(np.float32), y[:n_fit], binary))
    top = np.argsort(-fit, kind="stable")[:4]
    held = values[n_fit:, top].astype(np.float32)
    single = float(np.nan_to_num(score(held[:, :1], y[n_fit:], binary))[0])
    X, Xh = values[:n_fit, top].astype(np.float32), held
    model = LogisticRegression(max_iter=1000) if binary else LinearRegression()
    model.fit(X, y[:n_fit])
    pred = model.decision_function(Xh) if binary else model.predict(Xh)
    probe4 = float(np.nan_to_num(score(pred[:, None], y[n_fit:], binary))[0])
    return {"best": names[top[0]], "single_heldout": round(single, 4), "probe4": [names[i] for i in top],
            "probe4_heldout": round(probe4, 4)}


def explained(values: np.ndarray, text: str, names: list[str]) -> dict:
    """explain every column that varies on the fitting part (one that does not is not explained); counts
    of explained, and of explained by a structural formula."""
    fit = values[:int(len(text) * FIT)]                 # explain needs a column that varies on its fitting part
    live = [j for j in range(values.shape[1]) if float(fit[:, j].astype(np.float32).std()) > 0]
    t0 = time.perf_counter()
    table = explain_values(values[:, live], text, [names[j] for j in live], progress=True)
    best = table[table["rank"] == 1]
    by_structure = best["explained"] & best["formula"].map(lambda f: f is not None and structural(f))
    return {"columns": len(names), "varying": len(live), "explained": int(best["explained"].sum()),
            "explained_structural": int(by_structure.sum()), "share_structural": round(by_structure.sum() / len(names), 4),
            "seconds": round(time.perf_counter() - t0, 1)}


def random_dictionary(like: Dictionary, mean: np.ndarray, seed: int = 0) -> Dictionary:
    """Random unit directions with the same size and k: encoder = decoder^T, b_dec at the states' mean."""
    sae = TopKSAE(like.sae.d_in, like.sae.d_sae, like.sae.k, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.b_dec.copy_(torch.as_tensor(mean, dtype=torch.float32))
    return Dictionary(sae, like.quantity, like.fingerprint, {"random": True})


def dictionary_for(ckpt, corpus: Path, quantity: str, folder: Path) -> Dictionary:
    if (folder / "cfg.json").exists():
        d = load_dictionary(folder, ckpt.model)
        if d.info.get("complete"):
            return d
    train = choose_text(ckpt, corpus, split="train", chars=1_000_000)
    test = choose_text(ckpt, corpus, split="test", chars=100_000)
    return train_dictionary(ckpt.model, ckpt.vocab.encode(train.text), quantity, folder,
                            held_out=ckpt.vocab.encode(test.text), resume=(folder / "cfg.json").exists(), force=True)


def one_case(args, model: str, corpus: str, quantity: str, refs: dict) -> dict:
    ckpt = load_checkpoint(Path(args.shared) / "models" / f"{model}.pt")
    path = Path(args.shared) / "data" / corpus
    d = dictionary_for(ckpt, path, quantity, Path(args.dicts) / f"{model}_{parse_quantity(quantity).stem}")
    test = choose_text(ckpt, path, split="test").text
    quality = {into: held_out_quality(d, ckpt.model, ckpt.vocab.encode(test[:100_000]), into=into)
               for into in ("output", "memory")}
    text = test[:args.chars]
    ids = ckpt.vocab.encode(text)
    read = {"streams": args.streams, "warmup": args.warmup}
    units = [u for u in every_unit(ckpt.config, (parse_quantity(quantity).state,)) if u.quantity == quantity]
    u_values = shown_values(ckpt.model, ids, units, **read)
    l_values = latent_values(d, ckpt.model, ids, **read)
    u_names = [u.id for u in units]
    l_names = [latent_id(quantity, i) for i in range(d.sae.d_sae)]
    features = {}
    for feature, ref in refs.items():
        y = label(text, feature)
        binary = kind_of(y) == "binary"
        features[feature] = {"reference_unit": ref, "kind": "binary" if binary else "count",
                             "units": tracked(u_values, u_names, y, binary),
                             "latents": tracked(l_values, l_names, y, binary)}
    rand = random_dictionary(d, u_values.astype(np.float32).mean(0))
    r_values = latent_values(rand, ckpt.model, ids, **read)
    return {"model": model, "quantity": quantity, "chars": len(text), "quality": quality["output"],
            "loss_recovered_into_memory": quality["memory"]["loss_recovered"],
            "training_seconds": d.info.get("seconds"), "features": features,
            "explained": {"units": explained(u_values, text, u_names), "latents": explained(l_values, text, l_names),
                          "random_directions": explained(r_values, text, l_names)}}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--shared", default=str(SHARED), help="folder with models/ and data/")
    p.add_argument("--dicts", default=str(REPORTS / "dictionaries"), help="where the dictionaries are kept")
    p.add_argument("--chars", type=int, default=60_000, help="first CHARS of each test split")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--warmup", type=int, default=256)
    p.add_argument("--cases", default="all", help="comma list of case numbers (0-3), or all")
    p.add_argument("--out", default=str(REPORTS / "dictionary_reference.json"))
    args = p.parse_args(argv)
    setup()
    picked = range(len(CASES)) if args.cases == "all" else [int(c) for c in args.cases.split(",")]
    out = {"script": "dictionary_reference", "chars": args.chars, "streams": args.streams, "warmup": args.warmup,
           "cases": [one_case(args, *CASES[i]) for i in picked]}
    print_tables(out)
    write_json(args.out, out, force=True)          # the script regenerates its own file
    print(f"wrote {args.out}")
    return out


def print_tables(out: dict) -> None:
    print("| model, quantity | FVU | L0 | dead | loss recovered (into memory) | training s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for c in out["cases"]:
        q = c["quality"]
        print(f"| {c['model']} {c['quantity']} | {q['fvu']:.3f} | {q['l0']:.1f} | {q['dead']:.1%} | "
              f"{q['loss_recovered']:.3f} ({c['loss_recovered_into_memory']:.3f}) | {c['training_seconds']} |")
    print("\n| feature | best unit (held out) | best latent (held out) | 4 units | 4 latents |")
    print("| --- | --- | --- | --- | --- |")
    for c in out["cases"]:
        for f, r in c["features"].items():
            u, lat = r["units"], r["latents"]
            print(f"| {f} ({c['model']}) | {u['best']} {u['single_heldout']:.3f} | {lat['best']} {lat['single_heldout']:.3f} "
                  f"| {u['probe4_heldout']:.3f} | {lat['probe4_heldout']:.3f} |")
    print("\n| model, quantity | units explained (structural) | latents | random directions |")
    print("| --- | --- | --- | --- |")
    for c in out["cases"]:
        e = c["explained"]
        print(f"| {c['model']} {c['quantity']} | " + " | ".join(
            f"{e[k]['explained_structural']} of {e[k]['columns']} ({e[k]['share_structural']:.1%})"
            for k in ("units", "latents", "random_directions")) + " |")


if __name__ == "__main__":
    main()
