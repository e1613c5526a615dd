"""Teach a causal LM to speak Semantic IDs with the stock `transformers.Trainer`: the library side of the recipes.

Stages (PLUM, arXiv 2510.07784; LC-Rec, arXiv 2311.09049):

1. Continued pretraining (`data="cpt"`) on documents where SIDs and text meet (`hf_semtok.lm.corpus.cpt_documents`).
   `train_mode="sid_embeddings"` trains only the new SID rows of the embeddings (tied LM head included) with the
   base frozen; `"full"` trains everything (a model built from scratch needs it).
2. Fine-tuning (`data="sft"`) on "history -> next item" (`hf_semtok.lm.corpus.sft_examples`, completion-only labels)
   with `train_mode="lora"` (peft LoRA plus the SID rows through `trainable_token_indices`) or `"full"`.

`run_lm_stage(config)` loads (or builds) the base model and the `SemanticIDTokenizer`, checks them, builds the
corpus from the training split of `leave_one_out_split` only, trains with `Trainer` (seeded, `use_cpu` without a
GPU, checkpoints every `save_steps`, resuming from the last `checkpoint-N` in `output_dir` automatically), then
saves the model (or adapter), the tokenizer and a model card in `output_dir`. It runs unchanged under
`accelerate launch` (DDP, FSDP, DeepSpeed) and `torchrun`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

from hf_semtok.constants import DEFAULT_SEED
from hf_semtok.data.catalogue import leave_one_out_split
from hf_semtok.data.loading import load_catalogue
from hf_semtok.lm.corpus import (
    PaddingCollator,
    TokenizedDataset,
    check_histories,
    cpt_documents,
    sft_examples,
    tokenize_cpt,
    tokenize_sft,
)
from hf_semtok.lm.sid_embeddings import extend_model, sid_lora_config
from hf_semtok.sids.assignment import SIDTable
from hf_semtok.small_models import build_causal_lm, train_base_tokenizer
from hf_semtok.tokenization_semtok import SemanticIDTokenizer

__all__ = [
    "LMStageConfig",
    "LMStageResult",
    "load_sid_tokenizer",
    "load_base_model",
    "prepare_model",
    "build_train_rows",
    "train_with_resume",
    "save_stage_output",
    "render_adapter_card",
    "run_lm_stage",
]

logger = logging.getLogger(__name__)

ADAPTER_CARD_TEMPLATE = "adapter_card.md"
#: Set in `model.config` once the SID rows exist, so a later stage does not re-initialise trained rows.
EXTENDED_FLAG = "hf_semtok_sid_rows"


@dataclass
class LMStageConfig:
    """One training stage of a causal LM on Semantic IDs (the YAML keys of both recipes).

    Model: `model_name_or_path` (a Hub name such as `Qwen/Qwen2.5-0.5B`, or the previous stage's `output_dir`), or
    `model_config` (`hf_semtok.small_models.build_causal_lm` arguments) for a small model built from scratch.
    Tokenizer: `tokenizer_name_or_path` (a saved `SemanticIDTokenizer`), or `base_tokenizer` + `sid_table`
    (a `sid_table.json` from `recipes/train_rqvae.py`; `base_tokenizer: train` trains a small byte-level BPE on the
    catalogue's titles, for a model built from scratch).
    """

    # model and tokenizer
    model_name_or_path: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    tokenizer_name_or_path: str | None = None
    base_tokenizer: str | None = None
    base_vocab_size: int = 600
    sid_table: str | None = None
    sid_init: Literal["mean", "codebook"] = "mean"
    # data
    dataset_format: Literal["synthetic", "lcrec", "amazon2014"] = "synthetic"
    data_dir: str | None = None
    dataset_name: str | None = None
    synthetic_items: int = 1000
    synthetic_users: int = 2000
    data: Literal["cpt", "sft"] = "sft"
    cpt_kinds: list[str] = field(
        default_factory=lambda: ["item_to_sid", "sid_to_item", "histories", "sequences"]
    )
    max_history: int = 20
    window_stride: int | None = None
    use_titles: bool = False
    prefix_prob: float = 0.0
    max_examples_per_user: int | None = None
    max_length: int = 512
    pack: bool = True
    # what trains
    train_mode: Literal["sid_embeddings", "full", "lora"] = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str = "all-linear"
    # Trainer
    output_dir: str = "outputs/lm"
    learning_rate: float = 2e-4
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    warmup_steps: int = 0
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int | None = 2
    bf16: bool = False
    gradient_checkpointing: bool = False
    report_to: str = "none"
    resume: bool = True
    training_args: dict[str, Any] = field(default_factory=dict)
    seed: int = DEFAULT_SEED
    progress: bool = True
    # Hub
    push_to_hub: bool = False
    hub_model_id: str | None = None


@dataclass
class LMStageResult:
    """What `run_lm_stage` returns: the trained model (peft-wrapped for LoRA), its tokenizer and facts."""

    model: Any
    tokenizer: Any
    output_dir: Path
    resumed_from: str | None
    global_step: int
    train_loss: float | None
    trainable_parameters: int
    world_size: int = 1


def load_sid_tokenizer(
    tokenizer_name_or_path: str | None = None,
    base_tokenizer: str | None = None,
    sid_table: str | None = None,
    catalogue: Any = None,
    base_vocab_size: int = 600,
) -> Any:
    """Load a saved `SemanticIDTokenizer`, or build one from a base tokenizer and a `sid_table.json`.

    `base_tokenizer="train"` trains a small byte-level BPE on the catalogue's titles (offline, for a model built
    from scratch); any other value is a path or Hub name for `AutoTokenizer`.

    Raises:
        ValueError: When neither is given, or the loaded tokenizer has no SIDs.
    """

    if tokenizer_name_or_path:
        tokenizer = SemanticIDTokenizer.from_pretrained(tokenizer_name_or_path)
    elif base_tokenizer and sid_table:
        table = SIDTable.from_json(Path(sid_table))
        if base_tokenizer == "train":
            if catalogue is None or not catalogue.titles:
                raise ValueError("base_tokenizer='train' needs a catalogue with titles to train on.")
            texts = [*catalogue.titles.values(), "User history:", "Next item:", "A user bought:", "has ID"]
            base = train_base_tokenizer(texts, vocab_size=base_vocab_size)
        else:
            base = AutoTokenizer.from_pretrained(base_tokenizer)
        tokenizer = SemanticIDTokenizer.from_base(base, sid_table=table)
    else:
        raise ValueError(
            "No tokenizer: set tokenizer_name_or_path (a saved SemanticIDTokenizer) or base_tokenizer + sid_table "
            "(the sid_table.json written by recipes/train_rqvae.py)."
        )
    if not getattr(tokenizer, "num_items", 0):
        raise ValueError(
            f"The tokenizer at {tokenizer_name_or_path!r} has no Semantic IDs; rebuild it with from_base."
        )
    return tokenizer


def load_base_model(
    tokenizer: Any,
    model_name_or_path: str | None = None,
    model_config: dict[str, Any] | None = None,
    seed: int = DEFAULT_SEED,
) -> Any:
    """Load a causal LM (local dir or Hub name), or build a small one from `model_config` for `len(tokenizer)`."""
    if model_name_or_path:
        return AutoModelForCausalLM.from_pretrained(model_name_or_path)

    kwargs = dict(model_config or {})
    kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    kwargs.setdefault("bos_token_id", tokenizer.bos_token_id)
    kwargs.setdefault("eos_token_id", tokenizer.eos_token_id)
    model = build_causal_lm(len(tokenizer), seed=seed, **kwargs)
    setattr(
        model.config, EXTENDED_FLAG, False
    )  # rows exist but are random: initialise them like a base model's
    return model


def _sid_ids(tokenizer: Any) -> list[int]:
    ids = [t for level in tokenizer.sid_token_ids for t in level]
    return sorted({*ids, tokenizer.sid_start_token_id, tokenizer.sid_end_token_id})


def _check_vocab(model: Any, tokenizer: Any) -> None:
    rows = model.get_input_embeddings().weight.shape[0]
    sid_ids = _sid_ids(tokenizer)
    base_vocab = min(sid_ids)
    extended = getattr(model.config, EXTENDED_FLAG, False)
    if rows < base_vocab or (extended and rows < len(tokenizer)):
        raise ValueError(
            f"The model's vocabulary ({rows} embedding rows) does not match the tokenizer (base vocabulary "
            f"{base_vocab}, {len(tokenizer)} tokens with SIDs); pass the model that goes with the tokenizer's base "
            "(or the previous stage's output_dir)."
        )
    for name in ("pad_token_id", "eos_token_id"):
        tid = getattr(tokenizer, name)
        if tid is not None and tid >= rows and tid < base_vocab:
            raise ValueError(f"The tokenizer's {name}={tid} has no embedding row in the model ({rows} rows).")


def prepare_model(model: Any, tokenizer: Any, cfg: LMStageConfig) -> Any:
    """Check the model against the tokenizer, add/initialise the SID rows once, and set what trains.

    Returns:
        The model to train (a `PeftModel` for `train_mode="lora"`).
    """

    _check_vocab(model, tokenizer)
    if not getattr(model.config, EXTENDED_FLAG, False):
        extend_model(model, tokenizer, init=cfg.sid_init, seed=cfg.seed)
        setattr(model.config, EXTENDED_FLAG, True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    if cfg.train_mode == "full":
        model.requires_grad_(True)
        return model
    if cfg.train_mode == "sid_embeddings":
        model.requires_grad_(False)
        weight = model.get_input_embeddings().weight  # (vocab, hidden); tied with the LM head in small models
        weight.requires_grad_(True)
        keep = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)  # (vocab, 1)
        keep[_sid_ids(tokenizer)] = 1.0
        weight.register_hook(lambda grad: grad * keep.to(grad.device, grad.dtype))
        out = model.get_output_embeddings()
        if out is not None and out.weight is not weight:
            logger.info("Untied LM head: it stays frozen in the sid_embeddings stage.")
        return model
    from peft import get_peft_model

    lora = sid_lora_config(
        model,
        tokenizer,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
    )
    return get_peft_model(model, lora)


def build_train_rows(tokenizer: Any, catalogue: Any, cfg: LMStageConfig) -> list[dict[str, list[int]]]:
    """Tokenised CPT or SFT rows from the catalogue's **training** split (leave-one-out)."""

    check_histories(tokenizer, catalogue.histories)
    train, _, _ = leave_one_out_split(catalogue.histories)
    titles = catalogue.titles if cfg.use_titles or cfg.data == "cpt" else None
    if cfg.data == "cpt":
        docs = cpt_documents(
            tokenizer,
            train,
            titles=titles,
            categories=catalogue.categories,
            kinds=cfg.cpt_kinds,
            max_history=cfg.max_history,
            window_stride=cfg.window_stride,
            seed=cfg.seed,
        )
        return tokenize_cpt(tokenizer, docs, max_length=cfg.max_length, pack=cfg.pack)
    examples = sft_examples(
        tokenizer,
        train,
        titles=titles,
        max_history=cfg.max_history,
        max_examples_per_user=cfg.max_examples_per_user,
        prefix_prob=cfg.prefix_prob,
        seed=cfg.seed,
    )
    return tokenize_sft(tokenizer, examples, max_length=cfg.max_length)


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` in `output_dir` that was written to the end, or `None`.

    The `Trainer` writes `trainer_state.json` last, so a checkpoint without it was cut short (a run killed while
    saving); it is skipped, with a warning, and the previous complete one is used instead.
    """
    found = []
    for path in Path(output_dir).glob("checkpoint-*"):
        suffix = path.name.split("-", 1)[1]
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    for _, path in sorted(found, reverse=True):
        if (path / "trainer_state.json").is_file():
            return str(path)
        logger.warning(
            "Skipping %s: it has no trainer_state.json (the run was stopped while saving it).", path
        )
    return None


def train_with_resume(model: Any, tokenizer: Any, rows: list[dict[str, list[int]]], cfg: LMStageConfig):
    """Train with the stock `Trainer`, resuming from the last `checkpoint-N` in `cfg.output_dir` when present.

    Returns:
        `(trainer, resumed_from)`; `resumed_from` is the checkpoint path or `None`.
    """

    if not rows:
        raise ValueError("The training corpus is empty; check the histories and max_length.")
    weight_decay = (
        0.0 if cfg.train_mode == "sid_embeddings" else cfg.weight_decay
    )  # decay would move frozen rows
    args = TrainingArguments(
        output_dir=cfg.output_dir,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        weight_decay=weight_decay,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        bf16=cfg.bf16,
        report_to=cfg.report_to,
        use_cpu=not torch.cuda.is_available(),
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=not cfg.progress,
        remove_unused_columns=False,
        **cfg.training_args,
    )
    resumed_from = None
    if cfg.resume and os.path.isdir(cfg.output_dir):
        resumed_from = last_complete_checkpoint(cfg.output_dir)
        if resumed_from:
            logger.info("Resuming from %s", resumed_from)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=TokenizedDataset(rows),
        data_collator=PaddingCollator(pad_token_id=tokenizer.pad_token_id),
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=resumed_from)
    return trainer, resumed_from


def adapter_card_template_path() -> Path:
    """The adapter card template: the packaged copy, else `model_cards/` of a source checkout."""
    packaged = Path(str(resources.files("hf_semtok") / "templates" / ADAPTER_CARD_TEMPLATE))
    if packaged.is_file():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "model_cards" / ADAPTER_CARD_TEMPLATE
    if checkout.is_file():
        return checkout
    raise FileNotFoundError(f"Model card template {ADAPTER_CARD_TEMPLATE} not found; reinstall hf_semtok.")


def render_adapter_card(cfg: LMStageConfig, tokenizer: Any, facts: dict[str, Any]) -> Any:
    """Render `model_cards/adapter_card.md` for a trained stage (a `huggingface_hub.ModelCard`)."""
    from huggingface_hub import ModelCard, ModelCardData

    base = cfg.model_name_or_path if cfg.model_name_or_path and "/" in cfg.model_name_or_path else None
    if base and os.path.exists(base):
        base = None
    data = ModelCardData(
        library_name="peft" if cfg.train_mode == "lora" else "transformers",
        base_model=base,
        tags=["hf_semtok", "semantic-ids", "generative-recommendation", cfg.data, cfg.train_mode],
        pipeline_tag="text-generation",
    )
    return ModelCard.from_template(
        data,
        template_path=str(adapter_card_template_path()),
        model_id=cfg.hub_model_id or Path(cfg.output_dir).name,
        base_model_name=cfg.model_name_or_path or f"built from config {json.dumps(cfg.model_config)}",
        stage=cfg.data,
        train_mode=cfg.train_mode,
        num_items=tokenizer.num_items,
        num_levels=tokenizer.num_levels,
        codebook_sizes=list(tokenizer.codebook_sizes),
        facts=facts,
        config_json=json.dumps(asdict(cfg), indent=2, default=str),
    )


def save_stage_output(model: Any, tokenizer: Any, cfg: LMStageConfig, facts: dict[str, Any]) -> Path:
    """Save the model (or adapter), the tokenizer and `README.md` into `cfg.output_dir` (written atomically).

    Files go to a temporary directory first and are then moved in, so a crash never leaves a half-written model.
    """
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=out))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        render_adapter_card(cfg, tokenizer, facts).save(tmp / "README.md")
        for path in tmp.iterdir():
            target = out / path.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(path, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if cfg.push_to_hub:
        if not cfg.hub_model_id:
            raise ValueError("push_to_hub needs hub_model_id (e.g. 'my-org/qwen2.5-0.5b-semtok-lora').")
        model.push_to_hub(cfg.hub_model_id)
        tokenizer.push_to_hub(cfg.hub_model_id)
        render_adapter_card(cfg, tokenizer, facts).push_to_hub(cfg.hub_model_id)
    return out


def run_lm_stage(
    cfg: LMStageConfig, tokenizer: Any = None, catalogue: Any = None, model: Any = None
) -> LMStageResult:
    """Run one stage end to end: load, check, build the corpus, train (with resume), save.

    Args:
        cfg: The stage configuration.
        tokenizer: A ready `SemanticIDTokenizer` (default: from `cfg`).
        catalogue: A ready `Catalogue` (default: `load_catalogue` from `cfg`).
        model: A ready causal LM (default: from `cfg`).

    Returns:
        An `LMStageResult`.
    """

    if cfg.push_to_hub and not cfg.hub_model_id:  # fail before hours of training, not after
        raise ValueError("push_to_hub needs hub_model_id (e.g. 'my-org/qwen2.5-0.5b-semtok-lora').")
    set_seed(cfg.seed)
    if catalogue is None:
        catalogue = load_catalogue(
            cfg.dataset_format,
            cfg.data_dir,
            name=cfg.dataset_name,
            seed=cfg.seed,
            synthetic_items=cfg.synthetic_items,
            synthetic_users=cfg.synthetic_users,
        )
    if tokenizer is None:
        tokenizer = load_sid_tokenizer(
            cfg.tokenizer_name_or_path, cfg.base_tokenizer, cfg.sid_table, catalogue, cfg.base_vocab_size
        )
    rows = build_train_rows(tokenizer, catalogue, cfg)  # checks histories before any model is loaded
    if model is None:
        model = load_base_model(tokenizer, cfg.model_name_or_path, cfg.model_config, cfg.seed)
    model = prepare_model(model, tokenizer, cfg)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "%s stage (%s): %d rows, %d trainable parameters, rank %d", cfg.data, cfg.train_mode, len(rows), n_trainable,
        int(os.environ.get("RANK", 0)),
    )  # fmt: skip
    trainer, resumed_from = train_with_resume(model, tokenizer, rows, cfg)
    losses = [r["train_loss"] for r in trainer.state.log_history if "train_loss" in r]
    facts = {
        "global_step": trainer.state.global_step,
        "train_rows": len(rows),
        "train_loss": round(losses[-1], 4) if losses else None,
        "trainable_parameters": n_trainable,
        "world_size": trainer.args.world_size,
    }
    model = trainer.model
    if trainer.is_world_process_zero():
        save_stage_output(model, tokenizer, cfg, facts)
    trainer.accelerator.wait_for_everyone()
    return LMStageResult(
        model=model,
        tokenizer=tokenizer,
        output_dir=Path(cfg.output_dir),
        resumed_from=resumed_from,
        global_step=trainer.state.global_step,
        train_loss=facts["train_loss"],
        trainable_parameters=n_trainable,
        world_size=trainer.args.world_size,
    )
