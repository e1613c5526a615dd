"""benchmarks/serving_topk.py at a tiny size: n constrained samples against constrained beam search (issue 28).

Synthetic data and a tiny generator built in code; no timing is asserted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_semtok.lm.sid_sequences import build_sid_tokenizer
from hf_semtok.prompts import history_prompt
from hf_semtok.small_models import build_causal_lm

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location(
        "bench_serving_topk", ROOT / "benchmarks" / "serving_topk.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load()


@pytest.fixture(scope="module", params=["bare", "marked"])
def model_and_tokenizer(request):
    sids = {f"i{a}{b}": (a, b) for a in range(4) for b in range(3)}  # 12 items, 2 levels
    tokenizer = build_sid_tokenizer(sids, sid_layout=request.param)
    model = build_causal_lm(
        len(tokenizer),
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        seed=0,
    ).eval()
    return model, tokenizer


HISTORIES = [["i00", "i11"], ["i21"], ["i32", "i01", "i12", "i20"]]


def _sid_log_prob(model, tokenizer, history, item):
    """The item's SID log-probability after the history's prompt, from one teacher-forced forward pass."""
    prompt = tokenizer(history_prompt(tokenizer, history))["input_ids"]
    codes = tokenizer.encode_items(item)
    if tokenizer.sid_layout == "marked":
        prompt, codes = prompt + codes[:1], codes[1:-1]  # the forced <|sid_start|> scores nothing
    ids = torch.tensor([prompt + codes])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(codes))


def test_samples_are_catalogue_items_scored_by_their_sid_log_probability(bench, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    drawn, invalid = bench.sample_items(
        model, tokenizer, HISTORIES, num_samples=15, batch_size=2, progress=False
    )
    assert invalid == 0 and len(drawn) == len(HISTORIES)
    for history, items in zip(HISTORIES, drawn):
        assert sum(count for _, count, _ in items) == 15  # every draw named an item
        assert len({item for item, _, _ in items}) == len(items)
        for item, _, score in items:
            assert item in tokenizer.item_ids
            assert score == pytest.approx(_sid_log_prob(model, tokenizer, history, item), abs=1e-4)


def test_sampling_is_seeded_and_prefill_once_draws_what_the_plain_model_draws(bench, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    first = bench.sample_items(
        model, tokenizer, HISTORIES, num_samples=12, batch_size=2, seed=3, progress=False
    )
    again = bench.sample_items(
        model, tokenizer, HISTORIES, num_samples=12, batch_size=2, seed=3, progress=False
    )
    other = bench.sample_items(
        model, tokenizer, HISTORIES, num_samples=12, batch_size=2, seed=4, progress=False
    )
    assert first == again and first != other
    first = first[0]
    # the same draws without PrefillOnceLM: generate() on the plain model, same seed per batch
    plain = bench.PrefillOnceLM
    try:
        bench.PrefillOnceLM = lambda m: m
        unwrapped, _ = bench.sample_items(
            model, tokenizer, HISTORIES, num_samples=12, batch_size=2, seed=3, progress=False
        )
    finally:
        bench.PrefillOnceLM = plain
    assert [[(i, c) for i, c, _ in user] for user in unwrapped] == [
        [(i, c) for i, c, _ in user] for user in first
    ]


def test_sample_scores_are_beam_search_scores_and_a_cold_sample_is_greedy(bench, model_and_tokenizer):
    from hf_semtok.generation import recommend

    model, tokenizer = model_and_tokenizer
    drawn, _ = bench.sample_items(model, tokenizer, HISTORIES, num_samples=10, progress=False)
    exhaustive = recommend(
        model, tokenizer, HISTORIES, k=12, num_beams=12, progress=False
    )  # 12 beams, 12 items
    for items, beams in zip(drawn, exhaustive):
        scores = dict(beams)
        assert len(scores) == 12
        for item, _, score in items:
            assert score == pytest.approx(scores[item], abs=1e-4)  # the score beam search ranks by
    cold, _ = bench.sample_items(model, tokenizer, HISTORIES, num_samples=3, temperature=1e-4, progress=False)
    greedy = recommend(model, tokenizer, HISTORIES, k=1, num_beams=1, progress=False)
    assert [[item for item, _, _ in user] for user in cold] == [[g[0][0]] for g in greedy]


def test_rankings_and_paired_differences(bench):
    drawn = [("a", 1, -1.0), ("b", 3, -2.0), ("c", 3, -1.5), ("d", 1, -0.5)]
    assert [i for i, _ in bench.rank_drawn(drawn, "logprob", 3)] == ["d", "a", "c"]
    assert [i for i, _ in bench.rank_drawn(drawn, "frequency", 3)] == ["c", "b", "d"]
    with pytest.raises(ValueError, match="by must be one of"):
        bench.rank_drawn(drawn, "count", 3)
    rankings, baseline, targets = [["x", "t"], ["t"]], [["t"], ["y"]], ["t", "t"]
    diff = bench.paired_difference(rankings, baseline, targets, k=10)
    assert diff["recall@10"] == 0.5 and diff["recall@10_se"] == pytest.approx(0.5)  # diffs 0 and 1
    assert diff["ndcg@10"] == pytest.approx(((1 / math.log2(3) - 1) + 1) / 2)
    assert bench.overlap_at_k([["a", "b"], ["c"]], [["b", "z"], ["c"]], 10) == pytest.approx(0.75)


def test_the_benchmark_runs_as_a_user_types_it_and_writes_json_and_markdown(bench, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = [
        "--config", "benchmarks/configs/amazon_scientific.yaml", "--synthetic_items", "96", "--synthetic_users",
        "60", "--run_dir", str(tmp_path / "run"), "--results_dir", str(tmp_path), "--num_threads", "1",
        "--sid.codebook_sizes", "[4, 4]", "--sid.epochs", "2", "--sid.contrastive_weight", "0",
        "--generator.hidden_size", "32", "--generator.num_layers", "1", "--generator.num_heads", "2",
        "--generator.num_kv_heads", "1", "--generator.max_steps", "4", "--generator.warmup_steps", "1",
        "--generator.batch_size", "8", "--generator.eval_every_steps", "0", "--generator.test_users", "40",
    ]  # fmt: skip
    command = [sys.executable, "benchmarks/serving_topk.py", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "serving_topk.json").read_text())
    assert result["test_users"] == 40 and result["all_test_users"] == 60 and result["threads"] == 1
    assert result["training"]["steps"] == 4 and result["samples"]["invalid_draws"] == 0
    assert set(result["decoders"]) == {"beam-20", "sample-20 by logprob", "sample-20 by frequency"}
    for name, decoder in result["decoders"].items():
        metrics = decoder["metrics"]
        assert metrics["num_examples"] == 40 and "recall@10_se" in metrics and "ndcg@10_se" in metrics
        assert 0 <= metrics["recall@5"] <= metrics["recall@10"] <= metrics["recall@20"] <= 1
        if name != "beam-20":
            assert {"recall@10", "recall@10_se", "ndcg@10", "ndcg@10_se"} <= set(decoder["vs_beam"])
    beam, sampled = result["decoders"]["beam-20"], result["decoders"]["sample-20 by logprob"]
    assert beam["metrics"]["mean_num_results"] == 20  # 96 items: every one of the 20 beams ends on an item
    assert 1 <= result["samples"]["mean_distinct_items"] <= 20
    # both rankings hold the same distinct sampled items, so the target is among them equally often
    assert (
        sampled["metrics"]["recall@20"]
        == result["decoders"]["sample-20 by frequency"]["metrics"]["recall@20"]
    )
    table = (tmp_path / "serving_topk.md").read_text()
    assert "| beam-20 |" in table and "| sample-20 by frequency |" in table
    assert (
        "Command: `python benchmarks/serving_topk.py --config benchmarks/configs/amazon_scientific.yaml"
        in table
    )
    # the saved generator is evaluated again without training, with the same metrics
    reused = bench.run([*args, "--reuse_model"])
    assert reused["reused_model"] and reused["training"] == result["training"]
    for name, decoder in result["decoders"].items():
        assert reused["decoders"][name]["metrics"] == pytest.approx(decoder["metrics"])
    with pytest.raises(ValueError, match="its settings differ"):
        bench.run([*args, "--reuse_model", "--generator.max_steps", "5"])
