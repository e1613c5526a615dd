"""Industrial-size catalogues: 1M and 10M synthetic items on one machine, the Ray path on 1M.

Synthetic catalogue: random semantic codes over [256, 256, 256] made unique with the TIGER dedup level, ids
`item-<i>`; embeddings a 384-d float16 memmap under `--cache_dir` (never in the repository). Each measurement runs
in a fresh subprocess, so its RSS is its own: memory is reported above the process's RSS after its imports.

Reports, per size: `assign_unique_sids` time; tokenizer `save_pretrained` size on disk; `from_pretrained` time and
RSS (targets at 10M: <= 10 s, <= 1.5 GB); `SIDLogitsProcessor.from_tokenizer` time and memory (<= 10 s, <= 1 GB) and
the constrained / unconstrained step-time ratio of beam search on a tiny LM, beside the same ratio for a processor
that replays the recorded constrained scores at almost no cost (the part of the ratio that any constraint costs
beam search here, not the index lookup: `replayed_step_ratio`, `processor_over_replay_ratio`); RQ-VAE training plus
streaming encoding from the memmap (peak RSS <= 4 GB, items/s); the Ray Data path on `--ray_items` items with
2 workers (equal to the single-process SIDs, items/s); and the `table` format: `load_table_catalogue` on a CSV of
`--table_interactions` interactions (user_id, item_id, timestamp) and `--table_items` items (item_id, title,
categories), written into a temporary folder first (time, peak RSS above the imports, RSS the catalogue keeps).

Usage:
    python benchmarks/scale.py --quick                       # 100k items (a test runs it)
    python benchmarks/scale.py --only_table                  # the table row alone: 10M interactions, 1M items
    nice python benchmarks/scale.py --sizes 1000000 10000000 --cache_dir ~/.cache/hf_semtok_scale
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SIZES = [256, 256, 256]
DIM = 384
#: Rounds of the constrained / replayed / unconstrained generate timing, and generate() calls per variant per
#: round (one ~40 ms generate jitters by several per cent; a sample of 3 and 61 rounds narrow the median ratio).
ROUNDS = 61
REPEATS = 3


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux `VmHWM`) to its current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


# ---------------------------------------------------------------------------------------------- parts (subprocess)
def part_assign(n: int, cache: Path) -> dict:
    import numpy as np

    from hf_semtok import SemanticIDTokenizer
    from hf_semtok.sids import assign_unique_sids
    from hf_semtok.small_models import train_base_tokenizer

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(n, 3), dtype=np.int64)
    ids = [f"item-{i}" for i in range(n)]
    base_rss = _rss_mb()  # the inputs (codes, a list of n id strings) are the caller's; measured above them
    start = time.perf_counter()
    table = assign_unique_sids(codes, ids, SIZES)
    assign_s = time.perf_counter() - start
    del ids
    base = train_base_tokenizer(["a user bought these items next", "item title text"], vocab_size=300)
    tok = SemanticIDTokenizer.from_base(base, sid_table=table)
    out = cache / f"tokenizer_{n}"
    start = time.perf_counter()
    tok.save_pretrained(out)
    save_s = time.perf_counter() - start
    files = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    return {
        "assign_unique_sids_s": round(assign_s, 2),
        "assign_peak_rss_above_inputs_mb": round(_peak_mb() - base_rss, 1),
        "extra_level_size": table.codebook_sizes[-1],
        "save_pretrained_s": round(save_s, 2),
        "size_on_disk_mb": round(sum(files.values()) / 2**20, 1),
        "table_files_mb": {k: round(v / 2**20, 2) for k, v in files.items() if k.startswith("sid_")},
    }


def part_load(n: int, cache: Path, rounds: int = ROUNDS) -> dict:
    import numpy as np
    import torch
    from transformers import LogitsProcessor

    from hf_semtok import SemanticIDTokenizer
    from hf_semtok.logits_process import SIDLogitsProcessor
    from hf_semtok.small_models import build_causal_lm

    torch.set_num_threads(1)
    base_rss = _rss_mb()
    start = time.perf_counter()
    tok = SemanticIDTokenizer.from_pretrained(cache / f"tokenizer_{n}")
    load_s = time.perf_counter() - start
    load_rss = _rss_mb() - base_rss
    rng = np.random.default_rng(1)
    some = [f"item-{i}" for i in rng.integers(0, n, 1000)]
    start = time.perf_counter()
    text = tok.items_to_text(some)
    items_to_text_ms = (time.perf_counter() - start) * 1000
    assert tok.parse_items(text) == some

    before = _rss_mb()
    reset = _reset_peak()  # the build's own peak, not the load's transient one
    start = time.perf_counter()
    proc = SIDLogitsProcessor.from_tokenizer(tok, prompt_length=8)
    build_s = time.perf_counter() - start
    build_peak = _hwm_mb() - before if reset else _peak_mb() - base_rss - load_rss
    kept_mb = proc.nbytes / 2**20

    model = build_causal_lm(
        len(tok), hidden_size=128, num_layers=2, eos_token_id=tok.eos_token_id or 0
    ).eval()
    prompt = torch.randint(0, 200, (1, 8))
    kwargs = {
        "max_new_tokens": tok.num_levels + 2,
        "num_beams": 20,
        "num_return_sequences": 20,
        "do_sample": False,
    }
    kwargs["pad_token_id"] = 0

    def timed(**extra) -> float:
        """Seconds per generate(), over REPEATS back-to-back calls (one sample of the round)."""
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(REPEATS):
                model.generate(prompt, attention_mask=torch.ones_like(prompt), **kwargs, **extra)
        return (time.perf_counter() - start) / REPEATS

    recorded: dict[int, torch.Tensor] = {}

    class Record(LogitsProcessor):
        def __call__(self, input_ids, scores):
            recorded[input_ids.shape[1]] = out = proc(input_ids, scores)
            return out

    class Replay(LogitsProcessor):
        """The constrained scores of this (deterministic) generate, recorded once: the same beams, no lookup."""

        def __call__(self, input_ids, scores):
            return recorded[input_ids.shape[1]].clone()

    timed(logits_processor=[Record()])  # warm-up: the processor copies its index tensors once
    timed(), timed(logits_processor=[proc]), timed(logits_processor=[Replay()])
    # Round-robin, as benchmarks/generation_speed.py: load hits every variant alike; a ratio is the median of the
    # per-round ratios, the times are medians.
    samples = np.array(
        [(timed(), timed(logits_processor=[proc]), timed(logits_processor=[Replay()])) for _ in range(rounds)]
    )
    free, constrained, replayed = (float(x) for x in np.median(samples, axis=0))
    ratio = float(np.median(samples[:, 1] / samples[:, 0]))
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), logits_processor=[proc], **kwargs)
    valid = sum(1 for row in tok.parse_items(out[:, 8:].tolist()) if row) / out.shape[0]
    return {
        "from_pretrained_s": round(load_s, 2),
        "from_pretrained_rss_above_imports_mb": round(load_rss, 1),
        "items_to_text_1000_ms": round(items_to_text_ms, 1),
        "processor_build_s": round(build_s, 2),
        "processor_build_peak_mb": round(max(build_peak, _rss_mb() - before), 1),
        "processor_kept_mb": round(kept_mb, 1),
        "processor_prefixes": proc.num_prefixes,
        "beam20_generate_ms_unconstrained": round(free * 1000, 1),
        "beam20_generate_ms_constrained": round(constrained * 1000, 1),
        "constrained_step_ratio": round(ratio, 3),
        "beam20_generate_ms_replayed": round(replayed * 1000, 1),
        "replayed_step_ratio": round(float(np.median(samples[:, 2] / samples[:, 0])), 3),
        "processor_over_replay_ratio": round(float(np.median(samples[:, 1] / samples[:, 2])), 3),
        "step_ratio_rounds": rounds,
        "fraction_valid_sids": valid,
    }


def _embeddings(n: int, cache: Path):
    import numpy as np

    path = cache / f"emb_{n}x{DIM}_f16.npy"
    if not path.exists():
        rng = np.random.default_rng(0)
        centers = rng.normal(size=(512, DIM)).astype(np.float32)
        tmp = path.with_suffix(".tmp.npy")
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, DIM))
        for start in range(0, n, 200_000):
            stop = min(n, start + 200_000)
            block = centers[rng.integers(0, 512, stop - start)]
            mm[start:stop] = block + 0.3 * rng.standard_normal((stop - start, DIM), dtype=np.float32)
        mm.flush()
        del mm
        os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def part_rqvae(n: int, cache: Path, steps: int) -> dict:
    import torch

    from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
    from hf_semtok.rqvae.training import train_rqvae

    torch.set_num_threads(2)
    emb = _embeddings(n, cache)
    base_rss = _rss_mb()
    config = RQVAEConfig(modality_dims=DIM, hidden_sizes=[256, 128], latent_dim=32, codebook_sizes=SIZES)
    phase_peaks = {}  # VmHWM reset before each phase: which phase holds the peak
    reset = _reset_peak()
    start = time.perf_counter()
    result = train_rqvae(
        emb, config, max_steps=steps, batch_size=4096, kmeans_samples=20_000, progress=False, report=False
    )
    total_s = time.perf_counter() - start
    if reset:
        phase_peaks["train_encode_assign_peak_rss_above_imports_mb"] = round(_hwm_mb() - base_rss, 1)
    result.model.save_pretrained(cache / f"rqvae_{n}")
    reset = _reset_peak()
    start = time.perf_counter()
    codes = result.model.encode_batches(emb, progress=False)
    encode_s = time.perf_counter() - start
    if reset:
        phase_peaks["encode_again_peak_rss_above_imports_mb"] = round(_hwm_mb() - base_rss, 1)
    return {
        **phase_peaks,
        "train_steps": steps,
        "train_encode_assign_s": round(total_s, 1),
        "encode_items_per_s": round(n / encode_s),
        # the whole part's peak: the largest phase peak where VmHWM was reset (that also resets ru_maxrss)
        "peak_rss_above_imports_mb": max(phase_peaks.values(), default=round(_peak_mb() - base_rss, 1)),
        "codes_mb": round(codes.nbytes / 2**20, 1),
    }


def part_ray(n: int, cache: Path, model_n: int) -> dict:
    import numpy as np
    import ray

    from hf_semtok.distributed import sids_on_ray, write_catalogue_parquet
    from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
    from hf_semtok.sids import assign_unique_sids

    emb = _embeddings(n, cache)
    ids = [f"item-{i}" for i in range(n)]
    catalogue = cache / f"catalogue_{n}"
    if not catalogue.exists():
        write_catalogue_parquet(ids, emb, str(catalogue) + ".tmp", rows_per_file=100_000)
        os.replace(str(catalogue) + ".tmp", catalogue)
    model_dir = cache / f"rqvae_{model_n}"
    model = RQVAEModel.from_pretrained(model_dir)
    start = time.perf_counter()
    single = assign_unique_sids(model.encode_batches(emb, progress=False), ids, model.config.codebook_sizes)
    single_s = time.perf_counter() - start
    out = Path(tempfile.mkdtemp(dir=cache))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        table = sids_on_ray(catalogue, model_dir, out, num_workers=2, batch_size=16384, cpus_per_worker=0.5)
        ray_s = time.perf_counter() - start
    finally:
        ray.shutdown()
        shutil.rmtree(out, ignore_errors=True)
    return {
        "ray_items": n,
        "ray_equal_to_single_process": bool(
            table.item_ids == single.item_ids and np.array_equal(table.codes, single.codes)
        ),
        "ray_s": round(ray_s, 1),
        "ray_items_per_s": round(n / ray_s),
        "single_process_items_per_s": round(n / single_s),
    }


def part_table_files(n_interactions: int, folder: Path, n_items: int) -> dict:
    """Write `interactions.csv` (users of about 10 events, Zipf-like items, shuffled timestamps) and `items.csv`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pa_csv

    rng = np.random.default_rng(0)

    def ids(prefix: str, numbers: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pa.array(numbers).cast(pa.string()), "")

    n_users = max(1, n_interactions // 10)
    chunk = 1_000_000
    with pa_csv.CSVWriter(folder / "interactions.csv", pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("timestamp", pa.int64())])) as writer:  # fmt: skip
        for start in range(0, n_interactions, chunk):
            size = min(chunk, n_interactions - start)
            users = rng.integers(0, n_users, size)
            popular = rng.random(size) < 0.5  # half the events on a Zipf head, half uniform
            items = np.where(popular, (rng.zipf(1.5, size) - 1) % n_items, rng.integers(0, n_items, size))
            times = 1_700_000_000 + rng.integers(0, 365 * 86400, size)
            writer.write_table(
                pa.table({"user_id": ids("user-", users), "item_id": ids("item-", items), "timestamp": times})
            )
    numbers = np.arange(n_items)
    items = pa.table(
        {
            "item_id": ids("item-", numbers),
            "title": ids("Item title words number ", numbers),
            "categories": pc.binary_join_element_wise(
                ids("Top ", numbers % 20), ids("Sub ", numbers % 400), " > "
            ),
        }
    )
    pa_csv.write_csv(items, folder / "items.csv")
    return {name: (folder / name).stat().st_size for name in ("interactions.csv", "items.csv")}


