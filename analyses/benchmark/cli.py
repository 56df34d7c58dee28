"""The benchmarks' command line: options in, one benchmark's run(), its result printed."""
from __future__ import annotations

import json

import click

from analyses._paths import SHARED

from . import causes, cells, contention, dictionary, explain, features, headline, imports, match, printer, probe, record, timing, train


def _model(name: str) -> str:
    return str(SHARED / "models" / name)


def _threads(help: str = "torch threads."):
    return click.option("--threads", default=2, show_default=True, help=help)


_as_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
_trees = click.option("--tree", "trees", multiple=True, type=click.Path(exists=True, file_okay=False),
                      help="Repository whose neuroscope the commands run (repeatable, e.g. a worktree of the "
                           "commit before a change, then this one: run back to back) [default: this one].")


@click.group()
def cli():
    """neuroscope benchmarks (ratios against a floor measured in the same run)."""


@cli.command("train")
@click.option("--layers", default=None, type=int, help="LSTM layers [default: 2 on CPU, 3 on CUDA].")
@click.option("--hidden", default=None, type=int, help="Units per layer [default: 256 on CPU, 512 on CUDA].")
@click.option("--batch", default=None, type=int, help="Streams B [default: 32 on CPU, 128 on CUDA].")
@click.option("--seq", default=128, show_default=True, help="Characters per window T.")
@click.option("--dropout", default=0.25, show_default=True, help="Dropout (both loops).")
@click.option("--steps", default=None, type=int, help="Timed steps of each loop [default: 30 on CPU, 200 on CUDA].")
@_threads()
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@_as_json
def bench_train(as_json, **opts):
    """Training throughput (chars/s) of neuroscope's training step vs a minimal nn.LSTM loop; goal ratio >= 0.95."""
    printer.show("train", train.run(**opts), as_json)


@cli.command("cells")
@click.option("--parameters", default=400_000, show_default=True, help="Weights of every model (hidden sizes to match).")
@click.option("--layers", default=2, show_default=True, help="Recurrent layers.")
@click.option("--batch", default=32, show_default=True, help="Streams B of a training step.")
@click.option("--seq", default=128, show_default=True, help="Characters per window T.")
@click.option("--steps", default=10, show_default=True, help="Timed training steps of each cell (and of the LSTM).")
@click.option("--chars", default=20_000, show_default=True, help="Characters of the test split recorded, one stream.")
@click.option("--cells", default=",".join(cells.CELLS), show_default=True, callback=lambda c, p, v: v.split(","),
              help="Cells to time.")
@_threads()
@_as_json
def bench_cells(as_json, **opts):
    """Each cell's training throughput against nn.LSTM's at the same parameter count, and recording all its
    states against its own forward (goal <= 1.5x)."""
    printer.show("cells", cells.run(**opts), as_json)


@cli.command("record")
@click.option("--ckpt", default=_model("wp_lstm3x512.pt"), show_default=True, help="Checkpoint.")
@click.option("--chars", default=200_000, show_default=True, help="Characters for the multi-stream case.")
@click.option("--streams", default=64, show_default=True, help="Streams of the multi-stream case.")
@click.option("--warmup", default=256, show_default=True, help="Warmup of the multi-stream case.")
@click.option("--single-chars", default=20_000, show_default=True, help="Characters for the single-stream case.")
@click.option("--chunk", default=4096, show_default=True, help="iter_states chunk (characters per yield).")
@click.option("--deviation-chars", default=50_000, show_default=True,
              help="Characters for the streams-vs-exact deviation and the float16 error (0: skip).")
@click.option("--repeats", default=3, show_default=True, help="Timing repeats (median), interleaved.")
@_threads()
@click.option("--memory/--no-memory", default=True, show_default=True, help="Peak memory per case (subprocesses).")
@_as_json
def bench_record(as_json, **opts):
    """Recording h and c of every layer vs the fused nn.LSTM forward over the same characters.

    Goal: <= 1.5x on CPU for 200k chars in 64 streams with warmup 256 (against the fused forward
    in 64 streams, which has no warmup to pay) and for 20k chars single-stream (against batch 1). Cases
    are interleaved within each repeat so that a busy machine slows all of them alike.
    """
    printer.show("record", record.run(**opts), as_json)


@cli.command("features")
@click.option("--chars", default=1_000_000, show_default=True, help="Characters of warpeace.txt to label and record.")
@click.option("--streams", default=64, show_default=True, help="Recording streams.")
@click.option("--fallback-chars", default=20_000, show_default=True,
              help="If the recorder does not take --streams yet: record this many chars with streams=1 "
                   "and extrapolate linearly (said so in the output).")
