"""`neuroscope import` and `neuroscope export`: models of other tools in (checked for parity), ours out as ONNX."""
from __future__ import annotations

import click

from ._options import echo_json


def _mapping(text: str | None) -> dict:
    """"encoder=emb.weight,decoder=fc." -> {"encoder": "emb.weight", "decoder": "fc."}."""
    from ..errors import UserError
    out = {}
    for part in filter(None, (text or "").split(",")):
        role, sep, key = part.partition("=")
        if not sep or role.strip() not in ("encoder", "decoder", "rnn"):
            raise UserError(f"bad --map {part!r}: write ROLE=KEY with ROLE encoder, decoder or rnn")
        out[role.strip()] = key.strip()
    return out


@click.command("import")
@click.argument("source")
@click.option("--out", required=True, help="Checkpoint to write (plain-char-rnn/1).")
@click.option("--vocab", "vocab_path", default=None, metavar="FILE",
              help="JSON: the characters in index order, or {character: index}; where SOURCE has none.")
@click.option("--map", "mapping", default=None, metavar="ROLE=KEY,...",
              help="Name ambiguous tensors of a state_dict: encoder=KEY, decoder=PREFIX, rnn=PREFIX.")
@click.option("--text", "text_path", default=None, metavar="FILE", help="Text for the parity check (default: built in).")
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def import_cmd(source, out, vocab_path, mapping, text_path, force, as_json):
    """Convert a char-RNN trained elsewhere (a PyTorch state_dict, a Keras 3 .keras model) into a neuroscope
    checkpoint, checking that its logits equal the source's own forward to 1e-5.

    Example: neuroscope import charlstm.pth --vocab vocab.json --out model.pt
    """
    from ..checkpoint import save_checkpoint
    from ..checkpoint._import import import_model
    from ..files import check_output
    from ..text import read_text
    check_output(out, "checkpoint", force, inputs=[source, vocab_path, text_path])
    text = read_text(text_path)[:5000] if text_path else None
    imported = import_model(source, vocab_path, _mapping(mapping), text)
    save_checkpoint(out, imported.ckpt, force=force, inputs=[source, vocab_path, text_path])
    if as_json:
        echo_json({"out": out, **imported.to_dict()})
        return
    c = imported.ckpt.config
    click.echo(f"{out}: {c.cell.upper()} {c.num_layers} x {c.hidden_size}, embedding {c.embedding_dim}, vocab "
               f"{len(imported.ckpt.vocab)}, from a {imported.source}")
    click.echo(f"parity: the {imported.compared} differ from the source's own forward by at most "
               f"{imported.parity:.2g} (limit 1e-05)")


@click.command("export")
@click.argument("ckpt")
@click.option("--to", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True, help="Format.")
@click.option("--out", required=True, help="File to write.")
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def export_cmd(ckpt, fmt, out, force, as_json):
    """Write a checkpoint's step function (one character in; logits, state and every recorded quantity out) as
    ONNX, checked with onnxruntime against torch to 1e-5.

    Example: neuroscope export model.pt --to onnx --out model.onnx
    """
    from ..checkpoint import load_checkpoint
    from ..checkpoint._onnx import export_onnx
    from ..files import check_output
    check_output(out, "onnx", force, inputs=[ckpt])
    exported = export_onnx(load_checkpoint(ckpt), out, force=force, inputs=[ckpt])
    if as_json:
        echo_json({"out": exported.path, "inputs": exported.inputs, "outputs": exported.outputs, "gap": exported.gap})
        return
    click.echo(f"{exported.path}: inputs {', '.join(exported.inputs)}; outputs logits, the state and "
               f"{len(exported.outputs) - 1 - (len(exported.inputs) - 1)} quantities")
    click.echo(f"onnxruntime agrees with torch to {exported.gap:.2g} (limit 1e-05)")
