"""Hub helpers for SemanticIDTokenizer: the model card and the one-commit upload.

The card is rendered from `model_cards/tokenizer_card.md` (shipped inside the package as
`hf_semtok/templates/tokenizer_card.md`) with `huggingface_hub.ModelCard`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData
from transformers.utils import hub as transformers_hub

from hf_semtok.constants import SID_END_TOKEN, SID_START_TOKEN

logger = logging.getLogger(__name__)

__all__ = [
    "card_template_path",
    "tokenizer_card_template_path",
    "render_tokenizer_card",
    "push_tokenizer_to_hub",
]

TOKENIZER_CARD_TEMPLATE = "tokenizer_card.md"
CARD_TAGS = ["hf_semtok", "semantic-ids", "generative-recommendation", "recommendation", "tokenizer"]


def card_template_path(name: str = TOKENIZER_CARD_TEMPLATE) -> Path:
    """Path of the model card template `name`: the packaged copy, else `model_cards/` of a source checkout.

    Args:
        name: The template's file name, e.g. `"tokenizer_card.md"` or `"adapter_card.md"`.

    Raises:
        FileNotFoundError: if neither exists.
    """
    packaged = Path(str(resources.files("hf_semtok") / "templates" / name))
    if packaged.is_file():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "model_cards" / name
    if checkout.is_file():
        return checkout
    raise FileNotFoundError(
        f"Model card template {name} not found in hf_semtok/templates/ or model_cards/; reinstall hf_semtok."
    )


def tokenizer_card_template_path() -> Path:
    """Path of the tokenizer card template (see [`card_template_path`])."""
    return card_template_path(TOKENIZER_CARD_TEMPLATE)


def _is_hub_id(name: str | None) -> bool:
    """True for an `org/name`-style id (not a local path), usable as the card's `base_model`."""
    return (
        bool(name) and name.count("/") == 1 and not os.path.exists(name) and not name.startswith((".", "/"))
    )


def render_tokenizer_card(
    tokenizer: Any,
    repo_id: str | None = None,
    tags: list[str] | None = None,
    license: str | None = None,
    **template_kwargs: Any,
) -> ModelCard:
    """Render the model card of a SemanticIDTokenizer.

    The YAML header holds `library_name: transformers`, the tags, `base_model` (when the base tokenizer is a
    Hub id) and the SID layout (`sid_num_levels`, `sid_codebook_sizes`, `sid_num_items`,
    `sid_collision_strategy`); the body lists the collision statistics, how to load, and the TIGER / PLUM
    citations.

    Args:
        tokenizer: The `SemanticIDTokenizer`.
        repo_id: Repository id shown in the loading example (default: the tokenizer's `name_or_path`).
        tags: Extra tags.
        license: Optional license id for the YAML header.
        **template_kwargs: Extra or overriding template variables.

    Returns:
        A `huggingface_hub.ModelCard`.
    """
    base = tokenizer.init_kwargs.get("base_tokenizer_name") or "unknown"
    repo_id = repo_id or tokenizer.name_or_path or "your-org/your-tokenizer"
    sizes = [int(s) for s in tokenizer.codebook_sizes]
    stats = {k: v for k, v in tokenizer.collision_stats.items() if isinstance(v, (int, float, str, bool))}
    card_data = ModelCardData(
        library_name="transformers",
        tags=[*CARD_TAGS, *(tags or [])],
        base_model=base if _is_hub_id(base) else None,
        license=license,
        sid_num_levels=len(sizes),
        sid_num_semantic_levels=int(tokenizer.num_semantic_levels),
        sid_codebook_sizes=sizes,
        sid_num_items=int(tokenizer.num_items),
        sid_collision_strategy=tokenizer.collision_strategy or "none",
    )
    example_item = tokenizer.item_ids[0]
    variables = dict(
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        base_tokenizer=base,
        sid_start_token=SID_START_TOKEN,
        sid_end_token=SID_END_TOKEN,
        num_items=tokenizer.num_items,
        num_levels=len(sizes),
        num_semantic_levels=int(tokenizer.num_semantic_levels),
        codebook_sizes=sizes,
        num_sid_tokens=sum(sizes),
        vocab_size=len(tokenizer),
        collision_strategy=tokenizer.collision_strategy or "none",
        collision_stats=stats,
        has_rqvae=tokenizer.has_rqvae,
        example_item=example_item,
        example_text=tokenizer.items_to_text([example_item]),
    )
    variables.update(template_kwargs)
    return ModelCard.from_template(card_data, template_path=str(tokenizer_card_template_path()), **variables)


def push_tokenizer_to_hub(
    tokenizer: Any,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    tags: list[str] | None = None,
    api: Any = None,
    model_card_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """Upload tokenizer, item table, RQ-VAE (when carried), remote code and `README.md` in one commit.

    Args:
        tokenizer: The `SemanticIDTokenizer`.
        repo_id: `"org/name"`; created if needed.
        commit_message, commit_description, private, token, revision, create_pr: As in `HfApi.upload_folder`.
        tags: Extra model-card tags.
        api: A `huggingface_hub.HfApi` (default: transformers' shared instance).
        model_card_kwargs: Extra template variables for `render_tokenizer_card`.

    Returns:
        The `CommitInfo` returned by `upload_folder`.
    """
    if api is None:
        api = transformers_hub.hf_api()
    repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "upload"
        tokenizer.save_pretrained(folder)
        card = render_tokenizer_card(tokenizer, repo_id=repo_id, tags=tags, **dict(model_card_kwargs or {}))
        card.save(str(folder / "README.md"))
        logger.info("Uploading %s to %s", sorted(os.listdir(folder)), repo_id)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            commit_message=commit_message or "Upload SemanticIDTokenizer",
            commit_description=commit_description,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )
