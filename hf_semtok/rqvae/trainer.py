"""The `transformers.Trainer` run behind [`~hf_semtok.rqvae.training.train_rqvae`].

Training runs on the stock `Trainer`: the model's `forward` returns the loss and its breakdown, a collator gathers
rows (and co-occurring pairs) from the in-memory matrix, k-means initialisation runs in a callback at the start of
training, and dead-code re-seeding happens inside the quantizer's training forward. [`run_training`] builds and
runs it; a loss or weights that stop being finite end it with an error that says to lower the learning rate.
"""

from __future__ import annotations

import itertools
import logging
import math
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from hf_semtok.rqvae.inputs import EmbeddingsInput, concat_modalities, embedding_rows, num_embedding_rows
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel

__all__ = ["CodebookCallback", "RQVAETrainer", "RowCollator", "check_finite_weights", "run_training"]

logger = logging.getLogger(__name__)

_BREAKDOWN = (
    "reconstruction_loss",
    "quantization_loss",
    "commitment_loss",
    "codebook_loss",
    "contrastive_loss",
)


class RowCollator:
    """Gather a batch of item rows and, with pairs, as many random co-occurring pairs (seeded).

    Rows are read from the source as needed (a `np.memmap` reads only them) and made float32 per batch."""

    def __init__(
        self,
        source: EmbeddingsInput,
        modality_dims: Mapping[str, int],
        pairs: torch.Tensor | None,
        pairs_per_batch: int,
        seed: int,
    ) -> None:
        self.source = source  # (n, D) matrix or dict of modalities
        self.modality_dims = dict(modality_dims)
        self.pairs = pairs  # (P, 2) or None
        self.pairs_per_batch = pairs_per_batch
        self.generator = torch.Generator().manual_seed(seed)

    def _rows(self, index: np.ndarray) -> torch.Tensor:
        return concat_modalities(embedding_rows(self.source, index), self.modality_dims)  # (len(index), D)

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = {"embeddings": self._rows(np.asarray(indices, dtype=np.int64))}  # (B, D)
        if self.pairs is not None:
            pick = torch.randint(0, len(self.pairs), (self.pairs_per_batch,), generator=self.generator)
            pair_rows = self.pairs[pick]  # (P, 2)
            batch["pair_embeddings"] = self._rows(pair_rows.reshape(-1).numpy()).view(len(pick), 2, -1)
        return batch


class CodebookCallback(TrainerCallback):
    """k-means initialisation of the codebooks on a data sample, once the autoencoder warm-up is over."""

    def __init__(self, embeddings: EmbeddingsInput, seed: int, max_samples: int) -> None:
        self.embeddings = embeddings
        self.seed = seed
        self.max_samples = max_samples

    def on_step_begin(self, args, state, control, model=None, **kwargs):  # noqa: D102
        if model is None or not model.config.kmeans_init or bool(model.quantizer.initialized):
            return
        if not model.in_warmup:
            # k-means on the latents of a diverged encoder would fail inside torch (NaN probabilities)
            check_finite_weights(model, state.global_step, args.learning_rate)
            model.initialize_codebooks(self.embeddings, max_samples=self.max_samples, seed=self.seed)
            logger.info(
                "step %d: k-means initialised %d codebooks", state.global_step, model.config.num_levels
            )


def _diverged(step: int, what: str, learning_rate: float) -> ValueError:
    """The error of a training run whose loss or weights stopped being finite."""
    return ValueError(
        f"train_rqvae diverged at step {step}: {what}. The learning rate is too high for these embeddings: lower "
        f"`learning_rate` (it is {learning_rate:g}; the default is 2e-3, try {learning_rate / 10:g}). Nothing was "
        "written to `output_dir`."
    )


def check_finite_weights(model: torch.nn.Module, step: int, learning_rate: float) -> None:
    """Raise if a floating-point parameter or buffer of `model` (codebooks included) holds NaN or inf.

    Args:
        model: The RQ-VAE being trained.
        step: Training steps done, named in the message.
        learning_rate: The run's learning rate, named in the message.

    Raises:
        ValueError: Training diverged; the message names the tensor and the step and says to lower `learning_rate`.
    """
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _diverged(step, f"{name} holds NaN or inf", learning_rate)


