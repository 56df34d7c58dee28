"""The cells beyond PyTorch's own (neuroscope.model.cells): their gradients, their recording and editing
through the Trace, their checkpoints, the analyses on a trained one, and what they refuse."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neuroscope.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from neuroscope.cli import cli
from neuroscope.errors import UserError
from neuroscope.hooks import HookError, Trace, quantity_names
from neuroscope.model import CharRNN, ModelConfig, count_parameters, hidden_for_parameters
from neuroscope.model.cells import LAYERS, CellStack, linear_scan
from neuroscope.names import cell_states
from neuroscope.record import Intervention, char_losses, record
from neuroscope.train import TrainConfig, stdlib_corpus, train

NEW = tuple(LAYERS)                      # mingru, minlstm, slstm, mlstm, ssm
pytestmark = pytest.mark.usefixtures("one_thread")


def model(cell: str, hidden: int = 16, layers: int = 2, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(ModelConfig(vocab_size=30, cell=cell, hidden_size=hidden, num_layers=layers)).eval()


def test_the_scan_is_the_recurrence_and_its_gradient_is_exact():
    torch.manual_seed(0)
    log_a = (-torch.rand(2, 37, 3, dtype=torch.double)).requires_grad_()
    b = torch.randn(2, 37, 3, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    h, steps = h0, []
    for t in range(37):
        h = log_a[:, t].exp() * h + b[:, t]
        steps.append(h)
    torch.testing.assert_close(linear_scan(log_a, b, h0), torch.stack(steps, 1), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(linear_scan, (log_a, b, h0))


@pytest.mark.parametrize("cell", NEW)
def test_each_cell_passes_a_gradient_check(cell):
    torch.manual_seed(1)
    stack = CellStack(cell, 5, 8, 2).double()
    x = torch.randn(2, 7, 5, dtype=torch.double, requires_grad=True)
    _, state = stack(torch.randn(2, 3, 5, dtype=torch.double))          # a state that is not zero
    state = tuple(s.detach() for s in state)
    assert torch.autograd.gradcheck(lambda x: stack(x, state)[0], (x,), atol=1e-6)
    weight = next(stack.parameters())
    weight.grad = None
    stack(x, state)[0].square().sum().backward()
    assert float(weight.grad.abs().sum()) > 0                          # the weights learn too


@pytest.mark.parametrize("cell", NEW)
def test_recording_step_by_step_equals_the_training_forward(cell):
    """The parallel (or fused) forward, the recording without edits, and the steps that edits use agree to
    1e-5 over 300 characters read in two chunks with the state carried (past an mLSTM block of 128)."""
    net = model(cell, hidden=16)
    ids = torch.randint(0, 30, (2, 300))
    with torch.no_grad():
        logits, _ = net(ids)
        with Trace(net, gates=True) as plain:
            first, state = net(ids[:, :170])
            second, _ = net(ids[:, 170:], state)
        with Trace(net, gates=True, edit={"rnn.l0.h": lambda v, t: None, "rnn.l1.h": lambda v, t: None}) as steps:
            stepped, _ = net(ids)
    torch.testing.assert_close(torch.cat([first, second], 1), logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stepped, logits, rtol=1e-5, atol=1e-5)
    names = quantity_names(net)
    assert names[:len(cell_states(cell))] == [f"rnn.l0.{s}" for s in cell_states(cell)]
    assert plain.keys() == names == steps.keys()
    for name in names:
        assert plain[name].shape == (2, 300, 16)
        torch.testing.assert_close(plain[name], steps[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", NEW)
def test_interventions_zero_clamp_and_scale_in_the_recurrence(cell):
    net = model(cell, hidden=16)
    ids = np.random.default_rng(0).integers(0, 30, 120)
    editable = [s for s in ("h", "c") if s in cell_states(cell)]
    clean = record(net, ids, states=editable)
    base = char_losses(net, ids)
    for state in editable:
        name = f"rnn.l1.{state}"
        for op, value, want in (("zero", 0.0, 0.0), ("clamp", 0.7, 0.7)):
            iv = Intervention(name, [3, 5], op, value, positions=slice(40, None))
            got = record(net, ids, states=editable, interventions=[iv])
            np.testing.assert_allclose(got[name][40:, [3, 5]], want, atol=1e-6)
            np.testing.assert_allclose(got[name][:40], clean[name][:40], atol=1e-6)   # nothing moves before
            losses = char_losses(net, ids, [iv])
            np.testing.assert_allclose(losses[:40], base[:40], atol=1e-5)
            assert np.abs(losses[40:] - base[40:]).max() > 1e-4                       # the logits see it
        scaled = record(net, ids, states=editable, interventions=[Intervention(name, [3], "scale", 2.0,
                                                                             positions=[40])])
        np.testing.assert_allclose(scaled[name][40, 3], 2 * clean[name][40, 3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["slstm", "mlstm", "ssm"])
def test_a_direction_added_to_the_shown_cell_state_moves_it_by_that_much(cell):
    """The edit dictionaries steer and patch through (hooks.SHOWN_C): a direction added to tanh(c), carried back
    to c on the units it touches; nothing before the step moves."""
    net = model(cell, hidden=16)
    ids = torch.randint(0, 30, (1, 50))
    direction = torch.zeros(16)
    direction[[2, 9]] = torch.tensor([0.2, -0.1])
    with torch.no_grad():
        with Trace(net, names="rnn.l0.c") as clean:
            net(ids[:, :20])
        with Trace(net, names="rnn.l0.c", edit={"rnn.l0.tanh_c": lambda v, t: v.add_(direction) if t == 19 else None}) \
                as moved:
            net(ids[:, :20])
    shown_clean, shown_moved = torch.tanh(clean["rnn.l0.c"][0, 19]), torch.tanh(moved["rnn.l0.c"][0, 19])
    torch.testing.assert_close(shown_moved - shown_clean, direction, rtol=0, atol=2e-5)
    torch.testing.assert_close(moved["rnn.l0.c"][0, :19], clean["rnn.l0.c"][0, :19], rtol=0, atol=1e-5)


@pytest.mark.parametrize("cell", NEW)
def test_a_checkpoint_of_each_cell_round_trips(cell, tmp_path):
    net = model(cell, hidden=12)
    text = "abc defg hij\n" * 5
    from neuroscope.checkpoint import Checkpoint
    from neuroscope.text import Vocab
    vocab = Vocab.from_text(text)
    net = CharRNN(ModelConfig(vocab_size=len(vocab), cell=cell, hidden_size=12, num_layers=2)).eval()
    save_checkpoint(tmp_path / "m.pt", Checkpoint(net, vocab))
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert blob["config"]["cell"] == cell
    back = load_checkpoint(tmp_path / "m.pt")
    ids = torch.as_tensor(vocab.encode(text))[None]
    with torch.no_grad():
        torch.testing.assert_close(back.model(ids)[0], net(ids)[0], rtol=0, atol=0)
    assert type(back.model.rnn) is CellStack and back.config.cell == cell


def test_the_hidden_size_matches_a_parameter_count_for_every_cell():
    for cell in ("lstm", "gru", "rnn") + NEW:
        config = ModelConfig(vocab_size=80, cell=cell, num_layers=2)
        hidden = hidden_for_parameters(config, 400_000)
        n = count_parameters(CharRNN(ModelConfig(vocab_size=80, cell=cell, hidden_size=hidden, num_layers=2)))
        assert abs(n - 400_000) / 400_000 < 0.01, (cell, hidden, n)
        assert cell != "mlstm" or hidden % 4 == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of each new cell, trained for 40 steps on the standard library's sources."""
    text = stdlib_corpus(120_000)
    folder = tmp_path_factory.mktemp("cells")
    (folder / "corpus.txt").write_text(text, encoding="utf-8")
    out = {}
    for cell in NEW:
        config = TrainConfig(cell=cell, layers=2, hidden=16, batch=8, seq=32, lr=1e-2, steps=40, eval_every=20,
                             sample_at=(), sample_chars=20, final_sample_chars=20, val_chars=2000, test_chars=2000,
                             device="cpu", seed=0)
        out[cell] = folder / f"{cell}.pt"
        c = train(text, config, out[cell], progress=False)
        assert c.train["test_loss_nats"] < math.log(len(c.vocab))      # it learned something
    return folder, out


