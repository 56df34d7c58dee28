"""Dictionaries against units on the reference models: quality held out, features tracked, states explained.

For each case (a reference model and one quantity holding reference units) it trains a dictionary with
the command's defaults (1M training characters, 4,096 latents, k 32; or loads the one in --dicts), then
on the first CHARS characters of the test split (never trained on):

- quality: FVU, L0, dead share and loss recovered in the recurrence on the first 100,000 test
  characters, the reconstruction spliced into what the cell passes on and, for comparison, into its
  memory (neuroscope.dictionary's held_out_quality, into="output" and "memory");
- features: for each reference finding, the best unit of the quantity and the best latent, chosen on
  explain's fitting blocks and scored on its held-out blocks (AUROC for a binary feature, Spearman
  for a count), and the best sparse probe on at most 4 of them (logistic or linear regression on the
  4 best of the fitting part);
- explained: `explain` over every unit of the quantity and every latent that is ever on, the count
  whose formula uses a structural feature (explain_reference.structural), beside two floors: a
  dictionary of random unit directions with the same k (what sparse random projections already
  give), and a dictionary trained the same way on the random-weights control model's states (what
  a dictionary finds in a recurrence that learned nothing; trained on --control-chars characters);
- features only latents track: for every latent explained by a structural formula, where that
  formula holds is a feature; the best unit of the whole model (every h and c unit of every layer,
  chosen on explain's fitting blocks) is scored against it on the held-out blocks beside the latent
  (|AUROC - 0.5| x 2). Latents ahead of every unit by 0.1 or more are listed;
- three features the gallery's units did not show, labelled here: the w's of "www" (enwiki; the
  count of wiki_markup.py, as one binary feature), inside a {{template}} argument after its "|" (enwiki), and inside a quotation on a line
  after the one it opened on (War and Peace): best unit of the model beside best latent, held out.

    python analyses/dictionary_reference.py               # about 90 minutes on a 2-core CPU (training included)

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
from wiki_markup import www_count  # noqa: E402

from neuroscope.checkpoint import choose_text, load_checkpoint
from neuroscope.dictionary import (Dictionary, TopKSAE, held_out_quality, latent_values, load_dictionary,
                                   train_dictionary)
from neuroscope.explain import ExplainConfig, atoms, explain_values, holds, split
from neuroscope.features import kind_of, label
from neuroscope.files import write_json
from neuroscope.names import latent_id, parse_quantity
from neuroscope.probe import control_model
from neuroscope.record import every_unit, shown_values
from neuroscope.stats import auroc, rank_stats, spearman

# model, corpus, quantity, {feature: the reference unit (probe's best on the whole test split)}
CASES = [("enwiki_lstm2x512", "enwiki.xml", "rnn.l1.c", {"in_wikilink": "l1.c.0", "in_url": "l1.c.12"}),
         ("wp_lstm3x512", "warpeace.txt", "rnn.l2.c", {"in_quote": "l2.c.328", "line_position": "l2.h.498"}),
         ("linux_lstm3x512", "linux.txt", "rnn.l0.c", {"in_comment": "l0.c.338"}),
         ("linux_lstm3x512", "linux.txt", "rnn.l1.c", {"brace_depth": "l1.c.122"})]
FIT = 2 / 3


def held_part(n: int) -> np.ndarray:
    """bool [n]: explain's held-out blocks (explain.split with explain's defaults)."""
    return split(n, FIT, ExplainConfig().block).held


def score(values: np.ndarray, y: np.ndarray, binary: bool) -> np.ndarray:
    """|AUROC - 0.5| * 2 or |Spearman| of each column: how well it tracks y, either sign."""
    if binary:
        return np.abs(np.asarray(auroc(values, y), dtype=float) - 0.5) * 2
    return np.abs(np.asarray(spearman(values, y), dtype=float))


def tracked(values: np.ndarray, names: list[str], y: np.ndarray, binary: bool) -> dict:
    """The best single column and the best sparse probe on 4, chosen on explain's fitting blocks, scored on
    its held-out blocks (explain.split)."""
    held = held_part(len(y))
    fit = np.nan_to_num(score(values[~held].astype(np.float32), y[~held], binary))
    top = np.argsort(-fit, kind="stable")[:4]
    X, Xh = values[~held][:, top].astype(np.float32), values[held][:, top].astype(np.float32)
    single = float(np.nan_to_num(score(Xh[:, :1], y[held], binary))[0])
    model = LogisticRegression(max_iter=1000) if binary else LinearRegression()
    model.fit(X, y[~held])
    pred = model.decision_function(Xh) if binary else model.predict(Xh)
    probe4 = float(np.nan_to_num(score(pred[:, None], y[held], binary))[0])
    return {"best": names[top[0]], "single_heldout": round(single, 4), "probe4": [names[i] for i in top],
            "probe4_heldout": round(probe4, 4)}


def explained(values: np.ndarray, text: str, names: list[str]) -> dict:
    """explain every column that varies on the fitting part (one that does not is not explained); counts
    of explained, and of explained by a structural formula, and those columns' formulas."""
    fit = values[~held_part(len(text))]      # explain needs a column that varies on its fitting part
    live = [j for j in range(values.shape[1]) if float(fit[:, j].astype(np.float32).std()) > 0]
    t0 = time.perf_counter()
    table = explain_values(values[:, live], text, [names[j] for j in live], progress=True)
    best = table[table["rank"] == 1]
    by_structure = best["explained"] & best["formula"].map(lambda f: f is not None and structural(f))
    return {"columns": len(names), "varying": len(live), "explained": int(best["explained"].sum()),
            "explained_structural": int(by_structure.sum()), "share_structural": round(by_structure.sum() / len(names), 4),
            "seconds": round(time.perf_counter() - t0, 1),
            "formulas": dict(zip(best["unit"][by_structure], best["formula"][by_structure]))}


