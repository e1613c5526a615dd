"""End-to-end pipeline on a tiny synthetic catalogue: SIDs -> generator trained from scratch -> evaluation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from hf_semtok.data import leave_one_out_split, make_synthetic_catalogue
from hf_semtok.data.features import cooccurrence_features, multi_hot_features
from hf_semtok.generation import PrefillOnceLM
from hf_semtok.lm.generator import (
    GeneratorConfig,
    add_dropout_hooks,
    evaluate_with_standard_errors,
    level_smoothed_loss,
    train_generator,
)
from hf_semtok.lm.sid_sequences import build_sid_tokenizer, history_sequences, order_by_history_length
from hf_semtok.pipeline import run_pipeline
from hf_semtok.prompts import history_prompt
from hf_semtok.rqvae.sid_stage import SIDStageConfig
from hf_semtok.sids import sid_table_from_codes


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models train ~10x faster on one thread when the cores are shared (OpenMP threads wait on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def catalogue():
    return make_synthetic_catalogue(n_items=160, n_users=400, seed=0, mean_history=8.0, max_history=30)


@pytest.fixture(scope="module")
def tiny_generator() -> GeneratorConfig:
    return GeneratorConfig(
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        learning_rate=5e-3,
        warmup_steps=10,
        batch_size=32,
        num_epochs=8,
        eval_every_steps=50,
        eval_users=40,
        eval_batch_size=40,
        num_beams=10,
        test_users=100,
        seed=0,
    )


@pytest.fixture(scope="module")
def result(catalogue, tiny_generator, tmp_path_factory):
    sid_config = SIDStageConfig(
        codebook_sizes=[8, 8], hidden_sizes=[64, 32], latent_dim=16, epochs=30, batch_size=256
    )
    out = tmp_path_factory.mktemp("pipeline")
    res = run_pipeline(
        catalogue,
        embeddings=catalogue.embeddings["text"],
        sid_config=sid_config,
        config=tiny_generator,
        output_dir=out,
        progress=False,
    )
    return res, out


def test_pipeline_beats_popularity_and_reports_facts(result):
    res, out = result
    m, pop = res.metrics, res.popularity
    assert m["num_examples"] == pop["num_examples"] == 100
    assert res.evaluation["test_users"] == 100
    # The synthetic histories follow item -> successor transitions: a trained generator must beat popularity.
    assert m["recall@10"] > pop["recall@10"] + 0.05
    assert 0.0 <= m["ndcg@5"] <= m["ndcg@10"] <= m["recall@10"] <= 1.0
    assert m["recall@5"] <= m["recall@10"]
    # Facts the benchmark JSON relies on.
    assert res.training["tokens_seen"] > 0 and res.training["steps"] > 0
    # The bare layout: an item is its L code tokens (3 here: 2 RQ-VAE levels + the dedup level).
    levels = res.sid["num_levels"]
    assert res.training["sid_layout"] == "bare" and res.training["tokens_per_item"] == levels
    assert res.training["threads"] == torch.get_num_threads() == 1
    assert res.training["target_items_per_second"] > 0 and res.training["tokens_per_second"] > 0
    assert res.training["target_items_seen"] == pytest.approx(
        res.training["tokens_seen"]
        * res.training["target_items_per_epoch"]
        / res.training["tokens_per_epoch"],
        abs=1,
    )
    # Validation on all validation users beside test, a standard error beside every metric.
    assert res.evaluation["validation_users"] == res.evaluation["all_validation_users"] == 400
    for metrics, n in ((m, 100), (res.validation, 400)):
        assert metrics["num_examples"] == n
        for k in (5, 10):
            p = metrics[f"recall@{k}"]
            assert metrics[f"recall@{k}_se"] == pytest.approx(np.sqrt(p * (1 - p) / n))
            assert 0 < metrics[f"ndcg@{k}_se"] < metrics[f"recall@{k}_se"] + 1e-9
    assert res.validation["recall@10"] > pop["recall@10"]
    for stage in ("sids", "training", "evaluation"):
        assert res.stages[stage]["seconds"] >= 0 and res.stages[stage]["threads"] == 1
    assert res.stages["training"]["steps"] == res.training["steps"]
    assert res.stages["training"]["tokens_seen"] == res.training["tokens_seen"]
    assert res.model["num_parameters"] == res.training["num_parameters"] > 0
    assert res.sid["codebook_sizes"][:2] == [8, 8]
    assert res.sid["num_semantic_levels"] == 2
    # Curve: validation every 50 steps plus the final step, with increasing steps.
    steps = [r["step"] for r in res.curve]
    assert steps == sorted(steps) and steps[-1] == res.training["steps"] and len(steps) >= 2
    assert (out / "model" / "config.json").is_file() and (out / "sids").is_dir()
    d = res.to_dict()
    assert d["config"]["num_beams"] == 10


def _targets(tok, rows):
    """Labelled items of training windows, and how many items of context each one had."""
    per_item = tok.tokens_per_item
    targets, contexts = [], []
    for row in rows:
        items = tok.parse_items(row["input_ids"])
        assert len(row["input_ids"]) == len(items) * per_item
        for pos, item in enumerate(items):
            if any(label != -100 for label in row["labels"][pos * per_item : (pos + 1) * per_item]):
                targets.append(item)
                contexts.append(pos)
    return targets, contexts


@pytest.mark.parametrize("layout", ["bare", "marked"])
def test_training_windows_cover_every_training_item_once_without_leaks(catalogue, layout):
    train, valid, test = leave_one_out_split(catalogue.histories)
    table = {item: (i // 16, i % 16) for i, item in enumerate(catalogue.item_ids)}
    tok = build_sid_tokenizer(table, sid_layout=layout)
    per_item = tok.tokens_per_item
    assert per_item == (2 if layout == "bare" else 4)
    long_user = max(train, key=lambda u: len(train[u]))
    assert len(train[long_user]) > 11  # the window logic is exercised
    rows = history_sequences(tok, {long_user: train[long_user]}, max_history=5, window_stride=3)
    assert len(rows) > 2 and all(len(r["input_ids"]) <= 6 * per_item for r in rows)
    if layout == "bare":  # a window is its items' codes back to back, nothing else
        first = rows[0]["input_ids"]
        assert first == [int(t) for i in train[long_user][:6] for t in tok.codes_to_token_ids([table[i]])[0]]
        assert tok.sid_start_token_id not in first and tok.sid_end_token_id not in first
    targets, contexts = _targets(tok, rows)
    assert targets == train[long_user]  # every training item is a target exactly once, in order
    assert (
        max(contexts) <= 5 and min(contexts[6:]) >= 3
    )  # later windows keep >= max_history + 1 - stride items
    # Leak test: per user, the labels are exactly the training history, never the validation or test target.
    for user in list(test)[:200]:
        targets, _ = _targets(tok, history_sequences(tok, {user: train[user]}))
        assert targets == catalogue.histories[user][:-2]
        assert len(targets) == len(catalogue.histories[user]) - 2


def test_prompts_are_bare_sid_sequences_and_survive_save(tmp_path):
    import json

    from transformers import AutoTokenizer

    table = {"a": (0, 1), "b": (1, 0), "c": (1, 1)}
    tok = build_sid_tokenizer(table)
    prompt = history_prompt(tok, ["a", "b"])
    assert prompt == "<|sid_0_0|><|sid_1_1|><|sid_0_1|><|sid_1_0|>"  # bare: the codes only, 2 tokens per item
    codes = [int(t) for item in ("a", "b") for t in tok.codes_to_token_ids([table[item]])[0]]
    assert tok(prompt)["input_ids"] == tok.encode_items(["a", "b"]) == codes
    tok.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["sid_layout"] == "bare"
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.sid_layout == "bare" and history_prompt(loaded, ["a", "b"]) == prompt
    # The marked layout keeps the markers, and a tokenizer saved without the key loads as marked.
    marked = build_sid_tokenizer(table, sid_layout="marked")
    assert history_prompt(marked, ["a", "b"]) == marked.items_to_text(["a", "b"])
    marked.init_kwargs.pop("sid_layout")
    marked.save_pretrained(tmp_path / "old")
    assert AutoTokenizer.from_pretrained(tmp_path / "old").sid_layout == "marked"
    plain = build_sid_tokenizer({"a": (0, 1), "b": (1, 0)}, sid_only_prompt=False)
    with pytest.raises(ValueError, match="bare concatenation"):
        train_generator(plain, {"u": ["a", "b", "a"]}, GeneratorConfig(max_steps=1))
    with pytest.raises(ValueError, match="SID layout"):
        train_generator(marked, {"u": ["a", "b", "a"]}, GeneratorConfig(max_steps=1))
    with pytest.raises(ValueError, match="sid_layout must be one of"):
        GeneratorConfig(sid_layout="plain")


def test_step_bounded_runs_repeat_exactly(catalogue):
    """Same seed, threads and max_steps: the same metrics (dropout and batch order included)."""
    config = GeneratorConfig(
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        batch_size=16,
        max_steps=8,
        warmup_steps=2,
        embedding_dropout=0.1,
        hidden_dropout=0.1,
        attention_dropout=0.1,
        num_beams=10,
        valid_users=30,
        test_users=30,
        seed=3,
    )
    table = {item: (i // 16, i % 16) for i, item in enumerate(catalogue.item_ids)}
    runs = [run_pipeline(catalogue, sid_table=table, config=config, progress=False) for _ in range(2)]
    assert runs[0].metrics == runs[1].metrics and runs[0].validation == runs[1].validation
    assert runs[0].training["final_train_loss"] == runs[1].training["final_train_loss"]
    assert runs[0].training["steps"] == 8 and runs[0].training["stop_reason"] == "steps"


def test_hidden_and_embedding_dropout_act_in_train_mode_only():
    from hf_semtok.small_models import build_causal_lm

    model = build_causal_lm(50, hidden_size=32, num_layers=2, num_heads=2, seed=0)
    ids = torch.arange(12)[None]
    with torch.no_grad():
        plain = model.eval()(ids).logits
        handles = add_dropout_hooks(model, embedding_dropout=0.0, hidden_dropout=0.3)
        assert len(handles) == 4  # attention and MLP of each of the 2 layers
        assert torch.equal(model.eval()(ids).logits, plain)  # eval: unchanged
        model.train()
        first, second = model(ids).logits, model(ids).logits
        assert not torch.allclose(first, plain) and not torch.allclose(first, second)  # train: dropped
        for handle in handles:
            handle.remove()
        add_dropout_hooks(model, embedding_dropout=0.5)
        assert not torch.allclose(model.train()(ids).logits, plain)
        assert torch.equal(model.eval()(ids).logits, plain)
    with pytest.raises(ValueError, match="hidden_dropout must lie"):
        GeneratorConfig(hidden_dropout=1.0)
    with pytest.raises(ValueError, match="self_attn"):
        add_dropout_hooks(torch.nn.Sequential(torch.nn.Embedding(4, 2)), hidden_dropout=0.1)


def test_level_smoothed_loss_spreads_mass_inside_the_label_level_only():
    from hf_semtok.small_models import build_causal_lm

    tok = build_sid_tokenizer({"a": (0, 1), "b": (1, 0), "c": (1, 1)})
    model = build_causal_lm(len(tok), hidden_size=16, num_layers=1, num_heads=2, seed=0)
    ids = torch.tensor([tok.encode_items(["a", "b", "c"])])
    labels = ids.clone()
    labels[0, :2] = -100  # ignored labels stay ignored
    outputs = model(input_ids=ids)
    plain = level_smoothed_loss(tok.sid_token_ids, len(tok), 0.0)(outputs, labels)
    own = model(input_ids=ids, labels=labels).loss
    assert torch.allclose(plain, own, atol=1e-6)  # smoothing 0: the model's own loss
    smoothed = level_smoothed_loss(tok.sid_token_ids, len(tok), 0.3)(outputs, labels)
    log_probs = torch.log_softmax(outputs.logits[0, :-1].float(), dim=-1)
    expected = []
    for position, label in enumerate(labels[0, 1:].tolist()):
        if label == -100:
            continue
        level = next(lvl for lvl, level_ids in enumerate(tok.sid_token_ids) if label in level_ids)
        uniform = -log_probs[position, tok.sid_token_ids[level]].mean()
        expected.append(0.7 * -log_probs[position, label] + 0.3 * uniform)
    assert torch.allclose(smoothed, torch.stack(expected).mean(), atol=1e-6)
    halved = level_smoothed_loss(tok.sid_token_ids, len(tok), 0.3)(
        outputs, labels, num_items_in_batch=2 * len(expected)
    )
    assert torch.allclose(halved, smoothed / 2, atol=1e-6)  # the Trainer's count of labels divides the sum
    with pytest.raises(ValueError, match="smoothing must lie"):
        level_smoothed_loss(tok.sid_token_ids, len(tok), 1.0)
    with pytest.raises(ValueError, match="label_smoothing must lie"):
        GeneratorConfig(label_smoothing=-0.1)


def test_label_smoothing_changes_training_and_repeats(catalogue):
    config = dict(
        hidden_size=32, num_layers=1, num_heads=2, batch_size=16, max_steps=6, warmup_steps=2, seed=3
    )
    table = {item: (i // 16, i % 16) for i, item in enumerate(catalogue.item_ids)}
    histories = dict(list(catalogue.histories.items())[:80])
    losses = []
    for smoothing in (0.0, 0.2, 0.2):
        tok = build_sid_tokenizer(table)
        _, facts, _ = train_generator(
            tok, histories, GeneratorConfig(**config, label_smoothing=smoothing), progress=False
        )
        losses.append(facts["final_train_loss"])
    assert losses[1] == losses[2] and losses[1] != losses[0]


def test_prefill_once_gives_the_same_rankings(catalogue):
    from hf_semtok.generation import recommend
    from hf_semtok.small_models import build_causal_lm

    tok = build_sid_tokenizer({item: (i // 16, i % 16) for i, item in enumerate(catalogue.item_ids)})
    model = build_causal_lm(len(tok), hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, seed=0)
    _, _, test = leave_one_out_split(catalogue.histories, max_history=20)
    histories = [test[u][0] for u in list(test)[:12]]  # mixed lengths: left padding inside a batch
    plain = recommend(model, tok, histories, k=10, num_beams=12, batch_size=6, progress=False)
    fast = recommend(PrefillOnceLM(model), tok, histories, k=10, num_beams=12, batch_size=6, progress=False)
    assert [[i for i, _ in r] for r in plain] == [[i for i, _ in r] for r in fast]
    assert np.allclose([s for r in plain for _, s in r], [s for r in fast for _, s in r], atol=1e-4)


def test_evaluation_prefills_each_prompt_once(catalogue):
    """evaluate_recommender (and so run_pipeline) runs each prompt once, not once per beam (PrefillOnceLM)."""
    from hf_semtok.evaluation import evaluate_recommender
    from hf_semtok.small_models import build_causal_lm

    tok = build_sid_tokenizer({item: (i // 16, i % 16) for i, item in enumerate(catalogue.item_ids)})
    model = build_causal_lm(len(tok), hidden_size=32, num_layers=1, num_heads=2, seed=0)
    _, _, test = leave_one_out_split(catalogue.histories, max_history=20)
    rows = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        evaluate_recommender(
            model, tok, [test[u] for u in list(test)[:4]], ks=(5,), num_beams=8, progress=False
        )
    finally:
        hook.remove()
    assert rows[0] == 4  # the prefill sees 4 prompts; plain beam search would start with 4 x 8 rows


def test_time_budget_stops_training(catalogue):
    train, valid, _ = leave_one_out_split(catalogue.histories)
    table = {item: (i // 16, i % 16) for i, item in enumerate(catalogue.item_ids)}
    tok = build_sid_tokenizer(table)
    config = GeneratorConfig(
        hidden_size=32, num_layers=1, num_heads=2, batch_size=8, num_epochs=50, max_train_minutes=0.02, seed=1
    )
    model, facts, curve = train_generator(tok, train, config, progress=False)
    assert facts["stop_reason"] == "time budget"
    assert facts["steps"] < 50 * facts["train_windows"] / 8
    assert curve == []


def test_sid_table_from_codes_handles_collisions():
    items = ["a", "b", "c", "d"]
    clean = sid_table_from_codes({"a": (0, 1), "b": (1, 0), "c": (1, 1), "d": (0, 0)}, items)
    assert clean.codes.tolist() == [[0, 1], [1, 0], [1, 1], [0, 0]] and clean.codebook_sizes == [2, 2]
    clash = sid_table_from_codes({"a": (0, 1), "b": (0, 1), "c": (1, 1), "d": (0, 0)}, items)
    assert clash.codes.shape == (4, 3)  # TIGER's extra level separates a and b
    assert len({tuple(r) for r in clash.codes.tolist()}) == 4
    assert clash.num_semantic_levels == 2
    with pytest.raises(ValueError, match="have no codes"):
        sid_table_from_codes({"a": (0, 1)}, items)


def test_features():
    items = ["1", "2", "3"]
    mh = multi_hot_features(items, {"1": ["x", "y"], "2": ["y"]})
    assert mh.tolist() == [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]  # item 3: all-zero row = missing
    hist = {"u1": ["1", "2", "1", "2"], "u2": ["2", "1"]}
    co = cooccurrence_features(items, hist, dim=2, window=1)
    assert co.shape == (3, 2) and np.allclose(co[2], 0.0) and np.abs(co[:2]).sum() > 0


def test_bad_inputs(catalogue):
    with pytest.raises(ValueError, match="exactly one of sid_table"):
        run_pipeline(catalogue, config=GeneratorConfig(max_steps=1))
    with pytest.raises(ValueError, match="num_beams"):
        GeneratorConfig(num_beams=5, ks=[5, 10])
    with pytest.raises(ValueError, match="window_stride"):
        GeneratorConfig(window_stride=0)
    tok = build_sid_tokenizer({item: (i // 16, i % 16) for i, item in enumerate(catalogue.item_ids)})
    with pytest.raises(ValueError, match="train_histories are empty"):
        train_generator(tok, {}, GeneratorConfig(max_steps=1))


def test_amazon_benchmark_main_writes_results(tmp_path, monkeypatch):
    """benchmarks/amazon.py end to end on a tiny LC-Rec folder with published SIDs (no download, no embedding)."""
    import gzip
    import importlib.util
    import json
    import sys
    from pathlib import Path

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "amazon18-scientific"
    (folder / "sids_collisiongenrec").mkdir(parents=True)
    n_items = 40
    inter = {str(u): [int(x) for x in (u + np.arange(6 + u % 4)) % n_items] for u in range(60)}
    (folder / "Scientific.inter.json").write_text(json.dumps(inter))
    index = {str(i): [f"<a_{i // 8}>", f"<b_{i % 8}>", f"<c_{int(rng.integers(3))}>"] for i in range(n_items)}
    with gzip.open(folder / "sids_collisiongenrec" / "tiny.Scientific.index.json.gz", "wt") as f:
        json.dump(index, f)
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "amazon.py"
    spec = importlib.util.spec_from_file_location("amazon_bench", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "amazon_bench", bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    argv = [
        "--dataset", "scientific", "--data_root", str(tmp_path / "data"), "--results_dir", str(tmp_path / "res"),
        "--sids", "published:sids_collisiongenrec/tiny", "--generator.hidden_size", "32",
        "--generator.num_layers", "1", "--generator.num_heads", "2", "--generator.max_steps", "6",
        "--generator.eval_every_steps", "3", "--generator.eval_users", "8", "--generator.test_users", "20",
        "--generator.valid_users", "15", "--num_threads", "1",
    ]  # fmt: skip
    result = bench.main(argv)
    saved = json.loads((tmp_path / "res" / "amazon_scientific_published-cgr-tiny.json").read_text())
    assert saved["metrics"] == result["metrics"] and saved["evaluation"]["test_users"] == 20
    for key in (
        "dataset",
        "features",
        "sids",
        "model",
        "training",
        "tiger",
        "popularity",
        "git_commit",
        "command",
    ):
        assert key in saved
    assert saved["training"]["steps"] == 6 and saved["model"]["num_parameters"] > 0
    assert saved["training"]["tokens_per_item"] == 3 and saved["bench_config"]["num_threads"] == 1
    assert saved["validation"]["num_examples"] == 15 and "ndcg@10_se" in saved["validation"]
    assert {stage: saved["stages"][stage]["threads"] for stage in saved["stages"]} == {
        "data": 1,
        "sids": 1,
        "training": 1,
        "evaluation": 1,
    }
    assert [r["step"] for r in saved["curve"]] == [3, 6]
    table = (tmp_path / "res" / "amazon.md").read_text()
    assert "published:sids_collisiongenrec/tiny" in table and f"{saved['metrics']['recall@10']:.4f}" in table
    assert (tmp_path / "res" / "amazon_scientific_published-cgr-tiny.png").is_file()


def test_select_best_keeps_the_weights_of_the_best_validation_point(catalogue):
    """`select_best`: the model holds the weights of the curve's best point (here not the last one), chosen on the
    validation subsample; re-evaluating it there gives that point's value again."""
    train, valid, _ = leave_one_out_split(catalogue.histories)
    tok = build_sid_tokenizer({item: (i // 16, i % 16) for i, item in enumerate(catalogue.item_ids)})
    config = GeneratorConfig(
        hidden_size=32, num_layers=1, num_heads=2, learning_rate=2e-2, min_lr_ratio=1.0, warmup_steps=2,
        batch_size=32, max_steps=30, eval_every_steps=5, eval_users=40, eval_batch_size=40, num_beams=10,
        seed=0, select_best=True,
    )  # fmt: skip
    model, facts, curve = train_generator(
        tok, train, config, valid_examples=list(valid.values()), progress=False
    )
    values = [r["ndcg@10"] for r in curve]
    best = curve[values.index(max(values))]
    assert facts["selected_step"] == best["step"] < facts["steps"] == curve[-1]["step"]  # not the last point
    assert facts["selection"].startswith("best validation ndcg@10")
    subsample = random.Random(config.seed).sample(list(valid.values()), config.eval_users)
    again = evaluate_with_standard_errors(model, tok, order_by_history_length(subsample, 20), config)
    assert again["ndcg@10"] == pytest.approx(best["ndcg@10"], abs=1e-9)
    with pytest.raises(ValueError, match="eval_every_steps > 0"):
        GeneratorConfig(max_steps=10, select_best=True)
    with pytest.raises(ValueError, match="select_metric"):
        GeneratorConfig(max_steps=10, eval_every_steps=5, select_best=True, select_metric="ndcg@7")
