"""neuroscope sweep: a grid of train-then-measure tasks on dask.distributed, resumed when a worker dies."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from click.testing import CliRunner

from neuroscope.cli import cli
from neuroscope.errors import UserError
from neuroscope.train import read_spec, run_sweep

distributed = pytest.importorskip("distributed")        # the test extra installs it; CI has it

SPEC = """out = "zoo"
[train]
steps = 160
eval_every = 20
layers = 1
hidden = 24
batch = 8
seq = 32
val_chars = 2000
test_chars = 2000
sample_chars = 10
final_sample_chars = 10
[grid]
cell = ["lstm", "gru"]
corpus = ["wp.txt"]
seed = [3]
"""


@pytest.fixture
def spec_dir(tmp_path, warpeace):
    def make(name: str, body: str = SPEC):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "wp.txt").write_text(warpeace[:200_000], encoding="utf-8")
        (folder / "zoo.toml").write_text(body, encoding="utf-8")
        return folder
    return make


def test_a_worker_killed_mid_task_resumes_from_its_checkpoint_and_the_table_is_the_same(spec_dir):
    whole = run_sweep(read_spec(spec_dir("a") / "zoo.toml"), workers=2, progress=False)
    folder = spec_dir("b")
    spec = read_spec(folder / "zoo.toml")
    task = spec.out / spec.tasks[0].name
    killed = {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        out = {}
        runner = threading.Thread(target=lambda: out.update(table=run_sweep(spec, scheduler=cluster.scheduler_address,
                                                                            progress=False)))
        runner.start()
        deadline = time.time() + 120
        while not (task / "model.pt").exists() and time.time() < deadline:
            time.sleep(0.02)
        busy = {w: keys for w, keys in client.processing().items() if any(spec.tasks[0].name in k for k in keys)}
        pids = client.run(os.getpid)
        for worker in busy:
            killed[worker] = pids[worker]
            os.kill(pids[worker], signal.SIGKILL)
        finished_before = (task / "result.json").exists()
        runner.join(300)
    assert killed and not finished_before                          # killed mid-run, after its first checkpoint
    table = out["table"]
    assert list(table["cell"]) == ["lstm", "gru"] and list(table["steps"]) == [160, 160]
    assert list(table["test_loss"]) == list(whole["test_loss"])    # resumed exactly: the same losses


def test_finished_tasks_are_never_run_again(spec_dir):
    spec = read_spec(spec_dir("c") / "zoo.toml")
    first = run_sweep(spec, workers=1, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in spec.out.rglob("*.pt")}
    again = run_sweep(spec, workers=1, progress=False)
    assert again.equals(first) and {p: p.stat().st_mtime_ns for p in spec.out.rglob("*.pt")} == stamps
    assert json.loads((spec.out / "results.json").read_text())[0]["cell"] == "lstm"


@pytest.mark.parametrize("body, words", [
    ("[grid]\ncorpus = ['wp.txt']\nflavour = ['x']\n", "'flavour' is not a training setting"),
    ("[grid]\ncell = ['lstm']\n", "needs corpus"),
    ("[grid]\ncorpus = []\n", "needs corpus"),
    ("[grid]\ncorpus = ['wp.txt']\ncell = 'lstm'\n", "grid.cell must be a non-empty list"),
    ("[grid]\ncorpus = ['nothere.txt']\n", "is not a file"),
    ("[grid]\ncorpus = ['wp.txt']\ncell = ['lstmx']\n", "cell must be one of"),
    ("[grid]\ncorpus = ['wp.txt']\nseed = " + str(list(range(101))) + "\nhidden = " + str(list(range(1, 101))) + "\n",
     "at most 10,000"),
    ("[gird]\n", "unknown section 'gird'"),
    ("out = \n", "is not a TOML sweep spec"),
])
def test_a_bad_spec_is_refused_in_one_line_before_any_task(spec_dir, body, words):
    folder = spec_dir("d", body)
    with pytest.raises(UserError, match=words) as e:
        read_spec(folder / "zoo.toml")
    assert "\n" not in str(e.value)
    res = CliRunner().invoke(cli, ["sweep", str(folder / "zoo.toml")])
    assert res.exit_code == 1 and words.split("'")[0].split(" ")[0] in res.output and len(res.output.splitlines()) == 1


def test_an_out_that_is_a_file_or_a_users_folder_is_refused(spec_dir):
    folder = spec_dir("e")
    spec = read_spec(folder / "zoo.toml")
    spec.out.mkdir()
    (spec.out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds files that no sweep wrote"):
        run_sweep(spec, workers=1, progress=False)
    (spec.out / "notes.txt").unlink()
    spec.out.rmdir()
    spec.out.write_text("a file")
    with pytest.raises(UserError, match="is a file, not a folder"):
        run_sweep(spec, workers=1, progress=False)
    assert spec.out.read_text() == "a file"


def test_parameters_sizes_every_task_to_one_parameter_count(spec_dir):
    from neuroscope.model import CharRNN, count_parameters
    from neuroscope.text import Vocab
    body = SPEC.replace("hidden = 24\n", "").replace('cell = ["lstm", "gru"]', 'cell = ["lstm", "mingru", "mlstm"]')
    spec = read_spec(spec_dir("sized", 'parameters = 30000\n' + body) / "zoo.toml")
    sizes = {}
    for t in spec.tasks:
        vocab = len(Vocab.from_text(open(t.corpus, encoding="utf-8").read()))
        n = count_parameters(CharRNN(t.config.model_config(vocab)))
        sizes[t.config.cell] = (t.config.hidden, n)
        assert abs(n - 30_000) / 30_000 < 0.05, (t.config.cell, t.config.hidden, n)
        assert t.params["hidden"] == t.config.hidden
    assert sizes["mingru"][0] > sizes["lstm"][0] and sizes["mlstm"][0] % 4 == 0
    with pytest.raises(UserError, match="give parameters or hidden"):
        read_spec(spec_dir("both", 'parameters = 30000\n' + SPEC) / "zoo.toml")
    with pytest.raises(UserError, match=r"parameters must be an integer in \[1,000"):
        read_spec(spec_dir("bad", 'parameters = "many"\n' + body) / "zoo.toml")
