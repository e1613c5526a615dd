"""Resuming a Trainer stage: the last complete `checkpoint-N`, and whether a run already reached its end.

The `Trainer` writes `trainer_state.json` last, so a checkpoint without a readable one was cut short by a kill and
is skipped (with a warning). `transformers.trainer_utils.get_last_checkpoint` finds the newest checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from transformers import TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import (
    get_last_checkpoint,
    sort_checkpoints,
)

from hf_semtok.tokenizer.safe_paths import read_regular

__all__ = ["checkpoint_state", "is_finished", "last_complete_checkpoint"]

logger = logging.getLogger(__name__)


def _read_trainer_state(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint's `trainer_state.json`, or `None` (with a warning) when it is missing or unreadable."""
    path = Path(checkpoint) / TRAINER_STATE_NAME
    try:
        # Bounded and regular files only: a FIFO or a /dev/zero link planted there must not hang or fill memory.
        state = json.loads(read_regular(path, 256 << 20, TRAINER_STATE_NAME).decode("utf-8"))
    except FileNotFoundError:
        reason = f"it has no {TRAINER_STATE_NAME} (the run was stopped while saving it)"
    except (OSError, ValueError, RecursionError) as err:  # JSON and UTF-8 errors are ValueErrors
        reason = f"its {TRAINER_STATE_NAME} cannot be read ({err}; the run was stopped while writing it)"
    else:
        if isinstance(state, dict) and isinstance(state.get("global_step"), int):
            return state
        reason = f"its {TRAINER_STATE_NAME} has no global_step"
    logger.warning("Skipping %s: %s.", checkpoint, reason)
    return None


def checkpoint_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The trainer state of a checkpoint folder named by the user (`resume_from_checkpoint`).

    Raises:
        ValueError: The folder does not exist, or has no readable `trainer_state.json` (not a `checkpoint-N`
            folder, or one cut short by a kill); the message names the folder and the fix.
    """
    path = Path(checkpoint)
    if not path.is_dir():
        raise ValueError(
            f"resume_from_checkpoint {str(path)!r} is not a folder; give a checkpoint-N folder of an earlier run, "
            "or 'latest' for the last complete one in output_dir."
        )
    state = _read_trainer_state(path)
    if state is None:
        raise ValueError(
            f"resume_from_checkpoint {str(path)!r} is not a complete checkpoint (no readable {TRAINER_STATE_NAME}, "
            "so it is not a checkpoint-N folder or its run was stopped while saving it); give another "
            "checkpoint-N folder, or 'latest'."
        )
    return state


def last_complete_checkpoint(output_dir: str | os.PathLike) -> tuple[str | None, dict[str, Any] | None]:
    """The newest `checkpoint-N` in `output_dir` that was written to the end, and its trainer state.

    The newest checkpoint comes from `transformers.trainer_utils.get_last_checkpoint`. The `Trainer` writes
    `trainer_state.json` last, so a checkpoint whose state file is missing, truncated or unparseable was cut short
    (a run killed while saving): it is skipped with a warning and the previous complete one is used instead.

    Returns:
        `(path, state)`, or `(None, None)` when there is no complete checkpoint (or no `output_dir`).
    """
    if not os.path.isdir(output_dir):
        return None, None
    last = get_last_checkpoint(str(output_dir))
    if last is None:
        return None, None
    older = [path for path in reversed(sort_checkpoints(str(output_dir))) if Path(path) != Path(last)]
    for path in [last, *older]:
        state = _read_trainer_state(path)
        if state is not None:
            return path, state
    return None, None


def is_finished(state: dict[str, Any], cfg: TrainingArguments) -> bool:
    """Whether a checkpoint's trainer state already reached the end of the training `cfg` asks for.

    With `max_steps > 0` the target is `max_steps`. Otherwise it is the step count the checkpoint's run computed,
    if that run had the same number of epochs: the `Trainer` stores `ceil(num_train_epochs)`, so a change of a
    whole number of epochs means more training is wanted (a change within the same whole number, e.g. 0.2 to 0.5,
    is not seen: set `max_steps` to be exact).
    """
    if cfg.max_steps > 0:
        target = cfg.max_steps
    elif int(state.get("num_train_epochs", -1)) == math.ceil(cfg.num_train_epochs):
        target = int(state.get("max_steps", 0))
    else:
        return False
    return target > 0 and state["global_step"] >= target


def _final_output_present(output_dir: str | os.PathLike) -> bool:
    out = Path(output_dir)
    weights = (out / "adapter_config.json").is_file() or (out / "config.json").is_file()
    return weights and (out / "README.md").is_file()
