"""neuroscope.dictionary: the TopK autoencoder's invariants, the exactness of the splice inside the
recurrence, resume giving the same dictionary, the folder read as untrusted input, and the CLI."""
from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neuroscope.cli import cli
from neuroscope.dictionary import (Dictionary, TopKSAE, held_out_quality, load_dictionary,
                                   model_fingerprint, save_dictionary, train_dictionary, unshow)
from neuroscope.dictionary._sae import losses
from neuroscope.errors import UserError
from neuroscope.features import label

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(latents=256, k=8, epochs=1, batch=512, block=4096, streams=8, warmup=64, progress=False)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, contains: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and sum(ln.startswith("Error") for ln in lines) == 1, result.stderr
    assert contains in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture(scope="module")
def ids(wp_small, warpeace):
    """20,000 training characters and 4,000 held-out ones of War and Peace, as the small model's ids."""
    return wp_small.vocab.encode(warpeace[:20_000]), wp_small.vocab.encode(warpeace[-4_000:])


# ------------------------------------------------------------------ the autoencoder's invariants

def test_topk_selects_exactly_k_and_keeps_at_most_k_on():
    sae = TopKSAE(64, 300, 7, torch.Generator().manual_seed(1))
    x = torch.randn(500, 64, generator=torch.Generator().manual_seed(2))
    values, indices = sae.select(sae.pre_acts(x))
    assert indices.shape == (500, 7) and all(len(set(r.tolist())) == 7 for r in indices)
    z = sae.encode(x)
    assert int((z != 0).sum(1).max()) <= 7 and bool((z >= 0).all())
    assert torch.allclose(sae.decode(z), sae(x), atol=1e-5)            # dense and sparse decoding agree
    fvu = float((x - sae.decode(z)).pow(2).sum(1).mean() / (x - x.mean(0)).pow(2).sum(1).mean())
    assert losses(sae, x, None)["fvu"].item() == pytest.approx(fvu, rel=1e-5)    # training's gathered decoding too
    assert torch.equal(sae.W_enc, sae.W_dec.t())                       # the encoder starts as the decoder's transpose
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(300), atol=1e-6)


def test_batch_topk_selects_k_per_row_on_average_and_reads_at_its_threshold():
    from neuroscope.dictionary._sae import ROW_CAP, batch_select
    sae = TopKSAE(64, 300, 7, torch.Generator().manual_seed(1))
    x = torch.randn(500, 64, generator=torch.Generator().manual_seed(2))
    pre = sae.pre_acts(x).detach()
    values, indices, cut = batch_select(pre, 7)
    chosen = sae.scatter(values, indices).detach() > 0
    per_row = chosen.sum(1)
    assert int(chosen.sum()) == 7 * 500                                 # k x n over the batch
    assert int(per_row.min()) < 7 < int(per_row.max()) <= ROW_CAP * 7     # rows take what they need
    assert float(pre[chosen].min()) == float(cut) >= float(pre[~chosen].max())   # the batch's largest
    sae.threshold = torch.full((300,), float(cut) - 1e-6)
    z = sae.encode(x).detach()
    assert torch.equal(z > 0, chosen) and torch.equal(z[chosen], pre[chosen])      # JumpReLU at the cut
    assert torch.allclose(sae.decode(z), sae(x), atol=1e-5)            # dense and sparse decoding agree
    out = losses(sae, x, None, (), batch_topk=True)
    assert out["cut"] is not None and int(out["fired"].sum()) == int(chosen.any(0).sum())


def test_training_steps_keep_decoder_rows_at_unit_norm_and_lower_the_loss():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(40, 32, generator=g)
    codes = torch.rand(4096, 40, generator=g) * (torch.rand(4096, 40, generator=g) < 0.1)
    x = codes @ basis                                                  # sparse in a known dictionary
    sae = TopKSAE(32, 80, 4, g)
    sae.init_from_data(x)
    assert torch.allclose(sae.b_dec, x.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    first = losses(sae, x, None)["fvu"].item()
    for _ in range(150):
        out = losses(sae, x[torch.randint(0, 4096, (256,), generator=g)], torch.zeros(80, dtype=torch.bool))
        opt.zero_grad()
        out["loss"].backward()
        sae.remove_parallel_gradient()
        along = (sae.W_dec.grad * sae.W_dec).sum(1)
        assert along.abs().max().item() < 1e-5                        # no gradient along a decoder row
        opt.step()
        sae.normalise_decoder()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(80), atol=1e-5)
    assert losses(sae, x, None)["fvu"].item() < first / 3


