"""The TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

    z = ReLU(TopK(W_enc^T (x - b_dec) + b_enc))        # k latents selected per row, the rest 0
    x_hat = W_dec^T z + b_dec                           # rows of W_dec have unit norm

The paper's recipe, each part because the paper measured it helps: the pre-encoder bias b_dec starts at
the data's mean (subtracted before encoding, added back after decoding); the encoder starts as the
decoder's transpose; decoder rows are kept at unit norm (renormalised after every step, and the
gradient's component along each row removed before it); the loss is the MSE normalised by the
batch's variance (so it reads as FVU); an auxiliary loss (AuxK) asks the latents dead for `dead_after`
rows to reconstruct the error of the live ones, which revives them. The names of the tensors are
SAELens' (W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec), so its loaders read our files.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

AUX_COEF = 1 / 32          # the paper's weight of the AuxK loss


class TopKSAE(nn.Module):
    """A TopK sparse autoencoder over vectors of `d_in` values, with `d_sae` latents, `k` on per row."""

    def __init__(self, d_in: int, d_sae: int, k: int, generator: torch.Generator | None = None):
        super().__init__()
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        W_dec = torch.randn(d_sae, d_in, generator=generator)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.t().clone())        # the encoder starts as the decoder's transpose
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def select(self, pre: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(values after the ReLU, indices) of the k largest pre-activations of each row."""
        top = pre.topk(k or self.k, dim=-1, sorted=False)
        return F.relu(top.values), top.indices

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense latents [n, d_sae]: at most k non-zero per row (a selected latent below 0 is cut to 0)."""
        values, indices = self.select(self.pre_acts(x))
        return torch.zeros(*x.shape[:-1], self.d_sae, dtype=x.dtype, device=x.device).scatter_(-1, indices, values)

    def decode_sparse(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """x_hat from the selected latents only: k rows of W_dec per input row, not all d_sae."""
        return torch.einsum("nk,nkd->nd", values, self.W_dec[indices]) + self.b_dec

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of x."""
        return self.decode_sparse(*self.select(self.pre_acts(x)))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """b_dec at the data's mean: the paper's geometric median, which the mean approximates for states."""
        self.b_dec.copy_(x.mean(0))

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Drop the part of W_dec's gradient along each row: the step then cannot change a row's norm."""
        if self.W_dec.grad is not None:
            along = (self.W_dec.grad * self.W_dec).sum(1, keepdim=True)
            self.W_dec.grad -= along * self.W_dec


def losses(sae: TopKSAE, x: torch.Tensor, dead: torch.Tensor | None, nested: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    """The training losses of one batch: `fvu` (MSE over the batch's variance), `aux` (AuxK over the dead
    latents, 0 when none) and `loss` (their sum); also the batch's `fired` latents (bool [d_sae]).
    nested: Matryoshka prefixes; the reconstruction term is then the mean FVU of the first m latents alone,
    for each m and for all of them (the latents selected are the same; a prefix keeps those below m)."""
    pre = sae.pre_acts(x)
    values, indices = sae.select(pre)
    rows = sae.W_dec[indices]                                     # [n, k, d_in], gathered once
    x_hat = torch.einsum("nk,nkd->nd", values, rows) + sae.b_dec
    scale = (x - x.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12)
    fvu = (x - x_hat).pow(2).sum(1).mean() / scale
    recon = fvu
    for m in nested:
        part = torch.einsum("nk,nkd->nd", values * (indices < m), rows) + sae.b_dec
        recon = recon + (x - part).pow(2).sum(1).mean() / scale
    recon = recon / (len(nested) + 1)
    fired = torch.zeros(sae.d_sae, dtype=torch.bool, device=x.device)
    fired[indices[values > 0]] = True
    aux = x.new_zeros(())
    n_dead = int(dead.sum()) if dead is not None else 0
    if n_dead:
        k_aux = min(n_dead, max(sae.d_in // 2, 1))
        masked = pre.masked_fill(~dead, -math.inf)
        a_values, a_indices = sae.select(masked, k_aux)
        a_values = torch.nan_to_num(a_values, neginf=0.0)
        error = (x - x_hat).detach()
        e_hat = torch.einsum("nk,nkd->nd", a_values, sae.W_dec[a_indices])
        aux = (error - e_hat).pow(2).sum(1).mean() / error.pow(2).sum(1).mean().clamp_min(1e-12)
    return {"fvu": fvu, "aux": aux, "loss": recon + AUX_COEF * aux, "fired": fired}
