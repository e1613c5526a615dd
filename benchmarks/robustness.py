"""Robustness to bad input: over a thousand wrong calls, damaged or hostile files and saves into folders the user
owns, each outcome classified.

Inputs:
- the table of `benchmarks/bad_input_cases.py` (which `tests/test_bad_input.py` also asserts);
- generated variants: wrong types, NaN/inf, negative and huge sizes, out-of-range codes for every public entry
  point; every file of a saved tokenizer and RQ-VAE directory truncated, bit-flipped, emptied, missing, rewritten
  with a wrong dtype or NaN weights, every top-level JSON field replaced by a wrong value, each with the save's
  manifest kept and deleted;
- the families of `benchmarks/robustness_cases.py` (issue 24): foreign files through every save kind and target
  form (`.`, nested, 250-character names, mounted volumes), a loaded tokenizer keeping its RQ-VAE, file modes under
  several umasks, hostile `tokenizer.json` added tokens (run in a forked child with a time and memory limit),
  diverged training, wrong `item_ids`, `recommend()` state / prompt length / tokenizer, silent coercions, titles
  that try to inject items, hand-edited `tokenizer_config.json`, `from_base` paths and command lines (subprocesses;
  not with `--quick`); and those of issue 35: hostile folders (links, planted staging folders and manifests) whose
  loads must change no file anywhere, saves that must never write or delete through a link, one owner per file
  name (`overwrite=True`), concurrent saves, loads bounded against FIFOs, `/dev/zero` and huge manifests, users'
  tables, recipe YAML, reproducible saves and `hf-semtok repair`.
A list of valid calls must keep working, and each must leave the right result (a save keeps every file it does not
own, writes umask modes and loads back; `recommend` leaves the model as it found it; a prompt holds the history).

Outcome of a bad input:
- clear error: a `ValueError`, `TypeError`, `FileNotFoundError` or `KeyError` (not a raw `JSONDecodeError`,
  `UnicodeDecodeError` or `SafetensorError`) whose message contains the fragment that identifies the problem
  (the argument, field or file name, or the table's fragment);
- unclear error: any other exception (`AttributeError`, `IndexError`, `RuntimeError`, `OSError`, a raw parser
  error...), or one of ours whose message does not name the problem;
- silent coercion: no error where one was due. No error and a right result (a damaged field nobody reads, a token
  that is not a SID token, training that stays finite) is counted apart as harmless; a bit flip inside tensor data
  is counted apart as undetectable when it loads (with the manifest kept, the load logs it);
- hang: an isolated call that did not return within its time limit;
- valid call that fails: a call of the valid list raised, hung, or left a wrong result.

"Kills during save" come from `benchmarks/kill_harness.py`, loaded from this script's directory: a forked save
killed at traced lines (and, without `--quick`, by `SIGKILL` after random delays) in a folder that also holds the
user's files; the directory must then load as the old or the new version with the user's files intact, and after a
complete save it must hold exactly a clean save's files (beside the user's) with no temporary leftovers.

Usage:
    python benchmarks/robustness.py            # writes benchmarks/results/robustness.{json,md}
    python benchmarks/robustness.py --quick    # a sample of each family, fewer kill points, no command lines
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import modeling_utils

import hf_semtok as hs
from hf_semtok import io_utils
from hf_semtok.generation import SIDLogitsProcessor, recommend
from hf_semtok.io_utils import write_json_atomic, write_text_atomic
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CLEAR_TYPES = (ValueError, TypeError, FileNotFoundError, KeyError)
RAW_TYPES = {"JSONDecodeError", "UnicodeDecodeError", "SafetensorError", "HeaderTooLarge", "UnpicklingError"}


def _import_file(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


BAD = _import_file("bad_input_cases", HERE / "bad_input_cases.py")
FAMILIES = _import_file("robustness_cases", HERE / "robustness_cases.py")


# --------------------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------------------
def classify_error(err: BaseException, fragment: str | tuple[str, ...]) -> str:
    """`"clear"` or `"unclear"` for an exception raised where an error was due (`fragment`: one string, or a
    tuple of which the message must contain one)."""
    if type(err).__name__ in RAW_TYPES or not isinstance(err, CLEAR_TYPES):
        return "unclear"
    fragments = (fragment,) if isinstance(fragment, str) else fragment
    return "clear" if any(f.lower() in str(err).lower() for f in fragments) else "unclear"


def run_bad(
    name: str, call: Callable[[], Any], fragment: str, same: Callable[[Any], bool] | None = None
) -> dict:
    """Run one bad input; `same(result)` says whether a load without error gave back the saved object."""
    try:
        result = call()
    except Exception as err:  # noqa: BLE001 - the point is to see every kind
        return {
            "input": name,
            "outcome": classify_error(err, fragment),
            "error": type(err).__name__,
            "message": str(err)[:240],
            "fragment": fragment,
        }
    outcome = "silent"
    if same is not None:
        try:
            outcome = "harmless" if same(result) else "silent"
        except Exception as err:  # noqa: BLE001 - a load that breaks on first use is unclear, not silent
            return {
                "input": name,
                "outcome": "unclear",
                "error": type(err).__name__,
                "message": str(err)[:240],
            }
    return {"input": name, "outcome": outcome, "fragment": fragment}


def run_probe(probe: Any) -> dict:
    """Run one `robustness_cases.Probe` (in a forked child with a time and memory limit if `probe.isolate`)."""
    rec = _run_isolated(probe) if probe.isolate else _run_probe_here(probe)
    rec["family"] = probe.family
    if probe.valid:
        rec["valid"] = True
    return rec


def _run_probe_here(probe: Any) -> dict:
    rec: dict[str, Any] = {"input": probe.name}
    try:
        result = probe.call()
    except Exception as err:  # noqa: BLE001 - the point is to see every kind
        rec.update(error=type(err).__name__, message=str(err)[:240])
        if probe.valid:
            rec["outcome"] = "crash"
            rec["trace"] = traceback.format_exc(limit=4)[-700:]
        else:
            rec["outcome"] = classify_error(err, probe.fragment)
            rec["fragment"] = probe.fragment
    else:
        problem: Any = None
        if probe.check is not None:
            try:
                problem = probe.check(result)
            except Exception as err:  # noqa: BLE001 - a result that breaks on first use
                problem = f"the result breaks on first use: {type(err).__name__}: {str(err)[:200]}"
        if isinstance(problem, dict):
            rec.update({k: v for k, v in problem.items() if k != "problem"})
            problem = problem.get("problem")
        if problem:
            rec["problem"] = str(problem)[:300]
        if probe.valid:
            rec["outcome"] = "fail" if problem else "ok"
        else:
            rec["outcome"] = "harmless" if probe.check is not None and not problem else "silent"
            rec["fragment"] = probe.fragment
    if probe.after is not None:
        state = probe.after()
        if isinstance(state, dict):  # like check: a problem and extra fields for the record (e.g. `lost`)
            rec.update({k: v for k, v in state.items() if k != "problem"})
            state = state.get("problem")
        if state:
            rec["state_problem"] = state
            rec["outcome"] = "fail" if probe.valid else "silent"
    return rec


def _run_isolated(probe: Any) -> dict:
    """Fork; the child runs the probe under an address-space limit (now + 3 GiB) and sends back its record. A
    child still running after `probe.timeout` seconds is killed: a hang."""
    import resource
    import select
    import signal

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(read_fd)
            vm = _vm_size()
            if vm:
                resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), resource.RLIM_INFINITY))
            rec = _run_probe_here(probe)
            with os.fdopen(write_fd, "w") as out:
                out.write(json.dumps(rec, default=str))
        except BaseException:  # noqa: BLE001 - never return into the parent's code
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks, deadline = [], time.monotonic() + probe.timeout
    with os.fdopen(read_fd, "rb") as inp:
        while True:
            left = deadline - time.monotonic()
            ready = select.select([inp], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return {"input": probe.name, "outcome": "hang", "timeout_s": probe.timeout}
            chunk = os.read(inp.fileno(), 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if chunks:
        return json.loads(b"".join(chunks).decode())
    died = f"the child died ({'signal ' + str(os.WTERMSIG(status)) if os.WIFSIGNALED(status) else status})"
    return {
        "input": probe.name,
        "outcome": "crash" if probe.valid else "unclear",
        "error": died,
        "message": died,
    }


def _vm_size() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------------------------------------------
# Generated variants
# --------------------------------------------------------------------------------------------------------------
WRONG_INTS = {"-1": -1, "2**40": 2**40, "1.5": 1.5, "'8'": "8", "None": None, "nan": math.nan, "inf": math.inf,
              "True": True, "[8]": [8]}  # fmt: skip
WRONG_FLOATS = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "'0.1'": "0.1",
    "None": None,
    "[0.1]": [0.1],
}


def recommend_variants(ctx: Any) -> list[tuple[str, Callable[[], Any], str]]:
    out = []
    for arg in ("k", "num_beams", "batch_size", "prefix_level", "max_history"):
        for label, value in WRONG_INTS.items():
            if value is None and arg in ("num_beams", "prefix_level", "max_history"):
                continue  # None is valid there
            if label == "2**40" and arg in ("batch_size", "max_history"):
                continue  # valid: one batch, the whole history
            kwargs = {"k": 2, "num_beams": 4, "progress": False, arg: value}
            out.append(
                (
                    f"recommend {arg}={label}",
                    lambda kw=kwargs: recommend(ctx.lm, ctx.tok, ctx.histories, **kw),
                    arg,
                )
            )
    histories = {"None": None, "'i00'": "i00", "[None]": [None], "[[None]]": [[None]], "[[1.5]]": [[1.5]],
                 "[[b'i00']]": [[b"i00"]], "[['nope']]": [["nope"]], "[[]]": [[]], "[['i00'], 3]": [["i00"], 3],
                 "{'u': 5}": {"u": 5}}  # fmt: skip
    for label, value in histories.items():
        out.append(
            (f"recommend histories={label}", lambda v=value: recommend(ctx.lm, ctx.tok, v, k=2, progress=False),
             "histor")
        )  # fmt: skip
    return out


def processor_variants() -> list[tuple[str, Callable[[], Any], str]]:
    base = {"sid_codes": [[0, 1], [1, 0]], "sid_token_ids": [[5, 6], [7, 8]], "sid_start_token_id": 9,
            "sid_end_token_id": 10, "eos_token_id": 2, "mode": "free"}  # fmt: skip
    codes = {"nan": [[0, math.nan]], "-1": [[0, -1]], "2**40": [[0, 2**40]], "1.5": [[0, 1.5]],
             "strings": [["a", "b"]], "3-D": [[[0, 1]]], "1-D": [0, 1], "None": None, "ragged": [[0, 1], [0]]}  # fmt: skip
    out = []
    for label, value in codes.items():
        out.append((f"processor sid_codes={label}", lambda v=value: SIDLogitsProcessor(**{**base, "sid_codes": v}),
                    "sid_codes"))  # fmt: skip
    for arg in ("prompt_length", "num_levels_to_generate"):
        for label, value in WRONG_INTS.items():
            if value is None or (label == "2**40" and arg == "prompt_length"):
                continue  # None: the default; a long prompt is not an error
            kwargs = {**base, "mode": "sid", "prompt_length": 3, arg: value}
            out.append((f"processor {arg}={label}", lambda kw=kwargs: SIDLogitsProcessor(**kw), arg))
    for label, value in {"1.5": 2.5, "'2'": "2", "-1": -1, "True": True, "[]": []}.items():
        out.append(
            (f"processor eos_token_id={label}", lambda v=value: SIDLogitsProcessor(**{**base, "eos_token_id": v}),
             "eos_token_id")
        )  # fmt: skip
    return out


CONFIG_INTS = {"latent_dim": 1, "kmeans_iters": 1, "reseed_interval": 1, "dead_code_threshold": 0,
               "autoencoder_warmup_steps": 0}  # fmt: skip
CONFIG_FLOATS = ("commitment_weight", "codebook_loss_weight", "contrastive_weight", "contrastive_temperature",
                 "progressive_masking_prob", "dropout")  # fmt: skip


def config_variants() -> list[tuple[str, Callable[[], Any], str]]:
    out = []
    for field in CONFIG_INTS:
        for label, value in WRONG_INTS.items():
            if field in (
                "dead_code_threshold",
                "autoencoder_warmup_steps",
                "kmeans_iters",
                "reseed_interval",
            ) and (label == "2**40"):
                continue  # large counts are legitimate there
            out.append(
                (f"RQVAEConfig {field}={label}", lambda f=field, v=value: RQVAEConfig(**{f: v}), field)
            )
    for field in CONFIG_FLOATS:
        for label, value in {**WRONG_FLOATS, "-1": -1.0}.items():
            out.append(
                (f"RQVAEConfig {field}={label}", lambda f=field, v=value: RQVAEConfig(**{f: v}), field)
            )
    for field in ("codebook_sizes", "hidden_sizes"):
        for label, value in WRONG_INTS.items():
            out.append(
                (
                    f"RQVAEConfig {field}=[{label}, 8]",
                    lambda f=field, v=value: RQVAEConfig(**{f: [v, 8]}),
                    field,
                )
            )
        for label, value in {"'256'": "256", "None": None, "8": 8, "{}": {}}.items():
            out.append(
                (f"RQVAEConfig {field}={label}", lambda f=field, v=value: RQVAEConfig(**{f: v}), field)
            )
    for label, value in WRONG_INTS.items():
        out.append(
            (f"RQVAEConfig modality_dims={{'text': {label}}}", lambda v=value: RQVAEConfig(modality_dims={"text": v}),
             "modality_dims")
        )  # fmt: skip
    for label, value in {"'true'": "true", "'false'": "false", "None": None, "2": 2, "[]": []}.items():
        for field in ("kmeans_init", "normalize_inputs"):
            out.append(
                (f"RQVAEConfig {field}={label}", lambda f=field, v=value: RQVAEConfig(**{f: v}), field)
            )
    return out


def embedding_variants(ctx: Any) -> list[tuple[str, Callable[[], Any], str]]:
    dim, n = BAD.DIM, BAD.N_ITEMS
    good = ctx.embeddings
    cases = {
        "all NaN": (np.full((n, dim), np.nan, np.float32), "nan"),
        "inf": (np.full((n, dim), np.inf, np.float32), "infinite"),
        "-inf": (np.full((n, dim), -np.inf, np.float32), "infinite"),
        "1e39 (float32 overflow)": (np.full((n, dim), 1e39), "infinite"),
        "partial NaN": (np.where(np.eye(n, dim) > 0, np.nan, good), "some (not all)"),
        "zeros": (np.zeros((n, dim), np.float32), "all-zero"),
        "ragged": ([[0.1] * dim, [0.2] * (dim - 1)], "ragged"),
        "strings": (np.array([["x"] * dim]), "floats"),
        "object": (np.array([[1.0] * dim, None], dtype=object), "ragged"),
        "None": (None, "embeddings"),
        "str": ("embeddings", "embeddings"),
        "1-D": (good[0], "2-D"),
        "3-D": (good[None], "2-D"),
        "wrong dim": (good[:, :-1], "dimension"),
        "ints": (np.ones((n, dim), np.int64), "floats"),
        "bools": (np.ones((n, dim), bool), "floats"),
        "dict wrong key": ({"image": good}, "modalit"),
        "dict extra key": ({"text": good, "image": good}, "modalit"),
    }
    out = []
    for label, (value, fragment) in cases.items():
        out.append((f"RQVAEModel.encode {label}", lambda v=value: ctx.rqvae.encode(v), fragment))
        train = BAD._train(embeddings=value)
        out.append((f"train_rqvae embeddings {label}", lambda t=train: t(ctx), fragment))
    for arg, values in {
        "epochs": {"0": 0, "-1": -1, "nan": math.nan, "inf": math.inf, "'3'": "3", "None": None},
        "max_steps": {"0": 0, "-5": -5, "1.5": 1.5, "'3'": "3", "True": True},
        "batch_size": {"0": 0, "-1": -1, "1.5": 1.5, "None": None},
        "learning_rate": {"0": 0.0, "-1": -1.0, "nan": math.nan, "'x'": "x"},
        "warmup_ratio": {"1": 1.0, "-0.1": -0.1, "nan": math.nan},
        "seed": {"-1": -1, "1.5": 1.5, "'1'": "1"},
    }.items():
        for label, value in values.items():
            kwargs = {"max_steps": -1 if arg == "epochs" else 2, arg: value}
            train = BAD._train(**kwargs)
            out.append((f"train_rqvae {arg}={label}", lambda t=train: t(ctx), arg))
    return out


def table_variants(ctx: Any) -> list[tuple[str, Callable[[], Any], str]]:
    out = []
    for label, value in WRONG_INTS.items():
        out.append((f"SIDTable codebook_sizes=[{label}, 2]", lambda v=value: hs.SIDTable(["a"], [[0, 1]], [v, 2]),
                    "codebook_sizes"))  # fmt: skip
        out.append((f"SIDTable codes=[[{label}, 1]]", lambda v=value: hs.SIDTable(["a"], [[v, 1]], [2, 2]),
                    "code"))  # fmt: skip
        out.append(
            (f"SIDTable num_semantic_levels={label}",
             lambda v=value: hs.SIDTable(["a"], [[0, 1]], [2, 2], num_semantic_levels=v if v is not None else 0),
             "num_semantic_levels")
        )  # fmt: skip
        out.append((f"assign_unique_sids codes=[[{label}, 1]]",
                    lambda v=value: hs.assign_unique_sids([[v, 1]], ["a"], [2, 2]), "code"))  # fmt: skip
        out.append((f"sid_to_item (0, {label})", lambda v=value: ctx.tok.sid_to_item((0, v)), "sid"))
        out.append((f"tok.add_items codes=[[{label}, 1]]",
                    lambda v=value: ctx.tok.add_items(["new"], codes=[[v, 1]]), "code"))  # fmt: skip
    for label, value in {"None": None, "3": 3, "b'i00'": b"i00", "['i00']": ["i00"], "1.5": 1.5}.items():
        out.append((f"item_to_sid {label}", lambda v=value: ctx.tok.item_to_sid(v), "item"))
    for label, value in {"3-D": np.zeros((2, 2, 2), int), "bytes": b"x", "floats": [1.5, 2.5], "None": None,
                         "dict": {"a": 1}, "nested str": [["a"]], "NaN ids": np.array([np.nan])}.items():  # fmt: skip
        out.append((f"parse_items {label}", lambda v=value: ctx.tok.parse_items(v), "parse_items"))
    for label, value in {
        "2**40": [2**40],
        "-1": [-1],
        "0": [0],
        "1.5": [1.5],
        "'3'": ["3"],
        "None": None,
    }.items():
        out.append(
            (f"from_base codebook_sizes={label}",
             lambda v=value: SemanticIDTokenizer.from_base(ctx.base, sid_table={"a": (0,)}, codebook_sizes=v),
             "codebook_sizes")
        )  # fmt: skip
    for label, value in {"0": 0, "-1": -1, "1.5": 1.5, "'3'": "3", "True": True, "None": None}.items():
        out.append((f"recall_at_k k={label}", lambda v=value: hs.recall_at_k(["a"], "a", v), "k must"))
        out.append((f"ndcg_at_k k={label}", lambda v=value: hs.ndcg_at_k(["a"], "a", v), "k must"))
        out.append(
            (f"build_cooccurrence_pairs window={label}",
             lambda v=value: hs.build_cooccurrence_pairs([["a", "b"]], window=v), "window")
        )  # fmt: skip
    return out


def file_variants(
    ctx: Any, quick: bool = False
) -> list[tuple[str, Callable[[], Any], str, Callable[[Any], bool], bool]]:
    """(name, call, fragment, same, undetectable-if-silent) for every file of the saved directories."""
    intact_tok = SemanticIDTokenizer.from_pretrained(ctx.tok_dir)
    intact_rq = RQVAEModel.from_pretrained(ctx.rqvae_dir)
    probe = "a small catalogue of things to buy " + intact_tok.items_to_text(["i01", "i02"])

    def same_tok(loaded: Any) -> bool:
        tok, rq = loaded
        if (
            tok.sid_table_dict() != intact_tok.sid_table_dict()
            or list(tok.codebook_sizes) != intact_tok.codebook_sizes
        ):
            return False
        if tok(probe)["input_ids"] != intact_tok(probe)["input_ids"] or len(tok) != len(intact_tok):
            return False
        if tok.num_semantic_levels != intact_tok.num_semantic_levels:
            return False
        if any(_changed(tok, intact_tok, a) for a in SAME_TOKENIZER_ATTRIBUTES):
            return False  # e.g. a special token or the chat template lost
        return rq is not None and _same_model(rq, intact_rq)

    def load_tok(path: Path) -> Any:
        tok = SemanticIDTokenizer.from_pretrained(path)
        return tok, tok.rqvae if tok.has_rqvae else None

    out = []
    for source, loader, same in (
        (ctx.tok_dir, load_tok, same_tok),
        (ctx.rqvae_dir, RQVAEModel.from_pretrained, lambda m: _same_model(m, intact_rq)),
    ):
        for file in sorted(p.name for p in source.iterdir()):
            if file.endswith(".py"):
                continue  # remote code, read only by AutoTokenizer with trust_remote_code=True
            damages: dict[str, tuple[Callable[[Path], None], bool]] = {
                "truncated": (BAD.DAMAGE["truncated"], False),
                "bit-flipped header": (BAD.DAMAGE["bit-flipped"], False),
                "bit-flipped middle": (_flip_middle, True),
                "missing": (BAD.DAMAGE["missing"], False),
                "empty": (BAD.DAMAGE["empty"], False),
                "not UTF-8": (_latin1, False),
            }
            if file.endswith(".safetensors"):
                damages["wrong dtype"] = (BAD.wrong_dtype, False)
                damages["NaN weights"] = (BAD.nan_weights, False)
            if file.endswith(".json"):
                data = json.loads((source / file).read_text(encoding="utf-8"))
                for key in data if isinstance(data, dict) else []:
                    for label, value in {
                        "None": None,
                        "'x'": "x",
                        "-1": -1,
                        "1.5": 1.5,
                        "[]": [],
                        "{}": {},
                    }.items():
                        if _json_kind(value) == _json_kind(data[key]) and not (
                            label == "-1" and _is_size(data[key])
                        ):
                            continue  # a value of the right type is a different setting, not damage
                        damages[f"{key}={label}"] = (BAD.edit_json(file, **{key: value}), False)
            for label, (damage, undetectable) in damages.items():
                # With the save's manifest, any change to a file it names must be refused, naming the file; with
                # the manifest deleted (as that error advises, or a folder written by another program) the loader's
                # own checks must catch the damage.
                for manifest in (True, False):
                    if not manifest and (file.startswith(MANIFEST_PREFIX) or not _has_manifest(source)):
                        continue
                    if quick and manifest and _has_manifest(source) and label not in QUICK_MANIFEST_DAMAGE:
                        continue  # --quick: the manifest's own check on two damages per file

                    def call(s=source, f=file, d=damage, load=loader, m=manifest) -> Any:
                        return load(BAD.damaged_copy(ctx, s, f, d if m else _without_manifest(d)))

                    fragment = (
                        (file, _fragment(file, label))
                        if manifest and _has_manifest(source)
                        else _fragment(file, label)
                    )
                    suffix = "" if manifest or not _has_manifest(source) else " (manifest deleted)"
                    out.append((f"{source.name}/{file} {label}{suffix}", call, fragment, same, undetectable))
    return out


MANIFEST_PREFIX = ".hf_semtok_manifest"
QUICK_MANIFEST_DAMAGE = ("truncated", "bit-flipped middle")


def _has_manifest(folder: Path) -> bool:
    return any(p.name.startswith(MANIFEST_PREFIX) for p in folder.iterdir())


def _without_manifest(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        for p in path.parent.iterdir():
            if p.name.startswith(MANIFEST_PREFIX):
                p.unlink()
        damage(path)

    return apply


#: Settings a damaged tokenizer folder must load unchanged for the damage to count as harmless: the ones the
#: library depends on (EOS ends generation, the pad token left-pads batches). A `null` special token or
#: `model_max_length` is the transformers way to unset it, and a tokenizer whose base has no EOS or pad token is
#: saved that way, so an EOS / pad token that loads as None (unset, as the file says) is honoured, not damage.
SAME_TOKENIZER_ATTRIBUTES = ("eos_token_id", "pad_token_id", "chat_template", "padding_side", "truncation_side",
                             "sid_start_token_id", "sid_end_token_id", "sid_layout")  # fmt: skip


def _changed(tok: Any, intact: Any, attribute: str) -> bool:
    """Whether `attribute` differs from the intact tokenizer's (an EOS / pad token explicitly unset does not)."""
    value = getattr(tok, attribute)
    if attribute in ("eos_token_id", "pad_token_id") and value is None:
        return False
    return value != getattr(intact, attribute)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number" if not isinstance(value, int) else "int"
    return type(value).__name__


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _fragment(file: str, label: str) -> str:
    """A damaged file's error must name the file, or (for a bad field) the field."""
    return label.split("=")[0] if "=" in label else file


