"""The causal commands: `neuroscope patch` (replace part of the state by another text's, read on) and
`neuroscope attribute` (which earlier characters drive a unit). Registered on the group in
neuroscope.cli._commands; like every command, they parse options and call the library.
"""
from __future__ import annotations

import click

from ..errors import UserError
from ._options import check_text_argument, device_option, echo_json, option_group, resolve_device, text_options
from ._threads import threads_option


def _text(literal: str | None, path: str | None, name: str) -> str:
    """The text given as --NAME or --NAME-file (exactly one)."""
    if (literal is None) == (path is None):
        raise UserError(f"give the {name} text as --{name} TEXT or --{name}-file FILE (one of them)")
    if path is not None:
        from ..text import read_text
        return read_text(path, min_chars=1)
    check_text_argument(literal, name)
    return literal


def _what(what: str):
    """"all", a quantity, or a comma list of units or latents, as neuroscope.patch.target takes it."""
    return what if "," not in what else [w.strip() for w in what.split(",") if w.strip()]


# The two texts, handed as `texts`; each as a literal or a file.
text_pair = option_group(
    "texts",
    click.option("--base", default=None, help="The text that runs, with part of its state replaced."),
    click.option("--base-file", default=None, metavar="FILE", help="The base text from a UTF-8 file."),
    click.option("--source", default=None, help="The text whose state is put in."),
    click.option("--source-file", default=None, metavar="FILE", help="The source text from a UTF-8 file."))

# How the run goes on after the patch, handed as `sampling`: PatchConfig's fields.
sampling_options = option_group(
    "sampling",
    click.option("--free", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
                 help="Sample N characters after the last patched step instead of reading the base on."),
    click.option("--temperature", type=float, default=1.0, show_default=True, help="For --free; 0: most likely."),
    click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="For --free."))

# What is printed and written, handed as `output`.
listing_options = option_group(
    "output",
    click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
                 help="Steps listed: those whose distribution moved most."),
    click.option("--csv", "csv_path", default=None, metavar="FILE", help="Write every step as CSV."),
    click.option("--force", is_flag=True, help="Replace an existing --csv file."),
    click.option("--json", "as_json", is_flag=True, help="Print the summary and the listed steps as JSON."))


