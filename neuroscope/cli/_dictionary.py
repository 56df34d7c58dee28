"""`neuroscope dictionary`: train a TopK sparse autoencoder over one quantity, and measure it held out.
Registered on the group in neuroscope.cli._commands; it parses options and calls neuroscope.dictionary."""
from __future__ import annotations

import dataclasses

import click

from ..config import DictionaryConfig
from ._options import device_option, echo_json, option_group, resolve_device, stream_options
from ._threads import threads_option

DEFAULTS = {f.name: f.default for f in dataclasses.fields(DictionaryConfig)}
JSON_KEYS = ("fvu", "l0", "dead", "loss_recovered", "loss_clean", "loss_spliced", "loss_ablated")

def _sizes(ctx, param, value: str) -> tuple[int, ...]:
    """"128,512" -> (128, 512); DictionaryConfig checks the numbers."""
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"a comma-separated list of whole numbers, got {value!r}") from None


# How the autoencoder trains, handed as `settings`: DictionaryConfig overrides.
training_options = option_group(
    "settings",
    click.option("--latents", type=click.IntRange(min=1), default=DEFAULTS["latents"], show_default=True,
                 help="Latents (d_sae)."),
    click.option("--k", type=click.IntRange(min=1), default=DEFAULTS["k"], show_default=True,
                 help="Latents on per character."),
    click.option("--nested", type=str, default="", metavar="M,M,...", callback=_sizes,
                 help="Matryoshka prefixes: the first M latents also reconstruct alone (e.g. 128,512)."),
    click.option("--batch-topk", "batch_topk", is_flag=True,
                 help="BatchTopK: k per row on average over each batch; read afterwards at a threshold."),
    click.option("--epochs", type=click.IntRange(min=1), default=DEFAULTS["epochs"], show_default=True,
                 help="Passes over the training characters."),
    click.option("--batch", type=click.IntRange(min=2), default=DEFAULTS["batch"], show_default=True,
                 help="Rows per step."),
    click.option("--lr", type=float, default=DEFAULTS["lr"], show_default=True, help="Adam's learning rate."),
    click.option("--seed", type=click.IntRange(min=0), default=DEFAULTS["seed"], show_default=True,
                 help="Initialisation and order."))


# What the dictionary is trained and measured on, handed as `source`.
source_options = option_group(
    "source",
    click.option("--text", "text_path", required=True, help="UTF-8 text file: trained on its train split."),
    click.option("--chars", type=click.IntRange(min=1), default=1_000_000, show_default=True,
                 help="Training characters, from the start of the train split."),
    click.option("--held-out", "held_out", type=click.IntRange(min=32), default=100_000, show_default=True,
                 help="Test-split characters on which FVU, L0, dead latents and loss recovered are measured."))

# Where it goes, handed as `output`.
output_options = option_group(
    "output",
    click.option("--out", required=True, help="Folder to write (SAELens layout: cfg.json, sae_weights.safetensors)."),
    click.option("--force", is_flag=True, help="Replace an existing dictionary --out."),
    click.option("--resume", is_flag=True, help="Continue the unfinished training in --out."))


@click.command("dictionary")
@click.option("--ckpt", required=True, help="Checkpoint (.pt).")
@source_options
@click.option("--quantity", required=True, metavar="NAME", help="The state to decompose: rnn.l1.c, l1.h, ...")
@training_options
@stream_options()
@device_option
@output_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@threads_option
def dictionary_cmd(ckpt, source, quantity, settings, reading, device, output, as_json):
    """Train a sparse dictionary (TopK autoencoder) over a layer's h or tanh(c), and measure it held out.

    Example: neuroscope dictionary --ckpt enwiki.pt --text enwiki.xml --quantity rnn.l1.c --out dict/
    """
    from ..checkpoint import choose_text, load_checkpoint
    from ..dictionary import DictionaryConfig, train_dictionary
    from ..files import check_output
    from ..names import parse_quantity
    config = DictionaryConfig(**settings, **reading, device=resolve_device(device), progress=not as_json)
    quantity = parse_quantity(quantity).name
    out, force, resume = output["out"], output["force"], output["resume"]
    inputs = [ckpt, source["text_path"]]
    if not resume:
        check_output(out, "dictionary", force, inputs)
    c = load_checkpoint(ckpt)
    train = choose_text(c, source["text_path"], split="train", chars=source["chars"])
    test = choose_text(c, source["text_path"], split="test", chars=source["held_out"])
    if not as_json:
        per = "on average, BatchTopK" if config.batch_topk else "per character"
        click.echo(f"training {settings['latents']:,} latents (k {settings['k']} {per}) over {quantity} on "
                   f"{len(train.text):,} characters [{train.start:,}, {train.start + len(train.text):,}), "
                   f"{config.epochs} epochs; held out: {len(test.text):,} test characters")
    d = train_dictionary(c.model, c.vocab.encode(train.text), quantity, out, config, held_out=c.vocab.encode(test.text),
                         resume=resume, force=force, inputs=inputs)
    q = d.info["held_out"]
    if as_json:
        echo_json({"out": out, "quantity": quantity, **{k: q[k] for k in JSON_KEYS}, "latents": d.sae.d_sae,
                   "k": d.sae.k, "selection": "batch_topk" if config.batch_topk else "topk",
                   "chars": len(train.text), "held_out_chars": q["chars"], "epochs": config.epochs,
                   "seconds": d.info["seconds"]})
        return
    click.echo(f"held out: FVU {q['fvu']:.3f}, L0 {q['l0']:.1f}, dead {q['dead']:.1%}, loss recovered "
               f"{q['loss_recovered']:.3f} (clean {q['loss_clean']:.4f}, spliced {q['loss_spliced']:.4f}, "
               f"mean-ablated {q['loss_ablated']:.4f} nats/char)")
    click.echo(f"wrote {out} in {d.info['seconds']:.0f} s; its latents are named {d.prefix}.0 to "
               f"{d.prefix}.{d.sae.d_sae - 1}")
