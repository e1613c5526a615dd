"""The few places where the tokenizer package calls back into the full library, as a registry.

The package `hf_semtok.tokenizer` is copied beside every saved tokenizer (remote code for
`trust_remote_code=True`), so it never imports the rest of `hf_semtok`. Four features need the library: building
the carried RQ-VAE from its files, giving new items SIDs under the table's collision policy, rendering the model
card and pushing to the Hub. `import hf_semtok` registers those functions here (see `hf_semtok/__init__.py`); the
tokenizer looks them up by name when the feature is used. In a process that only has the remote-code copy, the
lookup fails with an error that says how to get the feature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["get_hook", "register_hooks"]

#: The hooks the tokenizer uses, with what each does (named in the error when one is missing).
HOOK_NAMES = {
    "load_rqvae": "building the carried RQ-VAE from rqvae_config.json + rqvae.safetensors",
    "add_items_to_table": "giving new items SIDs (add_items)",
    "render_tokenizer_card": "rendering the model card",
    "push_tokenizer_to_hub": "push_to_hub",
}

_HOOKS: dict[str, Callable[..., Any]] = {}


def register_hooks(**hooks: Callable[..., Any]) -> None:
    """Register library functions by name (`load_rqvae=...`, ...). Unknown names are a `ValueError`."""
    unknown = sorted(set(hooks) - set(HOOK_NAMES))
    if unknown:
        raise ValueError(f"Unknown tokenizer hook(s) {unknown}; the known ones are {sorted(HOOK_NAMES)}.")
    for name, hook in hooks.items():
        if not callable(hook):
            raise TypeError(f"Tokenizer hook {name!r} must be callable; got {type(hook).__name__}.")
    _HOOKS.update(hooks)


def get_hook(name: str) -> Callable[..., Any]:
    """The registered function `name`.

    Raises:
        ImportError: when hf_semtok has not registered it (a remote-code copy loaded without `import hf_semtok`).
    """
    try:
        return _HOOKS[name]
    except KeyError:
        raise ImportError(
            f"{HOOK_NAMES.get(name, name)} needs the hf_semtok library: `pip install hf-semtok`, then "
            "`import hf_semtok` before loading the tokenizer (load it with AutoTokenizer.from_pretrained(path) "
            "rather than from the remote-code copy)."
        ) from None
