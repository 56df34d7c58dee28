"""Reliability, third round: each rule a table of cases, run through the command line as a user would.

Rule 0: the text a command reads is the text its help names: --split defaults to test, and --start
counts within the split, with or without --chars; the span read is printed on the output's first line.
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from neuroscope.cli import cli
from neuroscope.text import read_text, split_span

pytestmark = pytest.mark.usefixtures("one_thread")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("span_args, split, start", [
    ((), "test", 0), (("--chars", 1600), "test", 0), (("--start", 500, "--chars", 1600), "test", 500),
    (("--split", "val", "--chars", 1600), "val", 0), (("--split", "all", "--chars", 1600), "all", 0),
])
def test_every_command_reads_the_split_its_help_names(shared_models, shared_data, span_args, split, start):
    ckpt, text = shared_models / "wp_lstm2x128.pt", shared_data / "warpeace.txt"
    n = len(read_text(text))
    lo, hi = split_span(n, split)
    chars = dict(zip(span_args[::2], span_args[1::2])).get("--chars", hi - lo - start)
    if not span_args:                                  # the whole test split: eval alone, it is 300k characters
        out = run("eval", "--ckpt", ckpt, "--text", text, "--json", "--streams", "auto")
        assert out.exit_code == 0, out.output
        got = json.loads(out.output)
        assert (got["start"], got["end"]) == (lo, hi)
        return
    for command in (["eval"], ["probe", "--feature", "in_quote", "--no-null", "--no-sparse", "--no-control"],
                    ["explain", "--unit", "l1.c.5"]):
        out = run(*command, "--ckpt", ckpt, "--text", text, *span_args, "--json")
        assert out.exit_code == 0, (command, out.output)
        got = json.loads(out.output)
        assert (got["start"], got["end"]) == (lo + start, lo + start + chars), command
        plain = run(*command, "--ckpt", ckpt, "--text", text, *span_args)
        assert f"[{lo + start}, {lo + start + chars})" in plain.stdout.splitlines()[0], command


# Rule 10: beside other work a command takes the free cores, not one thread per core.

def test_a_spinning_process_counts_as_busy_and_takes_a_thread_away():
    import subprocess
    import sys
    import time

    from neuroscope.cli._threads import auto_threads, busy_tasks, cores
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert busy_tasks() >= 1
        assert auto_threads() <= max(1, cores() - 1)
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.parametrize("threads, expected", [("1", 1), ("2", 2), ("auto", None)])
def test_threads_hold_for_the_command_and_are_given_back(shared_models, shared_data, monkeypatch, threads, expected):
    import torch

    import neuroscope.model as evaluate_module
    from neuroscope.cli._threads import cores
    seen = []
    real = evaluate_module.evaluate
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    before = torch.get_num_threads()
    out = run("eval", "--ckpt", shared_models / "wp_lstm2x128.pt", "--text", shared_data / "warpeace.txt",
              "--chars", 500, "--threads", threads)
    assert out.exit_code == 0, out.output
    assert torch.get_num_threads() == before
    assert seen[0] == expected if expected else 1 <= seen[0] <= cores()
