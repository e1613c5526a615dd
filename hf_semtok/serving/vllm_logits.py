"""A vLLM v1 logits processor that keeps SIDs real, over the packed prefix index.

vLLM (0.10 and later, engine v1) loads custom logits processors given as classes or fully qualified names:

    llm = vllm.LLM(model=model_dir, logits_processors=[SIDVLLMLogitsProcessor])
    # or: vllm serve model_dir --logits-processors hf_semtok.serving.vllm_logits:SIDVLLMLogitsProcessor

and a request opts in through its sampling parameters: `SamplingParams(extra_args={"hf_semtok_sid": "sid"})`
(`"free"` for text with SID spans; `True` means `"sid"`). Other requests are left alone.

The processor loads the served model's tokenizer folder with hf_semtok imported (a `SemanticIDTokenizer`, its item
table), so hf_semtok must be importable in the server's environment. The grammar export
(`hf_semtok.serving.export_grammar`) needs nothing in the server and is the simpler path where structured outputs
are available; this processor is for stacks that take logits processors instead, and it follows
`SIDLogitsProcessor`'s rules exactly (`SIDConstraint`).

Like every vLLM logits processor it is not applied by `LLM.beam_search` (vLLM's beam search takes no logits
processors): for top-k, sample `n` completions, or use `hf_semtok.recommend` (constrained beam search in
transformers).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from hf_semtok.serving.prefix_fn import SIDConstraint

__all__ = ["SID_EXTRA_ARG", "SIDVLLMLogitsProcessor"]

logger = logging.getLogger(__name__)

#: Key of `SamplingParams.extra_args` that turns the constraint on for a request: `"sid"`, `"free"` or `True`.
SID_EXTRA_ARG = "hf_semtok_sid"


def _request_mode(params: Any) -> str | None:
    """`"sid"`, `"free"` or None (not constrained) from a request's sampling parameters."""
    value = (getattr(params, "extra_args", None) or {}).get(SID_EXTRA_ARG)
    if value is None or value is False:
        return None
    if value is True:
        return "sid"
    if value in ("sid", "free"):
        return value
    raise ValueError(f"extra_args[{SID_EXTRA_ARG!r}] must be 'sid', 'free' or True; got {value!r}.")


class SIDVLLMLogitsProcessor(LogitsProcessor):
    """vLLM v1 logits processor: rows of requests with `extra_args={"hf_semtok_sid": ...}` may only write real SIDs.

    Args:
        vllm_config: vLLM's config; the tokenizer is loaded from `vllm_config.model_config.tokenizer`.
        device: Device of the logits.
        is_pin_memory: Unused.

    Raises:
        TypeError: The served tokenizer is not a `SemanticIDTokenizer` (the folder has no SID table).
    """

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        from transformers import AutoTokenizer

        import hf_semtok  # noqa: F401  (registers SemanticIDTokenizer with AutoTokenizer)

        path = vllm_config.model_config.tokenizer
        tokenizer = AutoTokenizer.from_pretrained(path)
        if not hasattr(tokenizer, "sid_codes"):
            raise TypeError(
                f"{path} did not load as a SemanticIDTokenizer ({type(tokenizer).__name__}); serve a folder saved "
                "by SemanticIDTokenizer.save_pretrained (sid_table.json beside tokenizer.json)."
            )
        self.tokenizer = tokenizer
        self.device = device
        self._constraints: dict[tuple[str, int], SIDConstraint] = {}
        # batch row -> (mode, prompt tail, live list of the request's output token ids)
        self._rows: dict[int, tuple[str, list[int], list[int]]] = {}

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        """Refuse an unknown value of `extra_args["hf_semtok_sid"]` when the request arrives (HTTP 400)."""
        _request_mode(sampling_params)

    def is_argmax_invariant(self) -> bool:
        """False: the constraint changes which token is the most likely."""
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Track which batch rows are constrained (removed, then added, then moved, as vLLM orders them)."""
        if batch_update is None:
            return
        for index in batch_update.removed:
            self._rows.pop(index, None)
        tail = (
            self.tokenizer.num_levels + 1
        )  # an open SID at the end of a prompt is at most L + 1 tokens long
        for index, params, prompt_ids, output_ids in batch_update.added:
            mode = _request_mode(params)
            if mode is None:
                self._rows.pop(index, None)
            else:
                prompt_tail = list(prompt_ids or [])[-tail:] if mode == "free" else []
                self._rows[index] = (mode, prompt_tail, output_ids)
        for first, second, direction in batch_update.moved:
            a, b = self._rows.pop(first, None), self._rows.pop(second, None)
            if a is not None:
                self._rows[second] = a
            if b is not None and direction == MoveDirectionality.SWAP:
                self._rows[first] = b

    def _constraint(self, mode: str, vocab_size: int) -> SIDConstraint:
        key = (mode, vocab_size)
        if key not in self._constraints:
            self._constraints[key] = SIDConstraint.from_tokenizer(
                self.tokenizer, mode=mode, vocab_size=vocab_size
            )
        return self._constraints[key]

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Set the logits of disallowed tokens of constrained rows to `-inf` (in place); returns `logits`."""
        if not self._rows:
            return logits
        vocab = logits.shape[-1]
        for mode in ("sid", "free"):
            rows = sorted(i for i, (m, _, _) in self._rows.items() if m == mode and i < logits.shape[0])
            if not rows:
                continue
            tokens = [self._rows[i][1] + list(self._rows[i][2]) for i in rows]
            allowed = torch.from_numpy(self._constraint(mode, vocab).mask(tokens)).to(logits.device)
            index = torch.tensor(rows, device=logits.device)
            logits[index] = logits[index].masked_fill(~allowed, float("-inf"))
        return logits
