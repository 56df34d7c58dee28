"""Training a dictionary from a streamed recording, with memory bounded at any text length.

Each epoch records the training text afresh (record.iter_states: the shown value of one quantity, as
parallel streams after a warm-up), fills a block of `block` rows (the shuffle buffer: block x d_in x 4
bytes), shuffles it with a generator seeded by (seed, epoch, block) and trains on its batches. After
every block the folder is published whole (neuroscope.files: atomic, never half a folder) with the
training state, so an interrupted run leaves a usable dictionary ("complete": false) and `resume`
continues from the block after it, giving the same weights as an uninterrupted run.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import DictionaryConfig, configured
from ..errors import UserError
from ..files import WriterLock, check_output
from ..names import parse_quantity, state_names
from ..record import iter_states
from ..stats import shown
from ._folder import STATE, Dictionary, load_dictionary, model_fingerprint, save_dictionary
from ._quality import held_out_quality
from ._sae import TopKSAE, losses

# What a resumed run must share with the run it continues; epochs may grow (train longer).
SAME_ON_RESUME = ("latents", "k", "nested", "batch_topk", "batch", "lr", "block", "dead_after", "seed",
                  "streams", "warmup")


@dataclass
class _Run:
    """What moves during training: the autoencoder, Adam, rows trained on, when each latent last fired."""
    sae: TopKSAE
    opt: torch.optim.Adam
    rows: int = 0
    last_fired: torch.Tensor | None = None
    started: float = 0.0
    fvu: float = float("nan")            # the last batch's, as training goes
    cuts: list = field(default_factory=list)    # BatchTopK: each batch's smallest selected value, this block


def train_dictionary(model, ids: np.ndarray, quantity: str, out, config: DictionaryConfig | None = None, *,
                     held_out: np.ndarray | None = None, resume: bool = False, force: bool = False, inputs=(),
                     **overrides) -> Dictionary:
    """Train a TopK dictionary over `quantity` ("rnn.l1.c", h or c) of `model` (a CharRNN or Checkpoint)
    on ids (int64 [N], the training text) and keep it in folder `out`; see the module docstring. held_out: ids of text not
    trained on, measured at the end (held_out_quality, kept in the folder as info["held_out"]).
    resume: continue the unfinished run in `out`. Returns the Dictionary."""
    config = configured(DictionaryConfig, config, overrides)
    model = getattr(model, "model", model)              # a Checkpoint, or its CharRNN
    q = parse_quantity(quantity)
    _check_quantity(model, q)
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 4 * config.batch:
        raise UserError(f"too few characters to train: {len(ids):,}, need at least {4 * config.batch:,} "
                        f"(4 batches of {config.batch:,})", param="text")
    out = Path(out)
    if not resume:
        check_output(out, "dictionary", force, inputs)
    with WriterLock(out):
        run, d = _start(model, ids, q.name, out, config, resume)
        bar = tqdm(total=config.epochs * len(ids), initial=min(run.rows, config.epochs * len(ids)), desc="dictionary",
                   unit="row", unit_scale=True, disable=not config.progress, leave=False)
        for epoch in range(config.epochs):
            _epoch(run, d, model, ids, epoch, config, (out, inputs), bar)
        bar.close()
        if held_out is not None:
            d.info["held_out"] = held_out_quality(d, model, held_out, config.progress)
        d.info.update(complete=True, seconds=_seconds(run, d))
        save_dictionary(out, d, None, True, inputs)
    return d


def _seconds(run: _Run, d: Dictionary) -> float:
    return round(d.info.get("seconds_before", 0) + time.perf_counter() - run.started, 1)


def _check_quantity(model, q) -> None:
    cfg = model.config
    have = state_names(cfg, ("h", "c"))
    if q.name not in have:
        have = ", ".join(have)
        raise UserError(f"a dictionary reads h or c of a layer; this model has {have}, not {q.name}", param="quantity")


def _start(model, ids, quantity: str, out: Path, config: DictionaryConfig, resume: bool) -> tuple[_Run, Dictionary]:
    """A fresh run (b_dec at the mean of the first block's worth of states), or the one saved in `out`."""
    sae = TopKSAE(model.config.hidden_size, config.latents, config.k,
                  torch.Generator().manual_seed(config.seed)).to(config.device)
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr, eps=6.25e-10)
    run = _Run(sae, opt, 0, torch.zeros(config.latents, dtype=torch.long, device=config.device), time.perf_counter())
    kept = {k: v for k, v in asdict(config).items() if k != "progress"}
    info = {"complete": False, "config": kept, "chars": len(ids), "rows": 0}
    d = Dictionary(sae, quantity, model_fingerprint(model), info, out)
    if resume:
        _restore(run, d, out, model, config)
    else:
        first = next(_rows(model, ids[:config.block], quantity, config))
        sae.init_from_data(first.to(config.device))
    return run, d


