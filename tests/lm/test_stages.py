from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch

from hf_semtok.data import Catalogue
from hf_semtok.lm.stages import (
    EXTENDED_FLAG,
    LMStageArguments,
    is_finished,
    last_complete_checkpoint,
    load_sid_tokenizer,
    prepare_model,
    run_lm_stage,
)
from hf_semtok.small_models import build_causal_lm, train_base_tokenizer
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

ITEMS = [f"i{n}" for n in range(16)]
TABLE = {item: (n // 4, n % 4) for n, item in enumerate(ITEMS)}


@pytest.fixture(scope="module")
def catalogue():
    histories = {f"u{u}": [ITEMS[(u + 3 * k) % 16] for k in range(6)] for u in range(12)}
    return Catalogue(
        item_ids=ITEMS,
        titles={i: f"thing {n}" for n, i in enumerate(ITEMS)},
        categories={i: ["top", f"sub{n // 4}"] for n, i in enumerate(ITEMS)},
        histories=histories,
    )


@pytest.fixture(scope="module")
def tok(catalogue):
    base = train_base_tokenizer(
        list(catalogue.titles.values()) * 2 + ["user history next item"], vocab_size=300
    )
    return SemanticIDTokenizer.from_base(base, sid_table=TABLE, codebook_sizes=[4, 4])


def _base_model(tok):
    base_rows = min(tok.sid_start_token_id, *[t for lvl in tok.sid_token_ids for t in lvl])
    model = build_causal_lm(
        base_rows, hidden_size=32, num_layers=1, num_heads=2, pad_token_id=tok.pad_token_id, seed=0
    )
    return model, base_rows


def _cfg(tmp_path, **kw):
    defaults = dict(
        output_dir=str(tmp_path),
        max_steps=3,
        save_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        disable_tqdm=True,
        logging_steps=1,
    )
    return LMStageArguments(**{**defaults, **kw})


def test_sid_embeddings_stage_trains_only_sid_rows(tok, catalogue, tmp_path):
    model, base_rows = _base_model(tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = run_lm_stage(_cfg(tmp_path, data="cpt", train_mode="sid_embeddings"), tok, catalogue, model)
    after = dict(res.model.named_parameters())
    emb = after["model.embed_tokens.weight"]
    assert emb.shape[0] == len(tok)
    assert torch.equal(emb[:base_rows], before["model.embed_tokens.weight"][:base_rows])  # base rows frozen
    for name, p in after.items():
        if name != "model.embed_tokens.weight":
            assert torch.equal(p, before[name]), name
    # SID rows were initialised by extend_model, then trained: a second run from the same init differs.
    assert res.model.get_output_embeddings().weight is emb  # still tied
    assert res.global_step == 3 and getattr(res.model.config, EXTENDED_FLAG)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "README.md").is_file()
    reloaded = SemanticIDTokenizer.from_pretrained(tmp_path)
    assert reloaded.item_to_sid("i5") == TABLE["i5"]


def test_sid_rows_change_during_cpt(tok, catalogue, tmp_path):
    model, _ = _base_model(tok)
    cfg = _cfg(tmp_path, data="cpt", train_mode="sid_embeddings")
    prepare_model(
        model, tok, dataclasses.replace(cfg, train_mode="full")
    )  # initialise rows, train nothing yet
    init = model.get_input_embeddings().weight.detach().clone()
    res = run_lm_stage(cfg, tok, catalogue, model)  # flag set: rows are not re-initialised
    sid_ids = [t for lvl in tok.sid_token_ids for t in lvl]
    assert not torch.equal(res.model.get_input_embeddings().weight[sid_ids], init[sid_ids])


def test_lora_stage_adapter_reloads_with_identical_logits(tok, catalogue, tmp_path):
    from peft import PeftModel

    model, base_rows = _base_model(tok)
    prepare_model(model, tok, _cfg(tmp_path, train_mode="full"))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    base_copy = build_causal_lm(
        base_rows, hidden_size=32, num_layers=1, num_heads=2, pad_token_id=tok.pad_token_id
    )
    base_copy.resize_token_embeddings(len(tok), mean_resizing=False)
    base_copy.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
    res = run_lm_stage(_cfg(tmp_path, data="sft", train_mode="lora", lora_r=4), tok, catalogue, model)
    peft_model = res.model.eval()
    changed = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in changed) and any("token_adapter" in n for n in changed)
    for name, p in peft_model.base_model.model.named_parameters():
        if name in frozen and "lora_" not in name:
            assert torch.equal(p, frozen[name]), name
    assert (tmp_path / "adapter_model.safetensors").is_file()
    ids = torch.tensor([tok.encode_items(["i1", "i2", "i3"])])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(base_copy, tmp_path).eval()
        got = reloaded(input_ids=ids).logits
    assert torch.allclose(expected, got, atol=1e-6)
    sid_ids = [t for lvl in tok.sid_token_ids for t in lvl]
    with torch.no_grad():
        merged = reloaded.merge_and_unload()
    assert not torch.equal(
        merged.get_input_embeddings().weight[sid_ids], frozen["model.embed_tokens.weight"][sid_ids]
    )


def test_resume_from_last_checkpoint(tok, catalogue, tmp_path):
    model, _ = _base_model(tok)
    first = run_lm_stage(_cfg(tmp_path, data="cpt", train_mode="full", max_steps=2), tok, catalogue, model)
    assert first.resumed_from is None and (tmp_path / "checkpoint-2").is_dir()
    model2, _ = _base_model(tok)  # a fresh process would rebuild the model; the checkpoint restores it
    second = run_lm_stage(_cfg(tmp_path, data="cpt", train_mode="full", max_steps=4), tok, catalogue, model2)
    assert second.resumed_from.endswith("checkpoint-2")
    assert second.global_step == 4 and (tmp_path / "checkpoint-4").is_dir()


def test_resume_into_a_model_of_another_shape_says_so(tok, catalogue, tmp_path):
    model, _ = _base_model(tok)
    run_lm_stage(_cfg(tmp_path, data="cpt", train_mode="full", max_steps=2), tok, catalogue, model)
    base_rows = _base_model(tok)[1]
    wider = build_causal_lm(
        base_rows, hidden_size=48, num_layers=1, num_heads=2, pad_token_id=tok.pad_token_id, seed=0
    )
    with pytest.raises(ValueError, match=r"checkpoint-2 holds a model of another shape.*recipe_config.yaml"):
        run_lm_stage(_cfg(tmp_path, data="cpt", train_mode="full", max_steps=4), tok, catalogue, wider)


def test_resume_skips_a_checkpoint_cut_short(tok, catalogue, tmp_path, caplog):
    """A run killed while saving leaves `checkpoint-N` without a readable trainer_state.json: resume from the one
    before, with a warning (a truncated state file used to crash the run with JSONDecodeError)."""
    model, _ = _base_model(tok)
    run_lm_stage(_cfg(tmp_path, data="cpt", train_mode="full", max_steps=2), tok, catalogue, model)
    (tmp_path / "checkpoint-3").mkdir()  # half-written: the directory exists, the files never came
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 10, "log_hi')  # truncated
    (tmp_path / "checkpoint-x").mkdir()  # not a step number
    with caplog.at_level(logging.WARNING, logger="hf_semtok.lm.stages"):
        path, state = last_complete_checkpoint(tmp_path)
    assert path == str(tmp_path / "checkpoint-2") and state["global_step"] == 2
    assert "checkpoint-10" in caplog.text and "cannot be read" in caplog.text
    assert "checkpoint-3" in caplog.text and "no trainer_state.json" in caplog.text
    model2, _ = _base_model(tok)
    second = run_lm_stage(_cfg(tmp_path, data="cpt", train_mode="full", max_steps=3), tok, catalogue, model2)
    assert second.resumed_from.endswith("checkpoint-2") and second.global_step == 3
    assert last_complete_checkpoint(tmp_path / "nothing-here") == (None, None)


def test_rerunning_a_finished_run_is_a_no_op(tok, catalogue, tmp_path, caplog):
    """The same command run again after the end does not train steps 4, 5, ... nor rotate checkpoints away."""
    model, _ = _base_model(tok)
    cfg = _cfg(tmp_path, data="cpt", train_mode="full", max_steps=3, save_steps=1, save_total_limit=1)
    first = run_lm_stage(cfg, tok, catalogue, model)
    assert first.global_step == 3 and not first.already_finished
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    with caplog.at_level(logging.WARNING, logger="hf_semtok.lm.stages"):
        again = run_lm_stage(cfg, tok, catalogue, _base_model(tok)[0])
    assert again.already_finished and again.global_step == 3 and again.model is None
    assert "already finished" in caplog.text
    assert {
        p.name: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()
    } == before  # nothing written
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-3"]
    # asking for more steps trains on from the finished checkpoint
    more = run_lm_stage(dataclasses.replace(cfg, max_steps=4), tok, catalogue, _base_model(tok)[0])
    assert more.resumed_from.endswith("checkpoint-3") and more.global_step == 4 and not more.already_finished


def test_finished_run_whose_save_was_cut_short_saves_the_checkpoint(tok, catalogue, tmp_path):
    model, _ = _base_model(tok)
    cfg = _cfg(tmp_path, data="cpt", train_mode="full", max_steps=2)
    run_lm_stage(cfg, tok, catalogue, model)
    trained = model.get_input_embeddings().weight.detach().clone()
    for name in ("README.md", "config.json", "model.safetensors"):
        (tmp_path / name).unlink()  # killed after training, before the output was saved
    res = run_lm_stage(cfg, tok, catalogue, _base_model(tok)[0])
    assert not res.already_finished and res.global_step == 2
    assert torch.equal(
        res.model.get_input_embeddings().weight, trained
    )  # the checkpoint's weights, no training
    assert (tmp_path / "README.md").is_file() and (tmp_path / "model.safetensors").is_file()
    state = json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and not (tmp_path / "checkpoint-3").exists()


def test_stage_arguments_extend_training_arguments(tmp_path):
    from transformers import TrainingArguments

    cfg = _cfg(tmp_path, train_mode="sid_embeddings", weight_decay=0.1, lora_target_modules=["all-linear"])
    assert isinstance(cfg, TrainingArguments)
    assert cfg.weight_decay == 0.0  # decay would move the frozen rows
    assert cfg.lora_target_modules == "all-linear"
    assert cfg.remove_unused_columns is False and cfg.save_total_limit == 2


def test_bad_inputs_fail_before_training(tok, catalogue, tmp_path):
    small = build_causal_lm(50, hidden_size=16, num_layers=1, num_heads=2)
    with pytest.raises(ValueError, match="does not match the tokenizer"):
        run_lm_stage(_cfg(tmp_path), tok, catalogue, small)
    with pytest.raises(ValueError, match="No tokenizer"):
        load_sid_tokenizer()
    plain = train_base_tokenizer(["a b c"], vocab_size=270)
    plain.save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="no Semantic IDs"):
        run_lm_stage(_cfg(tmp_path), plain, catalogue, small)
    empty = Catalogue(item_ids=ITEMS, histories={"u": []})
    with pytest.raises(ValueError, match="histories are empty"):
        run_lm_stage(_cfg(tmp_path), tok, empty, small)
    unknown = Catalogue(item_ids=[*ITEMS, "zz"], histories={"u": ["i1", "zz", "i2"]})
    with pytest.raises(ValueError, match="no SID in the tokenizer"):
        run_lm_stage(_cfg(tmp_path), tok, unknown, small)
    with pytest.raises(ValueError, match="push_to_hub needs hub_model_id"):
        _cfg(tmp_path, push_to_hub=True)  # at construction, before any training
    assert not list(tmp_path.glob("checkpoint-*"))
    assert not (tmp_path / "adapter_config.json").exists()


