"""The `neuroscope` command line: parses options and calls the library, nothing more.

    $ neuroscope demo
    $ neuroscope eval --ckpt model.pt --text warpeace.txt --split test --json
    $ neuroscope probe --ckpt model.pt --feature in_quote

Bad input (a missing file, a bad option value, an unsafe checkpoint) raises UserError in the
library, naming the library's parameter; `Group.invoke` turns it into a one-line `Error: ...` that
names the command's option instead, and exit code 1, never a traceback.
"""
from __future__ import annotations

import os
import sys

import click

from ..config import CELLS, DEMO_STEPS, TrainConfig
from ..errors import UserError
from ..features.show import printable
from ._causes import attribute_cmd, patch_cmd
from ._dictionary import dictionary_cmd
from ._sweep import sweep_cmd
from ._interop import export_cmd, import_cmd
from ._discover import explain_cmd, match_cmd
from ._options import (TRAIN_DEFAULTS, Group, check_text_argument, device_option, echo_json, feature_options,
                       parse_steps, probe_options, resolve_device, stream_options, text_options, train_option)
from ._threads import threads_option


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neuroscope")
def cli():
    """Look inside trained character-level RNN language models."""


@cli.command("eval")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@text_options
@stream_options(streams=1, warmup=0)
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@threads_option
def eval_cmd(ckpt, text_request, reading, device, as_json):
    """Mean cross-entropy (nats and bits per char) of a model on a text span.

    Example: neuroscope eval --ckpt wp.pt --text warpeace.txt --split test
    """
    from ..checkpoint import choose_text, load_checkpoint
    from ..config import auto_streams
    from ..model import evaluate
    model = load_checkpoint(ckpt, device=resolve_device(device))
    span = choose_text(model, **text_request)
    unknown = model.vocab.count_unknown(span.text)
    streams, warmup = reading["streams"], reading["warmup"]
    if streams == "auto":                 # the count printed is the one used
        streams = auto_streams(len(span.text))
    result = evaluate(model.model, model.vocab.encode(span.text), progress=not as_json, streams=streams,
                      warmup=warmup)
    if as_json:
        echo_json({**result.to_dict(), "unknown_chars": unknown, "source": span.source,
                   "start": span.start, "end": span.start + len(span.text), "streams": streams, "warmup": warmup})
        return
    click.echo(f"{result.loss_nats:.4f} nats/char  {result.bits_per_char:.4f} bits/char  "
               f"over {result.chars:,} characters of {printable(span.source)} [{span.start}, {span.start + len(span.text)})"
               + ("" if streams == 1 else f" ({streams} streams, warmup {warmup}: not exact)"))
    if unknown:
        click.echo(f"note: {unknown} characters not in the vocabulary were read as "
                   f"{model.vocab.chars[model.vocab.fallback_id]!r}")


@cli.command("info")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_cmd(ckpt, as_json):
    """Config, vocabulary size, parameter count and stored losses of a checkpoint."""
    from dataclasses import replace

    from ..checkpoint import load_checkpoint
    from ..features import printable
    c = load_checkpoint(ckpt)
    if as_json:
        echo_json(c.summary())
        return
    # The strings a checkpoint carries are escaped one by one, so that a "\n" in them cannot make a line.
    corpus = c.train.get("text")
    shown = replace(c, path=c.path and printable(c.path),
                    train={**c.train, "text": printable(corpus)} if isinstance(corpus, str) else c.train)
    click.echo(printable(shown.describe(), keep="\n"))


@cli.command("train")
@click.argument("text_path", metavar="TEXT")
@click.option("--out", required=True, help="Checkpoint to write (best weights, atomically).")
@train_option("cell", "Recurrent cell.", type=click.Choice(CELLS))
@train_option("layers", "Recurrent layers.")
@train_option("hidden", "Units per layer.")
@train_option("embedding", "Embedding size (0: --hidden).")
@train_option("dropout", "Dropout between layers.")
@train_option("batch", "Parallel streams.")
@train_option("seq", "Characters per BPTT window.")
@train_option("lr", "Adam learning rate.")
@click.option("--steps", type=int, default=None,
              help=f"Total steps [default: {TRAIN_DEFAULTS['steps']} unless --minutes].")
