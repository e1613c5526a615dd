"""Bad input, second round (issue 24 items 4, 5, 6, 8, 10, 11): each case a clear error (the type the Python
convention gives: TypeError for a wrong type, ValueError for a wrong value) whose message names the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_semtok.logits_process import SIDLogitsProcessor
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.rqvae.training import _check_finite_weights, train_rqvae

# --------------------------------------------------------------------------------------------------------------
# SIDLogitsProcessor: start / end / EOS ids (item 8) and its own messages (item 11)
# --------------------------------------------------------------------------------------------------------------
PROC = {
    "sid_codes": [[0, 1], [1, 0]],
    "sid_token_ids": [[5, 6], [7, 8]],
    "sid_start_token_id": 9,
    "sid_end_token_id": 10,
    "eos_token_id": 2,
    "mode": "sid",
    "prompt_length": 1,
}


@pytest.mark.parametrize(
    ("override", "error", "fragment"),
    [
        ({"sid_start_token_id": 9.0}, TypeError, "sid_start_token_id must be a token id"),
        ({"sid_start_token_id": "9"}, TypeError, "sid_start_token_id must be a token id"),
        ({"sid_start_token_id": True}, TypeError, "sid_start_token_id must be a token id"),
        ({"sid_start_token_id": -1}, ValueError, "sid_start_token_id must be a token id >= 0"),
        ({"sid_end_token_id": 10.5}, TypeError, "sid_end_token_id must be a token id"),
        ({"sid_end_token_id": -3}, ValueError, "sid_end_token_id must be a token id >= 0"),
        ({"eos_token_id": -1}, ValueError, "eos_token_id must be a token id >= 0"),
        ({"eos_token_id": [2, "3"]}, TypeError, "eos_token_id must be a token id"),
        ({"eos_token_id": []}, ValueError, "eos_token_id is required"),
        ({"sid_end_token_id": 9}, ValueError, "sid_start_token_id=9 equals sid_end_token_id"),
        ({"eos_token_id": 9}, ValueError, "sid_start_token_id=9 equals eos_token_id"),
        ({"sid_start_token_id": 5}, ValueError, "sid_start_token_id=5 is also a SID code token"),
        ({"sid_end_token_id": 8}, ValueError, "sid_end_token_id=8 is also a SID code token"),
        ({"eos_token_id": [2, 7]}, ValueError, "eos_token_id=7 is also a SID code token"),
        ({"sid_token_ids": [[5, 6.0], [7, 8]]}, TypeError, "token ids are ints"),
        ({"sid_token_ids": [[5, "6"], [7, 8]]}, TypeError, "token ids are ints"),
        ({"sid_token_ids": [[5, -6], [7, 8]]}, ValueError, "token ids are >= 0"),
        ({"sid_token_ids": None}, TypeError, "one list of token ids per SID level"),
        ({"sid_token_ids": [[5, 6], 7]}, TypeError, r"sid_token_ids\[1\] must be a list"),
        ({"sid_codes": np.array([[0, 2**64 - 1]], np.uint64)}, ValueError, str(2**64 - 1)),
        ({"sid_codes": [[True, False]]}, ValueError, "integer codes"),
    ],
)
def test_processor_ids_are_validated(override, error, fragment):
    with pytest.raises(error, match=fragment):
        SIDLogitsProcessor(**{**PROC, **override})


def test_processor_eos_may_be_the_end_marker_and_ids_past_the_scores_are_refused():
    proc = SIDLogitsProcessor(
        **{**PROC, "eos_token_id": 10}
    )  # EOS = <|sid_end|>: generation stops after the SID
    out = proc(torch.tensor([[0, 9, 5, 8]]), torch.zeros(1, 11))
    assert out[0, 10] == 0 and torch.isinf(out[0, :10]).all()
    far_eos = SIDLogitsProcessor(**{**PROC, "eos_token_id": 50})
    with pytest.raises(ValueError, match="eos_token_id=50 is outside the scores' 11 columns"):
        far_eos(torch.tensor([[0]]), torch.zeros(1, 11))
    with pytest.raises(ValueError, match="SID token ids go up to 10"):
        SIDLogitsProcessor(**PROC)(torch.tensor([[0]]), torch.zeros(1, 10))


def test_processor_call_with_mismatched_shapes_names_them():
    proc = SIDLogitsProcessor(**PROC)
    with pytest.raises(ValueError, match=r"input_ids \(2, 1\) and scores \(1, 11\)"):
        proc(torch.tensor([[0], [0]]), torch.zeros(1, 11))
    with pytest.raises(ValueError, match="must be"):
        proc(torch.tensor([0]), torch.zeros(1, 11))


def test_processor_from_a_plain_tokenizer_is_a_type_error():
    with pytest.raises(TypeError, match="needs a SemanticIDTokenizer; got NoneType"):
        SIDLogitsProcessor.from_tokenizer(None)
    with pytest.raises(TypeError, match="without sid_codes"):
        SIDLogitsProcessor.from_tokenizer(object())


# --------------------------------------------------------------------------------------------------------------
# train_rqvae: diverged training (item 4)
# --------------------------------------------------------------------------------------------------------------
DIM = 6


def _embeddings(n: int = 64) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, DIM)).astype(np.float32)


def _config() -> RQVAEConfig:
    return RQVAEConfig(modality_dims=DIM, hidden_sizes=[8], latent_dim=4, codebook_sizes=[4, 4, 4])


def test_diverged_training_raises_and_writes_nothing(tmp_path):
    out = tmp_path / "rqvae"
    with pytest.raises(ValueError, match=r"diverged at step \d+: .*lower `learning_rate` \(it is 1e\+06"):
        train_rqvae(
            _embeddings(),
            _config(),
            max_steps=6,
            batch_size=16,
            learning_rate=1e6,
            progress=False,
            report=False,
            output_dir=out,
        )
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_non_finite_weights_name_the_tensor_and_the_step():
    model = RQVAEModel(_config())
    _check_finite_weights(model, 3, 2e-3)  # a fresh model is finite
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"diverged at step 3: encoder\..* holds NaN or inf"):
        _check_finite_weights(model, 3, 2e-3)


def test_collapsed_codes_are_reported(monkeypatch, caplog):
    def collapsed(self, embeddings, **kwargs):
        return torch.zeros((len(embeddings), 3), dtype=torch.long)

    monkeypatch.setattr(RQVAEModel, "encode_batches", collapsed)
    with caplog.at_level("WARNING", logger="hf_semtok.rqvae.training"):
        train_rqvae(_embeddings(), _config(), max_steps=3, batch_size=16, progress=False, report=False)
    assert "Every item got the same level-0 code" in caplog.text
