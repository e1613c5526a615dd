"""Residual vector quantization with k-means initialisation and dead-code re-seeding.

Residual quantization (RQ-VAE, arXiv 2203.01941; TIGER, arXiv 2305.05065): level `l` quantizes the residual
left by levels `0..l-1`, each level with its own codebook size (PLUM's multi-resolution codebooks,
arXiv 2510.07784). Codebooks are learned with the VQ-VAE codebook + commitment losses (arXiv 1711.00937).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ResidualQuantizer", "QuantizerOutput", "kmeans", "nearest_code", "squared_distances"]

logger = logging.getLogger(__name__)


def squared_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between rows of `x` (n, d) and of `codebook` (k, d) -> (n, k)."""
    # ||x||^2 - 2 x.c + ||c||^2, one matmul: much faster than cdist on CPU.
    x_sq = x.pow(2).sum(-1, keepdim=True)  # (n, 1)
    c_sq = codebook.pow(2).sum(-1)  # (k,)
    return torch.addmm(c_sq.unsqueeze(0) + x_sq, x, codebook.t(), alpha=-2.0).clamp_min_(0.0)  # (n, k)


def nearest_code(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of `codebook` (k, d) for each row of `x` (n, d) -> (n,) int64."""
    # argmin ||x - c||^2 = argmin (||c||^2 - 2 x.c); `min().indices` is ~3x faster than argmin on CPU.
    scores = torch.addmm(codebook.pow(2).sum(-1), x, codebook.t(), alpha=-2.0)  # (n, k)
    return scores.min(dim=1).indices


def _random_device(x: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    """Where random numbers are drawn: on the generator's device (a CPU generator gives the same draws whatever
    the device of `x`), else on the device of `x`."""
    return generator.device if generator is not None else x.device


@torch.no_grad()
def kmeans(
    x: torch.Tensor, num_clusters: int, num_iters: int = 20, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding on a subsample; empty clusters are re-seeded.

    Every tensor lives on the device of `x` (a CUDA `x` is clustered on its GPU). Random numbers are drawn on
    the generator's device and moved to `x`'s, so a seeded CPU generator picks the same points on any device.

    Args:
        x: Points, shape `(n, d)`.
        num_clusters: Number of centroids `k`.
        num_iters: Lloyd iterations.
        generator: Optional torch generator (determinism).

    Returns:
        Centroids, shape `(k, d)`, float32 on the device of `x`. With fewer distinct points than `k`, points are
        repeated with a little noise.
    """
    x = x.detach().float()
    n, d = x.shape
    device, rand_device = x.device, _random_device(x, generator)
    if n < num_clusters:
        logger.warning(
            "k-means on %d points for %d codes: points are repeated with noise; give a larger sample or "
            "batch for a better initialisation.",
            n,
            num_clusters,
        )
        idx = torch.randint(0, n, (num_clusters,), generator=generator, device=rand_device).to(device)
        scale = x.std().clamp_min(1e-6) * 0.01
        noise = torch.randn(num_clusters, d, generator=generator, device=rand_device).to(device)
        return x[idx] + scale * noise
    # k-means++ seeding on a subsample of at most 20 points per cluster keeps the sequential part cheap.
    m = min(n, max(20 * num_clusters, 2048))
    sample = x[torch.randperm(n, generator=generator, device=rand_device)[:m].to(device)]  # (m, d)
    centroids = torch.empty(num_clusters, d, device=device)
    first = torch.randint(0, m, (1,), generator=generator, device=rand_device).to(device)
    centroids[0] = sample[first]
    closest = squared_distances(sample, centroids[:1]).squeeze(1)  # (m,)
    for j in range(1, num_clusters):
        total = closest.sum()
        if total <= 0:
            pick = torch.randint(0, m, (1,), generator=generator, device=rand_device)
        else:
            # Drawn on the generator's device (multinomial needs generator and input on one device).
            pick = torch.multinomial((closest / total).to(rand_device), 1, generator=generator)
        centroids[j] = sample[pick.to(device)]
        closest = torch.minimum(closest, squared_distances(sample, centroids[j : j + 1]).squeeze(1))
    for _ in range(num_iters):
        assign = nearest_code(x, centroids)  # (n,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)  # (k, d)
        counts = torch.bincount(assign, minlength=num_clusters).float()  # (k,)
        empty = counts == 0
        centroids = torch.where(empty.unsqueeze(1), centroids, sums / counts.clamp_min(1).unsqueeze(1))
        if empty.any():
            refill = torch.randint(0, n, (int(empty.sum()),), generator=generator, device=rand_device)
            centroids[empty] = x[refill.to(device)]
    return centroids


