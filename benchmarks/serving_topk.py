"""Top-k through an inference server: n constrained samples against constrained beam search (issue 28).

vLLM's `LLM.beam_search` applies neither structured outputs nor logits processors, so a server's constrained top-k
is `n` samples drawn under the SID grammar, de-duplicated and ranked. This benchmark measures what that gives
against 20-beam constrained search, with the same generator, the same constraint and the same test users:

- **beam**: `hf_semtok.evaluation.evaluate_recommender` (`recommend()`: constrained beam search over
  `--generator.num_beams` beams, ranked by the SID's sequence log-probability);
- **sample**: per batch of users, one `generate(do_sample=True, num_return_sequences=n, temperature=T, top_k=0,
  top_p=1.0, logits_processor=[SIDLogitsProcessor])`: what a server does for `SamplingParams(n=n, temperature=T)`
  with the exported grammar, whose masks equal the processor's (tests/serving/test_serving.py). transformers' default
  `top_k=50` is switched off: vLLM samples from the whole distribution unless told otherwise. The distinct items
  of a user's `n` draws are ranked two ways from the same draws: by sequence log-probability (the sum of the
  code tokens' log-probabilities under the model, the score beam search ranks by), and by how often they were
  drawn, ties broken by log-probability.

The generator is trained from scratch as `benchmarks/amazon.py` trains it (same loading, item features, RQ-VAE and
generator settings, from `--config`), bounded by `--generator.max_steps`. Every metric has its standard error over
users, and every sampled ranking the paired standard error of its difference to beam search (same users).
Sampling is seeded per batch (`--sample_seed` + batch index); the JSON records torch threads, seconds per stage
and the machine's load average, since the step-bounded numbers do not depend on the load but the seconds do.

Usage:
    python benchmarks/serving_topk.py --config benchmarks/configs/amazon_scientific.yaml \
        --generator.max_steps 1000 --generator.eval_every_steps 0
    python benchmarks/serving_topk.py ... --reuse_model          # evaluate the saved generator again, no training
    python benchmarks/serving_topk.py ... --generator.test_users 2000   # a seeded subsample of the test users
Writes `serving_topk.json` and `serving_topk.md` to `--results_dir` (default benchmarks/results); the generator is
saved under `benchmarks/runs/serving_topk_<dataset>/` (gitignored).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hf_semtok.cli import parse_args_with_config
from hf_semtok.data import leave_one_out_split
from hf_semtok.evaluation import evaluate_recommender, ndcg_at_k, ranking_metrics, recall_at_k
from hf_semtok.generation import PrefillOnceLM, SIDLogitsProcessor
from hf_semtok.io_utils import write_json_atomic, write_text_atomic
from hf_semtok.lm.generator import train_generator
from hf_semtok.lm.sid_sequences import build_sid_tokenizer, order_by_history_length
from hf_semtok.prompts import history_prompt
from hf_semtok.rqvae.sid_stage import train_sid_stage

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("benchmarks.serving_topk")

#: Generator settings that only change evaluation: a saved generator is reused whatever their values.
EVAL_ONLY = (
    "eval_every_steps",
    "eval_users",
    "valid_users",
    "eval_batch_size",
    "num_beams",
    "ks",
    "test_users",
)
#: The two rankings of the same sampled items.
RANKINGS = ("logprob", "frequency")


sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts
import amazon as _AMAZON  # noqa: E402  (benchmarks/amazon.py)


@dataclass
class TopKArgs:
    """The sampling decoder's settings (the dataset, SID and generator settings are `benchmarks/amazon.py`'s).

    Args:
        num_samples: Samples drawn per user (a server's `n`).
        temperature: Sampling temperature (1.0: the model's distribution).
        sample_seed: Seed of the draws; batch `b` is drawn after `torch.manual_seed(sample_seed + b)`.
        reuse_model: Evaluate the generator saved by an earlier run with the same settings instead of training.
        synthetic_items: If > 0, a synthetic catalogue of this many items replaces the dataset (for tests).
        synthetic_users: Users of the synthetic catalogue.
        run_dir: Where the generator is saved and found again (default: `benchmarks/runs/serving_topk_<dataset>`,
            relative paths from the repository root).
    """

    num_samples: int = field(default=20, metadata={"help": "Samples drawn per user (a server's n)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    sample_seed: int = field(default=0, metadata={"help": "Seed of the draws (plus the batch index)."})
    reuse_model: bool = field(
        default=False,
        metadata={"help": "Evaluate the generator saved by an earlier run with the same settings."},
    )
    synthetic_items: int = field(default=0, metadata={"help": "> 0: a synthetic catalogue instead (tests)."})
    synthetic_users: int = field(default=200, metadata={"help": "Users of the synthetic catalogue."})
    run_dir: str | None = field(
        default=None,
        metadata={"help": "Where the generator is saved (default: benchmarks/runs/serving_topk_<dataset>)."},
    )

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}.")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}.")


# --------------------------------------------------------------------------------------------------------------
# The sampling decoder
# --------------------------------------------------------------------------------------------------------------
def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(batch, width)` left-padded ids and attention mask."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask


@torch.no_grad()
def sample_items(
    model: Any,
    tokenizer: Any,
    histories: Sequence[Sequence[str]],
    num_samples: int = 20,
    temperature: float = 1.0,
    batch_size: int = 32,
    max_history: int | None = 20,
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[list[tuple[str, int, float]]], int]:
    """Draw `num_samples` SIDs per user under `SIDLogitsProcessor`, as a server samples `n` under the SID grammar.

    Prompts are `hf_semtok.prompts.history_prompt` (what `recommend()` sends). Each batch of users is one
    `generate(do_sample=True, num_return_sequences=num_samples)` with `top_k=0` and `top_p=1.0` (the whole
    constrained distribution; transformers would otherwise cut to its default top 50), on the model wrapped in
    `PrefillOnceLM` (each prompt's forward pass runs once, not once per sample). A draw's score is its SID's
    sequence log-probability under the model: the sum over the code tokens of the log-softmax of the raw logits,
    the same score `recommend()`'s beam search ranks by.

    Args:
        model: The generator (a causal LM with the tokenizer's SID tokens).
        tokenizer: Its `SemanticIDTokenizer`.
        histories: Per user, item ids oldest first.
        num_samples: Draws per user.
        temperature: Sampling temperature (the scores stay the model's log-probabilities at temperature 1).
        batch_size: Users per `generate()` call.
        max_history: Most recent items kept in a prompt.
        seed: Batch `b` (users ordered by prompt length) is drawn after `torch.manual_seed(seed + b)`.
        progress: Show a progress bar.

    Returns:
        `(drawn, invalid)`: per user (input order), its distinct items as `(item_id, count, log_prob)` in order of
        first draw; and the number of draws that named no catalogue item (0 when the constraint holds).
    """
    from tqdm.auto import tqdm

    bare = tokenizer.sid_layout == "bare"
    levels = int(tokenizer.num_levels)
    first_code = 0 if bare else 1  # the marked layout's forced <|sid_start|> comes first
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sid_end_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    prompts = [history_prompt(tokenizer, list(h), max_history=max_history) for h in histories]
    encoded = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
    generator = PrefillOnceLM(model)
    drawn: list[list[tuple[str, int, float]]] = [[] for _ in histories]
    invalid = 0
    was_training = model.training
    model.eval()
    try:
        starts = range(0, len(order), batch_size)
        for batch, start in enumerate(tqdm(starts, desc="sample", unit="batch", disable=not progress)):
            users = order[start : start + batch_size]
            input_ids, attention_mask = _left_pad([encoded[i] for i in users], pad)
            width = input_ids.shape[1]
            processor = SIDLogitsProcessor.from_tokenizer(
                tokenizer, mode="sid", prompt_length=width, eos_token_id=eos
            )
            torch.manual_seed(seed + batch)
            out = generator.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                logits_processor=[processor],
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                num_beams=1,
                num_return_sequences=num_samples,
                max_new_tokens=levels if bare else levels + 2,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=pad,
                eos_token_id=eos,
            )
            new = out.sequences[:, width:]  # (users * num_samples, new tokens)
            logits = torch.stack(out.logits[first_code : first_code + levels], dim=1).float()  # (rows, L, V)
            codes = new[:, first_code : first_code + levels].unsqueeze(-1)  # (rows, L, 1)
            log_probs = torch.log_softmax(logits, dim=-1).gather(-1, codes).squeeze(-1).sum(dim=1).tolist()
            parsed = tokenizer.parse_items(new, on_invalid="none")  # per row, the items it names
            for j, user in enumerate(users):
                items: dict[str, list[Any]] = {}
                for row in range(j * num_samples, (j + 1) * num_samples):
                    item = parsed[row][0] if len(parsed[row]) == 1 else None
                    if item is None:
                        invalid += 1
                        continue
                    entry = items.setdefault(item, [0, log_probs[row]])
                    entry[0] += 1
                    entry[1] = max(entry[1], log_probs[row])  # equal up to float rounding across rows
                drawn[user] = [(item, count, score) for item, (count, score) in items.items()]
    finally:
        model.train(was_training)
    return drawn, invalid


def rank_drawn(drawn: Sequence[tuple[str, int, float]], by: str, k: int) -> list[tuple[str, float]]:
    """The top `k` of one user's distinct sampled items as `(item_id, log_prob)`.

    Args:
        drawn: `(item_id, count, log_prob)` per distinct item (from `sample_items`).
        by: `"logprob"` (highest sequence log-probability first) or `"frequency"` (most often drawn first, ties
            by log-probability).
        k: How many to keep.

    Returns:
        The ranking, best first (item id breaks exact ties, so it is deterministic).
    """
    if by == "logprob":
        key = lambda e: (-e[2], e[0])  # noqa: E731
    elif by == "frequency":
        key = lambda e: (-e[1], -e[2], e[0])  # noqa: E731
    else:
        raise ValueError(f"by must be one of {RANKINGS}, got {by!r}.")
    return [(item, score) for item, _, score in sorted(drawn, key=key)[:k]]


def paired_difference(
    rankings: Sequence[Sequence[Any]], baseline: Sequence[Sequence[Any]], targets: Sequence[str], k: int
) -> dict[str, float]:
    """Mean per-user difference of Recall@K and NDCG@K (`rankings` minus `baseline`), with its standard error."""
    out: dict[str, float] = {}
    for name, metric in (("recall", recall_at_k), ("ndcg", ndcg_at_k)):
        diff = [metric(r, t, k) - metric(b, t, k) for r, b, t in zip(rankings, baseline, targets)]
        out[f"{name}@{k}"] = sum(diff) / len(diff)
        out[f"{name}@{k}_se"] = statistics.stdev(diff) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
    return out


def overlap_at_k(rankings: Sequence[Sequence[Any]], baseline: Sequence[Sequence[Any]], k: int) -> float:
    """Mean share of the baseline's top `k` items that a ranking's top `k` also holds."""
    shares = []
    for r, b in zip(rankings, baseline):
        ours, theirs = {e[0] for e in r[:k]}, {e[0] for e in b[:k]}
        shares.append(len(ours & theirs) / max(len(theirs), 1))
    return sum(shares) / len(shares)


# --------------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------------
def _catalogue_and_features(cfg: Any, topk: TopKArgs) -> tuple[Any, Any, str]:
    """The catalogue, its item features and their description (`benchmarks/amazon.py`'s, or synthetic ones)."""
    if topk.synthetic_items > 0:
        from hf_semtok.data import make_synthetic_catalogue

        catalogue = make_synthetic_catalogue(
            n_items=topk.synthetic_items, n_users=topk.synthetic_users, seed=cfg.generator.seed
        )
        return catalogue, catalogue.embeddings["text"], "synthetic text view"
    if cfg.sids != "rqvae":
        raise ValueError(f"serving_topk trains RQ-VAE SIDs; got --sids {cfg.sids!r} (use rqvae).")
    catalogue = _AMAZON._load(cfg)
    names = (_AMAZON.DATASETS[cfg.dataset]["features"] if cfg.features == "auto" else cfg.features).split("+")
    fields = ", ".join(catalogue.text_fields)
    described = " + ".join(_AMAZON.FEATURE_NAMES[n].format(fields=fields) for n in names)
    return catalogue, _AMAZON._features(cfg, catalogue, names), described


def _settings_key(cfg: Any, topk: TopKArgs) -> dict[str, Any]:
    """What the trained generator depends on (a saved one is reused only when this matches)."""
    generator = {k: v for k, v in dataclasses.asdict(cfg.generator).items() if k not in EVAL_ONLY}
    return {
        "dataset": cfg.dataset if topk.synthetic_items <= 0 else f"synthetic-{topk.synthetic_items}",
        "synthetic_users": topk.synthetic_users if topk.synthetic_items > 0 else None,
        "features": cfg.features,
        "text_fields": list(cfg.text_fields),
        "sid": dataclasses.asdict(cfg.sid),
        "generator": generator,
    }


def _train_or_load(cfg: Any, topk: TopKArgs, catalogue: Any, features: Any, run_dir: Path) -> tuple[Any, ...]:
    """Train the SIDs and the generator (saved to `run_dir`), or load the saved ones with `--reuse_model`."""
    from transformers import AutoModelForCausalLM

    from hf_semtok import SemanticIDTokenizer

    key = _settings_key(cfg, topk)
    facts_file = run_dir / "training.json"
    if topk.reuse_model:
        saved = json.loads(facts_file.read_text(encoding="utf-8")) if facts_file.is_file() else None
        if saved is None or saved["settings"] != key:
            raise ValueError(
                f"--reuse_model: no generator trained with these settings in {run_dir} "
                f"({'none saved' if saved is None else 'its settings differ'}); run once without --reuse_model."
            )
        model = AutoModelForCausalLM.from_pretrained(run_dir / "model").eval()
        tokenizer = SemanticIDTokenizer.from_pretrained(run_dir / "model")
        return model, tokenizer, saved["training"], saved["sid"], saved["stages"]
    train, _, _ = leave_one_out_split(catalogue.histories, max_history=cfg.generator.max_history)
    began = time.perf_counter()
    sids = train_sid_stage(features, catalogue.item_ids, train, cfg.sid, seed=cfg.generator.seed)
    sid_seconds = time.perf_counter() - began
    table = sids.sid_table
    sid_facts = {
        "codebook_sizes": list(table.codebook_sizes),
        "collision_stats": {k: v for k, v in table.stats.items() if isinstance(v, (int, float, str))},
    }
    tokenizer = build_sid_tokenizer(table, sid_layout=cfg.generator.sid_layout)
    model, training, _ = train_generator(tokenizer, train, cfg.generator, output_dir=run_dir)
    training = {k: v for k, v in training.items() if not isinstance(v, (list, dict))}
    stages = {"sids_seconds": round(sid_seconds, 1), "train_seconds": training["train_seconds"]}
    write_json_atomic(
        {"settings": key, "training": training, "sid": sid_facts, "stages": stages}, facts_file, indent=2
    )
    return model, tokenizer, training, sid_facts, stages


def _git_commit() -> str:
    return _AMAZON._git_commit()


def run(argv: list[str]) -> dict[str, Any]:
    """Train (or load) the generator, decode the test users both ways, and return the result dict."""
    cfg, topk = parse_args_with_config([_AMAZON.AmazonBenchConfig, TopKArgs], argv, prog="serving_topk.py")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    load_start = os.getloadavg()
    commit = _git_commit()
    began = time.perf_counter()
    catalogue, features, described = _catalogue_and_features(cfg, topk)
    data_seconds = time.perf_counter() - began
    name = cfg.dataset if topk.synthetic_items <= 0 else "synthetic"
    run_dir = REPO / (topk.run_dir or f"benchmarks/runs/serving_topk_{name}")
    model, tokenizer, training, sid_facts, stages = _train_or_load(cfg, topk, catalogue, features, run_dir)
    gen = cfg.generator
    ks = sorted(set(gen.ks) | {gen.num_beams})  # @num_beams: the target anywhere in the beams / the draws
    _, _, test = leave_one_out_split(catalogue.histories, max_history=gen.max_history)
    examples = [test[u] for u in sorted(test)]
    if gen.test_users is not None and gen.test_users < len(examples):
        examples = random.Random(gen.seed + 1).sample(examples, gen.test_users)  # as run_pipeline subsamples
    examples = order_by_history_length(examples, gen.max_history)
    histories, targets = [list(h) for h, _ in examples], [t for _, t in examples]

    began = time.perf_counter()
    beam = evaluate_recommender(
        model,
        tokenizer,
        examples,
        ks=ks,
        num_beams=gen.num_beams,
        batch_size=gen.eval_batch_size,
        max_history=gen.max_history,
        return_rankings=True,
        standard_errors=True,
    )
    beam_seconds = time.perf_counter() - began
    beam_rankings = beam.pop("rankings")

    began = time.perf_counter()
    drawn, invalid = sample_items(
        model,
        tokenizer,
        histories,
        num_samples=topk.num_samples,
        temperature=topk.temperature,
        batch_size=gen.eval_batch_size,
        max_history=gen.max_history,
        seed=topk.sample_seed,
    )
    sample_seconds = time.perf_counter() - began

    cut = max(ks)
    decoders: dict[str, Any] = {
        f"beam-{gen.num_beams}": {
            "metrics": beam,
            "seconds": round(beam_seconds, 1),
            "users_per_second": round(len(examples) / beam_seconds, 2),
        }
    }
    distinct = [len(d) for d in drawn]
    for by in RANKINGS:
        rankings = [rank_drawn(d, by, cut) for d in drawn]
        metrics = ranking_metrics(rankings, targets, ks, standard_errors=True)
        metrics["mean_num_results"] = sum(len(r) for r in rankings) / len(rankings)
        decoders[f"sample-{topk.num_samples} by {by}"] = {
            "metrics": metrics,
            "vs_beam": {
                k: v
                for kk in gen.ks
                for k, v in paired_difference(rankings, beam_rankings, targets, kk).items()
            },
            "overlap_with_beam@10": round(overlap_at_k(rankings, beam_rankings, 10), 4),
            "seconds": round(sample_seconds, 1),  # one set of draws, ranked both ways
            "users_per_second": round(len(examples) / sample_seconds, 2),
        }
    result = {
        "dataset": name,
        "features": described,
        "command": shlex.join(["python", "benchmarks/serving_topk.py", *argv]),
        "git_commit": commit,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average": {
            "start": [round(x, 2) for x in load_start],
            "end": [round(x, 2) for x in os.getloadavg()],
        },
        "test_users": len(examples),
        "all_test_users": len(test),
        "num_beams": gen.num_beams,
        "num_samples": topk.num_samples,
        "temperature": topk.temperature,
        "top_k": "off (0)",
        "top_p": 1.0,
        "sample_seed": topk.sample_seed,
        "samples": {
            "mean_distinct_items": round(sum(distinct) / len(distinct), 3),
            "users_with_10_distinct": round(sum(n >= 10 for n in distinct) / len(distinct), 4),
            "invalid_draws": invalid,
        },
        "decoders": decoders,
        "training": training,
        "sid": sid_facts,
        "stages": {"data_seconds": round(data_seconds, 1), **stages},
        "reused_model": topk.reuse_model,
        "bench_config": dataclasses.asdict(cfg),
        "topk_args": dataclasses.asdict(topk),
    }
    return result


def _pm(metrics: dict[str, Any], key: str) -> str:
    return f"{metrics[key]:.4f} ± {metrics[key + '_se']:.4f}"


def _signed(metrics: dict[str, Any], key: str) -> str:
    return f"{metrics[key]:+.4f} ± {metrics[key + '_se']:.4f}"


def to_markdown(result: dict[str, Any]) -> str:
    """The Markdown report of one run."""
    n, beams, draws = result["test_users"], result["num_beams"], result["num_samples"]
    training = result["training"]
    lines = [
        "# Top-k through a server: constrained samples against constrained beam search",
        "",
        f"{result['dataset']}: {n} of {result['all_test_users']} test users (leave-one-out), one generator "
        f"trained from scratch for {training['steps']} steps ({training.get('epochs', '?')} epochs, "
        f"{training['train_seconds'] / 60:.1f} min on {training['threads']} threads). The same SID constraint "
        f"(`SIDLogitsProcessor`) in both decoders: {beams}-beam search (`recommend()`), and {draws} samples per "
        f"user at temperature {result['temperature']} (top-k off, top-p 1), their distinct items ranked by "
        "sequence log-probability or by how often they were drawn (ties by log-probability).",
        "",
        f"| decoder | R@5 | N@5 | R@10 ± se | N@10 ± se | R@10 − beam ± se | N@10 − beam ± se | R@{beams} "
        "| top-10 overlap with beam | items per user | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, d in result["decoders"].items():
        m, diff = d["metrics"], d.get("vs_beam")
        lines.append(
            f"| {name} | {m['recall@5']:.4f} | {m['ndcg@5']:.4f} | {_pm(m, 'recall@10')} | {_pm(m, 'ndcg@10')} | "
            f"{_signed(diff, 'recall@10') if diff else ''} | {_signed(diff, 'ndcg@10') if diff else ''} | "
            f"{m[f'recall@{beams}']:.4f} | {d.get('overlap_with_beam@10', '')} | "
            f"{m['mean_num_results']:.2f} | {d['seconds']:.0f} |"
        )
    samples = result["samples"]
    lines += [
        "",
        f"R@{beams}: the target anywhere among the {beams} beams, or among the distinct sampled items (at most "
        f"{draws}). Standard errors: over users (binomial for Recall); the differences are paired over the same "
        f"users. Draws: {samples['mean_distinct_items']:.2f} distinct items per user out of {draws}, "
        f"{samples['users_with_10_distinct']:.1%} of users with at least 10; {samples['invalid_draws']} draws "
        "named no item.",
        "",
        f"Command: `{result['command']}` ({result['threads']} torch threads, sample seed {result['sample_seed']}, "
        f"load average {result['load_average']['start'][0]:.1f} at the start; {result['machine']}).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write `serving_topk.json` and `serving_topk.md`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    result = run(argv)
    cfg_dir = REPO / result["bench_config"]["results_dir"]
    cfg_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, cfg_dir / "serving_topk.json", indent=2)
    text = to_markdown(result)
    write_text_atomic(text, cfg_dir / "serving_topk.md")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
