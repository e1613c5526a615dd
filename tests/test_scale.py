"""Large-catalogue paths at test size: compact tokenizer files, streaming RQ-VAE from a memmap, SIDs on Ray."""

from __future__ import annotations

import os

import numpy as np
import pytest

import hf_semtok.tokenizer.sid_table as sid_table_module
from hf_semtok import SemanticIDTokenizer
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.rqvae.training import train_rqvae
from hf_semtok.sids import assign_unique_sids
from hf_semtok.tokenizer.sid_table import SID_CODES_FILE, ItemIds, SIDTable

DIM = 8


def _catalogue(n: int, seed: int = 0) -> dict[str, tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    keys = rng.choice(8 * 8 * 8, size=n, replace=False)
    return {f"sku-{i}": tuple(int(c) for c in np.unravel_index(k, (8, 8, 8))) for i, k in enumerate(keys)}


def test_tokenizer_saves_compact_table_and_reloads_the_same(base_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(sid_table_module, "COMPACT_MIN_ITEMS", 50)
    table = _catalogue(200)
    tok = SemanticIDTokenizer.from_base(base_tokenizer, sid_table=table, codebook_sizes=[8, 8, 8])
    assert isinstance(tok.sid_table.item_ids, ItemIds)  # 200 >= 50: ids packed, hashed index
    tok.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / SID_CODES_FILE).is_file()
    loaded = SemanticIDTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded.item_ids == list(table)
    items = ["sku-3", "sku-199", "sku-0"]
    assert loaded.items_to_text(items) == tok.items_to_text(items)
    assert loaded.encode_items(items) == tok.encode_items(items)
    assert [loaded.sid_to_item(table[i]) for i in items] == items
    assert loaded.parse_items(loaded.items_to_text(items)) == items
    with pytest.raises(ValueError, match="Unknown item id 'nope'"):
        loaded.item_to_sid("nope")
    # A later small save drops the binary file of the earlier compact one.
    monkeypatch.setattr(sid_table_module, "COMPACT_MIN_ITEMS", 10_000)
    small = SemanticIDTokenizer.from_base(base_tokenizer, sid_table=_catalogue(20), codebook_sizes=[8, 8, 8])
    small.save_pretrained(tmp_path / "tok")
    assert not (tmp_path / "tok" / SID_CODES_FILE).exists()
    assert SemanticIDTokenizer.from_pretrained(tmp_path / "tok").num_items == 20


class _CountingArray(np.ndarray):
    """An ndarray that records how many rows each read takes (to prove nothing reads the whole matrix)."""

    reads: list[int]

    def __getitem__(self, index):
        out = super().__getitem__(index)
        if isinstance(out, np.ndarray) and out.ndim == 2:
            type(self).reads.append(len(out))
        return out.view(np.ndarray) if isinstance(out, np.ndarray) else out


def _memmap(tmp_path, n: int, seed: int = 0) -> np.memmap:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(16, DIM))
    mm = np.lib.format.open_memmap(tmp_path / "emb.npy", mode="w+", dtype=np.float16, shape=(n, DIM))
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        mm[start:stop] = centers[rng.integers(0, 16, stop - start)] + 0.3 * rng.normal(
            size=(stop - start, DIM)
        )
    mm.flush()
    return np.load(tmp_path / "emb.npy", mmap_mode="r")


def _config() -> RQVAEConfig:
    return RQVAEConfig(modality_dims=DIM, hidden_sizes=[16], latent_dim=4, codebook_sizes=[8, 8])


def test_train_and_encode_from_memmap_read_in_batches(tmp_path, monkeypatch):
    import hf_semtok.rqvae.training as training

    n = 40_000
    mm = _memmap(tmp_path, n)
    monkeypatch.setattr(training, "_CHECK_BLOCK", 5_000)
    _CountingArray.reads = []
    source = mm.view(_CountingArray)
    kwargs = {"config": _config(), "max_steps": 6, "batch_size": 512, "kmeans_samples": 2_000}
    result = train_rqvae(source, progress=False, report=False, **kwargs)
    assert _CountingArray.reads and max(_CountingArray.reads) <= 16_384 < n  # never the whole matrix
    # Same SIDs as the same data in memory (float16 rows become float32 per batch, as the whole would).
    in_memory = train_rqvae(np.asarray(mm, dtype=np.float32), progress=False, report=False, **kwargs)
    assert np.array_equal(result.sid_table.codes, in_memory.sid_table.codes)
    codes = result.model.encode_batches(mm, batch_size=7_000, progress=False)
    assert codes.dtype == np.uint8 and codes.shape == (n, 2)
    assert np.array_equal(codes, result.model.encode(np.asarray(mm)).numpy())