@dataclass
class QuantizerOutput:
    """What [`ResidualQuantizer.forward`] returns.

    Attributes:
        quantized_levels: Codebook vectors chosen at each level, `(batch, levels, dim)`; gradients reach the
            codebooks through them (codebook loss), not the encoder.
        codes: Chosen code per level, `(batch, levels)` int64.
        codebook_loss: Sum over levels of `||sg(residual) - code||^2` (mean over batch and dims).
        commitment_loss: Sum over levels of `||residual - sg(code)||^2`.
        utilization: Fraction of each level's codes used in this batch, `(levels,)`.
    """

    quantized_levels: torch.Tensor
    codes: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    utilization: torch.Tensor


class ResidualQuantizer(nn.Module):
    """`L` residual quantization levels, each with its own codebook size.

    In training mode the quantizer (1) initialises every level's codebook by k-means on the residuals of the
    first batch it sees unless [`initialize`] was called with a larger sample, (2) counts how often each code is
    chosen and, every `reseed_interval` steps, re-seeds the codes chosen fewer than `dead_code_threshold` times
    with residuals of the current batch (prevents codebook collapse). Encoding is a batched matmul + argmin per
    level.

    Args:
        dim: Dimension of the vectors to quantize.
        codebook_sizes: Number of codes per level.
        kmeans_init: Whether to initialise codebooks with k-means (otherwise: random normal).
        kmeans_iters: Lloyd iterations of that k-means.
        dead_code_threshold: Usage below which a code counts as dead (0 disables re-seeding).
        reseed_interval: Training steps between dead-code checks.
    """

    def __init__(
        self,
        dim: int,
        codebook_sizes: list[int],
        kmeans_init: bool = True,
        kmeans_iters: int = 20,
        dead_code_threshold: int = 1,
        reseed_interval: int = 50,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_sizes = list(codebook_sizes)
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.reseed_interval = reseed_interval
        self.codebooks = nn.ParameterList([nn.Parameter(torch.randn(k, dim) * 0.1) for k in codebook_sizes])
        # Persistent: a loaded model must not run k-means again.
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        # Training-time statistics (not saved): per-level usage since the last reseed check, total usage.
        self.register_buffer("steps_since_reseed", torch.zeros((), dtype=torch.long), persistent=False)
        for level, k in enumerate(codebook_sizes):
            self.register_buffer(f"recent_usage_{level}", torch.zeros(k), persistent=False)
            self.register_buffer(f"total_usage_{level}", torch.zeros(k), persistent=False)
        self.num_reseeded = 0

    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    def _usage(self, level: int, kind: str) -> torch.Tensor:
        return getattr(self, f"{kind}_usage_{level}")

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def initialize(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Run k-means level by level on the residuals of `latents` `(n, dim)` and mark the codebooks ready.

        k-means runs where the codebooks live: `latents` on another device (e.g. CPU latents for CUDA codebooks)
        are moved there first.

        Args:
            latents: Encoder outputs `(n, dim)`, on any device.
            generator: Optional torch generator (determinism); a CPU generator gives the same codebooks on any
                device up to floating-point differences.
        """
        residual = latents.detach().to(device=self.codebooks[0].device, dtype=torch.float32)
        for codebook in self.codebooks:
            centroids = kmeans(residual, codebook.shape[0], self.kmeans_iters, generator=generator)
            codebook.data.copy_(centroids.to(codebook))
            residual = residual - codebook[nearest_code(residual, codebook)]
        self.initialized.fill_(True)

    def utilization_counts(self) -> list[torch.Tensor]:
        """Per level, how often each code was chosen in training since the counters were last reset."""
        return [self._usage(level, "total").clone() for level in range(self.num_levels)]

    def reset_usage(self, include_recent: bool = True) -> None:
        """Zero the training usage counters (`include_recent=False`: only the totals, not the reseed window)."""
        for level in range(self.num_levels):
            self._usage(level, "total").zero_()
            if include_recent:
                self._usage(level, "recent").zero_()
        if include_recent:
            self.steps_since_reseed.zero_()

    @torch.no_grad()
    def _reseed_dead_codes(self, level: int, residual: torch.Tensor) -> int:
        recent = self._usage(level, "recent")
        dead = recent < self.dead_code_threshold  # (k,)
        num_dead = int(dead.sum())
        if num_dead:
            codebook = self.codebooks[level]
            pick = torch.randint(0, residual.shape[0], (num_dead,), device=residual.device)
            codebook.data[dead.to(codebook.device)] = residual[pick].detach().to(codebook)
        recent.zero_()
        return num_dead

    # ------------------------------------------------------------------------------------------
    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize `latents` `(batch, dim)` level by level (training statistics are kept in training mode)."""
        if self.training and not bool(self.initialized):
            self.initialize(latents)
        reseed = (
            self.training
            and self.dead_code_threshold > 0
            and int(self.steps_since_reseed) + 1 >= self.reseed_interval
        )
        residual = latents
        quantized, codes = [], []
        codebook_loss = latents.new_zeros(())
        commitment_loss = latents.new_zeros(())
        utilization = []
        for level, codebook in enumerate(self.codebooks):
            if reseed:
                self.num_reseeded += self._reseed_dead_codes(level, residual)
            with torch.no_grad():
                idx = nearest_code(residual.detach(), codebook)  # (batch,)
            q = codebook[idx]  # (batch, dim), differentiable w.r.t. the codebook
            codebook_loss = codebook_loss + (q - residual.detach()).pow(2).mean()
            commitment_loss = commitment_loss + (residual - q.detach()).pow(2).mean()
            counts = torch.bincount(idx, minlength=codebook.shape[0]).float()  # (k,)
            utilization.append((counts > 0).float().mean())
            if self.training:
                self._usage(level, "recent").add_(counts)
                self._usage(level, "total").add_(counts)
            quantized.append(q)
            codes.append(idx)
            residual = residual - q.detach()
        if self.training:
            self.steps_since_reseed.fill_(0 if reseed else int(self.steps_since_reseed) + 1)
        return QuantizerOutput(
            quantized_levels=torch.stack(quantized, dim=1),  # (batch, levels, dim)
            codes=torch.stack(codes, dim=1),  # (batch, levels)
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            utilization=torch.stack(utilization),  # (levels,)
        )

    @torch.no_grad()
    def encode(self, latents: torch.Tensor, return_distances: bool = False):
        """Codes of `latents` `(n, dim)` -> `(n, levels)` int64 (and the last level's distances `(n, k_L)`)."""
        residual = latents
        codes = []
        for level, codebook in enumerate(self.codebooks):
            idx = nearest_code(residual, codebook)  # (n,)
            codes.append(idx)
            if level < self.num_levels - 1:
                residual = residual - codebook[idx]
        codes_t = torch.stack(codes, dim=1)  # (n, levels)
        if not return_distances:
            return codes_t
        return codes_t, squared_distances(residual, self.codebooks[-1])  # (n, k_last)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the codebook vectors of `codes` `(n, prefix_len <= levels)` -> `(n, dim)`."""
        if codes.dim() != 2 or codes.shape[1] > self.num_levels or codes.shape[1] < 1:
            raise ValueError(
                f"`codes` must have shape (n, l) with 1 <= l <= {self.num_levels}, got {tuple(codes.shape)}."
            )
        out = 0
        for level in range(codes.shape[1]):
            col = codes[:, level]
            size = self.codebook_sizes[level]
            if col.numel() and (int(col.min()) < 0 or int(col.max()) >= size):
                raise ValueError(f"codes at level {level} must lie in [0, {size}); got values outside.")
            out = out + self.codebooks[level][col]
        return out  # (n, dim)
