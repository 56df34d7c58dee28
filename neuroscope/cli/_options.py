"""What every `neuroscope` command shares: the error mapping from library parameters to flags, and
the option groups (text span, features, device, training defaults from TrainConfig).

The cli package's commands use it; it imports nothing heavy, so `neuroscope --help` stays fast.
"""
from __future__ import annotations

import codecs
import dataclasses
import functools
import json
import re
import sys

import click

from ..config import AUTO_EXACT_CHARS, AUTO_STREAMS, AUTO_WARMUP, DEVICES, TrainConfig
from ..errors import UserError

# Library parameters whose command-line option has another Python name.
PARAM_OPTIONS = {"text": "text_path", "csv": "csv_path", "report": "report_path", "names": "feature_names",
                 "regexes": "feature_regex", "files": "feature_file", "spans": "feature_span"}


def flag_message(exc: UserError, command: click.Command | None) -> str:
    """The error's message on one line (its unsafe characters escaped: features.printable, so that a
    file name cannot forge a line or drive the terminal), its parameter's name replaced by the flag.

    The last whole-word occurrence of `exc.param` is replaced ("streams must be >= 1" ->
    "--streams must be >= 1"), not one inside a path, a longer name or a quoted piece of the user's
    input (a pattern, a name); a message without the word, or a command without the option, is left
    as it is.
    """
    from ..features import printable
    msg = printable(str(exc).strip()) or type(exc).__name__
    name = PARAM_OPTIONS.get(exc.param, exc.param)
    option = next((p for p in getattr(command, "params", ()) if isinstance(p, click.Option) and p.name == name),
                  None)
    if not exc.param or option is None:
        return msg
    flag = next((o for o in option.opts if o.startswith("--")), option.opts[0])
    quoted = [m.span() for m in re.finditer(r"'[^']*'|\"[^\"]*\"", msg)]
    words = [m for m in re.finditer(rf"(?<![\w./\\-]){re.escape(exc.param)}(?![\w/\\-]|\.\w)", msg)
             if not any(a < m.start() < b for a, b in quoted)]
    if not words:
        return msg
    hit = words[-1]
    return msg[:hit.start()] + flag + msg[hit.end():]


class Group(click.Group):
    """A click group whose commands turn library UserErrors into one-line click errors in flag wording,
    and whose output survives a terminal that is not UTF-8 (tolerant_streams)."""

    def main(self, *args, **kwargs):
        tolerant_streams()
        return super().main(*args, **kwargs)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            raise click.ClickException(flag_message(exc, command))
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; nothing was left half-written")
        except MemoryError:
            raise click.ClickException("out of memory; try fewer --chars")
        except OSError as exc:        # the system refused mid-way (a disk that filled up, a file taken away)
            from ..features import printable
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(printable(f"{exc.strerror or exc}{where}; nothing was left half-written"))


def check_text_argument(value: str, param: str) -> None:
    """Refuse a text argument (not a path) that holds bytes that are not UTF-8: Python keeps such bytes
    of the command line as lone surrogates, which a file name may hold but a model cannot read."""
    bad = next((i for i, ch in enumerate(value) if "\ud800" <= ch <= "\udfff"), None)
    if bad is not None:
        from ..features import printable
        raise UserError(f"{param} holds bytes that are not UTF-8 ({printable(value[bad])} at {bad}); "
                        "give the text in UTF-8", param=param)


