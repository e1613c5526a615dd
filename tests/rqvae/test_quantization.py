"""ResidualQuantizer: nearest codes, k-means initialisation, dead-code re-seeding, gradients."""

from __future__ import annotations

import pytest
import torch

from hf_semtok.rqvae.quantization import ResidualQuantizer, kmeans, nearest_code, squared_distances


@pytest.fixture(scope="module")
def blobs():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(8, 4, generator=g) * 5  # (8, 4)
    labels = torch.arange(800) % 8
    points = centers[labels] + 0.1 * torch.randn(800, 4, generator=g)  # (800, 4)
    return centers, labels, points


def test_nearest_code_and_distances_match_brute_force():
    g = torch.Generator().manual_seed(1)
    x, codebook = torch.randn(300, 6, generator=g), torch.randn(20, 6, generator=g)
    brute = torch.cdist(x, codebook).pow(2)  # (300, 20)
    assert torch.equal(nearest_code(x, codebook), brute.argmin(1))
    assert torch.allclose(squared_distances(x, codebook), brute, atol=1e-4)


def test_kmeans_recovers_separated_clusters(blobs):
    centers, labels, points = blobs
    found = kmeans(points, 8, num_iters=20, generator=torch.Generator().manual_seed(0))
    # every true center has a centroid next to it
    assert torch.cdist(centers, found).min(1).values.max() < 0.5
    # and the clustering agrees with the labels: one centroid per true cluster
    assign = nearest_code(points, found)
    for c in range(8):
        assert assign[labels == c].unique().numel() == 1


def test_kmeans_with_fewer_points_than_clusters_repeats_points():
    points = torch.randn(3, 4)
    found = kmeans(points, 10, generator=torch.Generator().manual_seed(0))
    assert found.shape == (10, 4)
    assert torch.cdist(found, points).min(1).values.max() < 0.5


def test_initialize_gives_small_residuals(blobs):
    _, _, points = blobs
    rq = ResidualQuantizer(4, [8, 8], kmeans_init=True)
    before = (points - rq.decode(rq.encode(points))).pow(2).sum(1).mean()
    rq.initialize(points, generator=torch.Generator().manual_seed(0))
    after = (points - rq.decode(rq.encode(points))).pow(2).sum(1).mean()
    assert bool(rq.initialized)
    assert after < 0.05 * before
    assert after < 0.05  # 8 true clusters, noise 0.1: level 0 nails the centers


def test_first_training_forward_runs_kmeans(blobs):
    _, _, points = blobs
    rq = ResidualQuantizer(4, [8, 4]).train()
    assert not bool(rq.initialized)
    out = rq(points)
    assert bool(rq.initialized)
    assert out.codes.shape == (800, 2)
    assert out.quantized_levels.shape == (800, 2, 4)
    assert out.utilization[0] == 1.0


def test_dead_codes_are_reseeded_from_batch_residuals(blobs):
    _, _, points = blobs
    torch.manual_seed(0)
    rq = ResidualQuantizer(4, [16], kmeans_init=False, dead_code_threshold=1, reseed_interval=2).train()
    with torch.no_grad():
        rq.codebooks[0].data[:] = 100.0  # every code far away ...
        rq.codebooks[0].data[0] = 0.0  # ... but one: all items pick code 0, 15 codes are dead
    rq(points)
    assert rq.num_reseeded == 0
    used_before = rq.encode(points).unique().numel()
    rq(points)  # second step: the dead-code check runs
    assert rq.num_reseeded == 15
    assert used_before == 1
    assert rq.encode(points).unique().numel() >= 8
    # re-seeded codes are residuals of the batch: each sits on a data point
    assert squared_distances(rq.codebooks[0].data[1:], points).min(1).values.max() < 1e-3


def test_losses_send_gradients_to_codebooks_and_inputs():
    torch.manual_seed(0)
    rq = ResidualQuantizer(4, [8, 8], kmeans_init=False).train()
    z = torch.randn(64, 4, requires_grad=True)
    out = rq(z)
    (out.codebook_loss + out.commitment_loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(cb.grad is not None and cb.grad.abs().sum() > 0 for cb in rq.codebooks)


def test_utilization_counters_and_reset(blobs):
    _, _, points = blobs
    rq = ResidualQuantizer(4, [8, 4]).train()
    rq(points)
    rq(points)
    counts = rq.utilization_counts()
    assert [int(c.sum()) for c in counts] == [1600, 1600]
    rq.reset_usage(include_recent=False)
    assert all(int(c.sum()) == 0 for c in rq.utilization_counts())


def test_decode_rejects_bad_codes():
    rq = ResidualQuantizer(4, [8, 4], kmeans_init=False)
    with pytest.raises(ValueError, match="shape"):
        rq.decode(torch.zeros(5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"level 1 must lie in \[0, 4\)"):
        rq.decode(torch.tensor([[0, 4]]))
    prefix = rq.decode(torch.tensor([[1]]))
    assert torch.allclose(prefix, rq.codebooks[0][1:2])