@pytest.mark.parametrize("cell", NEW)
def test_probe_and_explain_run_from_the_command_line_on_a_trained_checkpoint(cell, trained):
    folder, paths = trained
    runner = CliRunner()
    common = ["--ckpt", str(paths[cell]), "--text", str(folder / "corpus.txt"), "--chars", "6000"]
    res = runner.invoke(cli, ["probe", *common, "--feature", "line_position", "--json"])
    assert res.exit_code == 0, res.output
    found = json.loads(res.output)
    units = found["units"]
    assert len(units) > 0 and all(u["unit_id"].split(".")[1] in cell_states(cell) for u in units)
    assert max(abs(u["r"]) for u in units) > 0.2
    res = runner.invoke(cli, ["explain", *common, "--top-units", "3", "--json"])
    assert res.exit_code == 0, res.output
    explained = json.loads(res.output)["units"]
    assert len(explained) == 3 and all(0 <= u["formulas"][0]["iou_heldout"] <= 1 for u in explained)
    from neuroscope.checkpoint import choose_text
    ckpt = load_checkpoint(paths[cell])
    span = choose_text(ckpt, str(folder / "corpus.txt"), chars=6000).text
    values = record(ckpt.model, np.asarray(ckpt.vocab.encode(span)), states=("h",))["rnn.l1.h"][:, 0]
    at = int(np.convolve(values, np.ones(6), "valid").argmax())        # where unit l1.h.0 is highest
    res = runner.invoke(cli, ["match", *common, "--span", f"{at}:{at + 6}", "--units", "l1.h.0", "--json"])
    assert res.exit_code == 0, res.output
    assert [q["unit"] for q in json.loads(res.output)["query"]] == ["l1.h.0"]


