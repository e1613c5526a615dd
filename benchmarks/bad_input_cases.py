"""Bad input across the public API and the saved-file formats: one table, each row a call, the exception it must
raise and a fragment its message must contain. A second table lists valid calls that must keep working.

Shared by `benchmarks/robustness.py` (which adds generated variants and classifies every outcome) and
`tests/test_bad_input.py` (which asserts each row); both load this file by path, so it imports only the library.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import hf_semtok as hs
from hf_semtok.constants import RQVAE_CONFIG_FILE, RQVAE_WEIGHTS_FILE, SID_TABLE_FILE
from hf_semtok.data import load_lcrec_index, load_sequence_text, load_table_catalogue
from hf_semtok.generation import SIDLogitsProcessor, recommend
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.rqvae.training import train_rqvae
from hf_semtok.serving import sid_grammar
from hf_semtok.small_models import build_causal_lm, train_base_tokenizer
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

N_ITEMS, SIZES, DIM = 10, [3, 4], 6


@dataclass
class Context:
    """Everything the calls of the tables need, built once (tiny: about a second)."""

    root: Path
    base: Any
    tok: SemanticIDTokenizer
    lm: Any
    rqvae: RQVAEModel
    tok_dir: Path
    rqvae_dir: Path
    histories: list[list[str]]
    embeddings: np.ndarray
    counter: list[int]

    def fresh_dir(self) -> Path:
        self.counter[0] += 1
        path = self.root / f"case{self.counter[0]}"
        path.mkdir()
        return path


def build_context(root: Path) -> Context:
    """Tiny tokenizer (with an RQ-VAE), causal LM and saved directories under `root`."""
    root = Path(root)
    base = train_base_tokenizer(["a small catalogue of things to buy", "books and games"] * 5, vocab_size=300)
    table = {f"i{i:02d}": (i % 3, i % 4) for i in range(N_ITEMS)}
    rqvae = RQVAEModel(RQVAEConfig(modality_dims=DIM, hidden_sizes=[8], latent_dim=4, codebook_sizes=SIZES))
    rqvae.quantizer.initialized.fill_(True)
    tok = SemanticIDTokenizer.from_base(base, sid_table=table, codebook_sizes=SIZES, rqvae=rqvae)
    lm = build_causal_lm(
        len(tok), hidden_size=16, num_layers=1, num_heads=2, seed=0, pad_token_id=tok.pad_token_id
    ).eval()
    tok_dir, rqvae_dir = root / "tokenizer", root / "rqvae"
    tok.save_pretrained(tok_dir)
    rqvae.save_pretrained(rqvae_dir)
    items = list(table)
    histories = [items[:3], items[4:6]]
    embeddings = np.random.default_rng(0).normal(size=(N_ITEMS, DIM)).astype(np.float32)
    return Context(root, base, tok, lm, rqvae, tok_dir, rqvae_dir, histories, embeddings, [0])


# --------------------------------------------------------------------------------------------------------------
# Damaged copies of saved directories
# --------------------------------------------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_header(path: Path) -> None:
    """Flip bits near the start: the JSON text or the safetensors header."""
    data = bytearray(path.read_bytes())
    for i in range(min(len(data), 12, max(1, len(data) - 1))):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate,
    "bit-flipped": _flip_header,
    "missing": lambda path: path.unlink(),
    "empty": _empty,
}


def damaged_copy(ctx: Context, source: Path, filename: str, damage: str | Callable[[Path], None]) -> Path:
    """A copy of the saved directory `source` with `filename` damaged (a DAMAGE name or a function)."""
    target = ctx.fresh_dir() / source.name
    shutil.copytree(source, target)
    (DAMAGE[damage] if isinstance(damage, str) else damage)(target / filename)
    return target


def edit_json(filename: str, **changes: Any) -> Callable[[Path], None]:
    """A damage function replacing fields of a JSON file (the file stays valid JSON)."""

    def apply(path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        data.update(changes)
        path.write_text(json.dumps(data), encoding="utf-8")

    apply.__name__ = f"edit {filename}: {sorted(changes)}"
    return apply


def wrong_dtype(path: Path) -> None:
    """Rewrite a safetensors file with every float tensor as int32 (the header and sizes stay consistent)."""
    from safetensors.torch import load_file, save_file

    state = load_file(path)
    save_file({k: v.to(torch.int32) if v.is_floating_point() else v for k, v in state.items()}, path)


def nan_weights(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(path)
    save_file(
        {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}, path
    )


def load_tokenizer(ctx: Context, filename: str, damage: Any) -> Any:
    """Load a damaged copy of the saved tokenizer, including its RQ-VAE (which may load lazily)."""
    tok = SemanticIDTokenizer.from_pretrained(damaged_copy(ctx, ctx.tok_dir, filename, damage))
    return tok, tok.rqvae


def load_rqvae(ctx: Context, filename: str, damage: Any) -> Any:
    return RQVAEModel.from_pretrained(damaged_copy(ctx, ctx.rqvae_dir, filename, damage))


def _base_lm(ctx: Context) -> Any:
    """A fresh LM over the base vocabulary (extend_model resizes it: never the shared one)."""
    return build_causal_lm(len(ctx.base), hidden_size=16, num_layers=1, num_heads=2, seed=0)


def _write(ctx: Context, name: str, text: str) -> Path:
    path = ctx.fresh_dir() / name
    path.write_text(text, encoding="utf-8")
    return path


def _write_bytes(ctx: Context, name: str, data: bytes) -> Path:
    path = ctx.fresh_dir() / name
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One bad call: `call(ctx)` must raise `error` with `fragment` in its message (case-insensitive)."""

    name: str
    call: Callable[[Context], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    fragment: str


def _rec(**kwargs: Any) -> Callable[[Context], Any]:
    def call(c: Context) -> Any:
        args = {"k": 2, "num_beams": 4, "progress": False, **kwargs}
        histories = args.pop("histories", c.histories)
        return recommend(c.lm, c.tok, histories, **args)

    return call


def _proc(**kwargs: Any) -> Callable[[Context], Any]:
    def call(c: Context) -> Any:
        args = {
            "sid_codes": [[0, 1], [1, 0]],
            "sid_token_ids": [[5, 6], [7, 8]],
            "sid_start_token_id": 9,
            "sid_end_token_id": 10,
            "eos_token_id": 2,
            "mode": "free",
            **kwargs,
        }
        return SIDLogitsProcessor(**args)

    return call


def _train(**kwargs: Any) -> Callable[[Context], Any]:
    def call(c: Context) -> Any:
        config = RQVAEConfig(modality_dims=DIM, hidden_sizes=[8], latent_dim=4, codebook_sizes=SIZES)
        args = {
            "config": config,
            "max_steps": 2,
            "batch_size": 4,
            "progress": False,
            "report": False,
            **kwargs,
        }
        embeddings = args.pop("embeddings", c.embeddings)
        return train_rqvae(embeddings, **args)

    return call


def _grammar(level0: Any = None, **kwargs: Any) -> Callable[[Context], Any]:
    """`sid_grammar` over the tokenizer's catalogue with the first level's token ids (or other arguments)
    replaced."""

    def call(c: Context) -> Any:
        ids = [list(level) for level in c.tok.sid_token_ids]
        if level0 is not None:
            ids[0] = [level0, *ids[0][1:]]
        args = {"sid_start_token_id": c.tok.sid_start_token_id, "sid_end_token_id": c.tok.sid_end_token_id,
                "vocab_size": len(c.tok), **kwargs}  # fmt: skip
        return sid_grammar(c.tok.sid_codes, ids, **args)

    return call


def _edit_text(edit: Callable[[str], str]) -> Callable[[Path], None]:
    """A damage function rewriting a file's text, the save's manifest deleted too (a hand edit, as the manifest
    check's message advises)."""

    def apply(path: Path) -> None:
        path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
        for manifest in path.parent.glob(".hf_semtok_manifest*"):
            manifest.unlink()

    return apply


def _config_field(**fields: Any) -> Callable[[Path], None]:
    return _edit_text(lambda text: json.dumps({**json.loads(text), **fields}))


def _table(name: str, text: str) -> Callable[[Context], Any]:
    return lambda c: load_table_catalogue(_write(c, name, text))


def _lone_surrogate(text: str) -> str:
    data = json.loads(text)
    first = data["item_ids"][0]
    return text.replace(json.dumps(first), '"\\ud800' + first + '"', 1)


VE, TE, FNF = ValueError, TypeError, FileNotFoundError
VT = (ValueError, TypeError)
MISSING = (FileNotFoundError, ValueError)

CASES: list[Case] = [
    # recommend
    Case("recommend k=1.5", _rec(k=1.5), TE, "`k` must be an int"),
    Case("recommend k='3'", _rec(k="3"), TE, "`k` must be an int"),
    Case("recommend k=True", _rec(k=True), TE, "`k` must be an int"),
    Case("recommend k=0", _rec(k=0), VE, "`k` must be >= 1"),
    Case(
        "recommend k > catalogue", _rec(k=N_ITEMS + 1, num_beams=N_ITEMS + 1), VE, "larger than the catalogue"
    ),
    Case("recommend num_beams < k", _rec(k=3, num_beams=2), VE, "smaller than k"),
    Case("recommend num_beams=2.0", _rec(num_beams=2.0), TE, "`num_beams` must be an int"),
    Case("recommend batch_size=0", _rec(batch_size=0), VE, "`batch_size` must be >= 1"),
    Case("recommend prefix_level=5", _rec(prefix_level=5), VE, "prefix_level must be between"),
    Case("recommend unknown item", _rec(histories=[["nope"]]), VE, "unknown to the tokenizer"),
    Case("recommend empty history", _rec(histories=[[]]), VE, "is empty"),
    Case("recommend history is a string", _rec(histories=["i00"]), VE, "a list of item ids"),
    Case("recommend int item ids", _rec(histories=[[0, 1]]), TE, "item ids are strings"),
    Case("recommend histories=None", _rec(histories=None), TE, "histories must be a list"),
    Case("recommend history=None", _rec(histories=[None]), TE, "must be a list of item ids"),
    # SIDLogitsProcessor
    Case("processor float codes", _proc(sid_codes=[[0, 1.5]]), VE, "integer codes"),
    Case("processor code out of range", _proc(sid_codes=[[0, 3]]), VE, "outside the codebooks"),
    Case("processor ragged codes", _proc(sid_codes=[[0, 1], [1]]), VE, "ragged"),
    Case("processor empty codes", _proc(sid_codes=[]), VE, "non-empty"),
    Case("processor levels mismatch", _proc(sid_token_ids=[[5, 6]]), VE, "levels"),
    Case("processor repeated ids", _proc(sid_token_ids=[[5, 6], [5, 8]]), VE, "distinct"),
    Case("processor bad mode", _proc(mode="beam"), VE, "mode must be"),
    Case("processor sid mode without length", _proc(mode="sid"), VE, "needs prompt_length"),
    Case(
        "processor float prompt_length",
        _proc(mode="sid", prompt_length=1.5),
        TE,
        "prompt_length must be an int",
    ),
    Case("processor eos None", _proc(eos_token_id=None), VE, "eos_token_id is required"),
    Case("processor eos float", _proc(eos_token_id=2.5), TE, "eos_token_id must be a token id"),
    # RQVAEConfig
    Case("config codebook 2**40", lambda c: RQVAEConfig(codebook_sizes=[2**40, 2]), VE, "at most 1048576"),
    Case("config codebook float", lambda c: RQVAEConfig(codebook_sizes=[8.5, 2]), VE, "must be an int"),
    Case("config codebook str", lambda c: RQVAEConfig(codebook_sizes="256"), VE, "list of ints"),
    Case("config codebook 1", lambda c: RQVAEConfig(codebook_sizes=[8, 1]), VE, "at least 2 codes"),
    Case("config latent 0", lambda c: RQVAEConfig(latent_dim=0), VE, "latent_dim"),
    Case("config nan weight", lambda c: RQVAEConfig(commitment_weight=float("nan")), VE, "finite"),
    Case("config bool str", lambda c: RQVAEConfig(kmeans_init="false"), VE, "True or False"),
    Case("config unknown key", lambda c: RQVAEConfig(codebook_size=[8]), VE, "did you mean"),
    Case(
        "config modality dims str", lambda c: RQVAEConfig(modality_dims="text"), VE, "dict name -> dimension"
    ),
    # RQVAEModel.encode
    Case("encode wrong dim", lambda c: c.rqvae.encode(np.zeros((2, DIM + 1), np.float32)), VE, "dimension"),
    Case("encode ragged", lambda c: c.rqvae.encode([[0.1] * DIM, [0.1]]), VE, "ragged"),
    Case("encode strings", lambda c: c.rqvae.encode(np.array([["a"] * DIM])), TE, "must hold floats"),
    Case("encode None", lambda c: c.rqvae.encode(None), TE, "float matrix"),
    Case("encode 1-D", lambda c: c.rqvae.encode(np.zeros(DIM, np.float32)), VE, "2-D"),
    Case("encode int", lambda c: c.rqvae.encode(np.zeros((2, DIM), np.int64)), VE, "must hold floats"),
    Case("encode inf", lambda c: c.rqvae.encode(np.full((2, DIM), np.inf, np.float32)), VE, "infinite"),
    Case(
        "encode partial NaN",
        lambda c: c.rqvae.encode(np.array([[np.nan] + [1.0] * (DIM - 1)])),
        VE,
        "some (not all)",
    ),
    Case(
        "encode all-zero row", lambda c: c.rqvae.encode(np.zeros((2, DIM), np.float32)), VE, "all-zero or nan"
    ),
    Case("encode missing modality key", lambda c: c.rqvae.encode({"image": c.embeddings}), VE, "missing"),
    # train_rqvae
    Case("train epochs=0", _train(max_steps=-1, epochs=0), VE, "trains nothing"),
    Case("train max_steps=0", _train(max_steps=0), VE, "trains nothing"),
    Case("train batch_size=0", _train(batch_size=0), VE, "`batch_size` is 0"),
    Case("train lr str", _train(learning_rate="1e-3"), TE, "must be a number"),
    Case("train ragged", _train(embeddings=[[0.1] * DIM, [0.2]] * 8), VE, "ragged"),
    Case("train None", _train(embeddings=None), TE, "`embeddings` must be"),
    Case("train empty", _train(embeddings=np.zeros((0, DIM), np.float32)), VE, "Empty catalogue"),
    Case(
        "train too few items", _train(embeddings=np.ones((2, DIM), np.float32)), VE, "fewer than the largest"
    ),
    Case("train duplicate ids", _train(item_ids=["a"] * N_ITEMS), VE, "Duplicate item ids"),
    Case("train bad strategy", _train(collision_strategy="x"), VE, "collision_strategy"),
    # assign_unique_sids / SIDTable
    Case("assign float codes", lambda c: hs.assign_unique_sids([[0.5, 1]], ["a"], [2, 2]), VE, "integers"),
    Case("assign out of range", lambda c: hs.assign_unique_sids([[0, 5]], ["a"], [2, 2]), VE, "out of range"),
    Case(
        "assign ids/rows mismatch",
        lambda c: hs.assign_unique_sids([[0, 1]], ["a", "b"], [2, 2]),
        VE,
        "one id per row",
    ),
    Case("assign item_ids a string", lambda c: hs.assign_unique_sids([[0, 1]], "a", [2, 2]), VT, "item_ids"),
    Case(
        "assign item_ids holds None",
        lambda c: hs.assign_unique_sids([[0, 1]], [None], [2, 2]),
        TE,
        "item_ids",
    ),
    Case(
        "add_items_to_table ids a string",
        lambda c: hs.add_items_to_table(hs.assign_unique_sids([[0, 1]], ["a"], [2, 2]), "b", [[1, 1]]),
        TE,
        "new_item_ids",
    ),
    Case(
        "assign bad strategy",
        lambda c: hs.assign_unique_sids([[0, 1]], ["a"], [2, 2], strategy="x"),
        VE,
        "strategy",
    ),
    Case("table str sizes", lambda c: hs.SIDTable(["a"], [[0, 1]], ["2", "2"]), VE, "codebook_sizes"),
    Case("table float codes", lambda c: hs.SIDTable(["a"], [[0.5, 1]], [2, 2]), VE, "codes"),
    Case("table item_ids a string", lambda c: hs.SIDTable("ab", [[0, 1], [1, 1]], [2, 2]), VT, "item_ids"),
    Case(
        "table bad semantic levels",
        lambda c: hs.SIDTable(["a"], [[0, 1]], [2, 2], num_semantic_levels=5),
        VE,
        "num_semantic_levels",
    ),
    Case(
        "table float semantic levels",
        lambda c: hs.SIDTable(["a"], [[0, 1]], [2, 2], num_semantic_levels=1.5),
        VE,
        "num_semantic_levels",
    ),
    Case("table duplicate ids", lambda c: hs.SIDTable(["a", "a"], [[0, 1], [1, 0]], [2, 2]), VE, "duplicate"),
    # SemanticIDTokenizer
    Case(
        "from_base 2**40 codes",
        lambda c: SemanticIDTokenizer.from_base(c.base, sid_table={"a": (0,)}, codebook_sizes=[2**40]),
        VE,
        "1048576",
    ),
    Case(
        "from_base str sizes",
        lambda c: SemanticIDTokenizer.from_base(c.base, sid_table={"a": (0, 1)}, codebook_sizes=["2", "2"]),
        VE,
        "codebook_sizes",
    ),
    Case(
        "from_base code out of range",
        lambda c: SemanticIDTokenizer.from_base(c.base, sid_table={"a": (0, 9)}, codebook_sizes=[2, 2]),
        VE,
        "out of range",
    ),
    Case(
        "from_base table a string",
        lambda c: SemanticIDTokenizer.from_base(c.base, sid_table="table.json"),
        TE,
        "sid_table must be",
    ),
    Case("item_to_sid unknown", lambda c: c.tok.item_to_sid("nope"), VE, "unknown item id"),
    Case("sid_to_item float code", lambda c: c.tok.sid_to_item((0, 1.7)), VT, "integer"),
    Case("sid_to_item short", lambda c: c.tok.sid_to_item((0,)), VE, "full sid has"),
    Case("sid_to_item out of range", lambda c: c.tok.sid_to_item((0, 99)), VE, "out of range"),
    Case("sid_to_item malformed text", lambda c: c.tok.sid_to_item("zz"), VE, "malformed sid"),
    Case("parse_items 3-D", lambda c: c.tok.parse_items(np.zeros((2, 2, 2), int)), VT, "3-d"),
    Case("parse_items bytes", lambda c: c.tok.parse_items(b"abc"), VT, "bytes"),
    Case("parse_items floats", lambda c: c.tok.parse_items([1.5]), VT, "float"),
    Case("parse_items None", lambda c: c.tok.parse_items(None), VT, "nonetype"),
    Case(
        "parse_items bad on_invalid", lambda c: c.tok.parse_items("x", on_invalid="bogus"), VE, "on_invalid"
    ),
    Case("add_items float codes", lambda c: c.tok.add_items(["n"], codes=[[0.5, 1]]), VE, "integers"),
    Case(
        "add_items existing", lambda c: c.tok.add_items(["i00"], codes=[[0, 1]]), VE, "already in the table"
    ),
    Case("add_items out of range", lambda c: c.tok.add_items(["n"], codes=[[0, 99]]), VE, "out of range"),
    Case(
        "add_items ids a string",
        lambda c: c.tok.add_items("n", codes=[[0, 1]]),
        TE,
        "must be a list of item id strings",
    ),
    Case("add_items neither", lambda c: c.tok.add_items(["n"]), VE, "exactly one of"),
    # saved tokenizer directories
    Case(
        "tok dir missing",
        lambda c: SemanticIDTokenizer.from_pretrained(c.root / "nowhere"),
        (*MISSING, OSError),
        "nowhere",
    ),
    Case(
        "tok path is a file",
        lambda c: SemanticIDTokenizer.from_pretrained(c.tok_dir / "tokenizer.json"),
        FNF,
        "not a tokenizer directory",
    ),
    Case(
        "tok relative path missing",
        lambda c: SemanticIDTokenizer.from_pretrained("./no/such/dir"),
        FNF,
        "not a Hub repo id",
    ),
    Case(
        "tok tokenizer.json version=null",
        lambda c: load_tokenizer(c, "tokenizer.json", edit_json("tokenizer.json", version=None)),
        VE,
        "'version'",
    ),
    Case(
        "tok tokenizer.json added_tokens=null",
        lambda c: load_tokenizer(c, "tokenizer.json", edit_json("tokenizer.json", added_tokens=None)),
        VE,
        "'added_tokens'",
    ),
    Case(
        "tok tokenizer.json truncation={}",
        lambda c: load_tokenizer(c, "tokenizer.json", edit_json("tokenizer.json", truncation={})),
        VE,
        "'truncation'",
    ),
    Case(
        "tok tokenizer.json model='x'",
        lambda c: load_tokenizer(c, "tokenizer.json", edit_json("tokenizer.json", model="x")),
        VE,
        "'model'",
    ),
    Case(
        "tok tokenizer.json normalizer={}",
        lambda c: load_tokenizer(c, "tokenizer.json", edit_json("tokenizer.json", normalizer={})),
        VE,
        "'normalizer'",
    ),
    Case(
        "tok tokenizer.json pre_tokenizer=null",
        lambda c: load_tokenizer(c, "tokenizer.json", edit_json("tokenizer.json", pre_tokenizer=None)),
        VE,
        "'pre_tokenizer'",
    ),
    Case(
        "tok tokenizer_config.json model_max_length='x'",
        lambda c: load_tokenizer(
            c, "tokenizer_config.json", edit_json("tokenizer_config.json", model_max_length="x")
        ),
        VE,
        "model_max_length",
    ),
    Case(
        "tok tokenizer_config.json model_max_length=-1",
        lambda c: load_tokenizer(
            c, "tokenizer_config.json", edit_json("tokenizer_config.json", model_max_length=-1)
        ),
        VE,
        "model_max_length",
    ),
    Case(
        "tok sid_table.json truncated",
        lambda c: load_tokenizer(c, SID_TABLE_FILE, "truncated"),
        VE,
        SID_TABLE_FILE,
    ),
    Case(
        "tok sid_table.json missing",
        lambda c: load_tokenizer(c, SID_TABLE_FILE, "missing"),
        MISSING,
        SID_TABLE_FILE,
    ),
    Case(
        "tok sid_table.json str sizes",
        lambda c: load_tokenizer(c, SID_TABLE_FILE, edit_json(SID_TABLE_FILE, codebook_sizes=["3", "4"])),
        VE,
        "codebook_sizes",
    ),
    Case(
        "tok sid_table.json float codes",
        lambda c: load_tokenizer(c, SID_TABLE_FILE, edit_json(SID_TABLE_FILE, codes=[[0.5, 1]] * N_ITEMS)),
        VE,
        "codes",
    ),
    Case(
        "tok sid_table.json item_ids str",
        lambda c: load_tokenizer(c, SID_TABLE_FILE, edit_json(SID_TABLE_FILE, item_ids="i00")),
        VE,
        "item_ids",
    ),
    Case(
        "tok sid_table.json semantic levels",
        lambda c: load_tokenizer(c, SID_TABLE_FILE, edit_json(SID_TABLE_FILE, num_semantic_levels=7)),
        VE,
        "num_semantic_levels",
    ),
    Case(
        "tok tokenizer.json truncated",
        lambda c: load_tokenizer(c, "tokenizer.json", "truncated"),
        VE,
        "tokenizer.json",
    ),
    Case(
        "tok tokenizer.json missing",
        lambda c: load_tokenizer(c, "tokenizer.json", "missing"),
        MISSING,
        "tokenizer.json",
    ),
    Case(
        "tok rqvae weights truncated",
        lambda c: load_tokenizer(c, RQVAE_WEIGHTS_FILE, "truncated"),
        VE,
        RQVAE_WEIGHTS_FILE,
    ),
    Case(
        "tok rqvae weights NaN",
        lambda c: load_tokenizer(c, RQVAE_WEIGHTS_FILE, nan_weights),
        VE,
        RQVAE_WEIGHTS_FILE,
    ),
    Case(
        "tok rqvae config truncated",
        lambda c: load_tokenizer(c, RQVAE_CONFIG_FILE, "truncated"),
        VE,
        RQVAE_CONFIG_FILE,
    ),
    # saved RQ-VAE directories
    Case(
        "rqvae config.json truncated", lambda c: load_rqvae(c, "config.json", "truncated"), VE, "config.json"
    ),
    Case(
        "rqvae weights truncated",
        lambda c: load_rqvae(c, "model.safetensors", "truncated"),
        VE,
        "model.safetensors",
    ),
    Case(
        "rqvae weights bit-flipped header",
        lambda c: load_rqvae(c, "model.safetensors", "bit-flipped"),
        VE,
        "model.safetensors",
    ),
    Case(
        "rqvae weights missing",
        lambda c: load_rqvae(c, "model.safetensors", "missing"),
        FNF,
        "model.safetensors",
    ),
    Case("rqvae weights NaN", lambda c: load_rqvae(c, "model.safetensors", nan_weights), VE, "nan"),
    Case(
        "rqvae weights wrong dtype",
        lambda c: load_rqvae(c, "model.safetensors", wrong_dtype),
        VE,
        "model.safetensors",
    ),
    Case(
        "rqvae config latent mismatch",
        lambda c: load_rqvae(c, "config.json", edit_json("config.json", latent_dim=5)),
        VE,
        "model.safetensors",
    ),
    # data readers and helpers
    Case("leave_one_out list", lambda c: hs.leave_one_out_split([["a", "b"]]), VT, "histories"),
    Case("leave_one_out string history", lambda c: hs.leave_one_out_split({"u": "abc"}), VT, "string"),
    Case("leave_one_out history None", lambda c: hs.leave_one_out_split({"u": None}), TE, "'u'"),
    Case(
        "leave_one_out max_history=1.5",
        lambda c: hs.leave_one_out_split({"u": ["a"]}, max_history=1.5),
        TE,
        "max_history must be an int",
    ),
    Case(
        "leave_one_out max_history=0",
        lambda c: hs.leave_one_out_split({"u": ["a"]}, max_history=0),
        VE,
        "max_history",
    ),
    Case(
        "load_sequence_text missing",
        lambda c: load_sequence_text(c.root / "none.txt"),
        MISSING,
        "none.txt",
    ),
    Case("load_lcrec_index missing", lambda c: load_lcrec_index(c.root / "none.json"), MISSING, "none.json"),
    Case(
        "load_lcrec_index truncated",
        lambda c: load_lcrec_index(_write(c, "x.index.json", '{"0": ["<a_1>"')),
        VE,
        "x.index.json",
    ),
    Case(
        "load_lcrec_index not UTF-8",
        lambda c: load_lcrec_index(_write_bytes(c, "y.index.json", b'{"0": ["<a_\xe9>"]}')),
        VE,
        "y.index.json",
    ),
    Case(
        "load_lcrec_dataset empty dir", lambda c: hs.load_lcrec_dataset(c.fresh_dir()), MISSING, "inter.json"
    ),
    Case(
        "load_amazon2014 empty dir", lambda c: hs.load_amazon2014(c.fresh_dir()), MISSING, "sequential_data"
    ),
    Case("load_catalogue bad format", lambda c: hs.load_catalogue("nope"), VE, "dataset_format"),
    Case(
        "cooccurrence window 0", lambda c: hs.build_cooccurrence_pairs([["a", "b"]], window=0), VE, "window"
    ),
    Case(
        "cooccurrence window 1.5",
        lambda c: hs.build_cooccurrence_pairs([["a", "b"]], window=1.5),
        VT,
        "window",
    ),
    Case(
        "cooccurrence window '3'",
        lambda c: hs.build_cooccurrence_pairs([["a", "b"]], window="3"),
        TE,
        "window",
    ),
    Case(
        "cooccurrence window None",
        lambda c: hs.build_cooccurrence_pairs([["a", "b"]], window=None),
        TE,
        "window",
    ),
    Case(
        "cooccurrence window True",
        lambda c: hs.build_cooccurrence_pairs([["a", "b"]], window=True),
        TE,
        "window",
    ),
    Case("cooccurrence string histories", lambda c: hs.build_cooccurrence_pairs("ab"), VT, "histories"),
    Case("cooccurrence one history a string", lambda c: hs.build_cooccurrence_pairs(["ab"]), TE, "string"),
    Case(
        "cooccurrence max_pairs=2.5",
        lambda c: hs.build_cooccurrence_pairs([["a", "b"]], max_pairs=2.5),
        TE,
        "max_pairs",
    ),
    Case(
        "cooccurrence unknown items",
        lambda c: hs.build_cooccurrence_pairs([["a", "b"]], item_ids=["a"]),
        VE,
        "not in item_ids",
    ),
    Case(
        "extend_model plain tokenizer",
        lambda c: hs.extend_model(_base_lm(c), c.base),
        VE,
        "needs a SemanticIDTokenizer",
    ),
    Case(
        "extend_model bad init",
        lambda c: hs.extend_model(_base_lm(c), c.tok, init="zero"),
        VE,
        "init must be",
    ),
    Case(
        "extend_model nan noise",
        lambda c: hs.extend_model(_base_lm(c), c.tok, noise_scale=float("nan")),
        VE,
        "noise_scale",
    ),
    Case(
        "extend_model negative noise",
        lambda c: hs.extend_model(_base_lm(c), c.tok, noise_scale=-0.1),
        VE,
        "noise_scale",
    ),
    Case(
        "extend_model inf codebook_scale",
        lambda c: hs.extend_model(_base_lm(c), c.tok, codebook_scale=float("inf")),
        VE,
        "codebook_scale",
    ),
    Case(
        "extend_model noise str",
        lambda c: hs.extend_model(_base_lm(c), c.tok, noise_scale="0.1"),
        TE,
        "noise_scale",
    ),
    Case("recall k=0", lambda c: hs.recall_at_k(["a"], "a", 0), VE, "k must be a positive integer"),
    Case("recall k=1.5", lambda c: hs.recall_at_k(["a"], "a", 1.5), VE, "k must be a positive integer"),
    Case("ndcg k=True", lambda c: hs.ndcg_at_k(["a"], "a", True), VE, "k must be a positive integer"),
    Case("ndcg ranked a string", lambda c: hs.ndcg_at_k("abc", "a", 2), VT, "ranked"),
    Case("recall ranked a string", lambda c: hs.recall_at_k("abc", "a", 2), TE, "ranked"),
    Case("recall ranked a set", lambda c: hs.recall_at_k({"a", "b"}, "a", 2), TE, "ranked"),
    Case("recall ranked None", lambda c: hs.recall_at_k(None, "a", 2), TE, "ranked"),
    # issue 35: users' tables, sid_grammar, recommend titles, tokenizer files edited by hand
    Case(
        "table stray quote in a title",
        _table("items.csv", 'user_id,item_id,title\nu,a,"Red Pen\nu,b,Glue\nu,c,Ruler\n'),
        VE,
        "opens a quote",
    ),  # fmt: skip
    Case(
        "table duplicate column names",
        _table("d.csv", "user_id,item_id,item_id\nu,a,b\n"),
        VE,
        "appears twice",
    ),
    Case(
        "table timestamp inf",
        _table("t.csv", "user_id,item_id,timestamp\nu,a,1\nu,b,inf\n"),
        VE,
        "as a timestamp",
    ),  # fmt: skip
    Case(
        "table timestamp 1e400",
        _table("t.csv", "user_id,item_id,timestamp\nu,a,1\nu,b,1e400\n"),
        VE,
        "as a timestamp",
    ),  # fmt: skip
    Case(
        "table whitespace-only item id",
        _table("w.csv", "user_id,item_id\nu,a\nu,  \n"),
        VE,
        "empty 'item_id'",
    ),  # fmt: skip
    Case("sid_grammar float token id", _grammar(1.5), TE, "token ids are integers"),
    Case("sid_grammar negative token id", _grammar(-1), VE, "outside the vocabulary"),
    Case("sid_grammar out-of-vocabulary token id", _grammar(10**6), VE, "outside the vocabulary"),
    Case("sid_grammar vocab_size float", _grammar(vocab_size=1.5e3), TE, "vocab_size"),
    Case("recommend titles a list", _rec(titles=["Red Pen", "Glue"]), TE, "titles must be a mapping"),
    Case("recommend titles a string", _rec(titles="Red Pen"), TE, "titles must be a mapping"),
    Case(
        "tokenizer_config eos_token a SID token",
        lambda c: load_tokenizer(c, "tokenizer_config.json", _config_field(eos_token="<|sid_0_1|>")),
        VE,
        "a SID token",
    ),  # fmt: skip
    Case(
        "tokenizer_config eos_token <|sid_start|>",
        lambda c: load_tokenizer(c, "tokenizer_config.json", _config_field(eos_token="<|sid_start|>")),
        VE,
        "a SID token",
    ),  # fmt: skip
    Case(
        "tokenizer_config pad_token a SID token",
        lambda c: load_tokenizer(c, "tokenizer_config.json", _config_field(pad_token="<|sid_1_2|>")),
        VE,
        "a SID token",
    ),  # fmt: skip
    Case(
        "sid_table.json a key twice",
        lambda c: load_tokenizer(
            c, SID_TABLE_FILE, _edit_text(lambda t: t.rstrip()[:-1] + ', "item_ids": []}')
        ),
        VE,
        "appears twice",
    ),  # fmt: skip
    Case(
        "sid_table.json lone surrogate in an item id",
        lambda c: load_tokenizer(c, SID_TABLE_FILE, _edit_text(_lone_surrogate)),
        VE,
        "lone surrogate",
    ),
]


def _valid_add_items(c: Context) -> Any:
    tok = SemanticIDTokenizer.from_pretrained(c.tok_dir)
    return tok.add_items(["new"], codes=[[2, 3]])


#: Calls that must succeed (a crash here is a regression the bad-input fixes must not cause).
VALID_CALLS: list[tuple[str, Callable[[Context], Any]]] = [
    ("recommend greedy k=1", _rec(k=1, num_beams=1)),
    ("recommend numpy k", _rec(k=np.int64(2), num_beams=np.int32(4))),
    ("recommend sampling", _rec(k=2, num_beams=4, do_sample=True)),
    ("recommend prefix level", _rec(k=2, prefix_level=1)),
    ("processor free mode", _proc()),
    (
        "processor numpy codes",
        _proc(sid_codes=np.array([[0, 1]], dtype=np.int32), mode="sid", prompt_length=np.int64(3)),
    ),
    ("config at the bound", lambda c: RQVAEConfig(codebook_sizes=[2**20, 2], latent_dim=2)),
    ("config numpy ints", lambda c: RQVAEConfig(codebook_sizes=np.array([8, 8]), latent_dim=np.int64(4))),
    ("encode tiny embeddings", lambda c: c.rqvae.encode(c.embeddings * 1e-30)),
    ("encode float64 list", lambda c: c.rqvae.encode(c.embeddings.astype(np.float64).tolist())),
    ("item_to_sid / sid_to_item", lambda c: c.tok.sid_to_item(c.tok.item_to_sid("i03"))),
    ("sid_to_item numpy codes", lambda c: c.tok.sid_to_item(np.array(c.tok.item_to_sid("i03")))),
    ("parse_items text", lambda c: c.tok.parse_items(c.tok.items_to_text(["i01", "i02"]))),
    ("add_items", _valid_add_items),
    ("tokenizer round trip", lambda c: SemanticIDTokenizer.from_pretrained(c.tok_dir).rqvae),
    ("rqvae round trip", lambda c: RQVAEModel.from_pretrained(c.rqvae_dir)),
    (
        "rqvae from_files",
        lambda c: RQVAEModel.from_files(c.rqvae_dir / "config.json", c.rqvae_dir / "model.safetensors"),
    ),
    ("assign_unique_sids", lambda c: hs.assign_unique_sids([[0, 1], [0, 1]], ["a", "b"], [2, 2])),
    ("leave_one_out_split", lambda c: hs.leave_one_out_split({"u": ["a", "b", "c"]})),
    ("build_cooccurrence_pairs", lambda c: hs.build_cooccurrence_pairs([["a", "b", "c"]], window=2)),
    ("recall numpy k", lambda c: hs.recall_at_k(["a", "b"], "b", np.int64(2))),
    ("ndcg (id, score) tuples", lambda c: hs.ndcg_at_k([("a", 0.5), ("b", 0.1)], "b", 2)),
    ("recall numpy ranking", lambda c: hs.recall_at_k(np.array(["a", "b"]), "b", 2)),
    ("assign numpy item ids", lambda c: hs.assign_unique_sids([[0, 1]], np.array(["a"]), [2, 2])),
    (
        "leave_one_out numpy max_history",
        lambda c: hs.leave_one_out_split({"u": ["a"] * 4}, max_history=np.int64(2)),
    ),
    ("leave_one_out int item ids", lambda c: hs.leave_one_out_split({"u": [1, 2, 3]})),
    (
        "cooccurrence numpy window",
        lambda c: hs.build_cooccurrence_pairs({"u": ["a", "b"]}, window=np.int64(2)),
    ),
    ("extend_model noise 0", lambda c: hs.extend_model(_base_lm(c), c.tok, noise_scale=0)),
    ("tokenizer from a str path", lambda c: SemanticIDTokenizer.from_pretrained(str(c.tok_dir))),
]
