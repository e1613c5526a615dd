"""`DatasetArguments`: the catalogue options every recipe reads, declared once.

The recipes compose it with their own dataclass (`transformers.HfArgumentParser` takes several), so every recipe
has the same dataset keys, with the same help and defaults, in its YAML config and on its command line:

    cfg, data = parse_args_with_config([TrainRQVAEConfig, DatasetArguments], argv)
    catalogue = data.load_catalogue(seed=cfg.seed)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hf_semtok.arguments import arg
from hf_semtok.constants import DEFAULT_SEED
from hf_semtok.data.catalogue import DEFAULT_TEXT_FIELDS, Catalogue
from hf_semtok.data.loading import load_catalogue

__all__ = ["DatasetArguments"]


#: The `DatasetArguments` fields that are `load_table_catalogue` options (their names there, where they differ).
_TABLE_OPTIONS = {
    "interactions": "interactions",
    "items": "items",
    "user_column": "user_column",
    "item_column": "item_column",
    "timestamp_column": "timestamp_column",
    "text_columns": "text_columns",
    "title_column": "title_column",
    "category_column": "category_column",
    "embedding_columns": "embedding_columns",
    "unknown_items": "unknown_items",
    "consecutive_duplicates": "consecutive_duplicates",
    "table_split": "split",
    "table_encoding": "encoding",
}


@dataclass
class DatasetArguments:
    """Which catalogue a recipe reads: the synthetic one, an LC-Rec or Amazon 2014 folder, or your own tables.

    `dataset_format: table` reads an interactions table and an items table (CSV, Parquet, JSON Lines, or a Hugging
    Face dataset); the schema and its rules are in `hf_semtok.data.table`. The `table` keys are ignored by the
    other formats.
    """

    dataset_format: Literal["synthetic", "lcrec", "amazon2014", "table"] = arg(
        "Catalogue format: synthetic (built in, no files), lcrec (LC-Rec / LETTER JSON folder), amazon2014 (P5 "
        "folder) or table (your own interactions and items tables).",
        "synthetic",
    )
    data_dir: str | None = arg(
        "Folder of the catalogue files (not for synthetic). For table: where relative file names are read from, "
        "and where interactions.* / items.* are found when interactions is not set."
    )
    dataset_name: str | None = arg(
        "Dataset name inside data_dir, where the format needs one (lcrec); the catalogue's name for table."
    )
    synthetic_items: int = arg("Items of the synthetic catalogue.", 1000)
    synthetic_users: int = arg("Users of the synthetic catalogue.", 2000)
    text_fields: list[str] = arg(
        "Item fields joined into the embedded text (lcrec, amazon2014): title, brand, categories, description.",
        list(DEFAULT_TEXT_FIELDS),
    )
    # the table format
    interactions: str | None = arg(
        "table: the interactions (user_id, item_id, optional timestamp): a .csv / .parquet / .jsonl file "
        "(.csv.gz, .jsonl.gz too) or a Hugging Face dataset id (needs the datasets library)."
    )
    items: str | None = arg(
        "table: the items (item_id, text columns, optional embedding columns), in the same forms; unset: the "
        "items of the interactions, without text."
    )
    user_column: str = arg("table: column of the user id.", "user_id")
    item_column: str = arg("table: column of the item id (both tables).", "item_id")
    timestamp_column: str | None = arg(
        "table: column ordering each history (numbers or ISO-8601 dates), used when present; null: file order.",
        "timestamp",
    )
    text_columns: list[str] | None = arg(
        "table: item columns joined into the embedded text (default: whichever of title, brand, categories exist)."
    )
    title_column: str | None = arg("table: item column of the title (prompts, CPT documents).", "title")
    category_column: str | None = arg(
        "table: item column of the category path ('Makeup > Lipstick' or a list).", "categories"
    )
    embedding_columns: list[str] | None = arg(
        "table: item columns holding embeddings (a list of floats per row), one modality each."
    )
    unknown_items: Literal["skip", "error"] = arg(
        "table: an interaction whose item is not in the items table is skipped and counted, or an error.",
        "skip",
    )
    consecutive_duplicates: Literal["drop", "keep"] = arg(
        "table: drop or keep a user's repeat of the item of their previous event.", "drop"
    )
    table_split: str = arg("table: split of a Hugging Face dataset.", "train")
    table_encoding: str = arg("table: text encoding of CSV files.", "utf-8")

    def __post_init__(self) -> None:
        for name in ("timestamp_column", "title_column", "category_column"):  # `--timestamp_column null`
            value = getattr(self, name)
            if isinstance(value, str) and value.strip().lower() in ("null", "none", "~", ""):
                setattr(self, name, None)

    def table_options(self) -> dict[str, Any]:
        """The `load_table_catalogue` options these arguments set (empty unless the format is `table`)."""
        if self.dataset_format != "table":
            return {}
        options = {target: getattr(self, name) for name, target in _TABLE_OPTIONS.items()}
        options["embedding_columns"] = list(options["embedding_columns"] or ())
        return options

    def load_catalogue(self, seed: int = DEFAULT_SEED) -> Catalogue:
        """Load the catalogue these arguments name (`hf_semtok.data.load_catalogue`).

        Args:
            seed: Seed of the synthetic catalogue (the recipe's `seed`).

        Returns:
            The `Catalogue`.
        """
        return load_catalogue(
            self.dataset_format,
            self.data_dir,
            name=self.dataset_name,
            text_fields=self.text_fields,
            seed=seed,
            synthetic_items=self.synthetic_items,
            synthetic_users=self.synthetic_users,
            **self.table_options(),
        )