def test_encode_batches_writes_into_out_and_checks_its_shape(tmp_path):
    mm = _memmap(tmp_path, 1_000)
    model = RQVAEModel(_config())
    model.initialize_codebooks(mm, max_samples=500)
    out = np.lib.format.open_memmap(tmp_path / "codes.npy", mode="w+", dtype=np.int16, shape=(1_000, 2))
    assert model.encode_batches(mm, batch_size=128, progress=False, out=out) is out
    assert np.array_equal(out, model.encode(np.asarray(mm)).numpy())
    with pytest.raises(ValueError, match=r"`out` must be an integer array of shape \(1000, 2\)"):
        model.encode_batches(mm, out=np.zeros((5, 2), dtype=np.int64))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="resident memory is read from /proc")
def test_reading_a_memmap_in_batches_leaves_no_pages_resident(tmp_path):
    from hf_semtok.rqvae.inputs import embedding_rows, release_mapped_pages

    n, dim = 200_000, 256  # a 100 MB float16 file
    mm = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float16, shape=(n, dim))
    mm[:] = 1.0
    mm.flush()
    del mm
    mm = np.load(tmp_path / "big.npy", mmap_mode="r")
    before = _rss_mb()
    total = 0.0
    for start in range(0, n, 20_000):
        total += float(embedding_rows(mm, slice(start, start + 20_000)).sum(dtype=np.float64))
    rng = np.random.default_rng(0)
    for _ in range(20):  # random batches, as training reads them
        embedding_rows(mm, np.sort(rng.integers(0, n, 2_000)))
    assert total == n * dim
    assert _rss_mb() - before < 40  # one 10 MB batch at a time, not the 100 MB file
    whole = np.asarray(mm).sum(dtype=np.float64)  # maps every page
    assert whole == n * dim and _rss_mb() - before > 80
    release_mapped_pages(mm[5:])  # a view finds its mapping
    assert _rss_mb() - before < 40
    release_mapped_pages(np.zeros(3))  # not mapped: a no-op


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_memmap_rows_read_from_the_file_equal_numpy_indexing(tmp_path, dtype):
    from hf_semtok.rqvae.inputs import _file_location, embedding_rows

    a = np.random.default_rng(0).standard_normal((1_000, 7)).astype(dtype)
    np.save(tmp_path / "a.npy", a)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    raw = np.memmap(
        tmp_path / "a.npy", dtype=dtype, mode="r", offset=128, shape=(1_000, 7)
    )  # unaligned offset
    for source in (mm, raw, mm[17:600], raw[250:]):
        assert _file_location(source) is not None  # read with file reads, not through the mapping
        n = len(source)
        for index in (
            slice(0, 10),
            slice(5, n - 5, 3),
            slice(n - 10, 2_000),
            slice(3, 3),
            slice(None, None, -7),
            np.array([5, 3, 3, 4, n - 1, -1, 0]),
            np.array([], dtype=np.int64),
            [1, 2],
            np.arange(n)[::-1],
            np.arange(n) % 3 == 0,  # a boolean mask: numpy's own indexing
        ):
            got = embedding_rows(source, index)
            expected = np.asarray(source)[index]
            assert got.dtype == expected.dtype and got.flags.writeable
            np.testing.assert_array_equal(got, expected)
    assert _file_location(mm[:, 2:4]) is None  # not contiguous: numpy's own indexing
    np.testing.assert_array_equal(embedding_rows(mm[:, 2:4], slice(1, 5)), a[1:5, 2:4])
    with pytest.raises(IndexError, match="index 1000 is out of bounds"):
        embedding_rows(mm, np.array([3, 1_000]))
    short = np.memmap(tmp_path / "a.npy", dtype=dtype, mode="r", offset=128, shape=(999, 7))
    (tmp_path / "a.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:1_000])  # truncated after mapping
    with pytest.raises(OSError, match="shorter than the memmap's shape says"):
        embedding_rows(short, slice(990, 999))


def test_row_keys_group_rows_like_unique_axis0():
    from hf_semtok.sids.assignment import _group, _index_within_group, _row_keys, collision_stats

    rng = np.random.default_rng(3)
    for codes in (
        rng.integers(-3, 4, size=(500, 3)),  # negative codes, many collisions
        rng.integers(0, 2**40, size=(300, 2)) // 2**38,  # wide range, few distinct values
        np.array([[2**40, 0], [0, 2**40], [2**40, 0]]),  # ranges multiply past 2**62: the row fallback
    ):
        _, ref_inverse, ref_counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
        inverse, sizes = _group(codes)
        assert np.array_equal(inverse, ref_inverse.reshape(-1))
        assert np.array_equal(sizes, ref_counts[ref_inverse.reshape(-1)])
        positions = _index_within_group(codes)
        for group in np.unique(inverse):
            assert positions[inverse == group].tolist() == list(range(int((inverse == group).sum())))
        assert collision_stats(codes)["num_unique_codes"] == len(ref_counts)
    assert _row_keys(np.array([[2**40, 0], [0, 2**40]])) is None


def test_large_assignment_keeps_ids_compact_and_equal(monkeypatch):
    import hf_semtok.sids.assignment as assignment

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(300, 3))
    ids = [f"sku-{i}-é" if i % 7 == 0 else f"sku-{i}" for i in range(300)]
    small = assign_unique_sids(codes, ids, [4, 4, 4])
    monkeypatch.setattr(assignment, "COMPACT_MIN_ITEMS", 100)
    large = assign_unique_sids(codes, ids, [4, 4, 4])
    assert isinstance(large.item_ids, ItemIds) and not isinstance(small.item_ids, ItemIds)
    assert large.item_ids == ids and np.array_equal(large.codes, small.codes)
    assert large.stats == small.stats
    assert large.index_of("sku-7-é") == small.index_of("sku-7-é") == 7
    with pytest.raises(ValueError, match=r"Duplicate item ids in item_ids: \['sku-1'\]"):
        assign_unique_sids(codes, [*ids[:-1], "sku-1"], [4, 4, 4])


