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

BatchTopK (Bussmann, Leask & Nanda 2024) selects the k x n largest pre-activations of a batch of n rows
instead of k per row, so a row holds as many latents as it needs and k on average; a latent then is not
cut off where other latents of its row happen to be larger. Trained that way, the dictionary is read as
a JumpReLU: a latent is on where its pre-activation is above a threshold, the mean of the smallest
value each batch selected (the paper's choice), over the batches of the last block trained on. A row
holds at most ROW_CAP x k latents either way, which bounds the work (a measured row needs far fewer).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

AUX_COEF = 1 / 32          # the paper's weight of the AuxK loss
ROW_CAP = 4                # BatchTopK and JumpReLU: at most ROW_CAP * k latents on in one row


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
        self.register_buffer("threshold", None)             # [d_sae] once trained by BatchTopK: read as JumpReLU

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def select(self, pre: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(values after the ReLU, indices) of the k largest pre-activations of each row."""
        top = pre.topk(k or self.k, dim=-1, sorted=False)
        return F.relu(top.values), top.indices

    def active(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, indices) of the latents on in each row: the k largest (TopK), or with a threshold those
        above it (JumpReLU), at most ROW_CAP * k; the slots of latents not on hold 0."""
        if self.threshold is None:
            return self.select(pre)
        top = pre.topk(min(ROW_CAP * self.k, self.d_sae), dim=-1, sorted=False)
        on = (top.values > self.threshold[top.indices]) & (top.values > 0)
        return torch.where(on, top.values, 0.0), top.indices

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense latents [n, d_sae]: only those on are non-zero (a selected latent below 0 is cut to 0)."""
        values, indices = self.active(self.pre_acts(x))
        return torch.zeros(*x.shape[:-1], self.d_sae, dtype=x.dtype, device=x.device).scatter_(-1, indices, values)

    def decode_sparse(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """x_hat from the selected latents only: k rows of W_dec per input row (TopK); a wider selection
        (BatchTopK, JumpReLU) is scattered and multiplied, which costs less than gathering its rows."""
        if indices.shape[-1] <= self.k:
            return torch.einsum("nk,nkd->nd", values, self.W_dec[indices]) + self.b_dec
        return self.scatter(values, indices) @ self.W_dec + self.b_dec

    def scatter(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Dense latents [n, d_sae] from a selection (differentiable in values)."""
        return values.new_zeros(*values.shape[:-1], self.d_sae).scatter(-1, indices, values)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of x."""
        return self.decode_sparse(*self.active(self.pre_acts(x)))

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


def batch_select(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BatchTopK: (values, indices) of the k x n largest pre-activations of the n rows together (at most
    ROW_CAP * k per row; the slots not selected hold 0), and the smallest value selected."""
    top = pre.topk(min(ROW_CAP * k, pre.shape[-1]), dim=-1, sorted=False)
    cut = top.values.detach().flatten().topk(min(k * len(pre), top.values.numel()), sorted=False).values.min()
    keep = (top.values >= cut) & (top.values > 0)
    return torch.where(keep, top.values, 0.0), top.indices, cut


def _reconstructions(sae: TopKSAE, values, indices, nested) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """x_hat from the selected latents, and from each Matryoshka prefix's (the latents below m) alone.
    Without prefixes this is decode_sparse's rule (TopK gathers the k decoder rows of each row, a wider
    selection decodes densely); the prefixes decode densely too, which costs less there. Per step of
    1,024 rows over 512 values, 2 threads, load 0.4-1.2: 4,096 latents, TopK 172-276 ms gathered against
    167-191 ms dense, with three prefixes 380-419 against 240; 16,384 latents, TopK 564 against 766."""
    if not nested:
        return sae.decode_sparse(values, indices), []
    z = sae.scatter(values, indices)
    return z @ sae.W_dec + sae.b_dec, [z[:, :m] @ sae.W_dec[:m] + sae.b_dec for m in nested]


def losses(sae: TopKSAE, x: torch.Tensor, dead: torch.Tensor | None, nested: tuple[int, ...] = (),
           batch_topk: bool = False) -> dict[str, torch.Tensor]:
    """The training losses of one batch: `fvu` (MSE over the batch's variance), `aux` (AuxK over the dead
    latents, 0 when none) and `loss` (their sum); also the batch's `fired` latents (bool [d_sae]) and, for
    BatchTopK, `cut`, the smallest value selected.
    nested: Matryoshka prefixes; the reconstruction term is then the mean FVU of the first m latents alone,
    for each m and for all of them (the latents selected are the same; a prefix keeps those below m).
    batch_topk: select k x n latents over the batch (batch_select) instead of k per row."""
    pre = sae.pre_acts(x)
    if batch_topk:
        values, indices, cut = batch_select(pre, sae.k)
    else:
        (values, indices), cut = sae.select(pre), None
    x_hat, parts = _reconstructions(sae, values, indices, nested)
    scale = (x - x.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12)
    fvu = (x - x_hat).pow(2).sum(1).mean() / scale
    recon = fvu
    for part in parts:
        recon = recon + (x - part).pow(2).sum(1).mean() / scale
    recon = recon / (len(nested) + 1)
    fired = torch.zeros(sae.d_sae, dtype=torch.bool, device=x.device)
    fired[indices[values > 0]] = True
    aux = _aux_loss(sae, pre, (x - x_hat).detach(), dead) if dead is not None and bool(dead.any()) else x.new_zeros(())
    return {"fvu": fvu, "aux": aux, "loss": recon + AUX_COEF * aux, "fired": fired, "cut": cut}


def _aux_loss(sae: TopKSAE, pre: torch.Tensor, error: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
    """AuxK: the k_aux largest of the dead latents (d_in / 2 at most) reconstruct the live ones' error. Only
    the dead columns are selected from and decoded (a [n, dead] product): at 16,384 latents, 4,000 of them
    dead, that took a step from 1.3-1.6 s (the whole row masked and gathered) to 0.71-0.75 s
    (batch 1,024, 2 threads, load 1.0-1.4)."""
    cols = dead.nonzero().squeeze(1)
    k_aux = min(len(cols), max(sae.d_in // 2, 1))
    candidates = pre[:, cols]
    top = candidates.topk(k_aux, dim=-1, sorted=False)
    z = torch.zeros_like(candidates).scatter(1, top.indices, F.relu(top.values))
    e_hat = z @ sae.W_dec[cols]
    return (error - e_hat).pow(2).sum(1).mean() / error.pow(2).sum(1).mean().clamp_min(1e-12)