class RQVAETrainer(Trainer):
    """`Trainer` that also logs the loss breakdown and per-level code utilisation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        outputs = model(**inputs)
        loss = float(outputs.loss.detach())  # one host sync per step, as the breakdown below already costs
        if not math.isfinite(loss):
            raise _diverged(
                self.state.global_step + 1, f"the training loss is {loss}", self.args.learning_rate
            )
        for key in _BREAKDOWN:
            self._sums[key] += float(getattr(outputs, key))
        self._count += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:  # noqa: D102
        if "loss" in logs:  # every `logging_steps`: the weights after the last update must be finite too
            check_finite_weights(self.model, self.state.global_step, self.args.learning_rate)
        if self._count and "loss" in logs:
            for key in _BREAKDOWN:
                logs[key] = round(self._sums[key] / self._count, 6)
            quantizer = self.accelerator.unwrap_model(self.model).quantizer
            for level, counts in enumerate(quantizer.utilization_counts()):
                logs[f"utilization_{level}"] = round(float((counts > 0).float().mean()), 4)
            logs["reseeded_codes"] = quantizer.num_reseeded
            quantizer.reset_usage(include_recent=False)
            self._sums.clear()
            self._count = 0
            logger.info("step %d: %s", self.state.global_step, logs)
        super().log(logs, *args, **kwargs)


def run_training(
    model: RQVAEModel,
    source: EmbeddingsInput,
    pairs: np.ndarray | None,
    *,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    lr_scheduler_type: str,
    epochs: float,
    max_steps: int,
    seed: int,
    logging_steps: int,
    kmeans_samples: int,
    progress: bool,
    use_cpu: bool,
    pin_memory: bool,
) -> tuple[int, list[dict[str, Any]], float]:
    """Train `model` in place on the rows of `source` (and the co-occurring `pairs`) with an [`RQVAETrainer`].

    Args:
        model: A new `RQVAEModel`; its config gives the modality layout.
        source: The embeddings (one matrix or a dict of modalities), read a batch of rows at a time.
        pairs: `(n_pairs, 2)` row indices of co-occurring items, or `None`.
        pin_memory: Pin the batches (off for rows already on an accelerator).
        The others: as [`~hf_semtok.rqvae.training.train_rqvae`] documents them.

    Returns:
        The steps run, the logged records (the trainer's log history) and the seconds the run took.

    Raises:
        ValueError: the loss or the weights stopped being finite (see [`check_finite_weights`]).
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rqvae-trainer-") as trainer_dir:
        args = TrainingArguments(
            output_dir=trainer_dir,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            lr_scheduler_type=lr_scheduler_type,
            num_train_epochs=epochs,
            max_steps=max_steps,
            seed=seed,
            data_seed=seed,
            logging_steps=logging_steps,
            save_strategy="no",
            report_to="none",
            remove_unused_columns=False,
            dataloader_num_workers=0,
            disable_tqdm=not progress,
            use_cpu=use_cpu,
            dataloader_pin_memory=pin_memory,
        )
        modality_dims = model.config.modality_dims
        trainer = RQVAETrainer(
            model=model,
            args=args,
            train_dataset=range(num_embedding_rows(source)),  # item indices; the collator gathers the rows
            data_collator=RowCollator(
                source,
                modality_dims,
                None if pairs is None else torch.from_numpy(pairs),
                batch_size,
                seed,
            ),
            callbacks=[CodebookCallback(source, seed, kmeans_samples)],
        )
        if not progress:
            # Without a progress bar the stock Trainer prints every log record; keep them in the history only.
            trainer.remove_callback(PrinterCallback)
        trainer.train()
        steps = trainer.state.global_step
        history = [dict(rec) for rec in trainer.state.log_history]
    return steps, history, time.perf_counter() - start
