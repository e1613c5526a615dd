"""recipes/evaluate.py: loads a saved model (+ adapter) and tokenizer, writes the metrics JSON."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_semtok.cli import parse_args_with_config
from hf_semtok.data import DatasetArguments, leave_one_out_split
from hf_semtok.data.synthetic import make_synthetic_catalogue
from hf_semtok.evaluation import evaluate_recommender
from hf_semtok.small_models import build_causal_lm, train_base_tokenizer

_spec = importlib.util.spec_from_file_location(
    "recipe_evaluate", Path(__file__).resolve().parents[1] / "recipes" / "evaluate.py"
)
evaluate_recipe = importlib.util.module_from_spec(_spec)
sys.modules["recipe_evaluate"] = evaluate_recipe  # dataclasses look the module up while building the config
_spec.loader.exec_module(evaluate_recipe)

N_ITEMS, N_USERS, SEED = 64, 24, 3


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

    root = tmp_path_factory.mktemp("eval")
    catalogue = make_synthetic_catalogue(n_items=N_ITEMS, n_users=N_USERS, seed=SEED)
    rng = np.random.default_rng(0)
    combos = np.array([(a, b, c) for a in range(4) for b in range(4) for c in range(8)])
    codes = combos[rng.permutation(len(combos))[:N_ITEMS]]
    table = {item: tuple(int(c) for c in row) for item, row in zip(catalogue.item_ids, codes)}
    base = train_base_tokenizer(list(catalogue.titles.values()), vocab_size=300)
    tok = SemanticIDTokenizer.from_base(base, sid_table=table, codebook_sizes=[4, 4, 8])
    model = build_causal_lm(
        len(tok), hidden_size=32, num_layers=1, num_heads=2, seed=0, pad_token_id=tok.pad_token_id
    ).eval()
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    return root, model_dir, catalogue, tok, model


def _args(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path",
        str(model_dir),
        "--synthetic_items",
        str(N_ITEMS),
        "--synthetic_users",
        str(N_USERS),
        "--seed",
        str(SEED),
        "--max_users",
        "6",
        "--ks",
        "[1, 5]",
        "--num_beams",
        "6",
        "--batch_size",
        "4",
        "--output_file",
        str(out),
        "--progress",
        "false",
        *extra,
    ]


def _examples(catalogue, max_users: int, seed: int):
    _, _, test = leave_one_out_split(catalogue.histories, max_history=20)
    users = sorted(random.Random(seed).sample(sorted(test), max_users))
    return [test[u] for u in users]


def test_main_writes_metrics_matching_the_library(saved):
    root, model_dir, catalogue, tok, model = saved
    out = root / "metrics.json"
    result = evaluate_recipe.main(_args(model_dir, out, "--save_rankings", "true"))
    written = json.loads(out.read_text())
    assert written["metrics"] == pytest.approx(result["metrics"])
    assert written["num_users"] == 6 and written["split"] == "test"
    assert set(written["popularity"]) >= {"recall@1", "recall@5", "ndcg@5"}
    assert len(written["rankings"]) == 6
    for ranked in written["rankings"].values():
        assert all(item in catalogue.item_ids for item, _ in ranked)
    direct = evaluate_recommender(
        model, tok, _examples(catalogue, 6, SEED), ks=(1, 5), num_beams=6, batch_size=4, progress=False
    )
    for key in ("recall@1", "recall@5", "ndcg@5", "mean_num_results"):
        assert written["metrics"][key] == pytest.approx(direct[key])


def test_main_merges_a_lora_adapter(saved):
    from peft import LoraConfig, get_peft_model

    root, model_dir, catalogue, tok, _ = saved
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    lora = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, lora_alpha=64)
    )
    adapter_dir = root / "adapter"
    lora.save_pretrained(adapter_dir)
    tok.save_pretrained(adapter_dir)
    merged = lora.merge_and_unload().eval()
    out = root / "metrics_lora.json"
    result = evaluate_recipe.main(
        _args(model_dir, out, "--adapter_path", str(adapter_dir), "--split", "valid")
    )
    _, valid, _ = leave_one_out_split(catalogue.histories, max_history=20)
    users = sorted(random.Random(SEED).sample(sorted(valid), 6))
    direct = evaluate_recommender(
        merged, tok, [valid[u] for u in users], ks=(1, 5), num_beams=6, batch_size=4, progress=False
    )
    for key in ("recall@1", "recall@5", "ndcg@5", "mean_num_results"):
        assert result["metrics"][key] == pytest.approx(direct[key])


def test_main_ranks_in_bfloat16_when_asked(saved, monkeypatch):
    """`--dtype bfloat16`: the ranking runs on the model cast after loading, the choice is recorded in the JSON,
    and every ranked item is still a catalogue item."""
    import torch

    root, model_dir, catalogue, _, _ = saved
    dtypes = []
    library = evaluate_recipe.evaluate_recommender

    def spying(model, *args, **kwargs):
        dtypes.append(next(model.parameters()).dtype)
        return library(model, *args, **kwargs)

    monkeypatch.setattr(evaluate_recipe, "evaluate_recommender", spying)
    out = root / "metrics_bf16.json"
    evaluate_recipe.main(_args(model_dir, out, "--dtype", "bfloat16", "--save_rankings", "true"))
    written = json.loads(out.read_text())
    assert dtypes == [torch.bfloat16] and written["config"]["dtype"] == "bfloat16"
    assert all(item in catalogue.item_ids for r in written["rankings"].values() for item, _ in r)
    with pytest.raises(SystemExit):
        evaluate_recipe.main(_args(model_dir, out, "--dtype", "int8"))


def test_main_bad_config(saved):
    root, model_dir, *_ = saved
    with pytest.raises(ValueError, match="model_name_or_path is required"):
        evaluate_recipe.main(["--output_file", str(root / "x.json")])
    with pytest.raises(ValueError, match="Unknown config key"):
        evaluate_recipe.main(_args(model_dir, root / "y.json", "--num_beam", "4"))


@pytest.mark.parametrize(
    "name, dataset_format",
    [
        ("evaluate_synthetic.yaml", "synthetic"),
        ("evaluate_scientific.yaml", "lcrec"),
        ("evaluate_table.yaml", "table"),
    ],
)
def test_shipped_configs_parse(name, dataset_format):
    path = Path(__file__).resolve().parents[1] / "recipes" / "configs" / name
    cfg, data = parse_args_with_config(
        [evaluate_recipe.EvaluateConfig, DatasetArguments], ["--config", str(path)]
    )
    assert cfg.model_name_or_path and cfg.ks == [5, 10] and cfg.split == "test"
    assert data.dataset_format == dataset_format


def test_process_shards_cover_every_user_once_in_order():
    from hf_semtok.evaluation import process_shard

    for n in (0, 1, 5, 6, 7):
        for world in (1, 2, 3, 8):
            shards = [process_shard(n, rank, world) for rank in range(world)]
            assert [i for shard in shards for i in shard] == list(range(n))  # gathered in rank order
            assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(
        ValueError, match=r"process_index must be in \[0, num_processes\); got process 2 of 2"
    ):
        process_shard(4, 2, 2)


def test_two_processes_share_the_users_and_write_the_result_once(saved, tmp_path):
    """As launched: `torchrun --nproc_per_node 2 recipes/evaluate.py ...` on CPU (gloo). Each process ranks half of
    the users; the main process writes the metrics of all of them, equal to a one-process run's."""
    import os
    import subprocess

    _, model_dir, _, _, _ = saved
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    root = Path(__file__).resolve().parents[1]
    one = evaluate_recipe.main(_args(model_dir, tmp_path / "one.json", "--save_rankings", "true"))
    out = tmp_path / "two" / "metrics.json"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "recipes/evaluate.py"]
    argv += _args(model_dir, out, "--save_rankings", "true")
    proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two, stdout = json.loads(out.read_text()), proc.stdout
    assert two["num_processes"] == 2 and one["num_processes"] == 1
    assert stdout.count("Wrote ") == 1  # one process wrote and printed
    assert two["num_users"] == one["num_users"] == 6
    assert list(two["rankings"]) == list(one["rankings"])  # every user ranked once, in the same order
    for user, ranking in one["rankings"].items():  # other batches, other padding: scores equal up to rounding
        assert [item for item, _ in two["rankings"][user]] == [item for item, _ in ranking]
        assert [score for _, score in two["rankings"][user]] == pytest.approx(
            [score for _, score in ranking], abs=1e-4
        )
    for key in ("recall@1", "recall@5", "ndcg@5"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key])
