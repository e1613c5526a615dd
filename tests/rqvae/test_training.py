"""train_rqvae: reproducibility, outputs on disk, co-occurrence inputs, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModel

from hf_semtok import SIDTable
from hf_semtok.constants import QUALITY_REPORT_FILE, SID_TABLE_FILE
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.training import train_rqvae

N, DIM = 300, 16


def small_config(**kwargs) -> RQVAEConfig:
    base = {"modality_dims": DIM, "hidden_sizes": [32], "latent_dim": 8, "codebook_sizes": [16, 8]}
    base.update(kwargs)
    return RQVAEConfig(**base)


@pytest.fixture(scope="module")
def emb():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(12, DIM))
    return (centers[rng.integers(0, 12, N)] + 0.3 * rng.normal(size=(N, DIM))).astype(np.float32)


def run(emb, **kwargs):
    defaults = {
        "config": small_config(),
        "max_steps": 30,
        "batch_size": 64,
        "progress": False,
        "logging_steps": 10,
    }
    defaults.update(kwargs)
    return train_rqvae(emb, **defaults)


@pytest.fixture(scope="module")
def result(emb):
    return run(emb, item_ids=[f"i{i}" for i in range(N)])


def test_result_and_history(result, emb):
    table = result.sid_table
    assert len(table) == N and table.item_ids[0] == "i0"
    assert len(np.unique(table.codes, axis=0)) == N
    assert not result.model.training
    np.testing.assert_array_equal(table.codes[:, :2], result.model.encode(emb).numpy())
    logged = [h for h in result.history if "reconstruction_loss" in h]
    assert len(logged) == 3
    assert {"commitment_loss", "codebook_loss", "contrastive_loss", "utilization_0", "utilization_1"} <= set(
        logged[0]
    )
    assert logged[-1]["loss"] < logged[0]["loss"]
    assert result.report["steps"] == 30 and result.report["training_time_s"] > 0
    # k-means ran after the default 10% autoencoder warm-up
    assert result.model.config.autoencoder_warmup_steps == 3 and bool(result.model.quantizer.initialized)
    assert "coherence_first_level" in result.report


def test_same_seed_same_sids(result, emb):
    again = run(emb, item_ids=[f"i{i}" for i in range(N)])
    np.testing.assert_array_equal(again.sid_table.codes, result.sid_table.codes)
    other = run(emb, item_ids=[f"i{i}" for i in range(N)], seed=7)
    assert not np.array_equal(other.sid_table.codes, result.sid_table.codes)


def test_output_dir_written_atomically(emb, tmp_path):
    out = tmp_path / "rqvae"
    (out / "volume").mkdir(parents=True)  # stands in for a volume mounted inside output_dir
    (out / "volume" / "data.bin").write_bytes(b"keep")
    (out / "notes.txt").write_text("the user's file")
    result = run(emb, output_dir=out, collision_strategy="reassign")
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        SID_TABLE_FILE,
        QUALITY_REPORT_FILE,
        "sid_quality.md",
    } <= names
    # the save owns only its files: everything else in output_dir stays (issue 24: it used to be deleted)
    assert (out / "notes.txt").read_text() == "the user's file"
    assert (out / "volume" / "data.bin").read_bytes() == b"keep"
    assert not [n for n in names if n.startswith(".hf_semtok_tmp")]  # no staging folder left
    assert [p.name for p in tmp_path.iterdir()] == ["rqvae"]  # nothing written beside output_dir
    table = SIDTable.from_json(out / SID_TABLE_FILE)
    assert table.as_dict() == result.sid_table.as_dict() and table.collision_strategy == "reassign"
    model = AutoModel.from_pretrained(out)
    np.testing.assert_array_equal(model.encode(emb).numpy(), result.model.encode(emb).numpy())
    report = json.loads((out / QUALITY_REPORT_FILE).read_text())
    assert report["collisions"]["collision_rate_before"] == result.sid_table.stats["collision_rate_before"]


def test_failed_save_leaves_nothing(emb, tmp_path, monkeypatch):
    def boom(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(SIDTable, "to_json", boom)
    with pytest.raises(OSError, match="disk full"):
        run(emb, output_dir=tmp_path / "rqvae", max_steps=5)
    assert list(tmp_path.iterdir()) == []


def test_cooccurrence_pairs_by_id_and_histories(emb):
    ids = [f"i{i}" for i in range(N)]
    config = small_config(contrastive_weight=0.5)
    by_id = run(
        emb,
        config=config,
        item_ids=ids,
        cooccurrence_pairs=[("i0", "i1"), ("i2", "i3")],
        max_steps=6,
        logging_steps=2,
    )
    assert by_id.report["num_pairs"] == 2
    assert any(h.get("contrastive_loss", 0) > 0 for h in by_id.history)
    histories = {"u1": ["i0", "i1", "i2", "i3"], "u2": ["i5", "i4"]}
    from_hist = run(emb, config=config, item_ids=ids, histories=histories, window=2, max_steps=6)
    assert from_hist.report["num_pairs"] == 6  # (0,1) (1,2) (2,3) (0,2) (1,3) (5,4)


def test_multimodal_with_missing_rows():
    rng = np.random.default_rng(1)
    text = rng.normal(size=(200, 8)).astype(np.float32)
    image = rng.normal(size=(200, 4)).astype(np.float32)
    image[:20] = np.nan  # items without an image
    config = RQVAEConfig(
        modality_dims={"text": 8, "image": 4}, hidden_sizes=[16], latent_dim=4, codebook_sizes=[8, 4]
    )
    result = train_rqvae(
        {"text": text, "image": image}, config=config, max_steps=10, batch_size=50, progress=False
    )
    assert len(np.unique(result.sid_table.codes, axis=0)) == 200
    assert np.isfinite(result.report["reconstruction_error"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cooccurrence_pairs": [("i0", "nope")]}, "unknown items"),
        ({"cooccurrence_pairs": np.array([[0, N]])}, "outside \\[0, 300\\)"),
        ({"cooccurrence_pairs": np.array([0, 1])}, "\\(n_pairs, 2\\)"),
        ({"histories": {"u": ["i0", "ghost"]}}, "not in item_ids"),
        ({"item_ids": ["x"] * N}, "Duplicate item ids in item_ids: \\['x'\\] \\(1 id"),
        ({"item_ids": ["a", "b", *(f"i{i}" for i in range(N - 4)), "b", "a"]}, "\\['a', 'b'\\] \\(2 id"),
        ({"item_ids": ["x"]}, "1 item ids for 300"),
        ({"config": small_config(codebook_sizes=[512, 8])}, "fewer than the largest codebook"),
        ({"config": small_config(modality_dims=10)}, "dimension 16 but the config expects 10"),
    ],
)
def test_bad_inputs_raise(emb, kwargs, message):
    kwargs.setdefault("item_ids", [f"i{i}" for i in range(N)])
    with pytest.raises(ValueError, match=message):
        run(emb, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"collision_strategy": "greedy"}, "`collision_strategy` is 'greedy'; use one of"),
        ({"extra_level_size": 0}, "`extra_level_size` is 0; give a positive int"),
        ({"extra_level_size": 2.5}, "`extra_level_size` is 2.5"),
    ],
)
def test_bad_arguments_fail_before_training(emb, monkeypatch, kwargs, message):
    from hf_semtok.rqvae import trainer

    def no_training(*args, **kw):
        raise AssertionError("training started before the arguments were checked")

    monkeypatch.setattr(trainer.RQVAETrainer, "train", no_training)
    with pytest.raises(ValueError, match=message):
        run(emb, **kwargs)


def test_extra_level_size_keeps_room_for_new_items(emb):
    from hf_semtok.sids import add_items_to_table

    ids = [f"i{i}" for i in range(N)]
    tight = run(emb, item_ids=ids)
    roomy = run(emb, item_ids=ids, extra_level_size=tight.sid_table.stats["largest_group"] + 4)
    assert roomy.sid_table.codebook_sizes[-1] == tight.sid_table.stats["largest_group"] + 4
    # The fullest code group: one more item with those codes only fits where there is headroom.
    full = tight.sid_table.codes[:, :-1]
    _, inverse, counts = np.unique(full, axis=0, return_inverse=True, return_counts=True)
    crowded = full[np.flatnonzero(counts[inverse.ravel()] == counts.max())[0]][None]
    with pytest.raises(ValueError, match="extra level is full.*train_rqvae\\(..., extra_level_size=N\\)"):
        add_items_to_table(tight.sid_table, ["new"], crowded)
    grown = add_items_to_table(roomy.sid_table, ["new"], crowded)
    assert grown.item_ids[-1] == "new" and len(set(map(tuple, grown.codes.tolist()))) == N + 1


def test_bad_embeddings_raise(emb):
    with pytest.raises(ValueError, match="Empty catalogue.*one embedding row per item"):
        train_rqvae(np.zeros((0, DIM), np.float32), config=small_config())
    for empty in ([], {}):
        with pytest.raises(ValueError, match="Empty catalogue.*one embedding row per item"):
            train_rqvae(empty)
    bad = emb.copy()
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        run(bad)
    bad = emb.copy()
    bad[4, :3] = np.nan
    with pytest.raises(ValueError, match="some \\(not all\\) NaN"):
        run(bad)
    with pytest.raises(ValueError, match="must be \\(n_items, dim\\)"):
        train_rqvae(torch.zeros(5))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"epochs": 0}, ValueError, "`epochs=0` trains nothing.*epochs > 0"),
        ({"epochs": 0.0001}, ValueError, "0 training steps.*Raise `epochs`"),
        ({"max_steps": 0}, ValueError, "`max_steps=0` trains nothing.*max_steps=-1"),
        ({"epochs": float("nan")}, ValueError, "`epochs` is nan"),
        ({"epochs": "3"}, TypeError, "`epochs` must be a number"),
        ({"batch_size": 0}, ValueError, "`batch_size` is 0"),
        ({"batch_size": 2.5}, TypeError, "`batch_size` must be an int"),
        ({"max_steps": True}, TypeError, "`max_steps` must be an int"),
        ({"learning_rate": 0.0}, ValueError, "`learning_rate` is 0.0"),
        ({"warmup_ratio": 1.0}, ValueError, "`warmup_ratio` is 1.0"),
        ({"config": small_config(autoencoder_warmup_steps=10)}, ValueError, "uses all 3 training steps"),
    ],
)
def test_training_that_cannot_initialise_codebooks_is_refused(emb, monkeypatch, kwargs, error, message):
    """0 steps (or warm-up for every step) would return SIDs from codebooks never initialised."""
    from hf_semtok.rqvae import trainer

    def no_training(*args, **kw):
        raise AssertionError("training started before the arguments were checked")

    monkeypatch.setattr(trainer.RQVAETrainer, "train", no_training)
    kwargs = {"max_steps": 3, **kwargs} if "epochs" not in kwargs else {"max_steps": -1, **kwargs}
    with pytest.raises(error, match=message):
        train_rqvae(emb, **{"config": small_config(), "progress": False, "report": False, **kwargs})


def test_ragged_tiny_and_missing_embeddings(emb):
    with pytest.raises(ValueError, match="ragged list"):
        train_rqvae([[0.1] * DIM, [0.2] * (DIM - 1)] * 20, config=small_config())
    with pytest.raises(ValueError, match="ragged list"):
        train_rqvae({"text": [[0.1] * DIM, [0.2]]}, config=small_config())
    with pytest.raises(TypeError, match="`embeddings` must be"):
        train_rqvae(None)
    # Embeddings of magnitude 1e-30 are tiny, not missing: they train, and the model sees their direction.
    tiny = run(emb.astype(np.float64) * 1e-30)
    assert len(tiny.sid_table) == N
    x_tiny, _ = tiny.model.prepare_inputs(emb.astype(np.float64) * 1e-30)
    x_normal, _ = tiny.model.prepare_inputs(emb)
    torch.testing.assert_close(x_tiny, x_normal, atol=1e-6, rtol=1e-5)
