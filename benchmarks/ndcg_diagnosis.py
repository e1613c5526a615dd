"""Where a trained generator loses NDCG: a diagnosis on validation users (issue 29).

NDCG@10 / Recall@10 is the mean rank discount of the hits inside the top 10: 1.0 if every hit sat at rank 1,
0.454 if hits were spread evenly over ranks 1-10. This script loads a generator saved by `benchmarks/amazon.py`
(`benchmarks/runs/amazon_<dataset>_<run_name>/model`), ranks `num_beams` items for validation users with the
library's `recommend()` (the benchmark's beam search), and splits the ranking error into parts:

- **hit ranks**: how the hits spread over ranks 1-20, and the NDCG/Recall ratio;
- **search vs model**: for a target outside the top 10, its own score (teacher-forced: the sum of its code tokens'
  log-probabilities, the score beam search ranks by) against the 10th result's. A higher own score means beam
  search pruned it (a search error); a lower one means the model ranks it below ten others (a model error);
- **prefix levels**: for each SID level, how often the best result shares the target's prefix of that length, and
  the rank of the target's prefix among the distinct prefixes of the ranked list;
- **collision siblings**: items that share all semantic codes with the target and differ only in the dedup code;
  how often one ranks above the target, and the NDCG@10 if every target moved up to its sibling group's best rank
  (what ranking the dedup code perfectly could give), and with each sibling group reordered by training
  popularity (a rule needing no labels);
- **a popularity prior**: the ranked list re-sorted by `score + w * log(1 + training count)` for each weight `w`
  of `--popularity_weights` (choose `w` on the validation split, then read the test split at that `w` alone).

Writes `benchmarks/results/ndcg_diagnosis_<dataset>_<run_name>[_test].{json,md}`.

Usage:
    python benchmarks/ndcg_diagnosis.py --dataset toys --run_name rqvae-256x3-contrastive-text-collab
    python benchmarks/ndcg_diagnosis.py --dataset beauty --run_name <run> --users 0   # every validation user
    python benchmarks/ndcg_diagnosis.py --dataset toys --run_name <run> --split test --popularity_weights 0 0.1
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark module, imported by name

import amazon as _AMAZON  # noqa: E402

from hf_semtok.data import leave_one_out_split  # noqa: E402
from hf_semtok.generation import _encode_prompts, _left_pad, recommend  # noqa: E402
from hf_semtok.io_utils import write_json_atomic, write_text_atomic  # noqa: E402
from hf_semtok.prompts import history_prompt  # noqa: E402

REPO = _AMAZON.REPO
logger = logging.getLogger("benchmarks.ndcg_diagnosis")
UNIFORM_TOP10_RATIO = float(np.mean([1.0 / math.log2(r + 1) for r in range(1, 11)]))  # 0.454


def _discount(rank: int | None, k: int = 10) -> float:
    return 1.0 / math.log2(rank + 1) if rank is not None and rank <= k else 0.0


@torch.no_grad()
def target_scores(
    model: Any,
    tokenizer: Any,
    histories: list[list[str]],
    targets: list[str],
    max_history: int,
    batch: int = 64,
) -> list[float]:
    """Each target's teacher-forced score after its history: the sum of its code tokens' log-probabilities over
    the whole vocabulary, the quantity beam search ranks by (`recommend`, `length_penalty=0`)."""
    prompts = [history_prompt(tokenizer, h, max_history=max_history) for h in histories]
    prompt_ids = _encode_prompts(tokenizer, prompts)
    codes = np.asarray([tokenizer.item_to_sid(t) for t in targets])
    target_ids = tokenizer.codes_to_token_ids(codes).tolist()
    pad = tokenizer.pad_token_id
    out: list[float] = []
    for first in range(0, len(prompts), batch):
        rows = [p + t for p, t in zip(prompt_ids[first : first + batch], target_ids[first : first + batch])]
        ids, mask = _left_pad(rows, pad)  # as recommend() pads
        width = ids.shape[1]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits.float()
        levels = codes.shape[1]
        log_probs = torch.log_softmax(logits[:, width - levels - 1 : width - 1], dim=-1)
        tokens = ids[:, width - levels :]
        out.extend(log_probs.gather(-1, tokens[..., None]).squeeze(-1).sum(-1).tolist())
    return out


def _metrics_at_10(ranks: list[int | None]) -> dict[str, float]:
    n = max(len(ranks), 1)
    return {
        "recall@10": sum(1 for r in ranks if r is not None and r <= 10) / n,
        "ndcg@10": sum(_discount(r) for r in ranks) / n,
    }


def diagnose(
    model: Any,
    tokenizer: Any,
    examples: list[tuple[list[str], str]],
    num_beams: int,
    max_history: int,
    popularity: dict[str, int] | None = None,
    popularity_weights: tuple[float, ...] = (),
) -> dict[str, Any]:
    """The diagnosis dict for `(history, target)` examples (see the module docstring); `popularity` holds each
    item's training count (missing: 0)."""
    popularity = popularity or {}
    log_pop = {item: math.log1p(popularity.get(item, 0)) for item in tokenizer.item_ids}
    histories = [list(h) for h, _ in examples]
    targets = [t for _, t in examples]
    began = time.perf_counter()
    ranked = recommend(
        model, tokenizer, histories, k=num_beams, num_beams=num_beams, max_history=max_history, batch_size=32
    )
    rank_seconds = time.perf_counter() - began
    own = target_scores(model, tokenizer, histories, targets, max_history)
    sem = int(tokenizer.num_semantic_levels)
    levels = int(tokenizer.num_levels)
    codes_of = {item: tuple(c) for item, c in zip(tokenizer.item_ids, tokenizer.sid_codes.tolist())}
    hist = [0] * (num_beams + 1)  # hist[r] = hits at rank r (1-based); hist[0] unused
    search_errors = model_errors = short_lists = 0
    prefix_top1 = [0] * levels
    prefix_rr = [0.0] * levels
    sibling_above = sibling_groups = 0
    oracle_dcg = 0.0
    by_popularity_ranks: list[int | None] = []
    prior_ranks: dict[float, list[int | None]] = {w: [] for w in popularity_weights}
    for items, target, score in zip(ranked, targets, own):
        names = [r[0] for r in items]
        rank = names.index(target) + 1 if target in names else None
        if rank is not None:
            hist[rank] += 1
        if rank is None or rank > 10:
            if len(items) < 10:
                short_lists += 1
            elif score > items[9][1] + 1e-6:
                search_errors += 1
            else:
                model_errors += 1
        tcodes = codes_of[target]
        for level in range(levels):
            seen: list[tuple[int, ...]] = []
            for name in names:
                prefix = codes_of[name][: level + 1]
                if prefix not in seen:
                    seen.append(prefix)
            want = tcodes[: level + 1]
            if seen and seen[0] == want:
                prefix_top1[level] += 1
            if want in seen:
                prefix_rr[level] += 1.0 / (seen.index(want) + 1)
        siblings = [i for i, n in enumerate(names) if codes_of[n][:sem] == tcodes[:sem] and n != target]
        best = rank
        if siblings:
            sibling_groups += 1
            if rank is not None and siblings[0] + 1 < rank:
                sibling_above += 1
                best = siblings[0] + 1
        oracle_dcg += _discount(best)
        # Each sibling group keeps its positions; inside it, the more popular item (in training) comes first.
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(codes_of[name][:sem], []).append(i)
        reordered = list(names)
        for positions in groups.values():
            members = sorted((names[i] for i in positions), key=lambda n: -popularity.get(n, 0))
            for i, name in zip(positions, members):
                reordered[i] = name
        by_popularity_ranks.append(reordered.index(target) + 1 if target in reordered else None)
        for w in popularity_weights:
            resorted = sorted(items, key=lambda r: -(r[1] + w * log_pop[r[0]]))
            order = [r[0] for r in resorted]
            prior_ranks[w].append(order.index(target) + 1 if target in order else None)
    n = len(examples)
    hits10 = sum(hist[1:11])
    ndcg10 = sum(hist[r] * _discount(r) for r in range(1, 11)) / n
    misses = n - hits10
    return {
        "users": n,
        "num_beams": num_beams,
        "rank_seconds": round(rank_seconds, 1),
        "recall@10": hits10 / n,
        "ndcg@10": ndcg10,
        "recall@20": sum(hist[1:21]) / n,
        "ndcg_over_recall@10": ndcg10 / max(hits10 / n, 1e-12),
        "uniform_top10_ratio": UNIFORM_TOP10_RATIO,
        "hit_rank_histogram": {str(r): hist[r] for r in range(1, len(hist))},
        "misses@10": misses,
        "search_errors@10": search_errors,
        "model_errors@10": model_errors,
        "short_lists": short_lists,
        "prefix_top1": [c / n for c in prefix_top1],
        "prefix_mrr": [c / n for c in prefix_rr],
        "semantic_levels": sem,
        "targets_with_sibling_in_list": sibling_groups,
        "sibling_ranked_above_target": sibling_above,
        "ndcg@10_if_siblings_ranked_right": oracle_dcg / n,
        "siblings_by_training_popularity": _metrics_at_10(by_popularity_ranks),
        "popularity_prior": {str(w): _metrics_at_10(prior_ranks[w]) for w in popularity_weights},
    }


