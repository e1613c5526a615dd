"""Every path of issue 25 on the device it is given.

Two kinds of tests:

- CPU stand-ins, in the default suite: they catch the device bugs a CPU can see. Under `torch.device("meta")`
  every tensor made without `device=` lands on the meta device, so a k-means or processor step that creates one
  on the default device instead of its input's fails against the CPU inputs; the k-means initialisation is
  also checked to run where the codebooks live and to never copy the latents to the CPU.
- `cuda` tests (`@pytest.mark.cuda`, skipped without a GPU): each path of the issue run on `cuda:0`, compared
  with the CPU where the result must agree. `pytest -m cuda` on a GPU machine runs them all;
  `benchmarks/gpu_check.py` runs them as its first step.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hf_semtok.logits_process import SIDLogitsProcessor
from hf_semtok.rqvae import quantization
from hf_semtok.rqvae.configuration_rqvae import RQVAEConfig
from hf_semtok.rqvae.modeling_rqvae import RQVAEModel
from hf_semtok.rqvae.quantization import ResidualQuantizer, kmeans

HAS_CUDA = torch.cuda.is_available()


def cuda_test(fn):
    """Mark a test `cuda` and skip it cleanly where no GPU is visible."""
    return pytest.mark.cuda(pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")(fn))


DIM = 16


def _points(n: int = 600, dim: int = DIM, clusters: int = 12, seed: int = 0) -> np.ndarray:
    """Well-separated Gaussian clusters: assignments do not hinge on float rounding, so devices agree."""
    rng = np.random.default_rng(seed)
    centers = 4.0 * rng.normal(size=(clusters, dim))
    return (centers[rng.integers(0, clusters, n)] + 0.05 * rng.normal(size=(n, dim))).astype(np.float32)


def _rqvae(seed: int = 0, **kwargs) -> RQVAEModel:
    torch.manual_seed(seed)
    config = {"modality_dims": DIM, "hidden_sizes": [32], "latent_dim": 8, "codebook_sizes": [8, 4]}
    return RQVAEModel(RQVAEConfig(**{**config, **kwargs})).eval()


# ---------------------------------------------------------------------------------------------------------------
# CPU stand-ins (default suite)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [500, 5])  # Lloyd's path, and the "fewer points than clusters" path
def test_kmeans_makes_every_tensor_on_its_input_device(n):
    x = torch.from_numpy(_points(n))
    want = kmeans(x, 16, num_iters=5, generator=torch.Generator().manual_seed(0))
    with torch.device("meta"):  # a tensor made without device= would land here and meet the CPU points
        got = kmeans(x, 16, num_iters=5, generator=torch.Generator().manual_seed(0))
    assert got.device == x.device and torch.equal(got, want)


def test_quantizer_training_steps_keep_to_the_codebooks_device():
    """k-means on the first batch, usage counters and dead-code re-seeding (every step here) all stay on the
    codebooks' device and give the result they give outside the trap."""
    x = torch.from_numpy(_points(300, dim=8))

    def run(rq: ResidualQuantizer) -> tuple[torch.Tensor, int]:
        torch.manual_seed(1)
        for _ in range(3):
            out = rq(x)
        return out.codes, rq.num_reseeded

    def quantizer() -> ResidualQuantizer:
        torch.manual_seed(0)
        return ResidualQuantizer(8, [16, 8], dead_code_threshold=5, reseed_interval=1).train()

    want_codes, want_reseeded = run(quantizer())
    trapped = quantizer()
    with torch.device("meta"):
        codes, reseeded = run(trapped)
    assert want_reseeded > 0  # the re-seeding path ran
    assert codes.device == x.device and torch.equal(codes, want_codes) and reseeded == want_reseeded


def test_initialize_runs_kmeans_where_the_codebooks_live(monkeypatch):
    """CPU latents for codebooks elsewhere (as CUDA codebooks get from a CPU batch): k-means and the residuals
    run on the codebooks' device. The meta device stands in for the GPU."""
    seen = []

    def fake_kmeans(x, num_clusters, num_iters=20, generator=None):
        seen.append(x.device.type)
        return torch.zeros(num_clusters, x.shape[1], device=x.device)

    monkeypatch.setattr(quantization, "kmeans", fake_kmeans)
    rq = ResidualQuantizer(8, [4, 4]).to("meta")
    rq.initialize(torch.randn(50, 8), generator=torch.Generator().manual_seed(0))
    assert seen == ["meta", "meta"]
    assert rq.codebooks[0].device.type == "meta"