# The page and the printout of `attribute`, handed as `output`.
page_options = option_group(
    "output",
    click.option("--out", default=None, metavar="FILE", help="Write the heat strips as an HTML page."),
    click.option("--force", is_flag=True, help="Replace an existing --out page."),
    click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON."))


@click.command("patch")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@text_pair
@click.option("--at", multiple=True, type=int, required=True, metavar="STEP",
              help="Base step to patch (0-based: the state after reading that character); repeatable.")
@click.option("--source-at", multiple=True, type=int, metavar="STEP",
              help="The source step for each --at, in order (default: the same steps).")
@click.option("--what", default="all", show_default=True, metavar="WHAT",
              help="all, a quantity (l1.c), or a comma list of units (l1.c.122,l0.h.3) or latents (l1.c/d.12).")
@click.option("--dictionary", default=None, metavar="DIR", help="The dictionary of the latents in --what.")
@sampling_options
@listing_options
@device_option
@threads_option
def patch_cmd(ckpt, texts, at, source_at, what, dictionary, sampling, output, device):
    """Replace part of the base text's state by the source text's at chosen steps, and compare every later
    prediction with the clean base's (forced: the base read on; --free: sampled).

    \b
    Examples:
      neuroscope patch --ckpt wp.pt --base 'He said "no more' --source 'He said, no more' --at 8
      neuroscope patch --ckpt wp.pt --base-file a.txt --source-file b.txt --at 120 --what l2.c.323 --free 200
    """
    from ..causes import patch
    from ..checkpoint import load_checkpoint
    from ..files import check_output, table_csv, write_text
    csv_path, force = output["csv_path"], output["force"]
    inputs = [ckpt, texts["base_file"], texts["source_file"], dictionary]
    if csv_path:
        check_output(csv_path, "csv", force, inputs)
    base = _text(texts["base"], texts["base_file"], "base")
    source = _text(texts["source"], texts["source_file"], "source")
    c = load_checkpoint(ckpt, device=resolve_device(device))
    d = None
    if dictionary is not None:
        from ..dictionary import load_dictionary
        d = load_dictionary(dictionary, c.model)
    result = patch(c, base, source, list(at), _what(what), source_at=list(source_at) or None, dictionary=d,
                   **sampling)
    if csv_path:
        write_text(csv_path, table_csv(result.steps), "csv", force, inputs)
    _echo_patch(result, output["top"], output["as_json"])


def _echo_patch(result, top: int, as_json: bool) -> None:
    from ..features import printable
    s = result.summary()
    moved = result.steps.sort_values("kl", ascending=False, kind="stable").head(top).sort_values("position")
    if as_json:
        echo_json({**s, "listed": moved.to_dict(orient="records")})
        return
    click.echo(f"patched {s['what']} ({s['size']:,} values) at base steps {s['at']} from source steps "
               f"{s['source_at']}; {s['mode']}, {s['steps']:,} steps compared")
    if s["loss_clean"] is not None:
        click.echo(f"loss on the next characters: clean {s['loss_clean']:.4f}, patched {s['loss_patched']:.4f} nats; "
                   f"KL(clean || patched) mean {s['kl_mean']:.4f}, max {s['kl_max']:.4f}; most likely next "
                   f"character changed at {s['top1_changed']} steps")
    for name in ("clean", "patched"):
        if name in s.get("continuation", {}):
            click.echo(f"{name:>8}: {printable(s['continuation'][name])}")
    click.echo(f"{'step':>7}  read  next   p clean -> patched      KL  top 5 clean | patched")
    for r in moved.itertuples():
        p = f"{r.p_clean:.3f} -> {r.p_patched:.3f}" if r.next else " " * 14
        click.echo(f"{r.position:>7}  {printable(r.char):<4}  {printable(r.next):<4}  {p:>16}  {r.kl:6.3f}  "
                   f"{printable(r.top_clean)} | {printable(r.top_patched)}")


@click.command("attribute")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@text_options
@click.option("--unit", required=True, metavar="UNIT", help="A unit (l2.c.323) or a latent of --dictionary (l1.c/d.12).")
@click.option("--at", type=click.IntRange(min=0), required=True, metavar="I",
              help="The character of the selected text (0-based) after which the unit is read.")
@click.option("--window", type=click.IntRange(min=1), default=100, show_default=True, help="Characters before --at scored.")
@click.option("--method", type=click.Choice(["both", "occlusion", "ig"]), default="both", show_default=True,
              help="Occlusion (exact, one batched pass), integrated gradients, or both.")
@click.option("--dictionary", default=None, metavar="DIR", help="The dictionary of a latent --unit.")
@page_options
@device_option
@threads_option
def attribute_cmd(ckpt, text_request, unit, at, window, method, dictionary, output, device):
    """Which earlier characters drive a unit at one character: occlusion and integrated gradients over the
    --window characters before --at.

    Example: neuroscope attribute --ckpt wp.pt --text warpeace.txt --start 4000 --unit l2.c.323 --at 950
    """
    from ..causes import MAX_CHARS, attribute
    from ..checkpoint import choose_text, load_checkpoint
    from ..files import check_output
    out, force = output["out"], output["force"]
    inputs = [ckpt, text_request["text_path"], dictionary]
    if out:
        check_output(out, "html", force, inputs)
    c = load_checkpoint(ckpt, device=resolve_device(device))
    span = choose_text(c, **text_request)
    if at >= len(span.text):
        raise UserError(f"--at {at} is outside the selected text ({len(span.text):,} characters)")
    if at >= MAX_CHARS:
        raise UserError(f"--at {at:,} reads more than {MAX_CHARS:,} characters first: move --start nearer")
    d = None
    if dictionary is not None:
        from ..dictionary import load_dictionary
        d = load_dictionary(dictionary, c.model)
    methods = ("occlusion", "ig") if method == "both" else (method,)
    a = attribute(c, span.text[:at + 1], unit, at, window=window, methods=methods, dictionary=d)
    if out:
        _write_strips(a, c, span, out, force, inputs)
    _echo_attribution(a, span.start, output["as_json"])


def _write_strips(a, c, span, out: str, force: bool, inputs: list) -> None:
    from ..report import Report
    from ..report._sections import attribution_section, shown_path
    section, _ = attribution_section([a], span.start)
    Report(f"neuroscope attribution: {a.unit}", [f"{shown_path(span.source)}, {c.name}"], [section], {}).save(
        out, force, inputs)


def _echo_attribution(a, start: int, as_json: bool) -> None:
    from ..features import printable
    if as_json:
        echo_json({**a.to_json(), "start": start})
        return
    line = f"{a.unit} after character {a.at} of the selection ({start + a.at:,} of the file): value {a.value:+.4f}"
    if a.table["ig"].notna().all():
        line += f"; with the window of spaces {a.baseline:+.4f}; integrated gradients sum to the change within " \
                f"{a.completeness:.2%}"
    click.echo(line)
    t = a.table
    for method in ("occlusion", "ig"):
        if t[method].notna().all():
            top = t.reindex(t[method].abs().sort_values(ascending=False, kind="stable").index).head(8)
            click.echo(f"{method:>9}: " + "  ".join(f"{printable(r.char)}@{r.offset} {getattr(r, method):+.3f}"
                                                     for r in top.itertuples()))