@click.option("--minutes", type=float, default=None, help="Wall-clock budget of this call.")
@device_option
@train_option("seed", "Weights, dropout, samples.")
@click.option("--resume", is_flag=True, help="Continue the run stored in --out.")
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@train_option("eval_every", "Steps between validations.")
@train_option("val_chars", "Validation sample size (0: whole split).")
@click.option("--sample-at", default=",".join(map(str, TRAIN_DEFAULTS["sample_at"])), show_default=True,
              callback=parse_steps, help="Steps at which to store a sample.")
@train_option("max_chars", "Use only the text's first N chars.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@threads_option
def train_cmd(text_path, out, resume, force, as_json, **options):
    """Train a char-RNN on TEXT (80/10/10 split); keep the best weights in --out.

    Example: neuroscope train warpeace.txt --out wp.pt --layers 3 --hidden 512 --minutes 5
    """
    from ..text import read_text
    from ..train import train
    if options["steps"] is None and options["minutes"] is None:
        del options["steps"]                          # the config's default number of steps
    config = TrainConfig(**{**options, "device": resolve_device(options["device"])})
    config.check()
    try:
        ckpt = train(read_text(text_path), config, out, progress=not as_json, resume=resume, source=text_path,
                     force=force)
    except KeyboardInterrupt:
        if os.path.exists(out):
            raise UserError(f"interrupted; {out} holds the run so far: continue it with --resume") from None
        raise
    tr = ckpt.train
    summary = {k: tr.get(k) for k in ("steps", "seconds", "chars_per_second", "best_step", "best_val_loss_nats",
                                      "test_loss_nats", "test_bits_per_char", "test_chars")}
    if as_json:
        echo_json({"out": out, **summary})
        return
    click.echo(f"wrote {printable(out)}: test loss {tr['test_loss_nats']:.4f} nats/char ({tr['test_bits_per_char']:.4f} "
               f"bits/char) after {tr['steps']} steps in {tr['seconds']:.0f} s; best validation loss "
               f"{tr['best_val_loss_nats']:.4f} at step {tr['best_step']}")


@cli.command("sample")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@click.option("--length", type=click.IntRange(min=1), default=500, show_default=True,
              help="Characters to generate.")
@click.option("--temperature", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Softmax temperature (0: greedy).")
@click.option("--prime", default="", help="Text to start from (printed too).")
@click.option("--seed", type=int, default=None, help="Seed for a repeatable sample.")
@click.option("--dictionary", default=None, metavar="DIR", help="A dictionary of this model, for --steer.")
@click.option("--steer", multiple=True, metavar="LATENT=S",
              help="Add S times a latent's direction at every step, e.g. l1.c/d.123=+4 (repeatable).")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@threads_option
def sample_cmd(ckpt, length, temperature, prime, seed, dictionary, steer, device, as_json):
    """Generate text from a model, optionally steered by dictionary latents.

    Example: neuroscope sample --ckpt wp.pt --prime "The " --temperature 0.5 --seed 1
    """
    from contextlib import nullcontext

    import torch

    from ..checkpoint import load_checkpoint
    from ..features import printable
    from ..model import evaluate
    check_text_argument(prime, "prime")
    if bool(steer) != bool(dictionary):
        raise UserError("--steer and --dictionary go together: the latents to steer by are the dictionary's")
    c = load_checkpoint(ckpt, device=resolve_device(device))
    steering = nullcontext()
    if steer:
        from ..dictionary import load_dictionary, parse_steer, steered
        strengths = dict(parse_steer(s) for s in steer)
        steering = steered(c.model, load_dictionary(dictionary, c.model), strengths)
    unknown = c.vocab.count_unknown(prime)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    with steering:
        text = c.model.sample(c.vocab, length, temperature=temperature, prime=prime, generator=gen)
    # The states the sample was drawn from must be finite, as eval demands: a NaN picks characters
    # at random-looking places silently. Reading the sample once more costs a fraction of drawing it.
    evaluate(c.model, c.vocab.encode(text))
    if as_json:
        echo_json({"text": text, "prime": prime, "length": length, "temperature": temperature, "seed": seed,
                   "steer": dict(parse_steer(s) for s in steer) if steer else {}, "unknown_prime_chars": unknown})
        return
    click.echo(printable(text, keep="\n\t"))        # the sample's own lines; no ESC, no "\r" over a line
    if unknown:
        click.echo(f"note: {unknown} characters of --prime are not in the vocabulary; the model read them as "
                   f"{c.vocab.chars[c.vocab.fallback_id]!r}", err=True)


@cli.command("record")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@text_options
@click.option("--states", default="h,c", show_default=True,
              help="Comma list of h, c, gates, or single gates (i,f,g,o / r,z,n).")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Stored precision (float16 halves the disk; docs/recording.md measures its error on c).")
@stream_options(streams=1, warmup=0)
@click.option("--out", required=True, help="Folder to write (meta.json + one .npy per quantity).")
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@threads_option
def record_cmd(ckpt, text_request, states, dtype, reading, out, force, device, as_json):
    """Record every state of every layer over a text span into an activation store.

    Example: neuroscope record --ckpt wp.pt --text warpeace.txt --chars 100000 --out acts/
    """
    from pathlib import Path

    from ..checkpoint import choose_text, load_checkpoint
    from ..files import check_output
    from ..names import parse_states
    from ..record import check_disk, plan_store, write_store
    states = parse_states(states)
    check_output(out, "store", force, inputs=[ckpt, text_request["text_path"]])
    model = load_checkpoint(ckpt, device=resolve_device(device))
    span = choose_text(model, **text_request)
    plan = plan_store(model.config, len(span.text), states, dtype)
    check_disk(plan, Path(out))
    if not as_json:
        click.echo(f"recording {len(span.text):,} characters of {printable(span.source)} [{span.start}, "
                   f"{span.start + len(span.text)}): {plan.describe()} -> {printable(out)}")
    acts = write_store(out, model, span, states=states, dtype=dtype, force=force, progress=not as_json,
                       **reading)
    meta = acts.meta
    unknown = meta["text"]["unknown_chars"]
    if as_json:
        echo_json({"out": out, **{k: meta[k] for k in ("names", "files", "shape", "dtype", "streams", "warmup",
                                                          "exact", "bytes", "seconds")}, "text": meta["text"]})
        return
    click.echo(f"wrote {len(meta['names'])} arrays to {printable(out)} in {meta['seconds']:.1f} s"
               + ("" if meta["exact"] else f" ({meta['streams']} streams, warmup {meta['warmup']}: not exact)"))
    if unknown:
        click.echo(f"note: {unknown} characters not in the vocabulary were read as {meta['text']['fallback_char']!r}")


@cli.command("features")
@text_options
@feature_options
@click.option("--show", type=click.IntRange(min=1), default=None, metavar="N",
              help="Print the span's first N characters with labelled characters marked.")
@click.option("--width", type=click.IntRange(min=20), default=100, show_default=True,
              help="Characters per printed row.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def features_cmd(text_request, feature_request, show, width, as_json):
    """List the features, or label a text span with some to check their definitions by eye.

    Here the span defaults to the whole file (not the test split); labels start fresh at its
    first character, as in every command that takes features.

    \b
    Examples:
      neuroscope features
      neuroscope features --text warpeace.txt --feature in_quote --start 3000 --show 300
      neuroscope features --text linux.txt --feature brace_depth --feature-regex num='[0-9]+' --show 500
    """
    from .. import features as F
    text_path, split, start, chars = (text_request[k] for k in ("text_path", "split", "start", "chars"))
    asked = [v for k, v in feature_request.items() if k != "lang"]
    if text_path is None:
        if any(asked) or show:
            raise UserError("--feature/--show label a text: add --text FILE")
        rows = [{"name": f.name, "kind": f.kind, "baseline": f.baseline, "code_aware": f.code_aware,
                 "description": f.description} for f in F.FEATURES.values()]
        if as_json:
            echo_json(rows)
            return
        pad = max(len(r["name"]) for r in rows)
        for r in rows:
            tag = "baseline" if r["baseline"] else "code" if r["code_aware"] else ""
            click.echo(F.printable(f"{r['name']:<{pad}}  {r['kind']:<6}  {tag:<8}  {r['description']}"))
        return
    if not any(asked):
        raise UserError("name what to label: --feature NAME (see `neuroscope features`), --feature-regex, "
                        "--feature-file, --feature-span or --all-features")
    from ..text import read_text, select_span
    full = read_text(text_path)
    s, e = select_span(full, split=split, start=start, chars=chars)
    text = full[s:e]
    labels = F.resolve(text, offset=s, **feature_request)
    lang = F.sniff_language(text) if feature_request["lang"] == "auto" else feature_request["lang"]
    summary = {name: F.summarize(v) for name, v in labels.items()}
    n_show = min(show or 0, len(text))
    if as_json:
        out = {"source": text_path, "start": s, "end": e, "lang": lang, "features": summary}
        if n_show:
            out["shown"] = {"start": s, "text": text[:n_show],
                            "labels": {name: v[:n_show].tolist() for name, v in labels.items()}}
        echo_json(out)
        return
    click.echo(f"{F.printable(text_path)} [{s:,}, {e:,}), {len(text):,} characters, language {lang}")
    for name, st in summary.items():
        if st["kind"] == "binary":
            click.echo(f"  {name}: 1 on {st['nonzero']:,} characters ({st['mean']:.2%})")
        else:
            click.echo(f"  {name}: {st['kind']}, mean {st['mean']:.3g}, max {st['max']:g}")
    if n_show:
        click.echo("")
        click.echo(F.render(text[:n_show], {k: v[:n_show] for k, v in labels.items()}, offset=s, width=width))


@cli.command("probe")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@text_options
@feature_options
@probe_options
@stream_options()
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True, help="Units shown per feature.")
@click.option("--csv", "csv_path", default=None, metavar="FILE", help="Write the whole ranking (every unit) as CSV.")
@click.option("--report", "report_path", default=None, metavar="FILE", help="Also write the HTML report.")
@click.option("--force", is_flag=True, help="Replace an existing --csv or --report file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (docs/probing.md describes it).")
@threads_option
def probe_cmd(ckpt, text_request, feature_request, settings, reading, top, csv_path, report_path, force, as_json):
    """Rank every unit by how well it tracks each feature, with honest statistics.

    \b
    Examples:
      neuroscope probe --ckpt wp.pt --text warpeace.txt --split test --feature in_quote
      neuroscope probe --ckpt wp.pt --feature in_quote --feature line_position --ablate 4 --json
    """
    from ..checkpoint import choose_text, load_checkpoint
    from ..features import resolve
    from ..files import check_output, same_file, table_csv, write_text
    from ..probe import ProbeConfig, probe
    dictionary = settings.pop("dictionary")
    config = ProbeConfig(**settings, **reading, progress=not as_json)     # bad settings refused before loading
    if not any(v for k, v in feature_request.items() if k != "lang"):
        raise UserError("name what to probe: --feature NAME (see `neuroscope features`), --feature-regex, "
                        "--feature-file, --feature-span or --all-features")
    if csv_path and report_path and same_file(csv_path, report_path):
        raise UserError("--csv and --report name the same file")
    inputs = [ckpt, text_request["text_path"], dictionary]
    for path, kind in ((csv_path, "csv"), (report_path, "html")):
        if path:                          # before the slow part, so a bad location fails at once
            check_output(path, kind, force, inputs)
    c = load_checkpoint(ckpt)
    if dictionary:
        from ..dictionary import load_dictionary
        dictionary = load_dictionary(dictionary, c.model)
    span = choose_text(c, **text_request)
    labels = resolve(span.text, offset=span.start, **feature_request)
    result = probe(c, span.text, labels, config, dictionary=dictionary)
    if csv_path:
        write_text(csv_path, table_csv(result.ranking), "csv", force, inputs)
    if report_path:
        from ..report import build_report
        build_report(c, span, result, labels, progress=not as_json, dictionary=dictionary).save(
            report_path, force=force, inputs=inputs)
    _echo_probe(span, result, config, top, as_json)
    for path in () if as_json else (csv_path, report_path):
        if path:
            click.echo(f"wrote {printable(path)}")


def _echo_probe(span, result, config, top: int, as_json: bool) -> None:
    """The probe's result: JSON (one feature's fields at the top when there is one), or a line for the
    span and the recording, each feature's table, and the notes."""
    where = {"source": span.source, "start": span.start, "end": span.start + len(span.text)}
    if as_json:
        out = result.to_json(top)
        if len(out["features"]) == 1:
            out = {**out["features"][0], **where, "baselines": out["baselines"], "meta": out["meta"]}
        else:
            out = {**where, **out}
        echo_json(out)
        return
    click.echo(f"{len(span.text):,} characters of {printable(span.source)} [{where['start']}, {where['end']}), "
               f"{result.meta['units']:,} {_what_was_ranked(result.meta)}, read as {result.meta['recording']}")
    for f in result.features:
        click.echo("")
        click.echo(result.format(f, top))
    for note in result.meta["notes"]:
        click.echo(f"note: {note}")


def _what_was_ranked(meta: dict) -> str:
    """"units (h, c)", or "latents of rnn.l1.c" for a dictionary's."""
    from ..names import DICTIONARY_MARK
    latents = [q[:-len(DICTIONARY_MARK)] for q in meta["quantities"] if q.endswith(DICTIONARY_MARK)]
    return f"latents of {', '.join(latents)}" if latents else f"units ({', '.join(meta['states'])})"


cli.add_command(match_cmd)
cli.add_command(explain_cmd)
cli.add_command(dictionary_cmd)
cli.add_command(patch_cmd)
cli.add_command(attribute_cmd)
cli.add_command(sweep_cmd)
cli.add_command(import_cmd)
cli.add_command(export_cmd)


@cli.command("report")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@text_options
@feature_options
@click.option("--unit", "units", multiple=True, metavar="UNIT",
              help="Unit to colour the text by, e.g. l2.c.323, or a latent of --dictionary, l1.c/d.12 "
                   "(repeatable; default: each feature's top units).")
@click.option("--top", "n_units", type=click.IntRange(min=1), default=5, show_default=True,
              help="Top units per feature in the unit picker.")
@click.option("--dictionary", default=None, metavar="DIR",
              help="A dictionary of this model (neuroscope dictionary): its latents take the units' place.")
@click.option("--max-chars", type=int, default=5000, show_default=True,
              help="Characters shown; a longer span is truncated, with a note.")
@click.option("--null/--no-null", default=True, show_default=True,
              help="Circular-shift p-values in the ranking (needs 2,100+ characters).")
@click.option("--match-span", default=None, metavar="A:B",
              help="Add a match section: where else the units on inside [A, B) switch on (docs/match.md).")
@click.option("--live", is_flag=True, help="Run the model in the page: type, watch a unit, intervene (docs/live.md).")
@click.option("--live-force", is_flag=True, help="With --live: carry a model above the size limit anyway.")
@click.option("--out", required=True, help="HTML file to write.")
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@threads_option
def report_cmd(ckpt, text_request, feature_request, out, force, **settings):
    """Write one self-contained HTML report: model card, samples, neuron ranking, text coloured by
    units, predictions, activation against feature, gate saturation. Opens from disk, offline.

    With --feature, the units are ranked over the whole span first (as `neuroscope probe`). With
    --dictionary, its latents are matched, ranked and coloured by instead of units. With --live, the
    page also runs the model: type text, watch any unit, intervene, sample (docs/live.md).

    Example: neuroscope report --ckpt wp.pt --text warpeace.txt --chars 5000 --feature in_quote --out report.html
    """
    from ..report import write_report
    # settings: units, n_units, max_chars, live, live_force (ReportConfig's names), null, match_span, dictionary
    report = write_report(ckpt, out, text_request, feature_request, force=force, progress=True, **settings)
    click.echo(printable(out))
    if settings["live"] and "live" not in report.data:
        click.echo("live page: this cell does not run in the page; the page says so", err=True)
    elif settings["live"]:
        click.echo(f"live page: {os.path.getsize(out) / 1e6:.2f} MB, of which the model's weights "
                   f"{len(report.data['live']['weights']) / 1e6:.2f} MB", err=True)


@cli.command("demo")
@click.option("--out", default="neuroscope-demo", show_default=True,
              help="Folder for the model, the ranking and the report.")
@click.option("--steps", type=int, default=DEMO_STEPS, show_default=True,
              help="Training steps (a fixed number, so every machine gets the same model).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights and sampling.")
@click.option("--force", is_flag=True, help="Replace the files of an earlier demo in --out.")
@click.option("--live/--no-live", default=True, show_default=True, help="Run the model in the report's page.")
@threads_option
def demo_cmd(out, steps, seed, force, live):
    """Train a small LSTM on the Python standard library's own source, rank its units for
    in_string and line_position, and write the full HTML report (2-3 minutes on 2 idle CPU cores;
    a busy machine takes longer and gets the same model).

    Example: neuroscope demo --out neuroscope-demo
    """
    from ..report import run_demo
    result = run_demo(out, steps=steps, seed=seed, force=force, progress=True, live=live,
                      log=lambda m: click.echo(m, err=True))
    for feature, (unit, r) in result.top.items():
        click.echo(f"best unit for {feature}: {unit} (r = {r:+.3f})", err=True)
    click.echo(f"done in {result.seconds:.0f} s; open the report:", err=True)
    click.echo(printable(result.report))


def main():  # console-script entry point
    cli(prog_name="neuroscope")


if __name__ == "__main__":
    sys.exit(main())