def _rows(model, ids, quantity, config):
    """The shown values of the quantity over ids, in blocks of at most config.block rows (float32 CPU)."""
    q = parse_quantity(quantity)
    buf, n = torch.empty(config.block, model.config.hidden_size), 0
    for _, acts in iter_states(model, ids, (q.state,), progress=False, streams=config.streams,
                               warmup=config.warmup, chunk=8192):
        v = torch.from_numpy(shown(acts[quantity], q.squash, inplace=True))
        if not bool(torch.isfinite(v).all()):
            raise UserError(f"the states of {quantity} hold NaN or inf: the model's weights are broken", param="model")
        while len(v):
            take = min(len(v), config.block - n)
            buf[n:n + take], v, n = v[:take], v[take:], n + take
            if n == config.block:
                yield buf
                buf, n = torch.empty_like(buf), 0
    if n:
        yield buf[:n]


def _epoch(run: _Run, d: Dictionary, model, ids, epoch: int, config: DictionaryConfig, where, bar) -> None:
    """One pass: every block of the recording shuffled and trained on; the folder published after each.
    Rows are counted over all epochs (epoch * len(ids) + position), which is how resume finds its place."""
    done = 0
    for b, block in enumerate(_rows(model, ids, d.quantity, config)):
        first_row, done = epoch * len(ids) + done, done + len(block)
        if first_row + len(block) <= run.rows:        # trained on before an interruption
            continue
        seed = (config.seed * 1_000_003 + epoch * 7_919 + b) % (1 << 63)
        order = torch.randperm(len(block), generator=torch.Generator().manual_seed(seed))
        for i in range(0, len(block) - config.batch + 1, config.batch):
            _step(run, block[order[i:i + config.batch]].to(config.device), config)
            bar.update(config.batch)
        bar.update(first_row + len(block) - run.rows)  # the rows of a last part smaller than a batch
        run.rows = first_row + len(block)
        _set_threshold(run)
        d.info.update(rows=run.rows, train_fvu=round(run.fvu, 5), seconds=_seconds(run, d))
        save_dictionary(where[0], d, _state(run), True, where[1])
        bar.set_postfix_str(f"fvu {run.fvu:.3f}", refresh=False)


def _step(run: _Run, x: torch.Tensor, config: DictionaryConfig) -> None:
    dead = (run.rows - run.last_fired) > config.dead_after if run.rows > config.dead_after else None
    out = losses(run.sae, x, dead, config.nested, config.batch_topk)
    if not torch.isfinite(out["loss"]):
        raise UserError("the dictionary's loss became NaN or inf: the states hold NaN or inf, or lr is too high",
                        param="lr")
    run.opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    run.sae.remove_parallel_gradient()
    run.opt.step()
    run.sae.normalise_decoder()
    run.rows += len(x)
    run.last_fired[out["fired"]] = run.rows
    run.fvu = out["fvu"].item()
    if out["cut"] is not None:
        run.cuts.append(max(float(out["cut"]), 0.0))


def _set_threshold(run: _Run) -> None:
    """BatchTopK's JumpReLU threshold after a block: the mean of its batches' smallest selected values
    (a mean over the whole run would drag the first steps' values along). Set after every block, so that a
    folder saved mid-run reads as the finished one will, and resume starts where the block ended."""
    if run.cuts:
        run.sae.threshold = torch.full((run.sae.d_sae,), sum(run.cuts) / len(run.cuts), device=run.sae.W_dec.device)
        run.cuts.clear()