@click.option("--repeats", default=3, show_default=True, help="Timing repeats (median).")
@_threads()
@_as_json
def bench_features(as_json, **opts):
    """Labelling every built-in feature vs recording h and c of wp_lstm2x128 on the same text.

    Target: labelling < 1/10 of recording. Also the per-feature rate on linux.txt,
    each feature labelled alone (so each pays for the scan it needs).
    """
    printer.show("features", features.run(**opts), as_json)


@cli.command("floor")
@click.option("--ckpt", required=True)
@click.option("--start", type=int, required=True, help="First character of warpeace.txt.")
@click.option("--chars", type=int, required=True)
@click.option("--streams", type=int, required=True)
@click.option("--threads", default=2, show_default=True)
def bench_floor(**opts):
    """Print the seconds of the fused forward over warpeace.txt[start:start + chars] in `streams`
    streams, timed inside this process after loading (headline runs it as a fresh process)."""
    click.echo(json.dumps({"seconds": timing.floor_seconds(**opts)}))


@cli.command("probe")
@click.option("--ckpt", default=_model("wp_lstm3x512.pt"), show_default=True, help="Checkpoint.")
@click.option("--chars", default=1_000_000, show_default=True, help="First characters of warpeace.txt.")
@click.option("--streams", default=64, show_default=True, help="Streams, for the probe and the fused forward alike.")
@click.option("--warmup", default=256, show_default=True, help="Recorder warmup per stream.")
@click.option("--repeats", default=1, show_default=True, help="Timing repeats (median), fused and ranking interleaved.")
@click.option("--extras/--no-extras", default=True, show_default=True,
              help="Also time the control model, the null and the sparse probes.")
@_threads()
@_as_json
def bench_probe(as_json, **opts):
    """The ranking pass for all built-in features vs the fused nn.LSTM forward over the same chars.

    Goal: <= 1.5x. The ranking pass is neuroscope.probe.probe without control, null and
    sparse probes: recording h and c (streams, warmup), the streamed r of every unit with every
    feature, and AUROC/Spearman on the sample. Peak memory is the rise of the resident set above
    what the model, text and labels hold. The extras are timed in one further probe call.
    """
    printer.show("probe", probe.run(**opts), as_json)


@cli.command("headline")
@click.option("--ckpt", default=_model("wp_lstm3x512.pt"), show_default=True, help="Checkpoint.")
@click.option("--chars", "chars_list", multiple=True, type=int, default=[100_000], show_default=True,
              help="Characters (repeatable: 100000 and 1000000).")
@click.option("--feature", default="in_quote", show_default=True, help="The one-feature case's --feature.")
@click.option("--cases", default="one,all,record", show_default=True,
              help="Comma list: one (--feature), all (--all-features), record (into a store).")
@_trees
@click.option("--probe-args", default="", help="Extra `neuroscope probe` flags, e.g. '--streams 1'.")
@click.option("--record-chars", default=100_000, show_default=True, help="Characters of the record case.")
@click.option("--record-streams", default=1, show_default=True,
              help="--streams of the record case (1 = its default; its floor is the fused forward at as many).")
@click.option("--repeats", default=1, show_default=True, help="Timing repeats (median), cases interleaved.")
@_threads("torch threads (here and in the commands).")
@_as_json
def bench_headline(as_json, trees, **opts):
    """`neuroscope probe --ckpt M --text T --feature F` with its defaults, timed as a whole process,
    vs the fused 64-stream nn.LSTM forward over the same characters in the same run (the forward
    alone, timed inside a fresh process of its own before each repeat: see fused_seconds).

    Goal: <= 3x at 100k characters and <= 2x at 1M, for one feature and for --all-features. Also
    `neuroscope record` into a store vs the fused forward plus a plain sequential write + fsync of
    the same bytes (goal <= 1.3x of that sum). Each command runs in a fresh process (so its time
    holds interpreter start, imports and loading); its --json meta gives each stage's seconds, and
    its peak resident memory is its own VmHWM. --json only switches the progress bars off.
    """
    printer.show("headline", headline.run(trees=timing.trees_or_this(trees), **opts), as_json)


@cli.command("match")
@click.option("--ckpt", default=_model("linux_lstm3x512.pt"), show_default=True, help="Checkpoint of the time case.")
@click.option("--chars", default=1_000_000, show_default=True, help="Characters of the time case (linux.txt first).")
@click.option("--memory-ckpt", default=_model("wp_lstm2x128.pt"), show_default=True,
              help="Checkpoint of the memory case.")
@click.option("--memory-chars", default=10_000_000, show_default=True,
              help="Characters of the memory case (the corpora repeated, warpeace.txt first; 0: skip).")