def test_initialize_codebooks_never_copies_the_latents_to_the_cpu(monkeypatch):
    """The crash of issue 25: `initialize_codebooks` passed `z.cpu()` to codebooks on `cuda:0`."""
    model = _rqvae()
    moved = []
    real_cpu = torch.Tensor.cpu

    def spy_cpu(self, *args, **kwargs):
        moved.append(tuple(self.shape))
        return real_cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", spy_cpu)
    model.initialize_codebooks(_points(400), max_samples=200)
    assert moved == [] and bool(model.quantizer.initialized)


def _processor_case(mode: str, layout: str, fast: bool) -> tuple[SIDLogitsProcessor, list[torch.Tensor], int]:
    """A processor over 60 random 3-level SIDs, and one batch of rows per step of a SID (dead ends included)."""
    rng = np.random.default_rng(3)
    sizes = [4, 6, 5]
    codes = np.unique(np.stack([rng.integers(0, s, 200) for s in sizes], axis=1), axis=0)[:60]
    token_ids, nxt = [], 10
    for size in sizes:
        token_ids.append(list(range(nxt, nxt + size)))
        nxt += size
    start, end, eos, vocab = nxt, nxt + 1, 2, nxt + 4
    kwargs = {"mode": mode} if mode == "free" else {"prompt_length": 2, "layout": layout}
    proc = SIDLogitsProcessor(codes, token_ids, start, end, eos, **kwargs)
    proc._fast_sid_path = fast
    marked = layout == "marked"
    batches = []
    for step in range(len(sizes) + 2 + marked):
        rows = []
        for r, item in enumerate(codes[:8]):
            sid = [token_ids[lv][c] for lv, c in enumerate(item)]
            sid = [start, *sid, end] if marked else sid
            written = sid[:step]
            if r % 4 == 3 and len(written) > 1 + marked:  # a first-level code at a deeper level: a dead end
                written[-1] = token_ids[0][0]
            rows.append([5, 6, *written])
        batches.append(torch.tensor(rows))
    return proc, batches, vocab


CASES = [("sid", "marked", True), ("sid", "marked", False), ("sid", "bare", True), ("free", "marked", False)]


@pytest.mark.parametrize(("mode", "layout", "fast"), CASES)
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.bfloat16]
)  # bf16: the torch path an accelerator takes
def test_logits_processor_makes_every_tensor_on_the_scores_device(mode, layout, fast, dtype):
    trapped, batches, vocab = _processor_case(mode, layout, fast)
    proc, _, _ = _processor_case(mode, layout, fast)
    for ids in batches:
        scores = torch.randn(len(ids), vocab, generator=torch.Generator().manual_seed(0)).to(dtype)
        with torch.device("meta"):
            got = trapped(ids, scores)
        want = proc(ids, scores)
        assert got.device == scores.device and torch.equal(got, want)


def test_gpu_actors_the_cluster_cannot_hold_are_refused_before_ray_waits_forever():
    from hf_semtok.distributed import check_gpu_reservation

    check_gpu_reservation(num_workers=2, num_gpus=0.5, cluster_gpus=1)  # two actors share one GPU
    check_gpu_reservation(num_workers=4, num_gpus=0, cluster_gpus=0)  # CPU actors need no GPU
    with pytest.raises(ValueError, match="num_gpus"):
        check_gpu_reservation(num_workers=2, num_gpus=1, cluster_gpus=1)
    with pytest.raises(ValueError, match="num_gpus"):
        check_gpu_reservation(num_workers=1, num_gpus=1, cluster_gpus=0)
    with pytest.raises(ValueError, match="num_gpus"):
        check_gpu_reservation(num_workers=1, num_gpus=-1, cluster_gpus=1)


@pytest.mark.skipif(HAS_CUDA, reason="checks the error a machine without CUDA gives")
def test_gpu_encode_actor_without_cuda_says_so(tmp_path):
    from hf_semtok.distributed import RQVAEEncodeActor

    _rqvae().save_pretrained(tmp_path / "rqvae")
    assert RQVAEEncodeActor(str(tmp_path / "rqvae"), device="cpu").model.device.type == "cpu"
    with pytest.raises(RuntimeError, match="CUDA"):
        RQVAEEncodeActor(str(tmp_path / "rqvae"), device="cuda")


