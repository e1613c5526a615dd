"""RQVAEModel: inputs and the missing-modality rule, encode/decode, save/load, and the training behaviours
(k-means initialisation, contrastive loss, progressive masking)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel, RQVAEOutput

DIM = 32


def clustered(n: int = 1200, dim: int = DIM, top: int = 16, sub: int = 4, seed: int = 0):
    """Two-level Gaussian clusters: returns (points (n, dim) float32, top-level labels (n,))."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(top, dim))
    subs = centers[:, None] + 0.4 * rng.normal(size=(top, sub, dim))
    a, b = rng.integers(0, top, n), rng.integers(0, sub, n)
    return (subs[a, b] + 0.1 * rng.normal(size=(n, dim))).astype(np.float32), a


def tiny_config(**kwargs) -> RQVAEConfig:
    base = {"modality_dims": DIM, "hidden_sizes": [64], "latent_dim": 8, "codebook_sizes": [16, 8, 8]}
    base.update(kwargs)
    return RQVAEConfig(**base)


def fit(model: RQVAEModel, x: torch.Tensor, steps: int, pairs: torch.Tensor | None = None, seed: int = 0):
    """A few Adam steps on random batches of 256 (and 256 random pairs)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = x[torch.randint(0, len(x), (256,), generator=g)]
        pair_batch = None
        if pairs is not None:
            pair_batch = x[pairs[torch.randint(0, len(pairs), (256,), generator=g)]]  # (256, 2, D)
        loss = model(batch, pair_embeddings=pair_batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def data():
    x, labels = clustered()
    return torch.from_numpy(x), labels


@pytest.fixture(scope="module")
def trained(data):
    x, _ = data
    torch.manual_seed(0)
    model = RQVAEModel(tiny_config())
    model.initialize_codebooks(x)
    return fit(model, x, 60)


# --- inputs ----------------------------------------------------------------------------------
def test_forward_output_and_loss_breakdown(data):
    x, _ = data
    torch.manual_seed(0)
    model = RQVAEModel(tiny_config(contrastive_weight=0.5)).train()
    out = model(x[:128], pair_embeddings=(x[:64], x[64:128]))
    assert isinstance(out, RQVAEOutput)
    assert out.codes.shape == (128, 3) and out.codes.dtype == torch.long
    assert out.reconstruction.shape == (128, DIM)
    assert out.utilization.shape == (3,)
    expected = out.reconstruction_loss + out.quantization_loss + 0.5 * out.contrastive_loss
    assert torch.allclose(out.loss, expected)
    assert out.contrastive_loss > 0
    out.loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_missing_modality_rule():
    torch.manual_seed(0)
    model = RQVAEModel(tiny_config(modality_dims={"text": 6, "image": 4}, modality_weights={"text": 3.0}))
    text, image = torch.randn(4, 6), torch.randn(4, 4)
    image[1] = float("nan")  # missing image
    image[2] = 0.0  # missing image, zero convention
    text[3] = float("nan")  # missing text
    x, mask = model.prepare_inputs({"text": text, "image": image})
    assert torch.isfinite(x).all()
    # every row has unit norm, whatever is missing
    assert torch.allclose(x.norm(dim=1), torch.ones(4), atol=1e-5)
    # full row: weights 3:1 -> squared block norms 0.75 / 0.25
    assert torch.isclose(x[0, :6].norm() ** 2, torch.tensor(0.75), atol=1e-5)
    # missing block is zero, the present one rescaled to carry the whole norm, mask drops the block
    assert torch.equal(x[1, 6:], torch.zeros(4)) and torch.equal(x[2, 6:], torch.zeros(4))
    assert torch.isclose(x[1, :6].norm(), torch.tensor(1.0), atol=1e-5)
    assert torch.equal(mask[1], torch.tensor([1.0] * 6 + [0.0] * 4))
    assert torch.equal(mask[3], torch.tensor([0.0] * 6 + [1.0] * 4))
    # NaN and zero rows mean the same thing
    assert torch.equal(x[1], model.prepare_inputs({"text": text[1:2], "image": torch.zeros(1, 4)})[0][0])
    # and the loss ignores the missing block: no NaN reaches the loss
    out = model.train()({"text": text, "image": image})
    assert torch.isfinite(out.loss)
    codes = model.encode({"text": text, "image": image})
    assert codes.shape == (4, 3)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t, i: t.__setitem__((0, 2), float("nan")), "some \\(not all\\) NaN"),
        (lambda t, i: t.__setitem__((1, 0), float("inf")), "infinite values"),
        (lambda t, i: (t.__setitem__(2, float("nan")), i.__setitem__(2, float("nan"))), "no modality at all"),
    ],
)
def test_bad_rows_raise(mutate, message):
    model = RQVAEModel(tiny_config(modality_dims={"text": 6, "image": 4}))
    text, image = torch.randn(4, 6), torch.randn(4, 4)
    mutate(text, image)
    with pytest.raises(ValueError, match=message):
        model.encode({"text": text, "image": image})


def test_wrong_inputs_raise():
    model = RQVAEModel(tiny_config(modality_dims={"text": 6, "image": 4}))
    with pytest.raises(ValueError, match="has dimension 5 but the config says 4"):
        model.encode({"text": torch.randn(3, 6), "image": torch.randn(3, 5)})
    with pytest.raises(ValueError, match="missing \\['image'\\]"):
        model.encode({"text": torch.randn(3, 6)})
    with pytest.raises(ValueError, match="different numbers of rows"):
        model.encode({"text": torch.randn(3, 6), "image": torch.randn(2, 4)})
    with pytest.raises(ValueError, match="dimension 7 but the config expects 10"):
        model.encode(torch.randn(3, 7))
    with pytest.raises(ValueError, match="2-D"):
        model.encode(torch.randn(10))
    with pytest.raises(ValueError, match="all-zero or NaN"):
        RQVAEModel(tiny_config()).encode(torch.zeros(2, DIM))


# --- encode / decode / save ------------------------------------------------------------------
def test_encode_distances_decode(trained, data):
    x, _ = data
    codes, dist = trained.encode(x, batch_size=100, return_distances=True)
    assert codes.shape == (len(x), 3) and dist.shape == (len(x), 8)
    assert torch.equal(dist.argmin(1), codes[:, -1])
    assert torch.equal(trained.encode(x, batch_size=333), codes)  # batching does not matter
    assert trained.decode(codes).shape == (len(x), DIM)
    assert trained.decode(codes[:, :1].numpy()).shape == (len(x), DIM)
    errors = trained.reconstruction_error_by_prefix(x)
    assert len(errors) == 3
    assert errors[-1] < errors[0]  # more levels reconstruct better
    assert not trained.training  # encode restores the mode it found


def test_save_load_identical_codes(trained, data, tmp_path):
    x, _ = data
    trained.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, RQVAEModel)
    assert bool(loaded.quantizer.initialized)
    assert torch.equal(loaded.encode(x), trained.encode(x))
    assert torch.allclose(loaded.decode(trained.encode(x[:10])), trained.decode(trained.encode(x[:10])))


def test_rotation_trick_trains(data):
    x, _ = data
    torch.manual_seed(0)
    model = RQVAEModel(tiny_config(gradient_estimator="rotation"))
    model.initialize_codebooks(x)
    start = model.reconstruction_error_by_prefix(x)[-1]
    fit(model, x, 40)
    assert model.reconstruction_error_by_prefix(x)[-1] < 0.7 * start


# --- training behaviours ---------------------------------------------------------------------
def test_kmeans_init_beats_random_init(data):
    x, _ = data
    errors, used = {}, {}
    for kmeans_init in (True, False):
        torch.manual_seed(0)
        # 30 autoencoder warm-up steps, then codebooks from k-means (first quantized batch) or random
        model = RQVAEModel(
            tiny_config(kmeans_init=kmeans_init, dead_code_threshold=0, autoencoder_warmup_steps=30)
        )
        fit(model, x, 30)
        assert not bool(model.quantizer.initialized) or not kmeans_init  # still warming up
        fit(model, x, 30, seed=1)
        assert bool(model.quantizer.initialized)
        errors[kmeans_init] = model.reconstruction_error_by_prefix(x)[-1]
        used[kmeans_init] = model.encode(x)[:, 0].unique().numel()
    assert errors[True] < 0.85 * errors[False], errors
    assert used[True] >= used[False]


def test_warmup_steps_skip_quantization(data):
    x, _ = data
    model = RQVAEModel(tiny_config(autoencoder_warmup_steps=2)).train()
    out = model(x[:64])
    assert out.codes is None and float(out.quantization_loss) == 0.0
    assert not bool(model.quantizer.initialized)
    model(x[:64])
    out = model(x[:64])  # third step: quantized, codebooks initialised from this batch
    assert out.codes.shape == (64, 3) and bool(model.quantizer.initialized)
    assert int(model.num_training_steps) == 3


def test_contrastive_loss_brings_pairs_together(data):
    x, labels = data
    rng = np.random.default_rng(0)
    # pair each item with an item of a *different*, fixed partner cluster: only the contrastive loss links them
    partner = {c: (c + 8) % 16 for c in range(16)}
    by_cluster = {c: np.flatnonzero(labels == c) for c in range(16)}
    a = rng.integers(0, len(x), 3000)
    b = np.array([rng.choice(by_cluster[partner[labels[i]]]) for i in a])
    pairs = torch.from_numpy(np.stack([a, b], 1))
    cos, shared = {}, {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = RQVAEModel(tiny_config(contrastive_weight=weight))
        model.initialize_codebooks(x)
        fit(model, x, 80, pairs=pairs)
        with torch.no_grad():
            z = model.encoder(model.prepare_inputs(x)[0])
        cos[weight] = float(F.cosine_similarity(z[pairs[:, 0]], z[pairs[:, 1]]).mean())
        codes = model.encode(x)
        shared[weight] = float((codes[pairs[:, 0], 0] == codes[pairs[:, 1], 0]).float().mean())
    assert cos[1.0] > cos[0.0] + 0.3, cos
    assert shared[1.0] > shared[0.0] + 0.1, shared


def test_progressive_masking_improves_prefix_reconstruction(data):
    x, _ = data
    errors = {}
    for prob in (0.0, 0.5):
        torch.manual_seed(0)
        config = tiny_config(
            progressive_masking_prob=prob, codebook_sizes=[4, 4, 4, 4], autoencoder_warmup_steps=75
        )
        model = fit(RQVAEModel(config), x, 300)
        errors[prob] = model.reconstruction_error_by_prefix(x)
    masked, plain = errors[0.5], errors[0.0]
    # decoding from a prefix (1..L-1 levels) gets better; measured: prefix 2 -18%, prefixes 1-3 on average -8%
    assert masked[1] < 0.9 * plain[1], errors
    assert np.mean(masked[:-1]) < 0.95 * np.mean(plain[:-1]), errors
    # at little cost to the full reconstruction
    assert masked[-1] < 1.1 * plain[-1], errors


def test_tiny_huge_ragged_and_non_numeric_embeddings():
    model = RQVAEModel(tiny_config(modality_dims={"text": 4, "image": 3}, codebook_sizes=[4, 4]))
    rng = np.random.default_rng(0)
    text, image = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    x, mask = model.prepare_inputs({"text": text, "image": image})
    for scale in (1e-30, 1e30):  # a float32 norm would underflow to 0 ("missing") or overflow to inf
        x_scaled, mask_scaled = model.prepare_inputs({"text": text * scale, "image": image})
        torch.testing.assert_close(x_scaled, x, atol=1e-6, rtol=1e-5)
        assert torch.equal(mask_scaled, mask)
    single = RQVAEModel(tiny_config(modality_dims=4, codebook_sizes=[4, 4]))
    torch.testing.assert_close(single.prepare_inputs(text * 1e-30)[0], single.prepare_inputs(text)[0])
    with pytest.raises(ValueError, match="all-zero or NaN"):
        single.prepare_inputs(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="ragged list"):
        single.encode([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2]])
    with pytest.raises(ValueError, match="ragged list"):
        model.encode({"text": [[0.1] * 4, [0.2] * 3], "image": image[:2]})
    with pytest.raises(TypeError, match="must hold floats"):
        single.encode(np.array([["a", "b", "c", "d"]]))
    with pytest.raises(TypeError, match="float matrix"):
        single.encode(None)


def _saved(tmp_path):
    model = RQVAEModel(tiny_config(codebook_sizes=[4, 4]))
    model.quantizer.initialized.fill_(True)
    model.save_pretrained(tmp_path)
    return model


def test_load_rejects_damaged_files(tmp_path):
    from safetensors.torch import load_file, save_file

    from hf_semtok.rqvae.loading import validate_loaded

    model = _saved(tmp_path)
    weights, config = tmp_path / "model.safetensors", tmp_path / "config.json"
    loaded = RQVAEModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.quantizer.codebooks[1], model.quantizer.codebooks[1])
    from_files = RQVAEModel.from_files(config, weights)
    assert torch.equal(from_files.encoder[0].weight, model.encoder[0].weight)
    state = load_file(weights)

    def damage(mutate):
        damaged = dict(state)
        mutate(damaged)
        save_file(damaged, weights, metadata={"format": "pt"})

    cases = [
        (lambda d: d.pop("encoder.0.weight"), "lacks 1 tensor.*encoder.0.weight"),
        (lambda d: d.update(extra=torch.zeros(2)), "holds 1 tensor.*'extra'"),
        (lambda d: d.update({"quantizer.codebooks.0": torch.full((4, 8), float("nan"))}), "NaN or infinite"),
        (lambda d: d.update({"quantizer.codebooks.0": torch.zeros(5, 8)}), "shape"),
    ]
    for mutate, message in cases:
        damage(mutate)
        for load in (
            lambda: RQVAEModel.from_pretrained(tmp_path),
            lambda: RQVAEModel.from_files(config, weights),
        ):
            with pytest.raises(ValueError, match=message) as info:
                load()
            assert "model.safetensors" in str(info.value)
    weights.write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match="model.safetensors"):
        RQVAEModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        RQVAEModel.from_files(config, weights)
    save_file(state, weights, metadata={"format": "pt"})
    text = config.read_text()
    config.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="config.json"):
        RQVAEModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        RQVAEModel.from_files(config, weights)
    config.write_text(text.replace('"latent_dim": 8', '"latent_dim": 9'))
    with pytest.raises(ValueError, match="model.safetensors"):
        RQVAEModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="shape"):
        RQVAEModel.from_files(config, weights)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        RQVAEModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="rqvae.safetensors is missing"):
        RQVAEModel.from_files(config, tmp_path / "rqvae.safetensors")
    # validate_loaded on its own: a model whose weights went non-finite after loading
    model.decoder[0].bias.data[0] = float("inf")
    with pytest.raises(ValueError, match="somewhere.safetensors: tensor 'decoder.0.bias' holds NaN"):
        validate_loaded(model, "somewhere.safetensors")


def test_save_pretrained_is_atomic_and_keeps_other_files(tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    old = _saved(tmp_path)
    (tmp_path / "sid_table.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    new = RQVAEModel(tiny_config(codebook_sizes=[4, 4]))

    def failing_save(self, directory, *args, **kwargs):
        (Path(directory) / "config.json").write_text('{"half": ')
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(PreTrainedModel, "save_pretrained", failing_save)
        with pytest.raises(OSError, match="disk full"):
            new.save_pretrained(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the old version, untouched
    assert torch.equal(RQVAEModel.from_pretrained(tmp_path).encoder[0].weight, old.encoder[0].weight)
    new.save_pretrained(tmp_path)
    assert (tmp_path / "sid_table.json").read_text() == "{}"  # other files are kept, as with the stock method
    assert torch.equal(RQVAEModel.from_pretrained(tmp_path).encoder[0].weight, new.encoder[0].weight)


def test_load_from_bad_folders_names_the_problem(tmp_path):
    """Issue 35: a missing local path gave transformers' "Repo id must be in the form ...", a file path the same
    about `<file>/config.json`, a config nested too deeply a RecursionError, and a folder where a file belongs an
    IsADirectoryError (from the folder's manifest check)."""
    import shutil

    folder = tmp_path / "rq"
    _saved(folder)
    with pytest.raises(FileNotFoundError, match=r"no such folder, and not a Hub repo id"):
        RQVAEModel.from_pretrained(str(tmp_path / ("a" * 300)))
    with pytest.raises(FileNotFoundError, match=r"no such folder, and not a Hub repo id"):
        RQVAEModel.from_pretrained("a/b/c")
    with pytest.raises(FileNotFoundError, match=r"config.json: is a file, not a saved RQVAEModel"):
        RQVAEModel.from_pretrained(folder / "config.json")
    for name in ("config.json", "model.safetensors"):
        broken = tmp_path / f"broken_{name}"
        shutil.copytree(folder, broken)
        (broken / name).unlink()
        (broken / name).mkdir()
        with pytest.raises(ValueError, match=rf"{name} is a folder where the model's file {name} belongs"):
            RQVAEModel.from_pretrained(broken)
    deep = tmp_path / "deep"
    shutil.copytree(folder, deep)
    for manifest in deep.glob(".hf_semtok_manifest*"):
        manifest.unlink()
    (deep / "config.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match=r"config.json is JSON nested too deeply to be an RQVAEConfig"):
        RQVAEModel.from_pretrained(deep)
