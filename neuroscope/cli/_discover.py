"""The discovery commands: `neuroscope match` (where else a span's units switch on together) and
`neuroscope explain` (the formula over features that best matches a unit). Registered on the group
in neuroscope.cli._commands; like every command, they parse options and call the library.
"""
from __future__ import annotations

import click

from ._options import device_option, echo_json, resolve_device, stream_options, text_options
from ._threads import threads_option


@click.command("match")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@text_options
@click.option("--span", required=True, metavar="A:B",
              help="The pattern: characters [A, B) of the selected text (0 = its first character).")
@click.option("--units", default="auto", show_default=True,
              help="auto, or a comma list of units (l1.c.0; -l1.c.12: on when low), or of latents (l1.c/d.5).")
@click.option("--dictionary", "dictionary", default=None, metavar="DIR",
              help="A dictionary of this model (neuroscope dictionary): match its latents instead of units.")
@click.option("--threshold", type=float, default=0.9, show_default=True, help="Quantile q above which a unit is on.")
@click.option("--cut", type=float, default=0.6, show_default=True, help="Share of the units on, for a hit.")
@click.option("--top", type=click.IntRange(min=1), default=50, show_default=True, help="Hits listed.")
@stream_options()
@device_option
@click.option("--csv", "csv_path", default=None, metavar="FILE", help="Write the listed hits as CSV.")
@click.option("--force", is_flag=True, help="Replace an existing --csv file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (docs/match.md describes it).")
@threads_option
def match_cmd(ckpt, text_request, span, dictionary, reading, device, csv_path, force, as_json, **settings):
    """Find where else the units that are on inside --span switch on together (LSTMVis's match view).

    \b
    Examples:
      neuroscope match --ckpt enwiki.pt --text enwiki.xml --span 1200:1228 --streams 16 --warmup 256
      neuroscope match --ckpt enwiki.pt --text enwiki.xml --span 1200:1228 --dictionary dict/
    """
    from ..checkpoint import choose_text, load_checkpoint
    from ..files import check_output, table_csv, write_text
    from ..match import match
    inputs = [ckpt, text_request["text_path"], dictionary]
    if csv_path:
        check_output(csv_path, "csv", force, inputs)
    c = load_checkpoint(ckpt, device=resolve_device(device))
    if dictionary is not None:
        from ..dictionary import load_dictionary
        dictionary = load_dictionary(dictionary, c.model)
    where = choose_text(c, **text_request)
    # settings: units, threshold, cut, top (MatchConfig's names)
    result = match(c, where.text, span, progress=not as_json, dictionary=dictionary, **settings, **reading)
    if csv_path:
        write_text(csv_path, table_csv(result.hits), "csv", force, inputs)
    _echo_span_result(where, result, as_json, result.format)          # the --top hits, as the help says


def _echo_span_result(where, result, as_json: bool, text) -> None:
    """--json: the span and result.to_json() as one object; else a line for the span, then text()."""
    end = where.start + len(where.text)
    if as_json:
        echo_json({"source": where.source, "start": where.start, "end": end, **result.to_json()})
        return
    from ..features import printable
    click.echo(f"{len(where.text):,} characters of {printable(where.source)} [{where.start}, {end})")
    click.echo(text())


@click.command("explain")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@text_options
@click.option("--unit", "units", multiple=True, metavar="UNIT",
              help="Unit to explain, e.g. l2.c.328, or a latent of --dictionary, l1.c/d.12 (repeatable).")
@click.option("--top-units", type=int, default=None, metavar="N",
              help="Explain the N most variable h and c units (the latents, with --dictionary).")
@click.option("--dictionary", "dictionary", default=None, metavar="DIR",
              help="A dictionary of this model (neuroscope dictionary): explain its latents.")
@click.option("--lang", type=click.Choice(["auto", "c", "python", "prose"]), default="auto", show_default=True,
              help="Language for code-aware atoms (auto: sniffed).")
@click.option("--block", type=click.IntRange(min=0), default=2000, show_default=True, metavar="CHARS",
              help="Of every 3 blocks of this many characters, 2 fit and 1 is held out; 0: hold out the last third.")
@stream_options()
@click.option("--csv", "csv_path", default=None, metavar="FILE", help="Write the table (unit x rank) as CSV.")
@click.option("--force", is_flag=True, help="Replace an existing --csv file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with contexts (docs/explain.md).")
@threads_option
def explain_cmd(ckpt, text_request, units, dictionary, reading, csv_path, force, as_json, **settings):
    """Explain units by logical formulas over features, scored on a held-out part of the text.

    \b
    Examples:
      neuroscope explain --ckpt wp.pt --text warpeace.txt --chars 60000 --unit l2.c.328
      neuroscope explain --ckpt wp.pt --text warpeace.txt --top-units 10 --json
    """
    from ..checkpoint import choose_text, load_checkpoint
    from ..explain import ExplainConfig, check_latents, check_units, explain
    from ..files import check_output, table_csv, write_text
    config = ExplainConfig(**settings, **reading, progress=not as_json)      # settings: top_units, lang, block
    inputs = [ckpt, text_request["text_path"], dictionary]
    if csv_path:
        check_output(csv_path, "csv", force, inputs)
    c = load_checkpoint(ckpt)
    if dictionary is not None:
        from ..dictionary import load_dictionary
        dictionary = load_dictionary(dictionary, c.model)
        check_latents(dictionary, units, config.top_units)
    else:
        check_units(c.config, units, config.top_units)
    span = choose_text(c, **text_request)
    result = explain(c, span.text, list(units), config, offset=span.start, dictionary=dictionary)
    if csv_path:
        write_text(csv_path, table_csv(result.table), "csv", force, inputs)
    _echo_span_result(span, result, as_json, result.format)
    if csv_path and not as_json:
        from ..features import printable
        click.echo(f"wrote {printable(csv_path)}")
