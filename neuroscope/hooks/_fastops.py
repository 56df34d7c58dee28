"""The only place the recurrence touches private PyTorch ops, each beside its public-API fallback.

- `Product`: x @ W^T (+ b) (+ other) for one weight used many times. On CPU in float32, where PyTorch
  has oneDNN, the weight is packed once for oneDNN's matrix product (`torch.ops.mkldnn`, the op
  torch.compile uses too); anywhere else, for fewer than 4 rows per product, if packing fails, or
  once a packed product has failed (a PyTorch without the op or with another signature), `addmm`.
  The packed product made recording 64 streams 5-15% faster; at one stream addmm won.
- `fused_layer`: one layer through the fused kernel nn.LSTM / nn.GRU / nn.RNN call themselves
  (torch.lstm, torch.gru, torch.rnn_tanh, torch.rnn_relu).
- `input_projection`: x @ W_ih^T + biases for all steps of a layer in one product (or a table lookup).
"""
from __future__ import annotations

import torch
from torch import nn

# Whether the loop may pack its products for oneDNN: off for good once a packed product fails (tests
# switch it off to check the fallback).
PACKED = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
MIN_PACKED_ROWS = 4         # below this many rows per product oneDNN lost to addmm (1.3x on 1 thread)


class Product:
    """x @ weight^T (+ bias) (+ other), for one weight used many times in a recurrence.

    batch: the rows per product it will mostly see (oneDNN packs for it; other sizes still work).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, batch: int | None = None):
        self.weight, self.bias, self.packed = weight, bias, None
        rows = batch or MIN_PACKED_ROWS
        if PACKED and weight.device.type == "cpu" and weight.dtype == torch.float32 and rows >= MIN_PACKED_ROWS:
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch)
            except (RuntimeError, AttributeError):
                self.packed = None

    def __call__(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        """[..., rows of weight]: a new tensor, or `other` itself, added to in place."""
        # oneDNN's private op: measured 5-15% faster at 64 streams; if it is gone or fails, addmm from then on.
        if self.packed is not None and PACKED:
            try:
                return _packed_product(x, self.packed, self.bias, other)
            except (AttributeError, RuntimeError, TypeError):
                _stop_packing()
        if other is None:
            return nn.functional.linear(x, self.weight, self.bias)
        if self.bias is not None:
            other.add_(self.bias)
        return other.addmm_(x, self.weight.t())


def _packed_product(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None,
                    other: torch.Tensor | None) -> torch.Tensor:
    """x @ W^T (+ bias) (+ other) by oneDNN, W packed by _reorder_linear_weight: a new tensor."""
    if other is None:
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, packed, bias, "add")


def _stop_packing() -> None:
    """Every product multiplies by addmm from now on, packed or not."""
    global PACKED
    PACKED = False


def input_projection(x: torch.Tensor, w: list[torch.Tensor] | None = None, rows: slice | None = None,
                     with_hh_bias: bool = True, emb: tuple[torch.Tensor, torch.Tensor] | None = None,
                     ih: Product | None = None) -> torch.Tensor:
    """x [T, B, E] @ W_ih[rows]^T + biases -> [T, B, G]: all steps in one matrix product.

    w: the layer's (W_ih, W_hh[, b_ih, b_hh]); ih: the product prepared already (then w, rows and
    with_hh_bias are not used). emb = (table [V, E], ids [T, B]) when x is table[ids] (the layer reads
    an embedding): each of the V rows is projected once and looked up, instead of T x B products.
    """
    if ih is None:
        w_ih = w[0] if rows is None else w[0][rows]
        bias = None
        if len(w) == 4:
            bias = w[2] + w[3] if with_hh_bias else w[2]
            bias = bias if rows is None else bias[rows]
        ih = Product(w_ih, bias, x.shape[0] * x.shape[1])
    if emb is not None:
        table, ids = emb
        return ih(table).index_select(0, ids.reshape(-1)).view(*ids.shape, -1)    # [V, G] rows, looked up
    T, B, E = x.shape
    return ih(x.reshape(T * B, E)).view(T, B, -1)


def fused_layer(kind: str, mod: nn.Module, x: torch.Tensor, w: list[torch.Tensor], h0: torch.Tensor,
                c0: torch.Tensor | None) -> torch.Tensor:
    """One layer of `mod` ("lstm", "gru" or "rnn") through PyTorch's fused kernel: h of every step [T, B, H]."""
    args = (w, len(w) == 4, 1, 0.0, False, False, False)        # weights, biases, 1 layer, no dropout
    if kind == "lstm":
        return torch.lstm(x, (h0[None], c0[None]), *args)[0]
    if kind == "gru":
        return torch.gru(x, h0[None], *args)[0]
    fn = torch.rnn_relu if mod.nonlinearity == "relu" else torch.rnn_tanh
    return fn(x, h0[None], *args)[0]


def version_stamp(tensors: list[torch.Tensor]) -> tuple:
    """Identity and in-place version of each tensor: a stamp that changes when any is replaced or
    changed in place through autograd-visible ops (so prepared copies of the weights can be reused)."""
    return tuple((id(p), p.data_ptr(), p._version) for p in tensors)
