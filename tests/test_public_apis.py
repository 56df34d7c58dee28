"""Public APIs only: no private stdlib or PyTorch module in the package, and the one private op the
recorder still uses (oneDNN's packed matrix product, for speed) falls back to addmm when it fails."""
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import neuroscope
from neuroscope.hooks import Trace
from neuroscope.hooks import _fastops as fastops

PACKAGE = Path(neuroscope.__file__).parent

# What each private API looks like in source, however it is imported.
PRIVATE = {"re._parser": r"\bre\._parser\b|\bfrom\s+re\s+import\b[^\n]*\b_parser\b",
           "sre_parse": r"\bsre_parse\b", "sre_compile": r"\bsre_compile\b", "torch._VF": r"\b_VF\b"}


def test_no_file_in_the_package_uses_a_private_parser_or_torch_vf():
    files = [p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert any(p.name == "patterns.py" for p in files)
    found = [f"{p.relative_to(PACKAGE)}: {name}" for p in files for name, pattern in PRIVATE.items()
             if re.search(pattern, p.read_text(errors="replace"))]
    assert found == []


class _FailingOp:
    """A `_linear_pointwise` whose call raises, as one with another signature in a newer PyTorch would."""

    def __init__(self, calls: list):
        self.calls = calls

    def __call__(self, *args, **kwargs):
        self.calls.append("call")
        raise RuntimeError("mkldnn::_linear_pointwise() expected other arguments")

    @property
    def binary(self):
        self.calls.append("binary")
        raise AttributeError("no overload 'binary'")


class _WithoutLinearOp:
    """torch.ops.mkldnn of a PyTorch that packs weights but has no `_linear_pointwise`."""
    _reorder_linear_weight = torch.ops.mkldnn._reorder_linear_weight

    def __init__(self, calls: list):
        self.calls = calls

    def __getattr__(self, name):
        self.calls.append(name)
        raise AttributeError(f"'_OpNamespace' 'mkldnn' object has no attribute '{name}'")


@pytest.fixture
def packing(monkeypatch):
    """The loop packs its products for oneDNN (restored afterwards, even once a failure turned it off)."""
    if not fastops.PACKED:
        pytest.skip("this PyTorch build has no oneDNN linear op: addmm is the only path")
    monkeypatch.setattr(fastops, "PACKED", True)


def _break_onednn(how: str, monkeypatch) -> list:
    calls = []
    if how == "missing":
        monkeypatch.setattr(torch.ops, "mkldnn", _WithoutLinearOp(calls))
    else:
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", _FailingOp(calls))
    return calls


@pytest.mark.parametrize("how", ["missing", "raises"])
@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_recorded_states_match_the_module_when_the_onednn_op_fails(cell, how, packing, monkeypatch, capsys):
    torch.manual_seed(0)
    mod = cell(5, 12, num_layers=2, batch_first=True).eval()
    x = torch.randn(5, 60, 5, generator=torch.Generator().manual_seed(1))     # >= 4 rows: packed products
    calls = _break_onednn(how, monkeypatch)
    with torch.no_grad():
        ref_out, ref_state = mod(x)
        with Trace(mod, strategy="loop") as tr:
            out, _ = mod(x)
    assert len(calls) == 1 and not fastops.PACKED          # tried once, then addmm for every product
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(tr["l1.h"], ref_out, atol=1e-5, rtol=0)
    h_n = ref_state[0] if cell is nn.LSTM else ref_state
    for k in range(2):
        torch.testing.assert_close(tr[f"l{k}.h"][:, -1], h_n[k], atol=1e-5, rtol=0)
        if cell is nn.LSTM:
            torch.testing.assert_close(tr[f"l{k}.c"][:, -1], ref_state[1][k], atol=1e-5, rtol=0)
    assert capsys.readouterr() == ("", "")                  # no traceback, no message


@pytest.mark.parametrize("how", ["missing", "raises"])
@pytest.mark.parametrize("with_other", [False, True], ids=["x@W", "x@W+other"])
def test_a_failing_packed_product_gives_the_matrix_product(with_other, how, packing, monkeypatch):
    g = torch.Generator().manual_seed(5)
    W, b = torch.randn(256, 64, generator=g), torch.randn(256, generator=g)
    prod = fastops.Product(W, b, batch=16)
    assert prod.packed is not None
    calls = _break_onednn(how, monkeypatch)
    x, other = torch.randn(16, 64, generator=g), torch.randn(16, 256, generator=g)
    expected = x @ W.t() + b + (other if with_other else 0)
    torch.testing.assert_close(prod(x, other.clone() if with_other else None), expected, atol=2e-4, rtol=1e-5)
    torch.testing.assert_close(prod(x), x @ W.t() + b, atol=2e-4, rtol=1e-5)
    assert len(calls) == 1 and not fastops.PACKED