def held_out_score(values: np.ndarray, labels: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fitting, held-out) |AUROC - 0.5| x 2 of every column [U] against every label [F]: [U, F] each."""
    out = []
    for part in (~held, held):
        auc, _ = rank_stats(values[part].T, binary=labels[part])
        out.append(np.nan_to_num(np.abs(auc - 0.5) * 2))
    return out[0], out[1]


def only_latents(formulas: dict, l_values, l_names, a_values, text: str, margin: float = 0.1) -> dict:
    """Features only latents track: each explained latent's formula as a label; the model's best unit for
    it (chosen on explain's fitting blocks) against the latent, on the held-out blocks."""
    held = held_part(len(text))
    a = atoms(text)
    names = list(formulas)
    Y = np.stack([holds(formulas[n], a) for n in names], 1).astype(np.uint8)            # [N, F]
    unit_fit, unit_held = held_out_score(a_values, Y, held)                               # [U, F]
    best_unit = unit_fit.argmax(0)
    cols = [l_names.index(n) for n in names]
    _, lat_held = held_out_score(l_values[:, cols], Y, held)
    rows = [{"latent": n, "formula": formulas[n], "latent_heldout": round(float(lat_held[i, i]), 4),
             "best_unit_heldout": round(float(unit_held[best_unit[i], i]), 4), "best_unit": int(best_unit[i])}
            for i, n in enumerate(names)]
    ahead = sorted((r for r in rows if r["latent_heldout"] - r["best_unit_heldout"] >= margin),
                   key=lambda r: r["best_unit_heldout"] - r["latent_heldout"])
    return {"formulas": len(rows), "latent_ahead_by_0.1": len(ahead), "margin": margin, "ahead": ahead[:15]}


def named_features(text: str, model: str) -> dict[str, np.ndarray]:
    """The labels of the three features the units did not show (module docstring), those this corpus has."""
    if model == "enwiki_lstm2x512":
        return {"www": (www_count(text) > 0).astype(np.uint8), "template_argument": template_argument(text)}
    if model == "wp_lstm3x512":
        return {"quote_after_line_break": quote_after_line_break(text)}
    return {}


def template_argument(text: str) -> np.ndarray:
    """1 inside a {{template}} after one of its own "|" (an argument), up to its closing braces."""
    out, stack, i = np.zeros(len(text), np.uint8), [], 0
    while i < len(text):
        if text.startswith("{{", i):
            stack.append(False)
            i += 2
            continue
        if text.startswith("}}", i) and stack:
            stack.pop()
            i += 2
            continue
        if text[i] == "|" and stack:
            stack[-1] = True
        elif stack and stack[-1]:
            out[i] = 1
        i += 1
    return out


def quote_after_line_break(text: str) -> np.ndarray:
    """1 inside a quotation on a line after the line it opened on."""
    q = label(text, "in_quote").astype(bool)
    out, broke = np.zeros(len(text), np.uint8), False
    for i, ch in enumerate(text):
        if not q[i]:
            broke = False
            continue
        broke = broke or ch == "\n"
        out[i] = broke and ch != "\n"
    return out


def named_tracked(labels: dict, a_values, a_names, l_values, l_names) -> dict:
    out = {}
    for name, y in labels.items():
        out[name] = {"share": round(float(y.mean()), 4), "units": tracked(a_values, a_names, y, True),
                     "latents": tracked(l_values, l_names, y, True)}
    return out


def random_dictionary(like: Dictionary, mean: np.ndarray, seed: int = 0) -> Dictionary:
    """Random unit directions with the same size and k: encoder = decoder^T, b_dec at the states' mean."""
    sae = TopKSAE(like.sae.d_in, like.sae.d_sae, like.sae.k, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.b_dec.copy_(torch.as_tensor(mean, dtype=torch.float32))
    return Dictionary(sae, like.quantity, like.fingerprint, {"random": True})


def dictionary_for(net, vocab, corpus: Path, quantity: str, folder: Path, chars: int = 1_000_000,
                   **design) -> Dictionary:
    """The dictionary kept in folder, else trained there (design: train_dictionary's settings)."""
    if (folder / "cfg.json").exists():
        d = load_dictionary(folder, net)
        if d.info.get("complete"):
            return d
    train = choose_text(None, corpus, split="train", chars=chars)
    test = choose_text(None, corpus, split="test", chars=100_000)
    return train_dictionary(net, vocab.encode(train.text), quantity, folder, held_out=vocab.encode(test.text),
                            resume=(folder / "cfg.json").exists(), force=True, **design)


def one_case(args, model: str, corpus: str, quantity: str, refs: dict) -> dict:
    ckpt = load_checkpoint(Path(args.shared) / "models" / f"{model}.pt")
    path = Path(args.shared) / "data" / corpus
    stem = f"{model}_{parse_quantity(quantity).stem}"
    d = dictionary_for(ckpt.model, ckpt.vocab, path, quantity, Path(args.dicts) / stem)
    control = control_model(ckpt.model, 0)                    # probe's control: seed 0
    cd = dictionary_for(control, ckpt.vocab, path, quantity, Path(args.dicts) / f"{stem}_control", args.control_chars)
    test = choose_text(ckpt, path, split="test").text
    quality = {into: held_out_quality(d, ckpt.model, ckpt.vocab.encode(test[:100_000]), into=into)
               for into in ("output", "memory")}
    text = test[:args.chars]
    ids = ckpt.vocab.encode(text)
    read = {"streams": args.streams, "warmup": args.warmup}
    every = every_unit(ckpt.config)
    a_values = shown_values(ckpt.model, ids, every, **read)
    a_names = [u.id for u in every]
    in_q = [j for j, u in enumerate(every) if u.quantity == quantity]
    u_values, u_names = a_values[:, in_q], [a_names[j] for j in in_q]
    l_values = latent_values(d, ckpt.model, ids, **read)
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
    c_values = latent_values(cd, control, ids, **read)
    ex = {"units": explained(u_values, text, u_names), "latents": explained(l_values, text, l_names),
          "random_directions": explained(r_values, text, l_names), "control_dictionary": explained(c_values, text, l_names)}
    only = only_latents(ex["latents"]["formulas"], l_values, l_names, a_values, text)
    for e in ex.values():
        e.pop("formulas")
    only["ahead"] = [{**r, "best_unit": a_names[r["best_unit"]]} for r in only["ahead"]]
    return {"model": model, "quantity": quantity, "chars": len(text), "quality": quality["output"],
            "loss_recovered_into_memory": quality["memory"]["loss_recovered"],
            "training_seconds": d.info.get("seconds"), "control_training_chars": cd.info.get("chars"),
            "features": features, "explained": ex, "only_latents": only,
            "named": named_tracked(named_features(text, model), a_values, a_names, l_values, l_names)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--shared", default=str(SHARED), help="folder with models/ and data/")
    p.add_argument("--dicts", default=str(REPORTS / "dictionaries"), help="where the dictionaries are kept")
    p.add_argument("--chars", type=int, default=60_000, help="first CHARS of each test split")
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--warmup", type=int, default=256)
    p.add_argument("--cases", default="all", help="comma list of case numbers (0-3), or all")
    p.add_argument("--control-chars", type=int, default=300_000,
                   help="training characters of the control model's dictionary")
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
    print_tracked(out, "features", "")
    print("\n| model, quantity | units explained (structural) | latents | random directions | control dictionary |")
    print("| --- | --- | --- | --- | --- |")
    for c in out["cases"]:
        e = c["explained"]
        print(f"| {c['model']} {c['quantity']} | " + " | ".join(
            f"{e[k]['explained_structural']} of {e[k]['columns']} ({e[k]['share_structural']:.1%})"
            for k in ("units", "latents", "random_directions", "control_dictionary")) + " |")
    print("\nfeatures only latents track (a latent's formula as the feature; best unit of the model, held out):")
    for c in out["cases"]:
        o = c["only_latents"]
        print(f"- {c['model']} {c['quantity']}: {o['latent_ahead_by_0.1']} of {o['formulas']} formulas tracked by their "
              f"latent at least {o['margin']} better than by any unit" + ("; e.g. " if o["ahead"] else "") + "; ".join(
                  f"{r['latent']} `{r['formula']}` {r['latent_heldout']:.3f} vs {r['best_unit']} "
                  f"{r['best_unit_heldout']:.3f}" for r in o["ahead"][:3]))
    print_tracked(out, "named", "share")


def print_tracked(out: dict, key: str, share: str) -> None:
    """The table of one features dict of every case: best unit and latent, 4 of each, held out."""
    print(f"\n| feature (model) |{' share |' if share else ''} best unit (held out) | best latent | 4 units | 4 latents |")
    print("| --- " * (6 if share else 5) + "|")
    for c in out["cases"]:
        for f, r in c[key].items():
            u, lat = r["units"], r["latents"]
            print(f"| {f} ({c['model']}) |{f' {r[share]:.2%} |' if share else ''} {u['best']} {u['single_heldout']:.3f} "
                  f"| {lat['best']} {lat['single_heldout']:.3f} | {u['probe4_heldout']:.3f} | {lat['probe4_heldout']:.3f} |")


if __name__ == "__main__":
    main()
