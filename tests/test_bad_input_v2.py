"""Bad input, second round (issue 24 items 4, 5, 6, 8, 10, 11): each case a clear error (the type the Python
convention gives: TypeError for a wrong type, ValueError for a wrong value) whose message names the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hf_semtok.cli import main, parse_args_with_config
from hf_semtok.generation import recommend
from hf_semtok.logits_process import SIDLogitsProcessor
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.rqvae.sid_stage import SIDStageConfig
from hf_semtok.rqvae.trainer import check_finite_weights
from hf_semtok.rqvae.training import train_rqvae
from hf_semtok.sids.assignment import add_items_to_table, assign_unique_sids
from hf_semtok.small_models import build_causal_lm, train_base_tokenizer
from hf_semtok.tokenizer.item_ids import ItemIds, check_item_ids
from hf_semtok.tokenizer.sid_table import SIDTable
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

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
        ({"sid_codes": [[0.0, 1.0]]}, ValueError, "integer codes"),  # integral floats too: codes are ints
        ({"sid_codes": torch.tensor([[0.0, 1.0]])}, ValueError, "integer codes"),
        ({"sid_start_token_id": 2**70}, ValueError, "at most 2147483647"),
        ({"eos_token_id": 2**40}, ValueError, "at most 2147483647"),
        ({"sid_token_ids": [[5, 6], [7, 2**40]]}, ValueError, "at most 2147483647"),
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
    check_finite_weights(model, 3, 2e-3)  # a fresh model is finite
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"diverged at step 3: encoder\..* holds NaN or inf"):
        check_finite_weights(model, 3, 2e-3)


def test_collapsed_codes_are_reported(monkeypatch, caplog):
    def collapsed(self, embeddings, **kwargs):
        return torch.zeros((len(embeddings), 3), dtype=torch.long)

    monkeypatch.setattr(RQVAEModel, "encode_batches", collapsed)
    with caplog.at_level("WARNING", logger="hf_semtok.rqvae.training"):
        train_rqvae(_embeddings(), _config(), max_steps=3, batch_size=16, progress=False, report=False)
    assert "Every item got the same level-0 code" in caplog.text


# --------------------------------------------------------------------------------------------------------------
# Item ids: one validator, one rule (item 5, issue 26)
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ids", "error", "fragment"),
    [
        ({"b", "a"}, TypeError, "a set has no order"),
        (frozenset({"a"}), TypeError, "a set has no order"),
        ("abc", TypeError, "a string would be split into characters"),
        (b"abc", TypeError, "must be a list of item id strings"),
        ({"a": 1}, TypeError, "must be a list of item id strings; got dict"),
        (iter(["a"]), TypeError, "must be a list of item id strings"),
        (None, TypeError, "must be a list of item id strings; got NoneType"),
        (
            ["a", None],
            TypeError,
            r"must hold strings \(ids are never converted\); None \(NoneType\) at position 1",
        ),
        (["a", 1], TypeError, r"1 \(int\) at position 1 is not. Pass \[str\(i\) for i in ids\]"),
        (np.arange(3), TypeError, r"0 \(int\) at position 0"),
        (["a", 1.5], TypeError, r"1\.5 \(float\)"),
        (["a", b"b"], TypeError, r"b'b' \(bytes\)"),
        (["a", ""], ValueError, r"item_ids\[1\] is an empty string"),
        (["a", "b", "a"], ValueError, r"Duplicate item ids in item_ids: \['a'\]"),
    ],
)
def test_check_item_ids_one_rule(ids, error, fragment):
    with pytest.raises(error, match=fragment):
        check_item_ids(ids, "caller")


def test_check_item_ids_accepts_ordered_string_sequences_and_file_errors_are_value_errors():
    assert check_item_ids(("b", "a"), "caller") == ["b", "a"]
    got = check_item_ids(np.array(["x", "y"]), "caller")
    assert got == ["x", "y"] and all(type(i) is str for i in got)  # numpy strings become plain str
    packed = check_item_ids(["a", "b", "c"], "caller", compact_min_items=2)
    assert isinstance(packed, ItemIds) and list(packed) == ["a", "b", "c"]
    assert check_item_ids(packed, "caller") is packed
    with pytest.raises(ValueError, match=r"Duplicate item ids"):
        check_item_ids(ItemIds.from_list(["a", "a"]), "caller")
    with pytest.raises(ValueError, match=r"table\.json: field 'item_ids' must hold strings"):
        check_item_ids(["a", 1], "table.json", in_file=True)  # a file's content is a wrong value, not type


@pytest.mark.parametrize(
    ("ids", "fragment"),
    [
        ({f"i{i}" for i in range(64)}, "a set has no order"),
        ("x" * 64, "a string would be split into characters"),
        ([None] * 64, r"None \(NoneType\) at position 0"),
        (list(range(64)), r"0 \(int\) at position 0"),
    ],
)
def test_train_rqvae_refuses_wrong_item_ids_before_training(ids, fragment, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("hf_semtok.rqvae.trainer.RQVAETrainer.train", no_training)
    with pytest.raises(TypeError, match=fragment):
        train_rqvae(_embeddings(), _config(), item_ids=ids, max_steps=2, batch_size=16, progress=False)


def test_every_entry_point_uses_the_same_rule():
    for call in (
        lambda: assign_unique_sids([[0, 1], [1, 0]], ["a", 2], [2, 2]),
        lambda: SIDTable(["a", 2], [[0, 1], [1, 0]], [2, 2]),
        lambda: add_items_to_table(assign_unique_sids([[0, 1]], ["a"], [2, 2]), [None], [[1, 1]]),
    ):
        with pytest.raises(TypeError, match="must hold strings"):
            call()
    with pytest.raises(TypeError, match="a set has no order"):
        assign_unique_sids([[0, 1], [1, 0]], {"a", "b"}, [2, 2])


# --------------------------------------------------------------------------------------------------------------
# The tokenizer's item API: no silent coercions (item 8)
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok() -> SemanticIDTokenizer:
    base = train_base_tokenizer(["a small catalogue of things to buy", "books and games"] * 5, vocab_size=300)
    table = {f"i{i:02d}": (i % 3, i % 4) for i in range(10)}
    return SemanticIDTokenizer.from_base(base, sid_table=table, codebook_sizes=[3, 4])


@pytest.mark.parametrize("item", [None, 1, 1.5, b"i01"])
def test_item_lookups_refuse_non_string_ids(tok, item):
    with pytest.raises(TypeError, match=r"Item ids are strings; got"):
        tok.item_to_sid(item)
    with pytest.raises(
        TypeError, match=r"items_to_text: item_ids must hold strings \(ids are never converted\)"
    ):
        tok.items_to_text([item])
    with pytest.raises(
        TypeError, match=r"encode_items: item_ids must hold strings \(ids are never converted\)"
    ):
        tok.encode_items([item])
    with pytest.raises(TypeError, match=r"Item ids are strings; got"):
        tok.sid_table.rows_of_items([item])


def test_add_items_refuses_non_string_ids(tok):
    before = list(tok.item_ids)
    for ids in ([None], [7], {"new"}):
        with pytest.raises(TypeError, match="item_ids must"):
            tok.add_items(ids, codes=[[2, 3]])
    assert list(tok.item_ids) == before and "None" not in tok.item_ids


@pytest.mark.parametrize(
    ("codes", "fragment"),
    [
        ([[0.7, 1.2]], "must hold integers"),
        ([0.7, 1.2], "must hold integers"),
        ([[True, 0]], "must hold integers"),
        ([["1", "0"]], "must hold integers"),
        (np.array([["1", "0"]]), "must hold integers"),
        (np.zeros((1, 1, 2), dtype=np.int64), "must be 2-D"),
        ([[[0, 1]]], "must hold integers"),
        (np.array([[0, 2**64 - 1]], dtype=np.uint64), str(2**64 - 1)),
    ],
)
def test_codes_to_token_ids_takes_integer_codes_only(tok, codes, fragment):
    with pytest.raises(ValueError, match=fragment):
        tok.codes_to_token_ids(codes)


def test_codes_to_token_ids_still_takes_one_sid_and_a_matrix(tok):
    one = tok.codes_to_token_ids([1, 2])
    assert one.shape == (1, 2) and one.tolist() == tok.codes_to_token_ids(np.array([[1, 2]])).tolist()


def test_huge_token_ids_and_float_prefixes_are_clear_errors(tok):
    with pytest.raises(ValueError, match=f"token id {2**70} is out of range"):
        tok.parse_items([2**70])
    with pytest.raises(ValueError, match=f"token id {2**64 - 1} is out of range"):
        tok.parse_items(np.array([2**64 - 1], dtype=np.uint64))
    with pytest.raises(TypeError, match=r"Code 0 of the SID prefix \(1\.7,\) must be an integer"):
        tok.sid_table.rows_with_prefix([1.7])
    with pytest.raises(TypeError, match="A SID prefix is a tuple of integer codes"):
        tok.sid_table.rows_with_prefix("1")
    assert (
        tok.sid_table.rows_with_prefix([np.int64(1)]).tolist() == tok.sid_table.rows_with_prefix([1]).tolist()
    )


def test_table_collision_strategy_and_uint64_codes_are_checked():
    with pytest.raises(ValueError, match=r"field 'collision_strategy' is 'bogus'; use one of"):
        SIDTable(["a"], [[0, 1]], [2, 2], collision_strategy="bogus")
    with pytest.raises(ValueError, match=f"holds code {2**64 - 1}"):
        SIDTable(["a"], np.array([[0, 2**64 - 1]], dtype=np.uint64), [2, 2])
    for strategy in ("extra_level", "reassign", "none", None):
        assert SIDTable(["a"], [[0, 1]], [2, 2], collision_strategy=strategy).collision_strategy == strategy


# --------------------------------------------------------------------------------------------------------------
# Command line: errors in our own words (item 11)
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture
def no_demo(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the demo must not start")

    monkeypatch.setattr("hf_semtok.cli.run_demo", refuse)


def test_non_utf8_or_broken_yaml_names_the_file(tmp_path, no_demo):
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("seed: 1\nn_items: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.yaml' is not UTF-8 text .*save it as UTF-8"):
        main(["demo", "--config", str(latin)])
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1\n")
    with pytest.raises(ValueError, match=r"broken\.yaml' is not valid YAML"):
        main(["demo", "--config", str(broken)])


def test_a_scalar_for_a_list_option_names_the_key_and_the_fix(tmp_path):
    path = tmp_path / "rqvae.yaml"
    path.write_text("hidden_sizes: 16\ncodebook_sizes: [8, 8]\n")
    with pytest.raises(
        ValueError, match=r"`hidden_sizes` in the config file .*rqvae\.yaml' must be a list, e\.g\. "
    ):
        parse_args_with_config([SIDStageConfig], ["--config", str(path)])
    path.write_text("hidden_sizes: [16]\n")
    (config,) = parse_args_with_config([SIDStageConfig], ["--config", str(path)])
    assert config.hidden_sizes == [16]


def test_demo_output_dir_that_is_a_file(tmp_path, no_demo):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match=r"results\.txt' is a file, not a folder"):
        main(["demo", "--quick", "--output_dir", str(a_file)])
    with pytest.raises(ValueError, match=r"sub' lies under the file .*results\.txt'"):
        main(["demo", "--quick", "--output_dir", str(a_file / "sub")])
    assert a_file.read_text() == "not a folder"


# --------------------------------------------------------------------------------------------------------------
# recommend(): model state, prompt length, tokenizer type (items 6, 11)
# --------------------------------------------------------------------------------------------------------------
HISTORIES = [["i01", "i02"], ["i03"]]


def _qwen2(tok: SemanticIDTokenizer, max_positions: int = 512):
    return build_causal_lm(
        len(tok), hidden_size=16, num_layers=1, num_heads=2, max_position_embeddings=max_positions, seed=0
    )


def _gpt2(tok: SemanticIDTokenizer, n_positions: int):
    config = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config)


def test_recommend_restores_every_train_eval_flag_after_an_error(tok, monkeypatch):
    model = _qwen2(tok)
    model.train()
    model.model.layers[0].eval()  # mixed modes: each submodule gets its own flag back
    flags = {name: m.training for name, m in model.named_modules()}

    def broken_generate(*args, **kwargs):
        assert not model.training  # recommend runs in eval mode
        raise RuntimeError("out of memory")

    monkeypatch.setattr(model, "generate", broken_generate)
    with pytest.raises(RuntimeError, match="out of memory"):
        recommend(model, tok, HISTORIES, k=2, num_beams=2, progress=False, prefill_once=False)
    assert {name: m.training for name, m in model.named_modules()} == flags
    monkeypatch.undo()
    recommend(model, tok, HISTORIES, k=2, num_beams=2, progress=False)  # and after a normal run
    assert {name: m.training for name, m in model.named_modules()} == flags


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_recommend_refuses_prompts_longer_than_the_model_positions(tok, arch):
    limit = 48  # the prompt of 20 history items needs about 110 positions, that of one item about 30
    model = _gpt2(tok, limit) if arch == "gpt2" else _qwen2(tok, limit)
    field = "max_position_embeddings"  # GPT2Config maps it to n_positions
    long_history = [[f"i{i:02d}" for i in range(10)] * 3]  # 30 items, 4 tokens each in the marked layout
    with pytest.raises(
        ValueError, match=rf"needs \d+ positions, but the model has {limit} \(config\.{field}\)"
    ):
        recommend(model, tok, long_history, k=2, num_beams=2, progress=False)
    with pytest.raises(ValueError, match="lower max_history"):
        recommend(model, tok, {"u": long_history[0]}, k=2, num_beams=2, progress=False)
    # a short enough prompt fits the same model
    assert len(recommend(model, tok, long_history, k=2, num_beams=2, max_history=1, progress=False)[0]) <= 2


@pytest.mark.parametrize("bad", [None, "tokenizer", "plain"])
def test_recommend_with_a_plain_tokenizer_is_a_type_error(tok, bad):
    other = tok if bad != "plain" else train_base_tokenizer(["a b c"] * 5, vocab_size=270)
    bad_tok = None if bad is None else (other if bad == "plain" else "gpt2")
    with pytest.raises(
        TypeError, match="`tokenizer` must be the SemanticIDTokenizer the model was trained with"
    ):
        recommend(_qwen2(tok), bad_tok, HISTORIES, k=2, progress=False)
    with pytest.raises(TypeError, match="`model` must be a causal LM"):
        recommend(None, tok, HISTORIES, k=2, progress=False)


# --------------------------------------------------------------------------------------------------------------
# tokenizer_config.json validated at load (item 10); from_base on a missing path (item 11)
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_tok(tok, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saved_tok")
    tok.save_pretrained(folder)
    return folder


def _edited_copy(saved: Path, tmp_path: Path, **fields: Any) -> Path:
    folder = tmp_path / "edited"
    shutil.copytree(saved, folder)
    path = folder / "tokenizer_config.json"
    data = json.loads(path.read_text())
    for key, value in fields.items():
        if value is _DROP:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    return folder


_DROP = object()


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"model_max_length": 1.5}, "field 'model_max_length' is 1.5; it must be a positive integer"),
        ({"model_max_length": "512"}, "field 'model_max_length' is '512'"),
        ({"model_max_length": 0}, "field 'model_max_length' is 0"),
        ({"model_max_length": True}, "field 'model_max_length' is True"),
        ({"chat_template": 5}, "field 'chat_template' is 5; it must be a Jinja template string"),
        ({"chat_template": [{"name": "default"}]}, "field 'chat_template'"),
        ({"eos_token": 5}, "field 'eos_token' is 5; it must be a token string"),
        ({"pad_token": {"text": "<|pad|>"}}, "field 'pad_token'"),
        (
            {"sid_start_token": "<|sid_begin|>"},
            "field 'sid_start_token' is '<|sid_begin|>'; it must be '<|sid_start|>'",
        ),
        ({"sid_end_token": None}, "field 'sid_end_token' is None; it must be '<|sid_end|>'"),
        ({"padding_side": "middle"}, "field 'padding_side' is 'middle'; it must be 'left' or 'right'"),
        ({"model_input_names": "input_ids"}, "field 'model_input_names'"),
        ({"additional_special_tokens": [3]}, "field 'additional_special_tokens' is 3"),
        ({"chat_template": []}, "field 'chat_template' is []"),
        (
            {"chat_template": "{% for m in messages %}{{ m"},
            "field 'chat_template' is not a valid Jinja template",
        ),
        ({"eos_token": "<never-added>"}, "field 'eos_token' is '<never-added>', a token that"),
    ],
)
def test_hand_edited_tokenizer_config_is_refused_at_load(saved_tok, tmp_path, fields, fragment):
    folder = _edited_copy(saved_tok, tmp_path, **fields)
    with pytest.raises(ValueError) as err:
        SemanticIDTokenizer.from_pretrained(folder)
    assert fragment in str(err.value) and str(folder / "tokenizer_config.json") in str(err.value)


def test_valid_edits_still_load_and_a_missing_config_is_named(saved_tok, tmp_path):
    named = [{"name": "default", "template": "{{ messages }}"}]
    for i, fields in enumerate(
        [{"model_max_length": 1e30}, {"chat_template": "{{ messages }}"}, {"chat_template": named}]
    ):
        folder = _edited_copy(saved_tok, tmp_path / str(i), **fields)
        assert SemanticIDTokenizer.from_pretrained(folder).eos_token == "<|eos|>"
    missing = tmp_path / "missing"
    shutil.copytree(saved_tok, missing)
    (missing / "tokenizer_config.json").unlink()
    for manifest in missing.glob(".hf_semtok_manifest*"):  # as if the folder was copied by hand
        manifest.unlink()
    with pytest.raises(FileNotFoundError, match=r"tokenizer_config\.json: missing\. It holds the EOS"):
        SemanticIDTokenizer.from_pretrained(missing)


def test_from_base_on_a_missing_path_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="/nonexistent/base: no such directory"):
        SemanticIDTokenizer.from_base("/nonexistent/base", sid_table={"a": (0, 1)}, codebook_sizes=[2, 2])
    a_file = tmp_path / "tokenizer.json"
    a_file.write_text("{}")
    with pytest.raises(FileNotFoundError, match="is a file, not a tokenizer directory"):
        SemanticIDTokenizer.from_base(a_file, sid_table={"a": (0, 1)}, codebook_sizes=[2, 2])


@pytest.mark.parametrize(
    ("ids", "error", "fragment"),
    [
        ([2**70], ValueError, "out of range"),
        ([[-(2**70)]], ValueError, "out of range"),
        (np.array([2**64 - 1], dtype=np.uint64), ValueError, f"token id {2**64 - 1} is out of range"),
        ([True, False], TypeError, "integer token ids; got bool"),
        ([1, "2"], TypeError, "got str '2'"),
        ([None], TypeError, "got NoneType"),
        (torch.tensor([1.0, 2.0]), TypeError, "tensor of dtype torch.float32"),
        (np.array([1.5]), TypeError, "array of dtype float64"),
    ],
)
def test_token_ids_to_codes_takes_integer_ids_only(tok, ids, error, fragment):
    with pytest.raises(error, match=fragment):
        tok.token_ids_to_codes(ids)


def test_token_ids_to_codes_keeps_valid_input(tok):
    sid_ids = tok.codes_to_token_ids([[1, 2]])[0].tolist()
    levels, codes = tok.token_ids_to_codes([sid_ids, [0, 1]])
    assert levels.tolist() == [[0, 1], [-1, -1]] and codes.tolist() == [[1, 2], [-1, -1]]
    levels, codes = tok.token_ids_to_codes(torch.tensor(sid_ids))
    assert isinstance(codes, torch.Tensor) and codes.tolist() == [1, 2]


def test_more_unclear_errors_are_named(tok):
    with pytest.raises(FileNotFoundError, match="from_base: the base tokenizer path is empty"):
        SemanticIDTokenizer.from_base("", sid_table={"a": (0, 1)}, codebook_sizes=[2, 2])
    with pytest.raises(TypeError, match="`tokenizer` is the class SemanticIDTokenizer, not a tokenizer"):
        recommend(_qwen2(tok), SemanticIDTokenizer, HISTORIES, k=2, progress=False)
    with pytest.raises(ValueError, match="SIDStageConfig.collision_strategy is 'bogus'; use one of"):
        SIDStageConfig(collision_strategy="bogus")
    with pytest.raises(TypeError, match=r"SIDStageConfig.hidden_sizes must be a list of ints, e\.g\. \[16\]"):
        SIDStageConfig(hidden_sizes=16)
