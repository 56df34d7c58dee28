"""The README's Python tour runs as written, on a checkpoint shaped like the demo's (one that stores a
held-out excerpt), and does what its comments say."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from neuroscope.checkpoint import save_checkpoint

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.usefixtures("one_thread")


def tour() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### In Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_tour_runs_as_written(wp_small, warpeace, tmp_path, monkeypatch):
    start = 2_940_000                                         # War and Peace's test split
    ckpt = dataclasses.replace(wp_small, extra={**wp_small.extra,
                                                "excerpt": {"text": warpeace[start:start + 20_000], "start": start}})
    path = tmp_path / "model.pt"
    save_checkpoint(path, ckpt)
    code = tour()
    assert code.count("neuroscope-demo/model.pt") == 1
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code.replace("neuroscope-demo/model.pt", str(path)), "README.md", "exec"), scope)
    assert scope["span"].start == start and len(scope["span"].text) == 20_000
    assert scope["acts"]["rnn.l1.c"].shape[1] == 128
    ranking = scope["result"].ranking
    assert set(ranking["feature"]) >= {"in_string", "line_position"}
    assert len(scope["result"].ablation) == 2
    assert scope["losses"].shape == (20_000 - 1,) and np.isfinite(scope["losses"]).all()
    page = (tmp_path / "strings.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and scope["best"].id in page
