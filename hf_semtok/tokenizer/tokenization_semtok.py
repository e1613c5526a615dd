"""SemanticIDTokenizer: a catalogue of items as a Hugging Face fast tokenizer.

The tokenizer is the base LM's own fast tokenizer plus one added token per Semantic-ID level and code
(`<|sid_{level}_{code}|>`) and two boundary markers (`<|sid_start|>`, `<|sid_end|>`). It also carries the
catalogue: the table item id <-> SID (saved beside the tokenizer as JSON) and, optionally, the RQ-VAE that made
the SIDs (saved beside as safetensors) so new items get SIDs without retraining.

This package (`hf_semtok/tokenizer/`) is copied next to a saved tokenizer so
`AutoTokenizer.from_pretrained(dir, trust_remote_code=True)` works where hf_semtok is not installed: it imports
only its own modules (relatively; transformers copies them with this file) and never the rest of hf_semtok. What
needs the library (building the RQ-VAE, cold start, model cards) goes through `library_hooks`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken
from transformers import AutoConfig, AutoTokenizer, PreTrainedConfig, PreTrainedTokenizerFast

# Relative on purpose: the remote-code copy of this file ships `constants.py` beside it.
from .constants import (
    MAX_RQVAE_FILE_BYTES,
    RQVAE_CONFIG_FILE,
    RQVAE_WEIGHTS_FILE,
    SID_END_TOKEN,
    SID_START_TOKEN,
    SID_TABLE_FILE,
    SID_TOKEN_TEMPLATE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
)
from .file_sets import (
    FileSet,
    FileSetError,
    check_save_target,
    open_file_set,
    register_file_names,
    save_file_set,
)
from .library_hooks import get_hook
from .safe_paths import check_regular_files, read_regular
from .sid_catalogue import SID_LAYOUT_KEY, SIDCatalogueMixin, check_sid_layout
from .sid_table import MAX_SID_TABLE_JSON_BYTES, SID_CODES_FILE, SIDTable
from .sid_tokens import SID_RE, SIDTokenLookup
from .tokenizer_files import (
    MAX_JSON_BYTES,
    check_byte_level,
    check_config_tokens,
    check_files_are_files,
    check_rqvae_sizes,
    check_source,
    check_tokenizer_config,
    json_problem,
    local_file,
    read_json_object,
    tokenizer_json_problem,
)

logger = logging.getLogger(__name__)

__all__ = ["SemanticIDTokenizer", "SemanticIDTokenizerConfig"]

#: Source files saved beside the tokenizer for `trust_remote_code`: every module of this package (transformers
#: copies the modules `tokenization_semtok` imports relatively; a test checks that this is all of them).
SOURCE_FILES = frozenset(p.name for p in Path(__file__).parent.glob("*.py") if p.name != "__init__.py")
#: Source files that earlier releases saved and that no longer exist.
_LEGACY_SOURCE_FILES = frozenset({"sid_index.py", "tokenization_semtok.py", "sid_table.py", "constants.py"})
#: Files a SemanticIDTokenizer (or an earlier release of it, or its base tokenizer) writes.
_TOKENIZER_FILES = frozenset(
    {
        TOKENIZER_FILE,
        TOKENIZER_CONFIG_FILE,
        "special_tokens_map.json",
        "added_tokens.json",
        "additional_chat_templates",
        SID_TABLE_FILE,
        SID_CODES_FILE,
        RQVAE_CONFIG_FILE,
        RQVAE_WEIGHTS_FILE,
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "tokenizer.model",
    }
    | SOURCE_FILES
    | _LEGACY_SOURCE_FILES
)
#: The names a tokenizer save writes, so the only ones it may delete as obsolete (e.g. an RQ-VAE the new tokenizer
#: lacks): what SemanticIDTokenizer itself writes, not a base tokenizer's slow-tokenizer files.
_OWN_FILES = _TOKENIZER_FILES - {"vocab.json", "vocab.txt", "merges.txt", "tokenizer.model"}
#: The kind of file set a tokenizer saves (`hf_semtok.tokenizer.file_sets`).
FILE_SET_KIND = "tokenizer"


def _tokenizer_file_names(filename_prefix: str | None) -> Any:
    """Which relative names a tokenizer save with `filename_prefix` writes (`file_sets.register_file_names`)."""
    prefix = filename_prefix + "-" if filename_prefix else ""

    def match(name: str) -> bool:
        if name.startswith("additional_chat_templates/") and name.endswith(".jinja") and name.count("/") == 1:
            return not prefix
        if prefix:  # remote-code files are shared with an unprefixed tokenizer beside: never deleted here
            if not name.startswith(prefix):
                return False
            name = name[len(prefix) :]
        return name in _OWN_FILES or name.startswith("chat_template.")

    return match


register_file_names(FILE_SET_KIND, _tokenizer_file_names)


#: Every file (or, ending in `/`, folder of files) a tokenizer load may read: checked as regular files first.
#: The largest size of each file a tokenizer load reads whole, checked before transformers opens any of them.
_SIZE_CAPS = {
    **dict.fromkeys(
        (
            TOKENIZER_CONFIG_FILE,
            TOKENIZER_FILE,
            "special_tokens_map.json",
            "added_tokens.json",
            "chat_template.json",
        ),
        MAX_JSON_BYTES,
    ),
    "chat_template.jinja": MAX_JSON_BYTES,
    SID_TABLE_FILE: MAX_SID_TABLE_JSON_BYTES,
    RQVAE_CONFIG_FILE: MAX_RQVAE_FILE_BYTES,
    RQVAE_WEIGHTS_FILE: MAX_RQVAE_FILE_BYTES,
}
_LOADED_FILES = (
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "additional_chat_templates/",
    SID_TABLE_FILE,
    SID_CODES_FILE,
    RQVAE_CONFIG_FILE,
    RQVAE_WEIGHTS_FILE,
)

#: Files whose JSON `from_pretrained` reads; named in the error when one is truncated or corrupt.
_JSON_FILES = (TOKENIZER_CONFIG_FILE, "special_tokens_map.json", "added_tokens.json", TOKENIZER_FILE)
#: Keys transformers puts into `init_kwargs` while loading (where the files came from, and the special tokens it
#: read back); a tokenizer built by `from_base` has none of them, so they are dropped to keep re-saves identical.
_LOAD_ARTEFACTS = ("is_local", "local_files_only", "model_specific_special_tokens")


class SemanticIDTokenizerConfig(PreTrainedConfig):
    """Small config class that lets `AutoTokenizer` map the name `SemanticIDTokenizer` to its class.

    Nothing is stored in it; a model directory's `config.json` belongs to the language model.
    """

    model_type = "semantic_id_tokenizer"


# ----------------------------------------------------------------------------------------------------------
# The tokenizer
# ----------------------------------------------------------------------------------------------------------
class SemanticIDTokenizer(SIDCatalogueMixin, PreTrainedTokenizerFast):
    """A base LM's fast tokenizer extended with Semantic-ID tokens and the item catalogue.

    Build one with [`SemanticIDTokenizer.from_base`]; load one with `from_pretrained` or `AutoTokenizer`.
    One item's text is `<|sid_start|><|sid_0_a|><|sid_1_b|>...<|sid_end|>` with no spaces; several items are
    concatenated with no separator. SID tokens are added tokens that are not special (they survive
    `decode(skip_special_tokens=True)`); the two markers are named special tokens (`sid_start_token`,
    `sid_end_token`). Everything the base tokenizer had (special and added tokens, chat template, maximum
    length, padding side) is kept.

    Files beside `tokenizer.json`: `sid_table.json` (item ids, codes, codebook sizes, collision statistics) and,
    when the tokenizer carries its RQ-VAE, `rqvae_config.json` + `rqvae.safetensors`; plus this module's source
    (`auto_map` in `tokenizer_config.json`) for remote code.

    Loading a saved directory with `AutoTokenizer.from_pretrained`:
    - with hf_semtok imported: a `SemanticIDTokenizer` (registered with the Auto classes on import);
    - `trust_remote_code=True` without hf_semtok: a `SemanticIDTokenizer` from the copied source (cold start and
      model cards still need hf_semtok);
    - neither, in a model directory (the LM's `config.json` beside the tokenizer, as inference servers load it):
      a plain fast tokenizer with every SID token and the markers, no item table. A tokenizer-only directory
      without hf_semtok asks for `trust_remote_code`, as for any repository with custom code (transformers needs
      the model's config to choose a local class); `PreTrainedTokenizerFast.from_pretrained(dir)` loads it plain.
    """

    vocab_files_names = {
        "tokenizer_file": TOKENIZER_FILE,
        "sid_table_file": SID_TABLE_FILE,
        "sid_codes_file": SID_CODES_FILE,
        "rqvae_config_file": RQVAE_CONFIG_FILE,
        "rqvae_weights_file": RQVAE_WEIGHTS_FILE,
    }
    slow_tokenizer_class = None

    def __init__(
        self,
        *args: Any,
        sid_table_file: str | None = None,
        sid_codes_file: str | None = None,
        rqvae_config_file: str | None = None,
        rqvae_weights_file: str | None = None,
        sid_table: SIDTable | None = None,
        rqvae: Any = None,
        base_tokenizer_name: str | None = None,
        codebook_sizes: Any = None,
        **kwargs: Any,
    ) -> None:
        add_sid_tokens = kwargs.pop("_add_sid_tokens", False)
        file_set: FileSet | None = kwargs.pop("_file_set", None)
        source = kwargs.get("name_or_path") or "the tokenizer directory"
        if SID_LAYOUT_KEY in kwargs:  # kept in init_kwargs, so saved in tokenizer_config.json
            check_sid_layout(kwargs[SID_LAYOUT_KEY], f"{source}: {TOKENIZER_CONFIG_FILE}")
        sid_table, rqvae = _ignore_planted_keys(source, sid_table, rqvae, codebook_sizes)
        _check_required_files(source, kwargs, sid_table, sid_table_file)
        if (
            file_set is not None
        ):  # a folder with a manifest: files of other saves beside it are not this tokenizer's
            sid_table_file = _in_set(sid_table_file, file_set)
            rqvae_config_file = _in_set(rqvae_config_file, file_set)
            rqvae_weights_file = _in_set(rqvae_weights_file, file_set)
        if (rqvae_config_file is None) != (rqvae_weights_file is None):
            missing = RQVAE_CONFIG_FILE if rqvae_config_file is None else RQVAE_WEIGHTS_FILE
            raise ValueError(
                f"{source}: missing {missing}; the RQ-VAE is saved as {RQVAE_CONFIG_FILE} + {RQVAE_WEIGHTS_FILE}. "
                "Copy the missing file or delete the other one to load without cold start."
            )
        # A compact (version 2) sid_table.json names its sid_codes.safetensors, resolved beside it
        # (`sid_codes_file` is only declared so that from_pretrained fetches it from the Hub).
        table = sid_table if sid_table is not None else SIDTable.from_json(sid_table_file)
        if rqvae_config_file is not None and rqvae is None:
            check_rqvae_sizes(
                read_json_object(rqvae_config_file, "RQ-VAE config").get("codebook_sizes"),
                table,
                rqvae_config_file,
            )
        kwargs.setdefault("sid_start_token", AddedToken(SID_START_TOKEN, special=True, normalized=False))
        kwargs.setdefault("sid_end_token", AddedToken(SID_END_TOKEN, special=True, normalized=False))
        try:
            super().__init__(*args, **kwargs)
        except Exception as err:
            problem = json_problem(kwargs.get("tokenizer_file"))
            if problem:
                raise ValueError(
                    f"{kwargs['tokenizer_file']}: {problem}; the file is truncated or corrupt. Re-save the "
                    "tokenizer with save_pretrained()."
                ) from err
            raise
        if base_tokenizer_name is not None:
            self.init_kwargs["base_tokenizer_name"] = base_tokenizer_name
        self._rqvae = rqvae
        # The RQ-VAE's files are read now, with the table: a later save into the folder cannot swap them.
        self._rqvae_files = (
            (rqvae_config_file, rqvae_weights_file) if rqvae_config_file and rqvae is None else None
        )
        self._rqvae_bytes = (
            tuple(_read_set_file(path, file_set) for path in self._rqvae_files)
            if self._rqvae_files is not None
            else None
        )
        if add_sid_tokens:
            self._add_sid_tokens(table.codebook_sizes)
        self._sid_lookup = SIDTokenLookup(
            self.get_added_vocab(),
            table.codebook_sizes,
            sid_table_file or SID_TABLE_FILE,
            tokens_source=kwargs.get("tokenizer_file") or TOKENIZER_FILE,
        )
        self._table = table

    def __repr__(self) -> str:
        # The stock repr lists every added token: thousands of SID tokens. Summarise them instead.
        lookup = self.__dict__.get("_sid_lookup")
        sid = (
            f", sid_tokens=[{lookup.per_level_lists[0][0]}..{lookup.per_level_lists[-1][-1]}], "
            f"num_items={self.num_items}, codebook_sizes={self.codebook_sizes}"
            if lookup is not None and "_table" in self.__dict__
            else ""
        )
        return (
            f"{type(self).__name__}(name_or_path='{self.name_or_path}', vocab_size={self.vocab_size}, "
            f"len={len(self)}, model_max_length={self.model_max_length}, padding_side='{self.padding_side}', "
            f"special_tokens={self.special_tokens_map}{sid})"
        )

    # ---------------------------------------------------------------- construction and (de)serialisation
    @classmethod
    def convert_to_native_format(cls, trust_remote_code: bool = False, **kwargs: Any) -> dict[str, Any]:
        # Load tokenizer.json as is. Without this, transformers rebuilds a bare BPE for any subclass that defines
        # __init__ (pre-tokenizer, normalizer and decoder lost: text would split into characters).
        return super().convert_to_native_format(trust_remote_code=True, **kwargs)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any
    ) -> Any:
        """Load a saved SemanticIDTokenizer (local directory or Hub id); see `PreTrainedTokenizerFast.from_pretrained`.

        Raises:
            FileNotFoundError: naming the path when it is neither a directory nor a Hub repo id.
            ValueError: naming the file (and the field, when one is wrong) when one of the tokenizer's files is
                truncated, corrupt or edited into an invalid value, or when the item table or the RQ-VAE files
                are invalid; `file_sets.FileSetError` (a ValueError) when a file differs from the folder's
                tokenizer manifest.
        """
        check_source(pretrained_model_name_or_path)
        if os.path.isdir(pretrained_model_name_or_path) and "_file_set" not in kwargs:
            folder = os.path.join(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
            if not os.path.isdir(folder):
                raise FileNotFoundError(
                    f"{folder}: no such folder (subfolder={kwargs.get('subfolder')!r} of "
                    f"{os.fspath(pretrained_model_name_or_path)}); check the subfolder name."
                )
            check_files_are_files(folder, [TOKENIZER_CONFIG_FILE, *cls.vocab_files_names.values()])
            check_regular_files(folder, "tokenizer", _LOADED_FILES, _SIZE_CAPS)
        if not os.path.isdir(pretrained_model_name_or_path) or "_file_set" in kwargs:
            return cls._load_checked(pretrained_model_name_or_path, *args, **kwargs)
        # A local folder: load the files of the last tokenizer save, checked against its manifest, while no save
        # can commit into the folder (`file_sets.open_file_set`). Where folder locks are unavailable, a load that
        # a save overlapped is done again.
        folder = os.path.join(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
        for _ in range(5):
            with open_file_set(folder, FILE_SET_KIND) as file_set:
                tokenizer = cls._load_checked(
                    pretrained_model_name_or_path, *args, _file_set=file_set, **kwargs
                )
                if file_set is None or file_set.is_current():
                    return tokenizer
            logger.info("%s: a save committed while the tokenizer was loaded; loading it again.", folder)
        raise FileSetError(
            f"{folder}: saves kept replacing the tokenizer while it was loaded (5 tries); load it when no save "
            "into the folder is running."
        )

    @classmethod
    def _load_checked(
        cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any
    ) -> Any:
        config_path = local_file(pretrained_model_name_or_path, TOKENIZER_CONFIG_FILE, kwargs)
        folder = pretrained_model_name_or_path if os.path.isdir(pretrained_model_name_or_path) else None
        check_tokenizer_config(config_path, folder and os.path.join(folder, kwargs.get("subfolder") or ""))
        try:
            tokenizer = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except Exception as err:
            problem = cls._file_problem(pretrained_model_name_or_path, kwargs, err)
            if problem:
                raise ValueError(problem) from err
            raise
        check_byte_level(
            tokenizer.backend_tokenizer, local_file(pretrained_model_name_or_path, TOKENIZER_FILE, kwargs)
        )
        if not kwargs.get(
            "_add_sid_tokens"
        ):  # from_base extends a base: its missing special tokens are added
            check_config_tokens(config_path)
        for key in _LOAD_ARTEFACTS:  # what transformers adds at load; a re-save writes the bytes it read
            tokenizer.init_kwargs.pop(key, None)
        return tokenizer

    @staticmethod
    def _file_problem(name_or_path: str | os.PathLike, kwargs: Mapping[str, Any], err: Exception) -> str:
        """Why loading failed, naming the broken file ("" when no tokenizer file is to blame)."""
        for name in _JSON_FILES:
            path = local_file(name_or_path, name, kwargs)
            problem = json_problem(path)
            if problem:
                return f"{path}: {problem}; the file is truncated or corrupt. Re-save the tokenizer with save_pretrained()."
        if isinstance(err, (json.JSONDecodeError, UnicodeDecodeError, RecursionError)):
            return (
                f"{name_or_path}: a tokenizer file is not valid JSON ({err}); re-save the tokenizer with "
                "save_pretrained()."
            )
        if isinstance(err, (FileNotFoundError, ValueError)):
            return ""  # already names its file (the item table, the RQ-VAE, a missing file)
        return tokenizer_json_problem(local_file(name_or_path, TOKENIZER_FILE, kwargs), err)

    @classmethod
    def from_base(
        cls,
        base_tokenizer_or_path: PreTrainedTokenizerFast | str | os.PathLike,
        sid_table: Any,
        codebook_sizes: Sequence[int] | None = None,
        rqvae: Any = None,
        sid_layout: str = "marked",
        **base_kwargs: Any,
    ) -> SemanticIDTokenizer:
        """Build a SemanticIDTokenizer from a base LM's fast tokenizer and an item table.

        Args:
            base_tokenizer_or_path: A fast tokenizer, or a path / Hub id loaded with `AutoTokenizer`.
            sid_table: `dict[item_id, tuple[int, ...]]`, a `hf_semtok.SIDTable`, or what
                `hf_semtok.train_rqvae` returns (its trained RQ-VAE is then carried too, unless `rqvae` is given).
                All SIDs have the same number of levels and are unique.
            codebook_sizes: Codes per level (one token per level and code is added). Taken from the `SIDTable`
                or the RQ-VAE when omitted (the dedup level of a plain dict is then sized from the data).
            rqvae: Optional trained `RQVAEModel`, carried for `add_items` / `sids_for_embeddings`.
            sid_layout: How an item is written (`sid_layout`): `"marked"` (`<|sid_start|>` + codes +
                `<|sid_end|>`, for LLMs that mix SIDs with text) or `"bare"` (the codes only).
            **base_kwargs: Passed to `AutoTokenizer.from_pretrained` when a path is given.

        Returns:
            The new tokenizer. `len(tokenizer)` = base length + 2 markers + `sum(codebook_sizes)`.
        """
        check_sid_layout(sid_layout, "from_base")
        if isinstance(base_tokenizer_or_path, (str, os.PathLike)):
            if not os.fspath(base_tokenizer_or_path).strip():
                raise FileNotFoundError(
                    "from_base: the base tokenizer path is empty; pass a fast tokenizer, or its folder or Hub id."
                )
            check_source(base_tokenizer_or_path)  # a mistyped path: say so, not "Repo id must be in the form"
            if os.path.isdir(base_tokenizer_or_path):
                check_files_are_files(
                    os.path.join(base_tokenizer_or_path, base_kwargs.get("subfolder") or ""),
                    [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE],
                )
            base = AutoTokenizer.from_pretrained(str(base_tokenizer_or_path), **base_kwargs)
        else:
            base = base_tokenizer_or_path
        if not getattr(base, "is_fast", False):
            raise ValueError(f"from_base needs a fast tokenizer; got {type(base).__name__}.")
        vocab = base.get_vocab()
        clashes = sorted(t for t in vocab if t in (SID_START_TOKEN, SID_END_TOKEN) or SID_RE.fullmatch(t))
        if clashes:
            raise ValueError(
                f"The base tokenizer already holds token {clashes[0]!r} (id {vocab[clashes[0]]}), which clashes "
                f"with the SID tokens ({len(clashes)} clash(es)); start from the plain base tokenizer."
            )
        if hasattr(sid_table, "sid_table") and hasattr(sid_table, "model"):  # an RQVAETrainingResult
            rqvae = rqvae if rqvae is not None else sid_table.model
            sid_table = sid_table.sid_table
        table = SIDTable.from_any(sid_table, codebook_sizes, rqvae)
        if rqvae is not None:
            check_rqvae_sizes(
                getattr(rqvae.config, "codebook_sizes", None), table, "the rqvae passed to from_base"
            )
        base_name = base.init_kwargs.get("base_tokenizer_name") or base.name_or_path or None
        with tempfile.TemporaryDirectory() as tmp:
            base.save_pretrained(tmp)
            tok = cls.from_pretrained(
                tmp, sid_table=table, rqvae=rqvae, base_tokenizer_name=base_name, _add_sid_tokens=True
            )
        tok.sid_layout = sid_layout
        tok.name_or_path = base.name_or_path
        tok.init_kwargs.pop("name_or_path", None)  # the temporary directory
        logger.info(
            "Built SemanticIDTokenizer: %d items, codebook sizes %s, %d tokens (base %d).",
            table.codes.shape[0],
            table.codebook_sizes,
            len(tok),
            len(base),
        )
        return tok

    def _add_sid_tokens(self, codebook_sizes: Sequence[int]) -> None:
        tokens = [
            AddedToken(SID_TOKEN_TEMPLATE.format(level=level, code=code), special=False, normalized=False)
            for level, size in enumerate(codebook_sizes)
            for code in range(size)
        ]
        self.add_tokens(tokens)

    def _save_pretrained(
        self,
        save_directory: str | os.PathLike,
        file_names: tuple[str, ...],
        legacy_format: bool | None = None,
        filename_prefix: str | None = None,
    ) -> tuple[str, ...]:
        file_names = super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        prefix = filename_prefix + "-" if filename_prefix else ""
        table_path = os.path.join(save_directory, prefix + SID_TABLE_FILE)
        file_names = file_names + self._table.to_json(table_path)  # + sid_codes.safetensors for a large table
        cfg_path = os.path.join(save_directory, prefix + RQVAE_CONFIG_FILE)
        weights_path = os.path.join(save_directory, prefix + RQVAE_WEIGHTS_FILE)
        if self._rqvae is not None:
            with tempfile.TemporaryDirectory(dir=save_directory) as tmp:
                self._rqvae.save_pretrained(tmp)
                shutil.move(os.path.join(tmp, "config.json"), cfg_path)
                shutil.move(os.path.join(tmp, "model.safetensors"), weights_path)
            file_names = file_names + (cfg_path, weights_path)
        elif self._rqvae_bytes is not None:  # never built: the files as they were read at load time
            for path, data in zip((cfg_path, weights_path), self._rqvae_bytes):
                with open(path, "wb") as handle:  # into the save's private staging folder
                    handle.write(data)
            file_names = file_names + (cfg_path, weights_path)
        return file_names

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        legacy_format: bool | None = None,
        filename_prefix: str | None = None,
        push_to_hub: bool = False,
        overwrite: bool = False,
        **kwargs: Any,
    ) -> tuple[str, ...]:
        """Save tokenizer, item table and RQ-VAE into `save_directory` as one atomic set that touches nothing else.

        The files are committed with `hf_semtok.tokenizer.file_sets.save_file_set` (kind `"tokenizer"`, with
        `filename_prefix` when given): a reader sees the complete old tokenizer or the complete new one, a failure
        leaves the folder untouched, and every file that is not this tokenizer's (a model's `config.json` and
        weights, a README, a tokenizer saved with another prefix, sub-folders) stays. The files of the previous
        tokenizer save with the same prefix that this one does not write (e.g. an RQ-VAE the tokenizer no longer
        carries) are deleted: those its manifest names, or, for a folder saved before manifests existed, the
        tokenizer's own file names.

        Args:
            save_directory: Target directory (created if needed; not the filesystem root).
            legacy_format, filename_prefix: As in `PreTrainedTokenizerFast.save_pretrained`.
            push_to_hub: Also call `push_to_hub(repo_id)` (repo id from `repo_id=` or the directory name).
            overwrite: Replace files of the same name that another kind of save, or no save, wrote (by default
                such a save is refused: each save owns its file names).
            **kwargs: `repo_id` and the other `push_to_hub` arguments.

        Returns:
            The paths of the saved files.

        Raises:
            ValueError: `save_directory` is a file or the filesystem root; a file's path in it goes through a
                symlink (`file_sets.LinkError`); or (`file_sets.FileSetError`) a file would replace another save's.
        """
        if filename_prefix is not None and not isinstance(filename_prefix, str):
            raise TypeError(
                f"filename_prefix must be a string or None; got {type(filename_prefix).__name__}."
            )
        if filename_prefix == "":
            raise ValueError("filename_prefix must be a non-empty string, or None for no prefix; got ''.")
        check_save_target(save_directory)  # the path's own faults first (empty, too long, a file on the way)
        target = Path(save_directory)
        if target.is_file():
            raise ValueError(f"save_directory {str(target)!r} is a file; pass a directory.")
        check_save_target(target)
        with save_file_set(
            target,
            FILE_SET_KIND,
            prefix=filename_prefix or None,
            overwrite=overwrite,
        ) as staging:
            saved = super().save_pretrained(
                staging, legacy_format=legacy_format, filename_prefix=filename_prefix
            )
        files = tuple(
            str(target / Path(p).relative_to(staging)) for p in saved if Path(p).is_relative_to(staging)
        )
        if push_to_hub:
            repo_id = kwargs.pop("repo_id", target.name)
            self.push_to_hub(repo_id, **kwargs)
        return files

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload tokenizer, item table, RQ-VAE, remote code and a model card (`README.md`) in one commit.

        Args:
            repo_id: `"org/name"`; the repository is created if needed.
            **kwargs: `commit_message`, `commit_description`, `private`, `token`, `revision`, `create_pr`,
                `tags`, `api` (a `huggingface_hub.HfApi`) and `model_card_kwargs`; see
                `hf_semtok.hub.push_tokenizer_to_hub`.

        Returns:
            The `CommitInfo` of the upload.
        """
        push_tokenizer_to_hub = get_hook("push_tokenizer_to_hub")
        kwargs.pop("max_shard_size", None)  # PushToHubMixin's argument; a tokenizer is never sharded
        return push_tokenizer_to_hub(self, repo_id, **kwargs)

    def model_card(self, repo_id: str | None = None, tags: list[str] | None = None, **kwargs: Any) -> Any:
        """Render the tokenizer's model card (`huggingface_hub.ModelCard`) from `model_cards/tokenizer_card.md`.

        Needs hf_semtok installed (the template ships with it).
        """
        render_tokenizer_card = get_hook("render_tokenizer_card")
        return render_tokenizer_card(self, repo_id=repo_id, tags=tags, **kwargs)

    # ---------------------------------------------------------------- table properties


def _in_set(path: str | None, file_set: FileSet) -> str | None:
    """`path` when it is a file of the saved tokenizer set, else None (a file another save left beside it)."""
    if path is None:
        return None
    name = os.path.relpath(path, file_set.directory).replace(os.sep, "/")
    if name in file_set:
        return path
    logger.warning(
        "%s: not a file of the tokenizer saved in %s (its manifest %s does not name it: another save wrote it "
        "later, or it was copied in); ignored.",
        path,
        file_set.directory,
        file_set.manifest,
    )
    return None


def _read_set_file(path: str, file_set: FileSet | None) -> bytes:
    """The bytes of the RQ-VAE file `path` (a regular file of at most `MAX_RQVAE_FILE_BYTES`), checked against the
    manifest of `file_set` when there is one."""
    if file_set is not None:
        path = str(file_set.path(os.path.relpath(path, file_set.directory).replace(os.sep, "/")))
    return read_regular(path, MAX_RQVAE_FILE_BYTES, "RQ-VAE file")


def _ignore_planted_keys(source: str, sid_table: Any, rqvae: Any, codebook_sizes: Any) -> tuple[Any, Any]:
    """The table and RQ-VAE passed by `from_base` (objects); JSON values planted in tokenizer_config.json are
    ignored with a warning: the catalogue is read from sid_table.json and the RQ-VAE files only."""
    # The catalogue comes from sid_table.json (or from from_base, as a SIDTable object) only: values of these
    # keys planted in tokenizer_config.json are plain JSON, never objects, and are ignored.
    if sid_table is not None and not isinstance(sid_table, SIDTable):
        if isinstance(sid_table, (Mapping, list, str, int, float)):
            logger.warning(
                "%s: ignoring the key 'sid_table' of %s; the item table is read from %s only.",
                source,
                TOKENIZER_CONFIG_FILE,
                SID_TABLE_FILE,
            )
            sid_table = None
        else:
            sid_table = SIDTable.from_any(sid_table)
    if rqvae is not None and not hasattr(rqvae, "encode"):
        logger.warning(
            "%s: ignoring the key 'rqvae' of %s; the RQ-VAE is read from %s + %s only.",
            source,
            TOKENIZER_CONFIG_FILE,
            RQVAE_CONFIG_FILE,
            RQVAE_WEIGHTS_FILE,
        )
        rqvae = None
    if codebook_sizes is not None:
        logger.warning(
            "%s: ignoring the key 'codebook_sizes' of %s; the codebook sizes are read from %s.",
            source,
            TOKENIZER_CONFIG_FILE,
            SID_TABLE_FILE,
        )
    return sid_table, rqvae


def _check_required_files(
    source: str, kwargs: Mapping[str, Any], sid_table: Any, sid_table_file: str | None
) -> None:
    """`tokenizer.json` and the item table must be there (files, or objects passed by `from_base`)."""
    if kwargs.get("tokenizer_object") is None and not (
        kwargs.get("tokenizer_file") and os.path.isfile(kwargs["tokenizer_file"])
    ):
        raise ValueError(
            f"{source}: missing {TOKENIZER_FILE}; a SemanticIDTokenizer is saved with save_pretrained() or "
            "built with SemanticIDTokenizer.from_base(base_tokenizer, sid_table=...)."
        )
    if sid_table is None and sid_table_file is None:
        raise ValueError(
            f"{source}: missing {SID_TABLE_FILE} (the item table); save the tokenizer with save_pretrained() "
            "or build it with SemanticIDTokenizer.from_base(base_tokenizer, sid_table=...)."
        )


# Registration: `AutoTokenizer.from_pretrained(dir)` returns this class once the module is imported, and
# `save_pretrained` writes `auto_map` + copies this file for `trust_remote_code=True`.
SemanticIDTokenizer.register_for_auto_class("AutoTokenizer")
if not __name__.startswith("transformers_modules"):  # the remote-code copy does not re-register
    AutoConfig.register(SemanticIDTokenizerConfig.model_type, SemanticIDTokenizerConfig, exist_ok=True)
    AutoTokenizer.register(SemanticIDTokenizerConfig, tokenizer_class=SemanticIDTokenizer, exist_ok=True)