def test_resume_of_a_new_cell_continues_exactly(tmp_path):
    """The carried state of an mLSTM (a matrix memory per head) is stored and checked like an LSTM's."""
    text = stdlib_corpus(60_000)
    config = TrainConfig(cell="mlstm", layers=1, hidden=16, batch=4, seq=16, lr=1e-2, steps=20, eval_every=10,
                         sample_at=(), sample_chars=10, final_sample_chars=10, val_chars=1000, test_chars=1000,
                         device="cpu", seed=2)
    from dataclasses import replace
    straight = train(text, config, tmp_path / "a.pt", progress=False)
    train(text, replace(config, steps=10), tmp_path / "b.pt", progress=False)
    resumed = train(text, config, tmp_path / "b.pt", progress=False, resume=True)
    for k, v in straight.extra["resume"]["model"].items():
        torch.testing.assert_close(resumed.extra["resume"]["model"][k], v, atol=1e-6, rtol=0)


def test_an_unknown_cell_is_one_line_everywhere(tmp_path, trained):
    _, paths = trained
    res = CliRunner().invoke(cli, ["train", str(paths["mingru"]), "--out", str(tmp_path / "x.pt"), "--cell", "gpt"])
    assert res.exit_code == 2 and "'gpt' is not one of" in res.output
    blob = torch.load(paths["mingru"], weights_only=True)
    blob["config"]["cell"] = "transformer"
    torch.save(blob, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match=r"unknown cell 'transformer' \(known: lstm, gru, rnn, mingru"):
        load_checkpoint(tmp_path / "unknown.pt")
    with pytest.raises(UserError, match="multiple of 4"):
        TrainConfig(cell="mlstm", hidden=30).check()