def tolerant_streams() -> None:
    """Make stdout and stderr write a character their encoding cannot hold as an escape (\\u23ce)
    instead of raising UnicodeEncodeError after the work is done: a terminal set to Latin-1 or ASCII
    (PYTHONIOENCODING, LC_ALL=C without UTF-8 mode) gets the whole output. stderr does so already."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):           # a TextIOWrapper (a notebook's stream has no such method)
            stream.reconfigure(errors="backslashreplace")


def echo_json(obj) -> None:
    """obj as indented JSON on stdout, with every character a terminal must not receive as it is
    (features.show.unsafe: control characters, lone surrogates) written as a JSON escape, and every
    non-ASCII character too where stdout is not UTF-8, so the output stays valid JSON there."""
    from ..features import printable
    stdout = click.get_text_stream("stdout")
    ascii_only = codecs.lookup(getattr(stdout, "encoding", None) or "utf-8").name != "utf-8"
    text = json.dumps(obj, indent=2, ensure_ascii=ascii_only)
    click.echo(printable(text, keep="\n", escape=_json_escape))       # a raw "\n" in JSON is layout, never data


def _json_escape(ch: str) -> str:
    """\\uXXXX, or a surrogate pair of them above U+FFFF, as JSON writes a character."""
    o = ord(ch)
    if o < 0x10000:
        return f"\\u{o:04x}"
    o -= 0x10000
    return f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}"


def option_group(name: str, *options, check=None):
    """Click options handed to the command as ONE keyword argument `name`: a dict of their values by
    parameter name, so that a command's signature names groups, not flags. check(**values), when given,
    refuses a bad combination once, before the command does any work."""
    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            values = {key: kwargs.pop(key) for key in keys}
            if check is not None:
                check(**values)
            return f(*args, **{name: values}, **kwargs)
        before = len(getattr(wrapper, "__click_params__", []))
        for option in reversed(options):
            wrapper = option(wrapper)                   # click.option appends its parameter and returns wrapper
        keys = [p.name for p in wrapper.__click_params__[before:]]
        return wrapper
    return decorate


# --text/--split/--start/--chars, handed as `text_request`: neuroscope.checkpoint.choose_text's keywords
# (`choose_text(ckpt, **text_request)`), shared by every command that reads a span of text.
text_options = option_group(
    "text_request",
    click.option("--text", "text_path", type=str, default=None, help="UTF-8 text file."),
    click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default=None,
                 help="80/10/10 split by character index (default: test)."),
    click.option("--start", type=int, default=None, help="First character (within the split)."),
    click.option("--chars", type=int, default=None, help="Number of characters."))


class AutoOrCount(click.ParamType):
    """--streams, --threads: "auto" or a whole number >= 1."""

    name = "auto|N"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "auto":
            return value
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            self.fail(f"{value!r} is neither auto nor a whole number >= 1", param, ctx)
        return n


def device_option(f):
    return click.option("--device", type=click.Choice(DEVICES), default="auto",
                        show_default=True, help="Where to compute.")(f)


def check_warmup(streams: int | str, warmup: int) -> None:
    """--warmup only means something with --streams N > 1 or auto: refuse it with one stream (read exactly)."""
    if warmup and streams == 1:
        raise UserError("--warmup applies to --streams N > 1 or auto (one stream is read exactly from its start)")


def stream_options(streams: int | str = "auto", warmup: int = AUTO_WARMUP):
    """--streams/--warmup, handed as `reading` ({"streams", "warmup"}: the keywords of record.iter_states,
    probe, explain, match and evaluate) for every command that reads a text through the model, declared
    once and checked once (check_warmup). Defaults: auto for the analyses; eval and record pass 1 and 0,
    since their output is the exact loss or the exact states unless asked otherwise."""
    return option_group(
        "reading",
        click.option("--streams", type=AutoOrCount(), default=streams, show_default=True,
                     help=f"Parallel pieces (faster, not exact); auto: one exact stream up to {AUTO_EXACT_CHARS:,} "
                          f"chars, else up to {AUTO_STREAMS}; 1: exact."),
        click.option("--warmup", type=click.IntRange(min=0), default=warmup, show_default=True,
                     help="With several streams: characters each piece reads first, then discards."),
        check=check_warmup)


def probe_options(f):
    """What `probe` ranks and which statistics it computes, handed as `settings`: ProbeConfig overrides."""
    return option_group(
        "settings",
        click.option("--states", default="h,c", show_default=True, help="Comma list of h, c, gates to rank."),
        click.option("--ablate", type=click.IntRange(min=0), default=0, show_default=True, metavar="K",
                     help="Zero the top K units in the recurrence; loss change vs K random units."),
        click.option("--control/--no-control", default=True, show_default=True, help="Random-weights control model."),
        click.option("--null/--no-null", default=True, show_default=True, help="Circular-shift p-values."),
        click.option("--sparse/--no-sparse", default=True, show_default=True,
                     help="Sparse probes and the top-k curve."),
        click.option("--correction", type=click.Choice(["holm", "bh"]), default="holm", show_default=True,
                     help="Multiple-testing correction over all units."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the control model and random draws."),
        click.option("--dictionary", default=None, metavar="DIR",
                     help="A dictionary of this model (neuroscope dictionary): rank its latents instead of units."))(f)


def resolve_device(name: str) -> str:
    """auto|cpu|cuda -> a torch device string (one rule, neuroscope.train.pick_device)."""
    from ..train import pick_device
    return str(pick_device(name))


TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def train_option(name: str, help: str, **kwargs):
    """--NAME for the TrainConfig field NAME, with the field's default."""
    return click.option(f"--{name.replace('_', '-')}", name, default=TRAIN_DEFAULTS[name], show_default=True,
                        help=help, **kwargs)


def parse_steps(ctx, param, value: str) -> tuple[int, ...]:
    """"100,300,500" -> (100, 300, 500); "" -> ()."""
    try:
        return tuple(int(s) for s in value.split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(f"takes comma-separated step numbers, e.g. 100,300,500 (got {value!r})") from None


def feature_options(f):
    """--feature/--feature-regex/--feature-file/--feature-span/--all-features/--lang, handed to the
    command as ONE keyword argument, `feature_request`, a dict of neuroscope.features.resolve's
    keyword arguments. A command labels its span with:

        labels = resolve(span.text, offset=span.start, **feature_request)   # {name: array [len]}

    (`offset` makes --feature-span positions source positions, as `neuroscope features --show`
    prints them.)
    """
    # Choices copied from features.LANGS, so that building the CLI does not import numpy.
    @click.option("--feature", "feature_names", multiple=True, metavar="NAME",
                  help="Feature to use (repeatable); `neuroscope features` lists them.")
    @click.option("--feature-regex", multiple=True, metavar="NAME=PATTERN",
                  help="1 on every character of each match of PATTERN (repeatable).")
    @click.option("--feature-file", multiple=True, metavar="NAME=LABELS.npy",
                  help="Your own labels: a 1-D .npy, one value per character of the span (repeatable).")
    @click.option("--feature-span", multiple=True, metavar="NAME=START:END[,START:END]",
                  help="1 on hand-marked [START, END) ranges, in source positions (repeatable).")
    @click.option("--all-features", is_flag=True, help="Every registered feature.")
    @click.option("--lang", type=click.Choice(["auto", "c", "python", "prose"]), default="auto",
                  show_default=True, help="Language for code-aware features (auto: sniffed).")
    @functools.wraps(f)
    def wrapper(*args, feature_names, feature_regex, feature_file, feature_span, all_features, lang, **kwargs):
        kwargs["feature_request"] = {"names": feature_names, "regexes": feature_regex, "files": feature_file,
                                     "spans": feature_span, "all_features": all_features, "lang": lang}
        return f(*args, **kwargs)
    return wrapper