def _state(run: _Run) -> dict[str, torch.Tensor]:
    """The training state as flat tensors: Adam's moments and steps per weight, rows, last firing."""
    state = {"rows": torch.tensor([run.rows]), "last_fired": run.last_fired.cpu()}
    for name, p in run.sae.named_parameters():
        s = run.opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in s:
                state[f"{name}.{key}"] = s[key].detach().cpu()
        if "step" in s:
            state[f"{name}.step"] = torch.as_tensor(s["step"], dtype=torch.float32).reshape(1).cpu()
    return state


def _restore(run: _Run, d: Dictionary, out: Path, model, config: DictionaryConfig) -> None:
    """Continue the run saved in `out`: same model, quantity and settings (epochs may grow)."""
    if not out.exists():
        raise UserError(f"nothing to resume: {out} does not exist", param="resume")
    saved, state = load_dictionary(out, model, with_state=True)
    if saved.quantity != d.quantity:
        raise UserError(f"{out} was trained on {saved.quantity}, not {d.quantity}", param="quantity")
    before, chars = saved.info.get("config", {}), d.info["chars"]
    now = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}   # as JSON kept them
    later = {"nested": [], "batch_topk": False}                                         # settings that came later
    old = {k: before.get(k, later.get(k)) for k in SAME_ON_RESUME}
    changed = [k for k in SAME_ON_RESUME if old[k] != now[k]]
    if changed:
        raise UserError(f"resume keeps the settings of the run it continues; {changed[0]} was "
                        f"{old[changed[0]]!r}, now {now[changed[0]]!r}", param="resume")
    if saved.info.get("chars") != chars:
        was = saved.info.get("chars")
        raise UserError(f"{out} was trained on {f'{was:,}' if isinstance(was, int) else repr(was)} characters, this text has {chars:,}: "
                        "resume reads the same text", param="resume")
    if not state and saved.info.get("complete"):
        raise UserError(f"{out} is complete (no {STATE}); train a new one, or more epochs with a new --out",
                        param="resume")
    with torch.no_grad():
        for name, p in run.sae.named_parameters():
            p.copy_(getattr(saved.sae, name))
        if saved.sae.threshold is not None:
            run.sae.threshold = saved.sae.threshold.clone().to(run.sae.W_dec.device)
    _load_state(run, state, out)
    if run.rows > before.get("epochs", 0) * chars:
        raise UserError(f"{out / STATE} claims {run.rows:,} rows, more than its run of {before.get('epochs')!r} "
                        f"epochs over {chars:,} characters has", param="resume")
    d.info.update(seconds_before=saved.info.get("seconds", 0), seconds=saved.info.get("seconds", 0))


def _load_state(run: _Run, state: dict, out: Path) -> None:
    rows, last = state.get("rows"), state.get("last_fired")
    if rows is None or rows.numel() != 1 or last is None or tuple(last.shape) != (run.sae.d_sae,):
        raise UserError(f"{out / STATE} lacks the rows trained on or the latents' last firing", param="resume")
    run.rows, run.last_fired = int(rows.item()), last.long().to(run.last_fired.device)
    if run.rows < 0 or bool((run.last_fired < 0).any()) or bool((run.last_fired > run.rows).any()):
        raise UserError(f"{out / STATE} holds impossible row counts", param="resume")
    for name, p in run.sae.named_parameters():
        parts = {key: state.get(f"{name}.{key}") for key in ("exp_avg", "exp_avg_sq", "step")}
        if any(v is None for v in parts.values()):
            continue
        if parts["exp_avg"].shape != p.shape or parts["exp_avg_sq"].shape != p.shape or parts["step"].numel() != 1:
            raise UserError(f"{out / STATE}: Adam's state of {name} does not fit the dictionary", param="resume")
        if not all(bool(torch.isfinite(v).all()) for v in parts.values()) or bool((parts["exp_avg_sq"] < 0).any()):
            raise UserError(f"{out / STATE}: Adam's state of {name} holds NaN, inf or negative moments", param="resume")
        run.opt.state[p] = {"step": parts["step"].reshape(()).clone(), "exp_avg": parts["exp_avg"].clone().to(p.device),
                            "exp_avg_sq": parts["exp_avg_sq"].clone().to(p.device)}
