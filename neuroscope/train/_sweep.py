"""A sweep: a grid of training runs (cells x corpora x sizes x seeds), each then measured, as independent
tasks on dask.distributed (the optional extra `sweep`).

    >>> spec = read_spec("zoo.toml")
    >>> table = run_sweep(spec, workers=2, measure=my_measure)      # a LocalCluster of 2 worker processes
    >>> table = run_sweep(spec, scheduler="tcp://10.0.0.5:8786")     # the same sweep on a cluster

The spec (TOML):

    out = "zoo"                          # the sweep's folder, relative to the spec file
    [train]                              # TrainConfig fields every task shares
    steps = 2000
    [grid]                               # lists: every combination is one task
    cell = ["lstm", "gru"]
    corpus = ["data/warpeace.txt"]       # text files, relative to the spec file
    hidden = [128, 256]
    seed = [0, 1]
    [measure]                            # handed to the measure function as it is
    features = ["in_quote"]

`parameters = N` (beside out) compares cells at one size: each task's hidden size (and embedding, as
wide) is the one whose model comes nearest N weights on its corpus (model.hidden_for_parameters);
hidden and embedding may then not be given.

Each task trains into `out/<task>/model.pt` and writes `out/<task>/result.json` when measured. A task
whose result exists is never run again; one whose checkpoint exists resumes from it (train's resume is
exact), so a task whose worker dies mid-run is taken up by another worker from its last checkpoint
(written every eval_every steps), and the sweep ends with the same table as an uninterrupted one.
"""
from __future__ import annotations

import itertools
import json
import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..config import TrainConfig, is_int
from ..errors import UserError
from ..files import write_json
from ..text import read_bytes, read_text

MAX_SPEC_BYTES = 1 << 20
MAX_TASKS = 10_000
MAX_PARAMETERS = 10 ** 9
SPEC_KEYS = {"out", "parameters", "train", "grid", "measure"}
MARK = ".neuroscope-sweep"        # in a sweep's folder: what lets a later run write there


@dataclass(frozen=True)
class Task:
    """One run of the grid: its name (the folder), corpus path and training settings."""

    name: str
    corpus: str
    config: TrainConfig
    params: dict


@dataclass(frozen=True)
class Spec:
    out: Path
    tasks: tuple
    measure: dict


def read_spec(path) -> Spec:
    """The sweep in a TOML file, checked whole before any task runs (UserError, one line)."""
    raw = read_bytes(path, "sweep spec", MAX_SPEC_BYTES)
    try:
        spec = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path} is not a TOML sweep spec: {str(exc).splitlines()[0]}", param="spec") from None
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise UserError(f"{path}: unknown section {sorted(unknown)[0]!r}; a spec has out, parameters, [train], "
                        "[grid], [measure]", param="spec")
    here = Path(path).resolve().parent
    out = here / str(spec.get("out", "sweep"))
    tasks = _tasks(spec.get("train", {}), spec.get("grid", {}), here)
    if "parameters" in spec:
        tasks = _sized(tasks, spec["parameters"], {**spec.get("train", {}), **spec.get("grid", {})})
    return Spec(out, tuple(tasks), dict(spec.get("measure", {})))


def _sized(tasks: list[Task], parameters, given: dict) -> list[Task]:
    """Each task with the hidden size that brings its model nearest `parameters` weights on its corpus."""
    from ..model import ModelConfig, hidden_for_parameters
    from ..text import Vocab
    if not (is_int(parameters) and 1_000 <= parameters <= MAX_PARAMETERS):
        raise UserError(f"parameters must be an integer in [1,000, {MAX_PARAMETERS:,}] (got {parameters!r})",
                        param="spec")
    if {"hidden", "embedding"} & set(given):
        raise UserError("give parameters or hidden (and embedding), not both: parameters sets them", param="spec")
    vocab = {c: len(Vocab.from_text(read_text(c))) for c in {t.corpus for t in tasks}}
    out = []
    for t in tasks:
        m = ModelConfig(vocab_size=vocab[t.corpus], cell=t.config.cell, num_layers=t.config.layers)
        hidden = hidden_for_parameters(m, parameters)
        out.append(replace(t, config=replace(t.config, hidden=hidden, embedding=0), params={**t.params, "hidden": hidden}))
    return out