def part_table(n_interactions: int, folder: Path, n_items: int) -> dict:
    """`load_table_catalogue` on the files of `part_table_files`: time, peak RSS above the imports, RSS kept."""
    from hf_semtok.data.table import load_table_catalogue
    from hf_semtok.data.table_sources import import_pyarrow

    import_pyarrow()
    base_rss = _rss_mb()
    reset = _reset_peak()
    start = time.perf_counter()
    catalogue = load_table_catalogue(folder / "interactions.csv", folder / "items.csv")
    load_s = time.perf_counter() - start
    peak = (_hwm_mb() if reset else _peak_mb()) - base_rss
    return {
        "table_interactions": n_interactions,
        "table_items": n_items,
        "table_load_s": round(load_s, 1),
        "table_interactions_per_s": round(n_interactions / load_s),
        "table_peak_rss_above_imports_mb": round(peak, 1),
        "table_catalogue_rss_mb": round(_rss_mb() - base_rss, 1),
        "table_users": len(catalogue.histories),
        "table_events_kept": catalogue.num_interactions,
        "table_items_loaded": catalogue.num_items,
    }


def run_table(n_interactions: int, n_items: int, cache: Path) -> dict:
    """Write the table files into a temporary folder under `cache`, load them in a fresh process, remove them."""
    folder = Path(tempfile.mkdtemp(prefix="table_", dir=cache))
    try:
        sizes = _run_part(["table_files", str(n_interactions), str(folder), str(n_items)])
        row = _run_part(["table", str(n_interactions), str(folder), str(n_items)])
        row.update({f"file_mb_{k}": round(v / 2**20, 1) for k, v in sizes.items() if isinstance(v, int)})
        return row
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- driver
def _run_part(args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.run(
        [sys.executable, __file__, "--part", *args], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def to_markdown(report: dict) -> str:
    keys = sorted({k for r in report["sizes"].values() for k in r if not isinstance(r[k], dict)})
    cols = list(report["sizes"])
    lines = ["# Scale benchmark", "", f"Command: `{report['command']}`. Machine: {report['machine']}."]
    if cols:
        lines += [
            "",
            "| measure | " + " | ".join(f"{int(c):,} items" for c in cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(str(report["sizes"][c].get(k, "")) for c in cols) + " |")
    if report.get("ray"):
        lines += [
            "",
            "Ray Data path (2 workers): " + ", ".join(f"{k} = {v}" for k, v in report["ray"].items()),
        ]
    if report.get("table"):
        lines += [
            "",
            "Table format (CSV): " + ", ".join(f"{k} = {v}" for k, v in report["table"].items()),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="100k items, fewer training steps")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--ray_items", type=int, default=1_000_000)
    parser.add_argument("--train_steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of the generate() step-time ratio")
    parser.add_argument("--skip", nargs="*", default=[], choices=["rqvae", "ray", "table"])
    parser.add_argument("--table_interactions", type=int, default=10_000_000)
    parser.add_argument("--table_items", type=int, default=1_000_000)
    parser.add_argument("--only_table", action="store_true", help="only the table-format row")
    parser.add_argument("--cache_dir", type=Path, default=Path.home() / ".cache" / "hf_semtok_scale")
    parser.add_argument("--output_dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.part:
        name, n, cache, *rest = args.part
        fn = {
            "assign": part_assign,
            "load": part_load,
            "rqvae": part_rqvae,
            "ray": part_ray,
            "table_files": part_table_files,
            "table": part_table,
        }[name]
        print(json.dumps(fn(int(n), Path(cache), *map(int, rest))))
        return 0
    if args.quick:
        args.sizes, args.ray_items, args.train_steps, args.rounds = [100_000], 100_000, 20, 5
        args.table_interactions, args.table_items = 100_000, 10_000
    if args.only_table:
        args.sizes, args.skip = [], ["ray"]
    cache = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "command": "python benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "sizes": {},
    }
    for n in args.sizes:
        row = _run_part(["assign", str(n), str(cache)])
        row.update(_run_part(["load", str(n), str(cache), str(args.rounds)]))
        if "rqvae" not in args.skip:
            row.update(_run_part(["rqvae", str(n), str(cache), str(args.train_steps)]))
        report["sizes"][str(n)] = row
        print(json.dumps({n: row}), flush=True)
    if "ray" not in args.skip:
        model_n = args.ray_items if args.ray_items in args.sizes and "rqvae" not in args.skip else None
        if model_n is None:
            model_n = args.ray_items
            _run_part(["rqvae", str(model_n), str(cache), str(args.train_steps)])
        report["ray"] = _run_part(["ray", str(args.ray_items), str(cache), str(model_n)])
        print(json.dumps(report["ray"]), flush=True)
    if "table" not in args.skip:
        report["table"] = run_table(args.table_interactions, args.table_items, cache)
        print(json.dumps(report["table"]), flush=True)
    from hf_semtok.io_utils import write_json_atomic, write_text_atomic

    args.output_dir.mkdir(parents=True, exist_ok=True)
    name = (
        "scale_table" if args.only_table else "scale"
    )  # the table row alone does not replace the full report
    write_json_atomic(report, args.output_dir / f"{name}.json", indent=1)
    write_text_atomic(to_markdown(report), args.output_dir / f"{name}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