def test_item_ids_from_any_iterable():
    ids = ItemIds.from_list(map(str, range(2_500_000)))  # read in chunks of 2**20
    assert len(ids) == 2_500_000 and ids[0] == "0" and ids[1_048_576] == "1048576" and ids[-1] == "2499999"
    mixed = ItemIds.from_list(["a", "bé", "", "日本"])
    assert mixed.tolist() == ["a", "bé", "", "日本"] and ItemIds.from_list([]).tolist() == []


# ---------------------------------------------------------------- Ray


def test_ray_sids_equal_single_process(tmp_path):
    ray = pytest.importorskip(
        "ray", reason="the Ray path needs the `ray` extra (pip install 'hf-semtok[ray]')"
    )
    pytest.importorskip("pyarrow", reason="the Ray path needs pyarrow (pip install 'hf-semtok[ray]')")
    from hf_semtok.distributed import sids_on_ray, write_catalogue_parquet

    n = 3_000
    mm = _memmap(tmp_path, n, seed=1)
    config = RQVAEConfig(
        modality_dims=DIM, hidden_sizes=[16], latent_dim=4, codebook_sizes=[4, 4]
    )  # collisions
    model = RQVAEModel(config)
    model.initialize_codebooks(mm, max_samples=1_000)
    model.save_pretrained(tmp_path / "rqvae")
    ids = [f"item-{(i * 7919) % n}" for i in range(n)]  # ids not in sorted order
    write_catalogue_parquet(ids, mm, tmp_path / "catalogue", rows_per_file=700)

    expected = assign_unique_sids(model.encode(np.asarray(mm)), ids, config.codebook_sizes)
    assert expected.stats["largest_group"] > 1  # the extra level does real work
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        got = sids_on_ray(
            tmp_path / "catalogue",
            tmp_path / "rqvae",
            tmp_path / "out",
            num_workers=2,
            batch_size=500,
            cpus_per_worker=0.5,
        )
    finally:
        ray.shutdown()
    assert got.item_ids == expected.item_ids
    assert np.array_equal(got.codes, expected.codes)
    assert got.codebook_sizes == expected.codebook_sizes
    for key in ("largest_group", "colliding_items_before", "collision_rate_before", "extra_level_size"):
        assert got.stats[key] == expected.stats[key], key
    reread = SIDTable.from_json(tmp_path / "out" / "sid_table.json")
    assert reread.item_ids == ids and np.array_equal(reread.codes, expected.codes)
    import pyarrow.parquet as pq

    parquet = pq.read_table(tmp_path / "out" / "sids").to_pandas().sort_values("row")
    assert parquet["item_id"].tolist() == ids
    assert np.array_equal(parquet[[f"sid_{lv}" for lv in range(3)]].to_numpy(), expected.codes)
    assert os.path.isfile(tmp_path / "out" / SID_CODES_FILE)


def test_actor_pool_that_reserves_every_cpu_is_refused():
    """Actors holding every CPU leave none to Ray Data's read tasks, which would wait forever: a clear error."""
    from hf_semtok.distributed import check_cpu_reservation

    check_cpu_reservation(2, 0.5, 2.0)  # one CPU left for reading and grouping
    with pytest.raises(ValueError, match="reserves all 2 CPUs"):
        check_cpu_reservation(2, 1.0, 2.0)