# ---------------------------------------------------------------------------------------------------------------
# cuda tests (`pytest -m cuda`)
# ---------------------------------------------------------------------------------------------------------------
@cuda_test
def test_cuda_kmeans_and_initialize_from_cpu_latents():
    x = torch.from_numpy(_points(600))
    cpu = kmeans(x, 12, generator=torch.Generator().manual_seed(0))
    gpu = kmeans(x.cuda(), 12, generator=torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-4)
    rq = ResidualQuantizer(DIM, [12, 4], dead_code_threshold=1, reseed_interval=1).cuda()
    rq.initialize(x, generator=torch.Generator().manual_seed(0))  # CPU latents, CUDA codebooks
    assert rq.codebooks[0].device.type == "cuda" and bool(rq.initialized)
    rq.train()
    rq(x.cuda())
    rq(x.cuda())  # a dead-code check
    assert all(c.device.type == "cuda" for c in rq.utilization_counts())


@cuda_test
def test_cuda_initialize_codebooks_agrees_with_cpu():
    """The crash of issue 25 (`addmm`: mat1 on cpu), and the same codebooks as on the CPU."""
    x = _points(800)
    cpu, gpu = _rqvae(), _rqvae().cuda()
    cpu.initialize_codebooks(x, max_samples=500)
    gpu.initialize_codebooks(x, max_samples=500)
    assert gpu.quantizer.codebooks[0].device.type == "cuda"
    agree = (gpu.encode(x) == cpu.encode(x)).all(1).float().mean()
    assert agree >= 0.95


@cuda_test
def test_cuda_train_rqvae_trains_and_initialises_on_the_gpu(monkeypatch):
    from hf_semtok.rqvae.training import train_rqvae

    devices = []
    real = RQVAEModel.initialize_codebooks

    def spy(self, *args, **kwargs):
        devices.append(self.device.type)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RQVAEModel, "initialize_codebooks", spy)
    x = _points(512)
    histories = [[str(i), str((i + 1) % 512), str((i + 7) % 512)] for i in range(512)]
    config = RQVAEConfig(
        modality_dims=DIM,
        hidden_sizes=[32],
        latent_dim=8,
        codebook_sizes=[16, 8],
        contrastive_weight=0.1,
        reseed_interval=5,
    )
    result = train_rqvae(
        x, config, histories=histories, max_steps=30, batch_size=128, use_cpu=False, progress=False
    )
    assert devices == ["cuda"]
    assert len(result.sid_table) == 512 and result.report["steps"] == 30 and result.report["num_pairs"] > 0


@cuda_test
def test_cuda_train_rqvae_from_cuda_embeddings():
    from hf_semtok.rqvae.training import train_rqvae

    x = torch.from_numpy(_points(256)).cuda()
    config = RQVAEConfig(modality_dims=DIM, hidden_sizes=[32], latent_dim=8, codebook_sizes=[8, 4])
    result = train_rqvae(x, config, max_steps=10, batch_size=64, use_cpu=False, progress=False, report=False)
    assert len(result.sid_table) == 256


@cuda_test
def test_cuda_from_pretrained_with_device_map(tmp_path):
    x = _points(300)
    model = _rqvae()
    model.initialize_codebooks(x)
    model.save_pretrained(tmp_path / "rqvae")
    loaded = RQVAEModel.from_pretrained(tmp_path / "rqvae", device_map="cuda")
    assert {b.device.type for b in loaded.buffers()} == {"cuda"}
    assert torch.equal(loaded.encode(x), model.encode(x))
    loaded.train()
    loaded(torch.from_numpy(x).cuda())  # a training step: usage counters on the GPU
    assert loaded.quantizer.utilization_counts()[0].sum() == 300