@click.option("--streams", default=64, show_default=True, help="Streams, for match and the recording alike.")
@click.option("--warmup", default=256, show_default=True, help="Warmup per stream.")
@_threads()
@_as_json
def bench_match(as_json, **opts):
    """neuroscope.match (thresholds, query, the streamed search, hits, feature overlap) vs recording
    h and c of every layer over the same characters, each in a fresh process (time, peak memory).

    Goal: match <= 1.5x the recording; memory bounded (O(N) bytes for the bits, not O(N x units)).
    Time case: a /* comment */ span on linux.txt with linux_lstm3x512; memory case: a quote span on
    the corpora repeated to 10M characters with the small wp_lstm2x128.
    """
    printer.show("match", match.run(**opts, on_part=printer.match_part), as_json)


@cli.command("causes")
@click.option("--ckpt", default=_model("wp_lstm3x512.pt"), show_default=True, help="Checkpoint.")
@click.option("--chars", default=2_000, show_default=True, help="First characters of warpeace.txt's test split.")
@click.option("--window", default=100, show_default=True, help="Characters before the attributed one.")
@click.option("--repeats", default=5, show_default=True, help="Timing repeats (median).")
@_threads()
@_as_json
def bench_causes(as_json, **opts):
    """A forced patch of every state vs the fused forward over base and source; all occlusions of a window
    in one batched pass vs one fused forward over the same characters; integrated gradients' time."""
    printer.show("causes", causes.run(**opts), as_json)


@cli.command("explain")
@click.option("--ckpt", default=_model("wp_lstm3x512.pt"), show_default=True, help="Checkpoint.")
@click.option("--chars", default=100_000, show_default=True, help="First characters of warpeace.txt's test split.")
@click.option("--streams", default=64, show_default=True,
              help="Streams, for the recording and the fused forward alike.")
@click.option("--warmup", default=256, show_default=True, help="Recorder warmup per stream.")
@_threads()
@_as_json
def bench_explain(as_json, **opts):
    """Explaining every h and c unit: recording vs search, seconds per unit, peak memory, against the
    fused nn.LSTM forward over the same characters. Peak memory is the rise of the resident set above
    what the model and text hold."""
    printer.show("explain", explain.run(**opts, progress=not as_json), as_json)


@cli.command("dictionary")
@click.option("--ckpt", default=_model("wp_lstm3x512.pt"), show_default=True, help="Checkpoint.")
@click.option("--quantity", default="rnn.l2.c", show_default=True, help="The states the dictionary reads.")
@click.option("--latents", default=4096, show_default=True)
@click.option("--k", default=32, show_default=True)
@click.option("--batch", default=1024, show_default=True, help="Rows per step.")
@click.option("--steps", default=20, show_default=True, help="Timed steps (median of 3 runs of them).")
@click.option("--chars", default=50_000, show_default=True, help="Characters recorded and encoded (64 streams).")
@_threads()
@_as_json
def bench_dictionary(as_json, **opts):
    """Dictionary training rows/s against the step's dense products alone (GFLOP/s), and encoding the
    latents against recording the states they come from."""
    printer.show("dictionary", dictionary.run(**opts), as_json)


@cli.command("imports")
@_trees
@click.option("--repeats", default=7, show_default=True, help="Fresh processes per case (median), interleaved.")
@_threads("OMP_NUM_THREADS of the processes.")
@_as_json
def bench_imports(as_json, trees, **opts):
    """`python -c "import neuroscope"` and `python -c "import neuroscope as ns; ns.probe"` as fresh
    processes, against `python -c pass`: seconds of the whole process, medians with min and max.

    With --tree, each checkout's neuroscope in turn (a flat layout without the lazy ns.probe imports
    neuroscope.probe by name instead).
    """
    printer.show("imports", imports.run(trees=timing.trees_or_this(trees), **opts), as_json)


@cli.command("contention")
@click.option("--ckpt", default=contention.default_model(), show_default=True, help="Checkpoint.")
@click.option("--text", default=contention.default_text(), show_default=True, help="Corpus (its test split).")
@click.option("--chars", default=30_000, show_default=True, help="Characters each command reads.")
@click.option("--floor-chars", default=50_000, show_default=True, help="Characters of the fused forward (16 streams).")
@click.option("--repeats", default=3, show_default=True, help="Fresh processes per case (median), interleaved.")
@_trees
@_as_json
def bench_contention(as_json, trees, ckpt, text, **opts):
    """probe, record, match, explain alone and beside one CPU-bound process, at --threads auto, 1 and 2;
    goal: beside it, auto at most the one-thread time."""
    printer.show("contention", contention.run(ckpt, text, trees=timing.trees_or_this(trees), **opts), as_json)
