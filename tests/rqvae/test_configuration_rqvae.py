"""RQVAEConfig: defaults, validation with actionable errors, save/load."""

from __future__ import annotations

import pytest
from transformers import AutoConfig

from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig


def test_defaults_and_int_modality():
    cfg = RQVAEConfig(modality_dims=384)
    assert cfg.modality_dims == {"text": 384}
    assert cfg.codebook_sizes == [256, 256, 256]
    assert cfg.latent_dim == 32
    assert cfg.num_levels == 3
    assert cfg.input_dim == 384
    assert cfg.model_type == "semtok_rqvae"


def test_save_load_keeps_modality_order(tmp_path):
    import hf_semtok.rqvae.modeling_rqvae  # noqa: F401  (registers the Auto classes)

    cfg = RQVAEConfig(
        modality_dims={"text": 8, "image": 4, "audio": 2},
        modality_weights={"text": 2.0, "image": 1.0},
        codebook_sizes=[16, 8],
        progressive_masking_prob=0.3,
    )
    cfg.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, RQVAEConfig)
    # config.json sorts keys; the concatenation order must survive anyway.
    assert list(loaded.modality_dims) == ["text", "image", "audio"]
    assert loaded.modality_weights == {"text": 2.0, "image": 1.0}
    assert loaded.codebook_sizes == [16, 8]
    assert loaded.progressive_masking_prob == 0.3


def test_unknown_key_raises_with_suggestion():
    with pytest.raises(ValueError, match="did you mean 'codebook_sizes'"):
        RQVAEConfig(codebok_sizes=[8, 8])
    with pytest.raises(ValueError, match="Unknown RQVAEConfig key"):
        RQVAEConfig(totally_unrelated=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"codebook_sizes": []}, "codebook_sizes` is empty"),
        ({"codebook_sizes": [8, 1]}, "at least 2 codes"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"modality_dims": {"text": 0}}, "must be > 0"),
        ({"modality_dims": {}}, "modality_dims` is empty"),
        ({"modality_dims": "text"}, "dict name -> dimension"),
        ({"modality_weights": {"image": 1.0}}, "not in `modality_dims`"),
        ({"modality_weights": {"text": 0.0}}, "weights must be > 0"),
        ({"gradient_estimator": "gumbel"}, "gradient_estimator"),
        ({"contrastive_temperature": 0.0}, "contrastive_temperature"),
        ({"contrastive_on": "decoder"}, "contrastive_on"),
        ({"progressive_masking_prob": 1.5}, "progressive_masking_prob"),
        ({"progressive_masking_prob": 0.5, "codebook_sizes": [8]}, "at least 2 levels"),
        ({"dead_code_threshold": -1}, "dead_code_threshold"),
        ({"dropout": 1.0}, "dropout"),
        ({"hidden_sizes": [64, -1]}, "hidden_sizes"),
        ({"modality_order": ["image"]}, "modality_order"),
    ],
)
def test_invalid_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RQVAEConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"codebook_sizes": [2**40, 2]},
            "`codebook_sizes\\[0\\]` is 1099511627776; it must be at most 1048576",
        ),
        ({"codebook_sizes": [256.5, 8]}, "`codebook_sizes\\[0\\]` must be an int"),
        ({"codebook_sizes": "256"}, "`codebook_sizes` must be a list of ints"),
        ({"codebook_sizes": [8] * 65}, "at most 64"),
        ({"hidden_sizes": [2**21]}, "at most 1048576"),
        ({"latent_dim": 2**30}, "`latent_dim` is 1073741824; it must be at most"),
        ({"latent_dim": 8.5}, "`latent_dim` must be an int"),
        ({"modality_dims": {"text": 2**25}}, "at most 1048576"),
        ({"modality_dims": {"text": "384"}}, "must be an int"),
        ({"commitment_weight": float("nan")}, "`commitment_weight` is nan; it must be a finite"),
        ({"dropout": "0.1"}, "`dropout` must be a number"),
        ({"kmeans_init": "false"}, "`kmeans_init` must be True or False"),
        ({"kmeans_iters": True}, "`kmeans_iters` must be an int"),
        ({"modality_weights": [1.0]}, "`modality_weights` must be a dict"),
    ],
)
def test_sizes_are_bounded_and_types_are_strict(kwargs, message):
    """Sizes beyond MAX_CODEBOOK_SIZE / MAX_LAYER_SIZE and silently truncated or coerced values are refused."""
    with pytest.raises(ValueError, match=message):
        RQVAEConfig(**kwargs)


def test_bound_constant_is_shared():
    from hf_semtok.constants import MAX_CODEBOOK_SIZE

    assert RQVAEConfig(codebook_sizes=[MAX_CODEBOOK_SIZE, 2], latent_dim=2).codebook_sizes[0] == 2**20