@cuda_test
def test_cuda_encode_batches_streams_a_memmap(tmp_path):
    x = _points(700)
    path = tmp_path / "emb.npy"
    disk = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=x.shape)
    disk[:] = x
    disk.flush()
    mm = np.load(path, mmap_mode="r")
    cpu = _rqvae()
    cpu.initialize_codebooks(x)
    gpu = _rqvae().cuda()
    gpu.load_state_dict(cpu.state_dict())
    out = np.lib.format.open_memmap(tmp_path / "codes.npy", mode="w+", dtype=np.int64, shape=(700, 2))
    got = gpu.encode_batches(mm, batch_size=128, progress=False, out=out)
    want = cpu.encode_batches(mm, batch_size=128, progress=False)
    assert (got == want).all(1).mean() >= 0.99
    codes, dists = gpu.encode(mm, batch_size=100, return_distances=True)
    assert codes.device.type == "cpu" and dists.device.type == "cpu" and dists.shape == (700, 4)
    assert gpu.decode(codes[:5]).device.type == "cuda"
    assert np.allclose(
        gpu.reconstruction_error_by_prefix(mm), cpu.reconstruction_error_by_prefix(mm), rtol=1e-3
    )


@cuda_test
def test_cuda_tokenizer_add_items_and_sids_for_embeddings(base_tokenizer):
    from hf_semtok.sids import assign_unique_sids
    from hf_semtok.tokenizer.tokenization_semtok import SemanticIDTokenizer

    x = _points(300)
    model = _rqvae()
    model.initialize_codebooks(x)
    table = assign_unique_sids(
        model.encode(x[:250]), [f"i{i}" for i in range(250)], [8, 4], extra_level_size=64
    )
    tok = SemanticIDTokenizer.from_base(base_tokenizer, sid_table=table, rqvae=model)
    want = tok.sids_for_embeddings(x[250:])
    tok.rqvae.cuda()
    assert np.array_equal(tok.sids_for_embeddings(x[250:]), want)
    assert np.array_equal(tok.sids_for_embeddings(torch.from_numpy(x[250:]).cuda()), want)
    added = tok.add_items([f"new{i}" for i in range(50)], embeddings=x[250:])
    assert [sid[:2] for sid in added.values()] == [tuple(int(c) for c in row) for row in want]