@torch.no_grad()
def _prefix_fvu(sae: TopKSAE, x: torch.Tensor, m: int) -> float:
    """FVU of x from the first m latents alone (the selected ones below m), computed densely."""
    z = sae.encode(x)
    z[:, m:] = 0
    return float((x - sae.decode(z)).pow(2).sum(1).mean() / (x - x.mean(0)).pow(2).sum(1).mean())


def test_the_nested_loss_is_the_mean_fvu_of_its_prefixes_and_gathers_features_early():
    g = torch.Generator().manual_seed(5)
    basis = torch.randn(40, 32, generator=g)
    x = (torch.rand(4096, 40, generator=g) * (torch.rand(4096, 40, generator=g) < 0.1)) @ basis
    sae = TopKSAE(32, 80, 4, torch.Generator().manual_seed(6))
    sae.init_from_data(x)
    out = losses(sae, x, None, (8, 20))
    want = np.mean([_prefix_fvu(sae, x, m) for m in (8, 20, 80)])
    assert out["loss"].item() == pytest.approx(want, rel=1e-5)
    assert out["fvu"].item() == pytest.approx(_prefix_fvu(sae, x, 80), rel=1e-5)
    first8 = {}
    for nested in ((), (8,)):
        sae = TopKSAE(32, 80, 4, torch.Generator().manual_seed(6))
        sae.init_from_data(x)
        opt, order = torch.optim.Adam(sae.parameters(), lr=1e-2), torch.Generator().manual_seed(7)
        for _ in range(300):
            loss = losses(sae, x[torch.randint(0, 4096, (256,), generator=order)], None, nested)["loss"]
            opt.zero_grad()
            loss.backward()
            sae.remove_parallel_gradient()
            opt.step()
            sae.normalise_decoder()
        first8[nested] = _prefix_fvu(sae, x, 8)
    assert first8[(8,)] < 0.9 * first8[()]            # the first 8 latents alone carry more of x


def test_auxk_asks_dead_latents_to_reconstruct_the_error():
    sae = TopKSAE(16, 64, 2, torch.Generator().manual_seed(3))
    x = torch.randn(128, 16, generator=torch.Generator().manual_seed(4))
    dead = torch.zeros(64, dtype=torch.bool)
    assert float(losses(sae, x, dead)["aux"]) == 0.0
    dead[:20] = True
    out = losses(sae, x, dead)
    assert out["aux"].item() > 0
    out["aux"].backward()
    assert float(sae.W_dec.grad[:20].abs().sum()) > 0 and float(sae.W_dec.grad[20:].abs().sum()) == 0


# ------------------------------------------------------------------ the splice inside the recurrence