def _tasks(train: dict, grid: dict, here: Path) -> list[Task]:
    names = {f.name for f in fields(TrainConfig)}
    for key in list(train) + [k for k in grid if k != "corpus"]:
        if key not in names:
            raise UserError(f"{key!r} is not a training setting; settings: {', '.join(sorted(names))}", param="spec")
    if not grid.get("corpus"):
        raise UserError("the grid needs corpus = [text files]", param="spec")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"grid.{key} must be a non-empty list", param="spec")
    keys = list(grid)
    combos = list(itertools.product(*(grid[k] for k in keys)))
    if len(combos) > MAX_TASKS:
        raise UserError(f"the grid makes {len(combos):,} tasks; at most {MAX_TASKS:,}", param="spec")
    tasks = []
    for combo in combos:
        params = dict(zip(keys, combo))
        corpus = str(here / str(params["corpus"]))
        settings = {**train, **{k: v for k, v in params.items() if k != "corpus"}}
        try:
            config = replace(TrainConfig(), **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
        except TypeError as exc:
            raise UserError(f"bad training settings {settings}: {exc}", param="spec") from None
        config.check()
        name = ",".join(f"{k}={Path(str(v)).stem if k == 'corpus' else v}" for k, v in params.items())
        tasks.append(Task(name, corpus, config, {**params, "corpus": Path(str(params["corpus"])).name}))
    for corpus in {t.corpus for t in tasks}:
        if not os.path.isfile(corpus):
            raise UserError(f"corpus {corpus} is not a file", param="spec")
    return tasks


def run_task(task: Task, folder: str, measure=None, measure_args: dict | None = None) -> dict:
    """Train the task (resuming its checkpoint if there is one), measure it, keep and return its result."""
    import torch

    from ..checkpoint import load_checkpoint
    from ._run import train
    torch.set_num_threads(1)                      # tasks run side by side, one per worker process
    where = Path(folder) / task.name
    where.mkdir(parents=True, exist_ok=True)
    ckpt = where / "model.pt"
    done = where / "result.json"
    if done.is_file():
        return json.loads(read_text(done, min_chars=2))
    text = read_text(task.corpus)
    c = train(text, task.config, ckpt, progress=False, resume=ckpt.is_file(), source=task.corpus)
    c = load_checkpoint(ckpt)                     # the best weights, as the file keeps them
    result = {**task.params, "test_loss": c.train.get("test_loss_nats"), "steps": c.train.get("steps")}
    if measure is not None:
        result.update(measure(c, task.corpus, **(measure_args or {})))
    write_json(done, result, force=True)
    return result


def _claim(out: Path) -> None:
    """The sweep's folder: new, or one a sweep made (its MARK inside). A file, or a folder of the user's
    with other things in it, is refused before any task runs: a sweep writes results.json there."""
    if out.exists() and not out.is_dir():
        raise UserError(f"the sweep's out {out} is a file, not a folder", param="spec")
    if out.is_dir() and any(out.iterdir()) and not (out / MARK).exists():
        raise UserError(f"{out} holds files that no sweep wrote; give the spec another out", param="spec")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARK).touch()


def run_sweep(spec: Spec, scheduler: str | None = None, workers: int = 2, measure=None, progress: bool = True):
    """Every task of spec not finished yet, on dask.distributed: a LocalCluster of `workers` processes, or the
    scheduler at `scheduler`; returns the results as one pandas DataFrame, one row per task, in grid order."""
    import pandas as pd
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UserError("a sweep needs dask.distributed: pip install 'neuroscope[sweep]'", param="scheduler") from None
    _claim(spec.out)
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                  dashboard_address=None)
    try:
        with Client(scheduler or cluster) as client:
            futures = {client.submit(run_task, t, str(spec.out), measure, spec.measure, key=f"task-{t.name}",
                                     pure=False): t.name for t in spec.tasks}
            results = {}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                if progress:
                    print(f"[{len(results)}/{len(futures)}] {futures[fut]}", flush=True)
    finally:
        if cluster is not None:
            cluster.close()
    table = pd.DataFrame([results[t.name] for t in spec.tasks])
    write_json(spec.out / "results.json", table.to_dict(orient="records"), force=True)
    return table