@cuda_test
@pytest.mark.parametrize(("mode", "layout", "fast"), CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_logits_processor_equals_cpu(mode, layout, fast, dtype):
    proc, batches, vocab = _processor_case(mode, layout, fast)
    for ids in batches:
        scores = torch.randn(len(ids), vocab, generator=torch.Generator().manual_seed(1)).to(dtype)
        want = proc(ids, scores)
        got = proc(ids.cuda(), scores.cuda())
        assert got.device.type == "cuda" and got.dtype == dtype and torch.equal(got.cpu(), want)


def _tiny_lm(tokenizer, dtype=torch.float32):
    from hf_semtok.lm.sid_embeddings import extend_model
    from hf_semtok.small_models import build_causal_lm

    model = build_causal_lm(
        len(tokenizer), hidden_size=32, num_layers=1, num_heads=2, pad_token_id=tokenizer.pad_token_id, seed=0
    )
    extend_model(model, tokenizer)
    return model.to(dtype).eval()


@cuda_test
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_recommend_and_prefill_once(sid_tokenizer, dtype):
    from hf_semtok.generation import PrefillOnceLM, recommend

    model = _tiny_lm(sid_tokenizer, dtype).cuda()
    histories = [["i1", "i2"], ["i3"], ["i4", "i5", "i6"]]
    plain = recommend(model, sid_tokenizer, histories, k=5, num_beams=8, prefill_once=False, progress=False)
    once = recommend(PrefillOnceLM(model), sid_tokenizer, histories, k=5, num_beams=8, progress=False)
    greedy = recommend(model, sid_tokenizer, histories, k=1, num_beams=1, progress=False)
    assert all(plain) and [[i for i, _ in r] for r in once] == [[i for i, _ in r] for r in plain]
    assert all(len(r) == 1 for r in greedy)
    if dtype == torch.float32:
        cpu = recommend(model.cpu(), sid_tokenizer, histories, k=5, num_beams=8, progress=False)
        assert [[i for i, _ in r] for r in cpu] == [[i for i, _ in r] for r in plain]


@cuda_test
def test_cuda_evaluation_equals_cpu(sid_tokenizer):
    from hf_semtok.evaluation import evaluate_recommender

    examples = [([f"i{(u + k) % 16}" for k in range(3)], f"i{(u + 3) % 16}") for u in range(12)]
    model = _tiny_lm(sid_tokenizer)
    cpu = evaluate_recommender(model, sid_tokenizer, examples, num_beams=10, progress=False)
    gpu = evaluate_recommender(model.cuda(), sid_tokenizer, examples, num_beams=10, progress=False)
    assert gpu == pytest.approx(cpu)


@cuda_test
@pytest.mark.parametrize(
    ("data", "train_mode"), [("cpt", "sid_embeddings"), ("sft", "lora"), ("cpt", "full")]
)
def test_cuda_lm_stages_in_bf16_train_the_sid_rows(sid_tokenizer, data, train_mode, tmp_path):
    from hf_semtok.data import Catalogue
    from hf_semtok.lm.stages import LMStageArguments, prepare_model, run_lm_stage
    from hf_semtok.small_models import build_causal_lm

    items = sid_tokenizer.item_ids
    catalogue = Catalogue(
        item_ids=items,
        titles={i: f"thing {n}" for n, i in enumerate(items)},
        categories={i: ["top"] for i in items},
        histories={f"u{u}": [items[(u + 3 * k) % len(items)] for k in range(6)] for u in range(12)},
    )
    base_rows = min(sid_tokenizer.all_sid_token_ids)
    model = build_causal_lm(
        base_rows, hidden_size=32, num_layers=1, num_heads=2, pad_token_id=sid_tokenizer.pad_token_id, seed=0
    )
    sid_ids = sid_tokenizer.all_sid_token_ids
    cfg = LMStageArguments(
        output_dir=str(tmp_path),
        data=data,
        train_mode=train_mode,
        max_steps=3,
        save_steps=10,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        bf16=True,
        disable_tqdm=True,
    )
    assert not cfg.use_cpu
    prepare_model(
        model, sid_tokenizer, dataclasses.replace(cfg, train_mode="full")
    )  # rows added, initialised
    before = model.get_input_embeddings().weight.detach().float().cpu().clone()
    result = run_lm_stage(cfg, sid_tokenizer, catalogue, model)  # the rows are not initialised again
    trained = result.model
    if train_mode == "lora":
        trained = trained.merge_and_unload()
    weight = trained.get_input_embeddings().weight
    assert weight.device.type == "cuda" and result.global_step == 3
    after = weight.detach().float().cpu()
    assert not torch.equal(after[sid_ids], before[sid_ids])  # the SID rows trained
    if train_mode != "full":
        assert torch.equal(after[:base_rows], before[:base_rows])  # the base rows did not


@cuda_test
def test_cuda_encode_actor_and_sids_on_ray_with_gpu_actors(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    import ray

    from hf_semtok.distributed import RQVAEEncodeActor, sids_on_ray, write_catalogue_parquet
    from hf_semtok.sids import assign_unique_sids

    x = _points(400)
    model = _rqvae()
    model.initialize_codebooks(x)
    model.save_pretrained(tmp_path / "rqvae")
    actor = RQVAEEncodeActor(str(tmp_path / "rqvae"), device="cuda")
    assert actor.model.device.type == "cuda"
    ids = [f"i{i}" for i in range(400)]
    write_catalogue_parquet(ids, x, tmp_path / "catalogue")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, ignore_reinit_error=True)
    try:
        table = sids_on_ray(
            tmp_path / "catalogue", tmp_path / "rqvae", tmp_path / "out", num_workers=2, batch_size=100,
            cpus_per_worker=0.5, num_gpus=0.5,
        )  # fmt: skip
    finally:
        ray.shutdown()
    want = assign_unique_sids(model.encode(x), ids, [8, 4])
    assert table.item_ids == want.item_ids and np.array_equal(table.codes, want.codes)


def test_rows_on_an_accelerator_are_not_pinned():
    """train_rqvae turns pinning off for embeddings already on a GPU (pinning a CUDA tensor raises)."""
    from hf_semtok.rqvae.training import _on_accelerator

    assert not _on_accelerator(np.zeros((2, 2))) and not _on_accelerator(torch.zeros(2, 2))
    assert _on_accelerator({"text": torch.zeros(2, 2), "image": torch.zeros(2, 2, device="meta")})