def _same_model(a: RQVAEModel, b: RQVAEModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    if set(sa) != set(sb) or any(not torch.equal(sa[k], sb[k]) for k in sa):
        return False
    skip = {"transformers_version", "_name_or_path", "name_or_path", "architectures", "dtype", "torch_dtype"}
    da = {k: v for k, v in a.config.to_dict().items() if k not in skip}
    db = {k: v for k, v in b.config.to_dict().items() if k not in skip}
    return da == db


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    if data:
        data[len(data) * 3 // 4] ^= 0x01
    path.write_bytes(bytes(data))


def _latin1(path: Path) -> None:
    path.write_bytes(path.read_bytes() + "é".encode("latin-1"))


# --------------------------------------------------------------------------------------------------------------
# Kills during save
# --------------------------------------------------------------------------------------------------------------
def kills_during_save(ctx: Any, n_points: int, random_kills: int) -> dict[str, Any]:
    path = HERE / "kill_harness.py"
    harness = _import_file("kill_harness", path)
    out: dict[str, Any] = {}
    work = ctx.fresh_dir()
    old_tok = SemanticIDTokenizer.from_pretrained(ctx.tok_dir)
    new_tok = SemanticIDTokenizer.from_pretrained(ctx.tok_dir)
    new_tok.add_items(["killed-save-item"], codes=[[2, 3]])
    old_rq = RQVAEModel.from_pretrained(ctx.rqvae_dir)
    new_rq = RQVAEModel.from_pretrained(ctx.rqvae_dir)
    with torch.no_grad():
        new_rq.quantizer.codebooks[0].add_(1.0)
    targets = {
        "tokenizer save_pretrained": (
            work / "tok",
            lambda: new_tok.save_pretrained(work / "tok"),
            lambda: old_tok.save_pretrained(work / "tok"),
            lambda: _label(
                work / "tok",
                lambda: SemanticIDTokenizer.from_pretrained(work / "tok").sid_table_dict(),
                old_tok.sid_table_dict(),
                new_tok.sid_table_dict(),
            ),
        ),  # fmt: skip
        "RQ-VAE save_pretrained": (
            work / "rq",
            lambda: new_rq.save_pretrained(work / "rq"),
            lambda: old_rq.save_pretrained(work / "rq"),
            lambda: _label(
                work / "rq",
                lambda: RQVAEModel.from_pretrained(work / "rq").quantizer.codebooks[0].tolist(),
                old_rq.quantizer.codebooks[0].tolist(),
                new_rq.quantizer.codebooks[0].tolist(),
            ),
        ),  # fmt: skip
    }
    trace = {
        "tokenizer save_pretrained": None,
        "RQ-VAE save_pretrained": [
            modeling_utils.__file__,
            io_utils.__file__,
            *harness.FILE_SET_SOURCES,
            shutil.__file__,
        ],
    }
    for name, (target, save, reset, check) in targets.items():
        reference = ctx.fresh_dir() / target.name
        save_to = {"tokenizer save_pretrained": new_tok, "RQ-VAE save_pretrained": new_rq}[name]
        save_to.save_pretrained(reference)
        # The user's own files sit in the folder through every kill: none may be lost or changed.
        planted = FAMILIES.plant_foreign(target, ctx.fresh_dir())
        try:
            summary = harness.kill_during_save(
                save=save,
                check=lambda c=check, t=target, p=planted: _check_foreign(t, p) or c(),
                reset=reset,
                check_clean=lambda t=target, r=reference, p=planted: _no_stale_files(t, r, p),
                n_points=n_points,
                random_kills=random_kills,
                trace_files=trace[name],
            )
            kills = summary["outcomes"].get("killed", 0) + summary["outcomes"].get("sigkill", 0)
            out[name] = {"kills": kills, "broken": 0, "stale_files": 0, **summary}
        except AssertionError as err:
            out[name] = {"broken": 1, "first_broken_state": str(err)[:300]}
        except Exception as err:  # noqa: BLE001 - report, do not stop the benchmark
            out[name] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
    return out


def _check_foreign(target: Path, planted: dict[str, Any]) -> None:
    lost = FAMILIES.lost_files(planted, target)
    if lost:
        raise AssertionError(f"foreign files lost in {target.name}: {lost}")


def _no_stale_files(target: Path, reference: Path, planted: dict[str, Any] | None = None) -> None:
    """After a kill and then a complete save, `target` holds exactly the files of a clean save (`reference`) beside
    the user's own files (`planted`, all intact), and its parent holds no temporary leftovers."""
    foreign = set()
    io_utils.recover_directory(target)  # what killed saves left is the explicit repair's to remove
    if planted is not None:
        _check_foreign(target, planted)
        foreign = {rel.split("/")[0].split(" ")[0] for rel in planted}
    found = sorted(p.name for p in target.iterdir() if p.name not in foreign)
    expected = sorted(p.name for p in reference.iterdir())
    if found != expected:
        raise AssertionError(f"stale or missing files in {target.name}: {sorted(set(found) ^ set(expected))}")
    leftovers = [p.name for p in target.parent.iterdir() if p.name not in ("tok", "rq")]
    if leftovers:
        raise AssertionError(f"temporary leftovers beside {target.name}: {leftovers}")


def _label(folder: Path, load: Callable[[], Any], old: Any, new: Any) -> str:
    """ "old" or "new": what `folder` loads as. A kill after the commit point makes the load refuse (changing
    nothing) and name the repair; the repair must then give the new version."""
    before = harness_tree(folder)
    try:
        return _label_of(load(), old, new)
    except Exception as err:  # noqa: BLE001 - an unloadable directory is a broken state
        if not isinstance(err, io_utils.FileSetError) or "interrupted after its commit point" not in str(err):
            raise AssertionError(
                f"the directory does not load: {type(err).__name__}: {str(err)[:200]}"
            ) from err
        if harness_tree(folder) != before:
            raise AssertionError("a refused load changed the folder") from err
    io_utils.recover_directory(folder)
    if (label := _label_of_checked(load, old, new)) != "new":
        raise AssertionError("the repair of a committed save did not give the new version")
    return label


def harness_tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _label_of(found: Any, old: Any, new: Any) -> str:
    if found == old:
        return "old"
    if found == new:
        return "new"
    raise AssertionError("the directory holds neither the old nor the new version")


def _label_of_checked(load: Callable[[], Any], old: Any, new: Any) -> str:
    try:
        found = load()
    except Exception as err:  # noqa: BLE001 - an unloadable directory is a broken state
        raise AssertionError(f"the directory does not load: {type(err).__name__}: {str(err)[:200]}") from err
    return _label_of(found, old, new)


# --------------------------------------------------------------------------------------------------------------
TARGET = {
    "inputs_tried": (">=", 500),
    "silent_coercions": ("<=", 0),
    "hangs": ("<=", 0),
    "valid_calls_failing": ("<=", 0),
    "unclear_errors": ("<=", 5),
    "foreign_files_lost": ("<=", 0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer kill points and variants, no command lines"
    )
    parser.add_argument("--no_kills", action="store_true", help="skip the kills-during-save section")
    parser.add_argument("--commands", action=argparse.BooleanOptionalAction, default=None,
                        help="run the command-line cases as subprocesses (default: not with --quick)")  # fmt: skip
    parser.add_argument("--output_dir", default=str(RESULTS), help="where robustness.{json,md} go")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the isolated cases fork
    import logging

    logging.disable(logging.WARNING)  # the damaged loads log load reports; the outcomes are what counts
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    records: list[dict[str, Any]] = []
    valid: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="robustness-") as tmp:
        ctx = BAD.build_context(Path(tmp))
        ctx.fresh_dir = lambda: Path(
            tempfile.mkdtemp(prefix="case", dir=tmp)
        )  # unique, also in forked children
        for case in BAD.CASES:
            rec = run_bad(f"[table] {case.name}", lambda c=case: c.call(ctx), case.fragment)
            if rec["outcome"] == "clear" and not _expected_type(rec["error"], case.error):
                rec["outcome"] = "unclear"  # one of ours, but not the type the table documents
            records.append({**rec, "family": "table"})
        generated = [*recommend_variants(ctx), *processor_variants(), *config_variants(),
                     *embedding_variants(ctx), *table_variants(ctx)]  # fmt: skip
        for name, call, fragment in generated:
            records.append({**run_bad(name, call, fragment), "family": "wrong arguments"})
        for name, call, fragment, same, undetectable in file_variants(ctx, args.quick):
            rec = run_bad(name, call, fragment, same)
            if rec["outcome"] == "silent" and undetectable:
                rec["outcome"] = "undetectable"
            records.append({**rec, "family": "damaged files"})
        extras = FAMILIES.Extras(ctx, BAD)
        seconds["table, arguments, files"] = round(time.perf_counter() - start, 1)
        for family in FAMILIES.FAMILIES:
            family_start = time.perf_counter()
            try:
                probes = family(ctx, BAD, extras, args.quick)
            except Exception as err:  # noqa: BLE001 - a family that cannot be built is reported, not fatal
                valid.append({"input": f"building {family.__name__}", "outcome": "crash", "family": family.__name__,
                              "error": type(err).__name__, "message": str(err)[:240],
                              "trace": traceback.format_exc(limit=4)[-700:]})  # fmt: skip
                continue
            for probe in probes:
                rec = run_probe(probe)
                (valid if probe.valid else records).append(rec)
            seconds[family.__name__] = round(time.perf_counter() - family_start, 1)
        if args.commands if args.commands is not None else not args.quick:
            folder = Path(tempfile.mkdtemp(prefix="commands", dir=tmp))
            for cmd in FAMILIES.command_cases(folder):
                records.append({**FAMILIES.run_command(cmd, folder, timeout=300), "family": "command lines"})
        for name, call in BAD.VALID_CALLS:
            try:
                call(ctx)
                valid.append({"input": name, "outcome": "ok", "family": "table"})
            except Exception as err:  # noqa: BLE001
                valid.append({"input": name, "outcome": "crash", "error": type(err).__name__, "family": "table",
                              "message": str(err)[:240], "trace": traceback.format_exc(limit=3)[-600:]})  # fmt: skip
        kills = (
            {"status": "skipped (--no_kills)"}
            if args.no_kills
            else kills_during_save(ctx, 8 if args.quick else 25, 0 if args.quick else 6)
        )
    counts = Counter(r["outcome"] for r in records)
    failing = [v for v in valid if v["outcome"] != "ok"]
    figures = {
        "inputs_tried": len(records),
        "clear_errors": counts["clear"],
        "unclear_errors": counts["unclear"],
        "silent_coercions": counts["silent"],
        "hangs": counts["hang"] + sum(v["outcome"] == "hang" for v in valid),
        "harmless_no_error": counts["harmless"],
        "undetectable_corruption": counts["undetectable"],
        "valid_calls": len(valid),
        "valid_calls_failing": len(failing),
        "foreign_files_lost": sum(int(r.get("lost", 0)) for r in [*records, *valid])
        + sum(
            "foreign files lost" in str(info.get("first_broken_state", ""))
            for info in kills.values()
            if isinstance(info, dict)
        ),  # fmt: skip
        "saves_with_wrong_file_modes": sum(bool(v.get("wrong_modes")) for v in valid),
    }
    figures["crashes_on_valid_calls"] = figures["valid_calls_failing"]  # the name earlier results used
    target = {
        f"{key} {op} {bound}": (figures[key] >= bound if op == ">=" else figures[key] <= bound)
        for key, (op, bound) in TARGET.items()
    }
    families: dict[str, Counter] = {}
    for rec in [*records, *valid]:
        families.setdefault(rec.get("family", ""), Counter())[rec["outcome"]] += 1
    result = {
        "figures": figures,
        "target": target,
        "meets_target": all(target.values()),
        "quick": args.quick,
        "command": "python benchmarks/robustness.py" + (" --quick" if args.quick else ""),
        "rule": "clear = ValueError/TypeError/FileNotFoundError/KeyError (not a raw JSONDecodeError, "
        "UnicodeDecodeError or SafetensorError) whose message contains the identifying fragment",
        "families": {name: dict(c) for name, c in families.items()},
        "kills_during_save": kills,
        "seconds": round(time.perf_counter() - start, 1),
        "seconds_by_part": seconds,
        "unclear": [r for r in records if r["outcome"] == "unclear"],
        "silent": [r for r in records if r["outcome"] == "silent"],
        "hangs": [r for r in [*records, *valid] if r["outcome"] == "hang"],
        "undetectable": [r for r in records if r["outcome"] == "undetectable"],
        "crashes": failing,
        "all": records,
        "valid": valid,
    }
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result, output_dir / "robustness.json", indent=1)
    write_text_atomic(_markdown(result), output_dir / "robustness.md")
    print(json.dumps({**figures, "meets_target": result["meets_target"],
                      "kills_during_save": _kill_summary(kills)}, indent=1))  # fmt: skip
    return 0


def _expected_type(name: str, expected: Any) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    return any(t.__name__ == name or name in {c.__name__ for c in _subclasses(t)} for t in types)


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _kill_summary(kills: dict[str, Any]) -> Any:
    if "status" in kills:
        return kills["status"]
    return {name: {k: v for k, v in info.items() if k in ("kills", "broken", "states", "outcomes", "error")}
            for name, info in kills.items()}  # fmt: skip


def _markdown(result: dict[str, Any]) -> str:
    f = result["figures"]
    lines = [
        "# Robustness to bad input",
        "",
        f"Command: `{result['command']}`. Rule: {result['rule']}. A hang is a call that did not return within its "
        "time limit (isolated cases run in a forked child); a valid call fails when it raises, or when its result "
        "is wrong (a save that loses a file it does not own, writes files other users cannot read, or leaves the "
        "model in another state).",
        "",
        "| inputs tried | clear errors | unclear errors | silent coercions | hangs | harmless (no error, right "
        "result) | undetectable corruption | valid calls | valid calls that fail | foreign files lost |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {f['inputs_tried']} | {f['clear_errors']} | {f['unclear_errors']} | {f['silent_coercions']} | "
        f"{f['hangs']} | {f['harmless_no_error']} | {f['undetectable_corruption']} | {f['valid_calls']} | "
        f"{f['valid_calls_failing']} | {f['foreign_files_lost']} |",
        "",
        "Target (issue 24): "
        + ", ".join(f"{k}: {'met' if ok else 'NOT met'}" for k, ok in result["target"].items())
        + ".",
        "",
        "## By family",
        "",
        "| family | outcomes |",
        "|---|---|",
    ]
    for name, outcomes in result["families"].items():
        lines.append(f"| {name} | {', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))} |")
    lines += ["", "## Kills during save", ""]
    kills = result["kills_during_save"]
    if "status" in kills:
        lines.append(kills["status"])
    else:
        lines += [
            "The folder also holds the user's own files. Each kill is followed by a load (it must give the old or "
            "the new version, the user's files intact) and by a complete save (the directory must then hold "
            "exactly a clean save's files beside the user's, with no temporary leftovers).",
            "",
            "| save | kills | broken states | states found | outcomes |",
            "|---|---:|---:|---|---|",
        ]
        for name, info in kills.items():
            if "error" in info:
                lines.append(f"| {name} | - | - | harness error: {info['error']} | |")
            else:
                lines.append(
                    f"| {name} | {info.get('kills', '?')} | {info['broken']} | {info.get('states', '')} | "
                    f"{info.get('outcomes', info.get('first_broken_state', ''))} |"
                )
    for title, key in (("Unclear errors", "unclear"), ("Silent coercions", "silent"), ("Hangs", "hangs"),
                       ("Valid calls that fail", "crashes")):  # fmt: skip
        lines += ["", f"## {title} ({len(result[key])})", ""]
        for rec in result[key]:
            detail = (
                rec.get("problem")
                or rec.get("state_problem")
                or f"{rec.get('error', '')}: {rec.get('message', '')}".strip(": ")
                or ("no error; the loaded object differs from the saved one" if key == "silent" else "")
            )
            detail = detail.replace("|", "\\|").replace("\n", " ")
            lines.append(f"- `{rec['input']}` {detail[:240]}")
    lines += [
        "",
        f"Undetectable corruption: {len(result['undetectable'])} (a bit flipped inside the float data of a "
        "safetensors file still loads as valid numbers; where the save's manifest is kept, the load logs that "
        "the file differs from it): " + ", ".join(f"`{r['input']}`" for r in result["undetectable"]) + ".",
        "",
    ]
    lines.append(f"Run time: {result['seconds']} s.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