def perfect(d_in: int) -> TopKSAE:
    """A dictionary that reconstructs every vector exactly: latents +x and -x, k = d_in."""
    sae = TopKSAE(d_in, 2 * d_in, d_in)
    eye = torch.eye(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.mark.parametrize("quantity, into", [("rnn.l1.c", "output"), ("rnn.l1.c", "memory"), ("rnn.l0.h", "output")])
def test_a_dictionary_that_reconstructs_exactly_gives_the_clean_loss(wp_small, ids, quantity, into):
    d = Dictionary(perfect(128), quantity, model_fingerprint(wp_small.model))
    q = held_out_quality(d, wp_small.model, ids[1], into=into)
    assert q["fvu"] < 1e-10 and q["dead"] < 0.5
    assert abs(q["loss_spliced"] - q["loss_clean"]) < 2e-4
    assert q["loss_ablated"] > q["loss_clean"] + 0.1
    assert abs(q["loss_recovered"] - 1) < 2e-3


@pytest.mark.parametrize("quantity", ["rnn.l1.h", "rnn.l1.c"])
def test_a_dictionary_that_gives_the_mean_recovers_nothing(wp_small, ids, quantity):
    from neuroscope.record import record
    from neuroscope.stats import shown
    sae = perfect(128)
    state = quantity.rsplit(".", 1)[1]
    with torch.no_grad():
        sae.W_dec.zero_()                                             # every state reconstructed as b_dec
        values = shown(record(wp_small.model, ids[1], (state,))[quantity], state == "c")
        sae.b_dec.copy_(torch.from_numpy(values.mean(0)))
    q = held_out_quality(Dictionary(sae, quantity, model_fingerprint(wp_small.model)), wp_small.model, ids[1])
    assert abs(q["fvu"] - 1) < 1e-4
    assert abs(q["loss_spliced"] - q["loss_ablated"]) < 1e-4 and abs(q["loss_recovered"]) < 1e-3


def test_unshow_inverts_tanh_and_keeps_saturated_cells():
    c = torch.tensor([-30000.0, -3.0, 0.0, 0.5, 6.0, 12.0, 26000.0])
    assert torch.allclose(unshow(torch.tanh(c), c, True)[1:5], c[1:5], atol=2e-3)
    back = unshow(torch.tanh(c), c, True)
    assert back[0] == c[0] and back[-1] == c[-1] and back[-2] == c[-2]      # saturated: the state as it was
    assert float(unshow(torch.tensor([0.2]), torch.tensor([40.0]), True)) == pytest.approx(math.atanh(0.2))
    assert torch.equal(unshow(torch.tensor([3.0]), torch.tensor([1.0]), False), torch.tensor([3.0]))


# ------------------------------------------------------------------ training, resume, the folder

def test_training_writes_a_saelens_folder_tied_to_its_model(wp_small, ids, tmp_path):
    d = train_dictionary(wp_small.model, ids[0], "rnn.l1.c", tmp_path / "d", held_out=ids[1], **SMALL)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    cfg = json.loads((tmp_path / "d" / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["d_sae"], cfg["k"], cfg["hook_name"]) == (128, 256, 8, "rnn.l1.c")
    assert cfg["neuroscope"]["complete"] and cfg["neuroscope"]["rows"] == 20_000
    q = cfg["neuroscope"]["held_out"]
    assert 0 < q["fvu"] < 0.8 and q["l0"] <= 8 and 0 < q["loss_recovered"] <= 1.01 and q["chars"] == 4_000
    back = load_dictionary(tmp_path / "d", wp_small.model)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(back.sae, name), getattr(d.sae, name))
    assert back.prefix == "l1.c/d" and back.quantity == "rnn.l1.c"


def interrupted(monkeypatch, saves: int, *args, **kwargs) -> None:
    """train_dictionary(*args, **kwargs), stopped by a KeyboardInterrupt right after its `saves`-th save."""
    import neuroscope.dictionary._train as trainer
    real, calls = trainer.save_dictionary, []

    def stop(*a, **k):
        real(*a, **k)
        calls.append(1)
        if len(calls) == saves:
            raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(trainer, "save_dictionary", stop)
        with pytest.raises(KeyboardInterrupt):
            train_dictionary(*args, **kwargs)


def test_resume_after_an_interrupt_gives_the_same_dictionary(wp_small, ids, tmp_path, monkeypatch):
    whole = train_dictionary(wp_small.model, ids[0], "rnn.l0.h", tmp_path / "whole", **{**SMALL, "epochs": 2})
    interrupted(monkeypatch, 3, wp_small.model, ids[0], "rnn.l0.h", tmp_path / "cut", **{**SMALL, "epochs": 2})
    half = load_dictionary(tmp_path / "cut", wp_small.model, with_state=True)
    assert not half[0].info["complete"] and half[0].info["rows"] == 3 * 4096 and "rows" in half[1]
    resumed = train_dictionary(wp_small.model, ids[0], "rnn.l0.h", tmp_path / "cut", resume=True,
                               **{**SMALL, "epochs": 2})
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.allclose(getattr(resumed.sae, name), getattr(whole.sae, name), atol=1e-6), name
    with pytest.raises(UserError, match="is complete"):
        train_dictionary(wp_small.model, ids[0], "rnn.l0.h", tmp_path / "cut", resume=True, **{**SMALL, "epochs": 2})
    half_again = tmp_path / "cut2"
    interrupted(monkeypatch, 3, wp_small.model, ids[0], "rnn.l0.h", half_again, **SMALL)
    with pytest.raises(UserError, match="keeps the settings.*k was 8, now 4"):
        train_dictionary(wp_small.model, ids[0], "rnn.l0.h", half_again, resume=True, **{**SMALL, "k": 4})
    with pytest.raises(UserError, match=r"keeps the settings.*nested was \[\], now \[16, 64\]"):
        train_dictionary(wp_small.model, ids[0], "rnn.l0.h", half_again, resume=True, **{**SMALL, "nested": (16, 64)})
    with pytest.raises(UserError, match="trained on 20,000 characters, this text has 16,000: resume reads the same"):
        train_dictionary(wp_small.model, ids[0][:16_000], "rnn.l0.h", half_again, resume=True, **SMALL)
    from safetensors.torch import load_file, save_file
    state = load_file(half_again / "training_state.safetensors")
    save_file({**state, "rows": torch.tensor([10**9])}, half_again / "training_state.safetensors")
    with pytest.raises(UserError, match="impossible row counts|claims 1,000,000,000 rows, more than its run of 1 epochs"):
        train_dictionary(wp_small.model, ids[0], "rnn.l0.h", half_again, resume=True, **SMALL)


def test_a_batch_topk_dictionary_is_saved_as_jumprelu_and_resumes_exactly(wp_small, ids, tmp_path, monkeypatch):
    settings = {**SMALL, "epochs": 2, "batch_topk": True}
    whole = train_dictionary(wp_small.model, ids[0], "rnn.l1.c", tmp_path / "whole", held_out=ids[1], **settings)
    cfg = json.loads((tmp_path / "whole" / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and cfg["neuroscope"]["config"]["batch_topk"] is True
    theta = whole.sae.threshold
    assert theta.shape == (256,) and float(theta.min()) == float(theta.max()) > 0
    assert 6 <= cfg["neuroscope"]["held_out"]["l0"] <= 10                # k 8 on average, held out
    back = load_dictionary(tmp_path / "whole", wp_small.model)
    assert torch.equal(back.sae.threshold, theta)
    interrupted(monkeypatch, 5, wp_small.model, ids[0], "rnn.l1.c", tmp_path / "cut", **settings)
    half = load_dictionary(tmp_path / "cut", wp_small.model)
    assert half.sae.threshold is not None and not half.info["complete"]      # usable mid-run
    resumed = train_dictionary(wp_small.model, ids[0], "rnn.l1.c", tmp_path / "cut", resume=True, **settings)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
        assert torch.allclose(getattr(resumed.sae, name), getattr(whole.sae, name), atol=1e-6), name
    interrupted(monkeypatch, 5, wp_small.model, ids[0], "rnn.l1.c", tmp_path / "cut2", **settings)
    with pytest.raises(UserError, match="batch_topk was True, now False"):
        train_dictionary(wp_small.model, ids[0], "rnn.l1.c", tmp_path / "cut2", resume=True,
                         **{**settings, "batch_topk": False})


def test_settings_are_checked_before_any_work(wp_small, ids, tmp_path):
    for bad, match in (({"k": 300}, "k .300. must not exceed latents"), ({"latents": 0}, "latents must be"),
                       ({"lr": float("nan")}, "lr must be"), ({"batch": 8192}, "batch .8192. must not exceed block"),
                       ({"nested": (64, 32)}, "nested must be increasing"), ({"nested": (SMALL["latents"],)}, "below latents"),
                       ({"nested": "abc"}, "nested must be")):
        with pytest.raises(UserError, match=match):
            train_dictionary(wp_small.model, ids[0], "rnn.l1.c", tmp_path / "x", **{**SMALL, **bad})
    with pytest.raises(UserError, match="too few characters to train: 1,000"):
        train_dictionary(wp_small.model, ids[0][:1000], "rnn.l1.c", tmp_path / "x", **SMALL)
    with pytest.raises(UserError, match="not rnn.l5.c"):
        train_dictionary(wp_small.model, ids[0], "rnn.l5.c", tmp_path / "x", **SMALL)
    assert not (tmp_path / "x").exists()


def test_nan_states_stop_training_with_one_line(wp_small, ids, tmp_path):
    import copy
    model = copy.deepcopy(wp_small.model)
    with torch.no_grad():
        model.rnn.weight_hh_l0[0, 0] = float("nan")
    with pytest.raises(UserError, match="NaN"):
        train_dictionary(model, ids[0], "rnn.l1.c", tmp_path / "n", **SMALL)
    assert not (tmp_path / "n").exists()


def test_a_folder_is_untrusted_input(wp_small, reference, ids, tmp_path):
    d = Dictionary(perfect(128), "rnn.l1.c", model_fingerprint(wp_small.model), {"complete": True})
    save_dictionary(tmp_path / "d", d)
    assert load_dictionary(tmp_path / "d", wp_small.model).sae.k == 128
    with pytest.raises(UserError, match="trained on another model"):
        load_dictionary(tmp_path / "d", reference("wp_lstm3x512").model)
    weights = tmp_path / "d" / "sae_weights.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(pickle.dumps({"W_enc": np.zeros(3)}))         # pickled, not safetensors: nothing runs
    with pytest.raises(UserError, match="is not a safetensors file"):
        load_dictionary(tmp_path / "d")
    weights.write_bytes(good[:len(good) // 2])
    with pytest.raises(UserError, match="is not a safetensors file"):
        load_dictionary(tmp_path / "d")
    weights.write_bytes(good)
    cfg = tmp_path / "d" / "cfg.json"
    text = cfg.read_text()
    for before, after, match in (('"k": 128', '"k": 999', "k 999 exceeds d_sae 256"),
                                 ('"d_in": 128', '"d_in": 64', "W_enc must be float32 .64, 256."),
                                 ('"quantity": "rnn.l1.c"', '"quantity": "rnn.l1.gate_f"', "reads h or c")):
        cfg.write_text(text.replace(before, after))
        with pytest.raises(UserError, match=match):
            load_dictionary(tmp_path / "d")
    cfg.write_text(text.replace('"k": 128,', '"k": 64,'))               # the two copies of k disagree
    with pytest.raises(UserError, match="activation_fn_kwargs.k"):
        load_dictionary(tmp_path / "d")
    cfg.write_text("{not json")
    with pytest.raises(UserError, match="is not JSON"):
        load_dictionary(tmp_path / "d")
    cfg.write_text(text.replace('"architecture": "topk"', '"architecture": "gated"'))
    with pytest.raises(UserError, match="architecture must be one of topk, jumprelu, got 'gated'"):
        load_dictionary(tmp_path / "d")
    cfg.write_text(text.replace('"architecture": "topk"', '"architecture": "jumprelu"'))
    with pytest.raises(UserError, match=r"threshold must be float32 \(256,\), found missing"):
        load_dictionary(tmp_path / "d")
    d.sae.threshold = torch.full((256,), -0.5)
    save_dictionary(tmp_path / "d", d, force=True)
    with pytest.raises(UserError, match="threshold must not be negative"):
        load_dictionary(tmp_path / "d")


# ------------------------------------------------------------------ the command

def test_the_command_prints_the_json_keys_and_refuses_bad_input(shared_models, shared_data, tmp_path):
    ckpt, text = shared_models / "wp_lstm2x128.pt", shared_data / "warpeace.txt"
    common = ["dictionary", "--ckpt", ckpt, "--text", text, "--quantity", "l1.c", "--chars", 12_000,
              "--held-out", 2_000, "--latents", 256, "--k", 8, "--batch", 512, "--epochs", 1]
    result = run(*common, "--out", tmp_path / "d", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"fvu", "l0", "dead", "loss_recovered", "latents", "k", "chars", "seconds"} <= set(out)
    assert (out["latents"], out["k"], out["chars"], out["quantity"]) == (256, 8, 12_000, "rnn.l1.c")
    assert 0 < out["fvu"] < 1 and 0 <= out["dead"] <= 1 and out["l0"] <= 8
    batch = run(*common, "--batch-topk", "--out", tmp_path / "b", "--json")
    assert batch.exit_code == 0, batch.output
    assert json.loads((tmp_path / "b" / "cfg.json").read_text())["architecture"] == "jumprelu"
    assert 4 <= json.loads(batch.stdout)["l0"] <= 12
    one_line_error(run(*common, "--out", tmp_path / "d"), "exists")
    one_line_error(run(*common, "--out", ckpt, "--force"), "is an input of this command")
    one_line_error(run(*common[:-4], "--k", 300, "--latents", 256, "--epochs", 1, "--out", tmp_path / "e"),
                   "must not exceed latents")
    one_line_error(run(*common[:7], "--chars", 100, *common[9:], "--out", tmp_path / "f"), "too few characters")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("a user's file")
    one_line_error(run(*common, "--out", tmp_path / "notes", "--force"), "is a folder that is not a dictionary")
    assert (tmp_path / "notes" / "mine.txt").exists()


# ------------------------------------------------------------------ latents are units: explain

@pytest.fixture(scope="module")
def small_dictionary(wp_small, ids, tmp_path_factory):
    out = tmp_path_factory.mktemp("dict") / "d"
    return train_dictionary(wp_small.model, ids[0], "rnn.l1.c", out, **SMALL)


def test_explain_reads_latents_as_units(wp_small, warpeace, small_dictionary):
    from neuroscope.dictionary import latent_values
    from neuroscope.explain import explain
    text = warpeace[-6_000:]
    result = explain(wp_small, text, top_units=3, dictionary=small_dictionary, contexts=False)
    units = list(dict.fromkeys(result.table["unit"]))
    assert len(units) == 3 and all(u.startswith("l1.c/d.") for u in units)
    assert "latents" in result.meta["value"]
    # the three are the most variable latents over the text, and their values are the encoder's
    values = latent_values(small_dictionary, wp_small.model, wp_small.vocab.encode(text)).astype(np.float32)
    assert sorted(int(u.rsplit(".", 1)[1]) for u in units) == sorted(np.argsort(-values.var(0))[:3].tolist())
    named = explain(wp_small, text, [units[0]], dictionary=small_dictionary, contexts=False)
    assert named.table["unit"].iloc[0] == units[0]
    with pytest.raises(UserError, match="is not a latent of the dictionary over rnn.l1.c"):
        explain(wp_small, text, ["l0.h/d.3"], dictionary=small_dictionary)
    with pytest.raises(UserError, match="does not exist: the dictionary has 256"):
        explain(wp_small, text, ["l1.c/d.256"], dictionary=small_dictionary)


def test_explain_command_takes_a_dictionary(shared_models, shared_data, small_dictionary, tmp_path):
    ckpt, text = shared_models / "wp_lstm2x128.pt", shared_data / "warpeace.txt"
    result = run("explain", "--ckpt", ckpt, "--text", text, "--chars", 6000, "--dictionary", small_dictionary.path,
                 "--top-units", 2, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["units"]) == 2 and all("/d." in row["unit"] for row in out["units"])
    one_line_error(run("explain", "--ckpt", shared_models / "wp_lstm3x512.pt", "--text", text, "--chars", 6000,
                       "--dictionary", small_dictionary.path, "--top-units", 2), "trained on another model")


# ------------------------------------------------------------------ steering

def test_steering_adds_the_latent_direction_at_every_step(wp_small, small_dictionary):
    from neuroscope.dictionary import steered
    from neuroscope.hooks import Trace
    ids = torch.as_tensor(wp_small.vocab.encode("The old prince said, \"Well, well.\" And then he went out."))[None]
    w = small_dictionary.sae.W_dec[5].detach()
    with torch.no_grad():
        with Trace(wp_small.model, names=["rnn.l1.h", "rnn.l1.c", "rnn.l1.gate_o"]) as clean:
            wp_small.model(ids)
        with steered(wp_small.model, small_dictionary, {"l1.c/d.5": 0.0}, names=["rnn.l1.h"]) as zero:
            wp_small.model(ids)
        with steered(wp_small.model, small_dictionary, {"l1.c/d.5": 0.5}, names=["rnn.l1.h", "rnn.l1.c"]) as pushed:
            wp_small.model(ids)
    assert torch.allclose(zero["rnn.l1.h"], clean["rnn.l1.h"], atol=1e-5)     # loop and recover round apart
    # at the first step, h = o * (tanh(c) + 0.5 w): the push, gated by o, and the memory c untouched
    first = pushed["rnn.l1.h"][0, 0] - clean["rnn.l1.h"][0, 0]
    assert torch.allclose(first, 0.5 * clean["rnn.l1.gate_o"][0, 0] * w, atol=1e-5)
    assert torch.allclose(pushed["rnn.l1.c"][0, 0], clean["rnn.l1.c"][0, 0], atol=1e-6)
    assert float((pushed["rnn.l1.h"] - clean["rnn.l1.h"]).abs().mean()) > 0.01


def test_the_sample_command_steers_and_refuses_bad_steers(shared_models, small_dictionary):
    ckpt = shared_models / "wp_lstm2x128.pt"
    base = ["sample", "--ckpt", ckpt, "--length", 200, "--seed", 3, "--json"]
    plain = json.loads(run(*base).stdout)["text"]
    zero = json.loads(run(*base, "--dictionary", small_dictionary.path, "--steer", "l1.c/d.5=0").stdout)["text"]
    strong = run(*base, "--dictionary", small_dictionary.path, "--steer", "l1.c/d.5=+40")
    assert strong.exit_code == 0, strong.output
    assert zero == plain and json.loads(strong.stdout)["text"] != plain
    assert json.loads(strong.stdout)["steer"] == {"l1.c/d.5": 40.0}
    one_line_error(run(*base, "--steer", "l1.c/d.5=1"), "go together")
    one_line_error(run(*base, "--dictionary", small_dictionary.path, "--steer", "l1.c/d.5"), "bad --steer")
    one_line_error(run(*base, "--dictionary", small_dictionary.path, "--steer", "l1.c/d.5=inf"), "bad --steer")
    one_line_error(run(*base, "--dictionary", small_dictionary.path, "--steer", "l0.h/d.5=1"), "is not a latent")


# ------------------------------------------------------------------ latents are units: probe

def test_probe_ranks_latents_with_the_same_statistics(wp_small, warpeace, small_dictionary):
    from neuroscope.dictionary import latent_values
    from neuroscope.probe import probe
    text = warpeace[-20_000:]
    y = label(text, "in_quote")
    result = probe(wp_small, text, {"in_quote": y}, dictionary=small_dictionary, sparse=False, streams=1)
    ranking = result.ranking
    assert len(ranking) == 256 and ranking["unit_id"].str.startswith("l1.c/d.").all()
    assert set(ranking["state"]) == {"c/d"} and result.meta["quantities"] == ["rnn.l1.c/d"]
    # r is the Pearson correlation of each latent's activation with the labels, as for a unit
    z = latent_values(small_dictionary, wp_small.model, wp_small.vocab.encode(text), streams=1).astype(np.float64)
    live = z.std(0) > 0
    r = np.array([np.corrcoef(z[:, j], y)[0, 1] if live[j] else 0.0 for j in range(256)])
    got = ranking.set_index("unit")["r"].sort_index().to_numpy()
    assert np.allclose(np.nan_to_num(got[live]), r[live], atol=2e-3)
    assert ranking["control_max_abs_r"].notna().all() and ranking["p_adjusted"].notna().any()
    ablated = probe(wp_small, text, {"in_quote": y}, dictionary=small_dictionary, sparse=False, null=False,
                    ablate=2, ablate_chars=1000, ablate_draws=2).ablation
    assert len(ablated) == 1 and ablated["units"].iloc[0] == ",".join(ranking["unit_id"].head(2))
    assert np.isfinite(ablated[["delta_off", "random_off_mean", "random_off_std"]].to_numpy(float)).all()


@pytest.mark.parametrize("quantity", ["rnn.l1.h", "rnn.l0.c"])
def test_zeroing_latents_takes_their_part_of_the_reconstruction_out(wp_small, ids, quantity):
    from neuroscope.dictionary import latent_zeroed_losses
    from neuroscope.record import char_losses, zeroed_losses
    d = Dictionary(perfect(128), quantity, model_fingerprint(wp_small.model))
    text = ids[1][:600]
    none, every = latent_zeroed_losses(d, wp_small.model, text, [[], list(range(256))])
    assert np.allclose(none, char_losses(wp_small.model, text), atol=1e-4)        # nothing taken out: clean
    if quantity.endswith(".h"):                                   # all of h taken out: h held at zero
        assert np.allclose(every, zeroed_losses(wp_small.model, text, [{quantity: list(range(128))}])[0], atol=1e-4)
    assert float(every.mean()) > float(none.mean()) + 0.05


def test_probe_command_takes_a_dictionary(shared_models, shared_data, small_dictionary, tmp_path):
    ckpt, text = shared_models / "wp_lstm2x128.pt", shared_data / "warpeace.txt"
    args = ["probe", "--ckpt", ckpt, "--text", text, "--chars", 8000, "--feature", "in_quote",
            "--dictionary", small_dictionary.path, "--no-sparse"]
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["units"][0]["unit_id"].startswith("l1.c/d.")
    printed = run(*args)
    assert printed.exit_code == 0 and "256 latents of rnn.l1.c, read as" in printed.stdout
    reported = run(*args, "--report", tmp_path / "r.html")              # the page colours the latents
    assert reported.exit_code == 0, reported.output
    assert '"l1.c/d.' in (tmp_path / "r.html").read_text(encoding="utf-8")
    one_line_error(run("probe", "--ckpt", shared_models / "wp_lstm3x512.pt", "--text", text, "--chars", 8000,
                       "--feature", "in_quote", "--dictionary", small_dictionary.path), "trained on another model")