def markdown(result: dict[str, Any]) -> str:
    d = result["diagnosis"]
    n = d["users"]
    lines = [
        f"# Where NDCG is lost: {result['dataset']}, run `{result['run_name']}`",
        "",
        f"{n:,} {result['split']} users (seed {result['seed']}), {d['num_beams']} beams, "
        f"{result['threads']} thread(s). Command: `{result['command']}`",
        "",
        f"- Recall@10 {d['recall@10']:.4f}, NDCG@10 {d['ndcg@10']:.4f}: NDCG/Recall "
        f"{d['ndcg_over_recall@10']:.3f} (hits spread evenly over ranks 1-10 would give "
        f"{d['uniform_top10_ratio']:.3f}; every hit at rank 1, 1.0). Recall@20 {d['recall@20']:.4f}.",
        "- Hits by rank: "
        + ", ".join(f"{r}: {c}" for r, c in d["hit_rank_histogram"].items() if int(r) <= 20)
        + ".",
        f"- Targets outside the top 10: {d['misses@10']:,}. Search errors (the target's own score beats the 10th "
        f"result's, so beam search pruned it): {d['search_errors@10']:,}; model errors (ten items score higher): "
        f"{d['model_errors@10']:,}; lists shorter than 10: {d['short_lists']:,}.",
        "- Best result shares the target's prefix, by prefix length: "
        + ", ".join(f"{i + 1}: {v:.3f}" for i, v in enumerate(d["prefix_top1"]))
        + "; mean reciprocal rank of the target's prefix among distinct prefixes: "
        + ", ".join(f"{i + 1}: {v:.3f}" for i, v in enumerate(d["prefix_mrr"]))
        + ".",
        f"- Collision siblings (same {d['semantic_levels']} semantic codes, another dedup code) in the list: "
        f"{d['targets_with_sibling_in_list']:,} targets; a sibling above a hit target: "
        f"{d['sibling_ranked_above_target']:,}. NDCG@10 with every such target moved to its group's best rank: "
        f"{d['ndcg@10_if_siblings_ranked_right']:.4f} (now {d['ndcg@10']:.4f}); with each sibling group "
        f"ordered by training popularity: {d['siblings_by_training_popularity']['ndcg@10']:.4f}.",
    ]
    if d["popularity_prior"]:
        lines.append(
            f"- The {d['num_beams']} results re-sorted by score + w * log(1 + training count), Recall@10 / NDCG@10: "
            + "; ".join(
                f"w={w}: {m['recall@10']:.4f} / {m['ndcg@10']:.4f}" for w, m in d["popularity_prior"].items()
            )
            + "."
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="ndcg_diagnosis.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(_AMAZON.DATASETS))
    parser.add_argument("--run_name", required=True, help="The amazon.py run whose saved model to read.")
    parser.add_argument("--data_root", default="../shared/data", help="Folder holding the dataset folders.")
    parser.add_argument("--runs_dir", default="benchmarks/runs", help="Where amazon.py saved its runs.")
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--users", type=int, default=4000, help="Users of the split (0: all).")
    parser.add_argument(
        "--popularity_weights",
        type=float,
        nargs="*",
        default=[0.0, 0.05, 0.1, 0.2, 0.4],
        help="Weights w of the popularity prior score + w * log(1 + training count).",
    )
    parser.add_argument("--num_beams", type=int, default=20)
    parser.add_argument("--max_history", type=int, default=20)
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results_dir", default="benchmarks/results")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.num_beams < 10:
        parser.error(
            f"--num_beams must be at least 10 (the diagnosis reads the top 10), got {args.num_beams}."
        )
    torch.set_num_threads(args.num_threads)
    from transformers import AutoModelForCausalLM

    from hf_semtok import SemanticIDTokenizer

    model_dir = REPO / args.runs_dir / f"amazon_{args.dataset}_{args.run_name}" / "model"
    if not model_dir.is_dir():
        raise SystemExit(
            f"No saved model at {model_dir}. Run benchmarks/amazon.py with --run_name {args.run_name} first "
            "(it saves the generator there)."
        )
    tokenizer = SemanticIDTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    cfg = _AMAZON.AmazonBenchConfig(dataset=args.dataset, data_root=args.data_root)
    catalogue = _AMAZON._load(cfg)
    train, valid, test = leave_one_out_split(catalogue.histories, max_history=args.max_history)
    split = valid if args.split == "valid" else test
    popularity = Counter(item for history in train.values() for item in history)
    users = sorted(split)
    if args.users:
        users = sorted(random.Random(args.seed).sample(users, min(args.users, len(users))))
    examples = [split[u] for u in users]
    result = {
        "dataset": args.dataset,
        "run_name": args.run_name,
        "split": args.split,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "command": "python benchmarks/ndcg_diagnosis.py " + " ".join(argv),
        "git_commit": _AMAZON._git_commit(),
        "diagnosis": diagnose(
            model,
            tokenizer,
            examples,
            args.num_beams,
            args.max_history,
            dict(popularity),
            tuple(args.popularity_weights),
        ),  # fmt: skip
    }
    out = REPO / args.results_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = f"ndcg_diagnosis_{args.dataset}_{args.run_name}" + ("_test" if args.split == "test" else "")
    write_json_atomic(result, out / f"{stem}.json", indent=2)
    text = markdown(result)
    write_text_atomic(text, out / f"{stem}.md")
    print(text)
    return result


if __name__ == "__main__":
    main()