@pytest.mark.parametrize("claimed", ["minlstm", "lstm", "ssm"])
def test_a_checkpoint_whose_cell_field_and_weights_disagree_is_refused_in_one_line(claimed, tmp_path, trained):
    _, paths = trained
    blob = torch.load(paths["mingru"], weights_only=True)
    blob["config"]["cell"] = claimed
    torch.save(blob, tmp_path / "liar.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "liar.pt")
    message = str(info.value)
    assert f"weights do not fit the config ({claimed}, 2 x 16)" in message and "\n" not in message
    res = CliRunner().invoke(cli, ["info", "--ckpt", str(tmp_path / "liar.pt")])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "Traceback" not in res.output


def test_a_state_the_cell_does_not_have_is_refused_in_one_line(trained):
    folder, paths = trained
    res = CliRunner().invoke(cli, ["probe", "--ckpt", str(paths["mingru"]), "--text", str(folder / "corpus.txt"),
                                   "--feature", "line_position", "--states", "h,norm"])
    assert res.exit_code == 0, res.output                     # norm skipped, as c is on a GRU: h remains
    res = CliRunner().invoke(cli, ["probe", "--ckpt", str(paths["mingru"]), "--text", str(folder / "corpus.txt"),
                                   "--feature", "line_position", "--states", "norm"])
    assert res.exit_code == 1 and "--states norm name nothing in this mingru model, which has h, gates (z, g)" in res.output
    res = CliRunner().invoke(cli, ["probe", "--ckpt", str(paths["mlstm"]), "--text", str(folder / "corpus.txt"),
                                   "--feature", "line_position", "--states", "r"])
    assert res.exit_code == 1 and "--states r name nothing in this mlstm model, which has h, c, norm, stab, gates" in res.output
    net = load_checkpoint(paths["mingru"]).model
    with pytest.raises(UserError, match="cannot intervene on 'rnn.l0.c': this model has rnn.l0.h, rnn.l1.h"):
        char_losses(net, np.arange(10) % 5, [Intervention("rnn.l0.c", [1])])
    with pytest.raises(HookError, match="no recorded quantity is named 'rnn.l0.norm'"):
        Trace(net, names="rnn.l0.norm")
    with pytest.raises(HookError, match="cannot edit 'rnn.l0.gate_z'"):
        Trace(net, edit={"rnn.l0.gate_z": lambda v, t: None})


def test_the_sweep_measure_finds_and_explains_units_of_a_new_cell(trained):
    from neuroscope.cli._sweep import probe_measure
    folder, paths = trained
    ckpt = load_checkpoint(paths["slstm"])
    out = probe_measure(ckpt, str(folder / "corpus.txt"), ["line_position", "in_comment"], chars=6000,
                        explain=True, explain_units=20, sample_chars=10)
    assert out["line_position_unit"].split(".")[1] in ("h", "c") and abs(out["line_position_r"]) > 0.2
    assert 0 <= out["line_position_iou"] <= 1
    assert out["explained_of"] == 20 and out["explained_units"] == round(out["explained_share"] * 20)
    assert out["sample"] == ckpt.train["final_sample_t05"][:10]


def test_a_live_report_of_a_new_cell_is_built_and_says_the_page_cannot_run_it(trained, tmp_path):
    folder, paths = trained
    res = CliRunner().invoke(cli, ["report", "--ckpt", str(paths["ssm"]), "--text", str(folder / "corpus.txt"),
                                   "--chars", "3000", "--feature", "line_position", "--live",
                                   "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "This page cannot run the model: its live script runs LSTM, GRU and RNN cells, and this model&#x27;s " \
           "cell is ssm" in page
    assert '"live":' not in page and "this cell does not run in the page" in res.output


@pytest.mark.parametrize("cell", ["slstm", "ssm"])
def test_a_dictionary_over_a_new_cell_splices_back_into_its_recurrence(cell, trained, tmp_path):
    """Dictionary features on every cell: trained over c (through tanh(c) carried back) or h, measured held out."""
    folder, paths = trained
    quantity = "rnn.l1.c" if "c" in cell_states(cell) else "rnn.l1.h"
    res = CliRunner().invoke(cli, ["dictionary", "--ckpt", str(paths[cell]), "--text", str(folder / "corpus.txt"),
                                   "--chars", "20000", "--held-out", "3000", "--quantity", quantity,
                                   "--latents", "64", "--k", "8", "--out", str(tmp_path / "d"), "--json"])
    assert res.exit_code == 0, res.output
    quality = json.loads(res.output)
    # 40 training steps leave the ablated loss near the clean one, so loss_recovered (a ratio) means little
    # here: the spliced loss is measured through the recurrence, and it is finite
    assert 0 <= quality["fvu"] < 1 and quality["quantity"] == quantity
    assert math.isfinite(quality["loss_spliced"]) and quality["loss_spliced"] >= quality["loss_clean"] - 0.05
    res = CliRunner().invoke(cli, ["probe", "--ckpt", str(paths[cell]), "--text", str(folder / "corpus.txt"),
                                   "--chars", "4000", "--feature", "line_position", "--dictionary", str(tmp_path / "d"),
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert all("/d." in u["unit_id"] for u in json.loads(res.output)["units"])


@pytest.mark.parametrize("cell", ["mlstm", "ssm", "minlstm"])
def test_patch_and_attribute_run_on_a_new_cell(cell, trained, tmp_path):
    from neuroscope.causes import attribute, patch
    folder, paths = trained
    ckpt = load_checkpoint(paths[cell])
    base, source = "def f(x):\n    return x + 1\n", "def g(y):\n    return y * 2\n"
    same = patch(ckpt, base, base, at=[10], what="all")                   # a patch from the base itself
    moved = patch(ckpt, base, source, at=[10], what="all")                # every state from another text
    assert same.steps["position"].min() == moved.steps["position"].min() == 10
    assert same.steps["kl"].abs().max() < 1e-6 and moved.steps["kl"].max() > 1e-8      # young models: small, not 0
    unit = "l1.c.3" if "c" in cell_states(cell) else "l1.h.3"
    found = attribute(ckpt, base * 3, unit, at=40, window=20)
    assert abs(found.completeness) < 0.01 and len(found.table) == 21
    res = CliRunner().invoke(cli, ["attribute", "--ckpt", str(paths[cell]), "--text", str(folder / "corpus.txt"),
                                   "--chars", "500", "--unit", unit, "--at", "300", "--window", "20"])
    assert res.exit_code == 0, res.output