def test_is_finished_follows_max_steps_and_epochs(tmp_path):
    state = {"global_step": 30, "max_steps": 30, "num_train_epochs": 2}
    assert is_finished(state, _cfg(tmp_path, max_steps=30))
    assert not is_finished(state, _cfg(tmp_path, max_steps=31))
    assert is_finished(state, _cfg(tmp_path, max_steps=-1, num_train_epochs=2))
    assert not is_finished(state, _cfg(tmp_path, max_steps=-1, num_train_epochs=3))
    assert not is_finished({**state, "global_step": 29}, _cfg(tmp_path, max_steps=-1, num_train_epochs=2))


def test_resume_from_checkpoint_path_is_where_training_resumes(tok, catalogue, tmp_path):
    """`--resume_from_checkpoint PATH` used to be accepted and ignored (the run resumed from the latest one)."""
    from hf_semtok.cli import parse_args_with_config

    model, _ = _base_model(tok)
    cfg = _cfg(tmp_path, data="cpt", train_mode="full", max_steps=4, save_steps=2)
    run_lm_stage(cfg, tok, catalogue, model)
    assert (tmp_path / "checkpoint-2").is_dir() and (tmp_path / "checkpoint-4").is_dir()
    older = str(tmp_path / "checkpoint-2")
    again = run_lm_stage(
        _cfg(
            tmp_path, data="cpt", train_mode="full", max_steps=5, save_steps=2, resume_from_checkpoint=older
        ),
        tok,
        catalogue,
        _base_model(tok)[0],
    )
    assert again.resumed_from == older and again.global_step == 5
    assert (tmp_path / "checkpoint-5").is_dir()
    # `latest` / `true` keep meaning the last complete checkpoint; `false` starts over
    for latest in ("latest", "true", True):
        assert _cfg(tmp_path, resume_from_checkpoint=latest).resume_from_checkpoint == "latest"
    assert not _cfg(tmp_path, resume_from_checkpoint="false").resume
    (tmp_path / "resume.yaml").write_text(f"resume_from_checkpoint: true\noutput_dir: {tmp_path}\n")
    (parsed,) = parse_args_with_config(LMStageArguments, ["--config", str(tmp_path / "resume.yaml")])
    assert (
        parsed.resume_from_checkpoint == "latest"
    )  # YAML's true: the text `--resume_from_checkpoint true` gives
    newer = str(tmp_path / "checkpoint-5")  # checkpoint-2 rotated away (save_total_limit 2)
    (parsed,) = parse_args_with_config(LMStageArguments, ["--resume_from_checkpoint", newer])
    assert parsed.resume_from_checkpoint == newer


def test_resume_from_checkpoint_that_is_no_checkpoint_fails_at_once(tmp_path):
    with pytest.raises(ValueError, match=r"resume_from_checkpoint '.*nowhere' is not a folder"):
        _cfg(tmp_path, resume_from_checkpoint=str(tmp_path / "nowhere"))
    (tmp_path / "checkpoint-7").mkdir()
    with pytest.raises(
        ValueError, match=r"checkpoint-7' is not a complete checkpoint \(no readable trainer_state"
    ):
        _cfg(tmp_path, resume_from_checkpoint=str(tmp_path / "checkpoint-7"))
