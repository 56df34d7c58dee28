"""The `neuroscope` command line: parses options and calls the library, nothing more.

    $ neuroscope demo
    $ neuroscope eval --ckpt model.pt --text warpeace.txt --split test --json
    $ neuroscope probe --ckpt model.pt --feature in_quote

Bad input (a missing file, a bad option value, an unsafe checkpoint) raises UserError in the
library; `main` turns it into a one-line `Error: ...` and exit code 1, never a traceback.
"""
from __future__ import annotations

import functools
import json
import sys

import click

from .errors import UserError


class Group(click.Group):
    """A click group whose commands turn library UserErrors into one-line click errors."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; nothing was left half-written")
        except MemoryError:
            raise click.ClickException("out of memory; try fewer --chars or a smaller --chunk")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neuroscope")
def cli():
    """Look inside trained character-level RNN language models."""


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def text_options(f):
    """--text/--split/--start/--chars, shared by every command that reads a span of text."""
    @click.option("--text", "text_path", type=str, default=None, help="UTF-8 text file.")
    @click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default=None,
                  help="80/10/10 split by character index (default: test).")
    @click.option("--start", type=int, default=None, help="First character (within the split).")
    @click.option("--chars", type=int, default=None, help="Number of characters.")
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)
    return wrapper


def device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                        show_default=True, help="Where to compute.")(f)


def resolve_device(name: str) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but no CUDA GPU is available here")
    return name


# ---------------------------------------------------------------- eval, info (issue 2)

@cli.command("eval")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@text_options
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_cmd(ckpt, text_path, split, start, chars, device, as_json):
    """Mean cross-entropy (nats and bits per char) of a model on a text span.

    Example: neuroscope eval --ckpt wp.pt --text warpeace.txt --split test
    """
    from .checkpoint import choose_text, load_checkpoint
    from .evaluate import evaluate
    model = load_checkpoint(ckpt, device=resolve_device(device))
    span = choose_text(model, text_path, split, start, chars)
    unknown = model.vocab.count_unknown(span.text)
    result = evaluate(model.model, model.vocab.encode(span.text), progress=not as_json)
    if as_json:
        echo_json({**result.to_dict(), "unknown_chars": unknown, "source": span.source,
                   "start": span.start, "end": span.start + len(span.text)})
        return
    click.echo(f"{result.loss_nats:.4f} nats/char  {result.bits_per_char:.4f} bits/char  "
               f"over {result.chars:,} characters of {span.source} [{span.start}, {span.start + len(span.text)})")
    if unknown:
        click.echo(f"note: {unknown} characters not in the vocabulary were read as "
                   f"{model.vocab.chars[model.vocab.fallback_id]!r}")


@cli.command("info")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_cmd(ckpt, as_json):
    """Config, vocabulary size, parameter count and stored losses of a checkpoint."""
    from .checkpoint import load_checkpoint
    from .model import count_parameters
    c = load_checkpoint(ckpt)
    tr = c.train
    info = {"path": ckpt, "config": c.config.to_dict(), "vocab_size": len(c.vocab),
            "parameters": count_parameters(c.model),
            "corpus": tr.get("text"), "steps": tr.get("steps"),
            "best_val_loss_nats": tr.get("best_val_loss_nats"),
            "test_loss_nats": tr.get("test_loss_nats"),
            "test_bits_per_char": tr.get("test_bits_per_char"),
            "curve_points": len(tr.get("curve") or []),
            "sample_steps": sorted((tr.get("samples") or {}).keys(), key=lambda s: int(s)),
            "excerpt_chars": len(c.excerpt["text"]) if c.excerpt else 0}
    if as_json:
        echo_json(info)
        return
    cfg = info["config"]
    click.echo(f"{ckpt}: {cfg['cell'].upper()} {cfg['num_layers']} x {cfg['hidden_size']}, "
               f"embedding {cfg['embedding_dim']}, dropout {cfg['dropout']}")
    click.echo(f"vocab {info['vocab_size']}, {info['parameters']:,} parameters, corpus {info['corpus']}")
    for key in ("steps", "best_val_loss_nats", "test_loss_nats", "test_bits_per_char", "curve_points", "excerpt_chars"):
        if info[key] is not None:
            click.echo(f"{key}: {info[key]}")
    if info["sample_steps"]:
        click.echo("samples at steps: " + ", ".join(info["sample_steps"]))


def main():  # console-script entry point
    cli(prog_name="neuroscope")


if __name__ == "__main__":
    sys.exit(main())
