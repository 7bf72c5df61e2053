"""charter's own decoder for Llama-family models against `transformers`' `generate`, on tiny random models;
and the CPU thread governor."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from charter.errors import CharterError  # noqa: E402
from charter.providers import local, local_decode  # noqa: E402
from charter.providers.base import SamplingParams  # noqa: E402
from charter.providers.local import LocalModel  # noqa: E402
from charter.providers.local_decode import (  # noqa: E402
    MIN_ROW_REUSE,
    PrefixCache,
    PrefixKV,
    Rotation,
    _branch_points,
    folder_is_readable,
    packing,
    packing_is_exact,
    supports,
)
from charter.records import Message  # noqa: E402

from .test_local import CORPUS, REQUESTS, ask, build_tiny_chat_model  # noqa: E402

SHOTS = [
    Message(role="user", content="The quick brown fox jumps over the lazy dog."),
    Message(role="assistant", content="Paris is the capital of France; the river Seine runs through it."),
] * 3
SHARED = [SHOTS + ask(t) for t in ("Hi", "Which response is better?", "Constitutions guide models", "Paris?")]
# prompts that share long starts in twos (one conversation, two questions), as a judge's principles do
STARTS = (" ".join(CORPUS[:2]) * 4, " ".join(CORPUS[2:]) * 4)
PAIRED = [
    ask(f"{start} {question}")
    for start in STARTS
    for question in ("Which response is better? Answer with (A) or (B).", "Paris?")
] + [ask("Hi")]


def pair(folder: Path, **options) -> tuple[LocalModel, LocalModel]:
    ours = LocalModel(str(folder), batch_size=4, device="cpu", dtype="float32", engine="charter", **options)
    theirs = LocalModel(str(folder), batch_size=4, device="cpu", dtype="float32", engine="transformers")
    return ours, theirs


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-llama"))


def tiny_beside(llama: Path, folder: Path, kind: str, seed: int, **config: object) -> Path:
    """A tiny random model of `kind` ("Qwen2", "Llama") with `llama`'s tokenizer, saved to `folder`; biases, where
    `config` asks for them, drawn at random too (they start at zero)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama)
    settings = getattr(transformers, f"{kind}Config")(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.3,
        eos_token_id=tokenizer.eos_token_id,
        **config,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, f"{kind}ForCausalLM")(settings)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.normal_(0, 0.3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory, llama_dir: Path) -> Path:
    """A tiny random Qwen2 (biases on q/k/v) with the same tokenizer."""
    return tiny_beside(llama_dir, tmp_path_factory.mktemp("tiny-qwen2"), "Qwen2", 1)


def texts(model: LocalModel, requests: list, params: SamplingParams) -> list[tuple[str, int, str]]:
    done = asyncio.run(model.generate(requests, params))
    return [(c.text, c.completion_tokens, c.finish_reason) for c in done]


def assert_same_outputs(one: LocalModel, other: LocalModel) -> None:
    """The same greedy and sampled texts, and the same choice log-probabilities, bit for bit."""
    for params in (
        SamplingParams(temperature=0, max_tokens=12),
        SamplingParams(temperature=0.9, max_tokens=12, seed=3),
    ):
        assert texts(one, REQUESTS + SHARED, params) == texts(other, REQUESTS + SHARED, params)
    for requests in (REQUESTS, PAIRED):
        a = asyncio.run(one.choice_logprobs_batch(requests, ["A", "B"]))
        b = asyncio.run(other.choice_logprobs_batch(requests, ["A", "B"]))
        assert [x.raw_logprobs for x in a] == [y.raw_logprobs for y in b]


@pytest.mark.parametrize("which", ["llama_dir", "qwen_dir"])
@pytest.mark.parametrize("requests", [REQUESTS, SHARED], ids=["ragged", "shared-prefix"])
def test_greedy_matches_transformers_generate(which: str, requests: list, request: pytest.FixtureRequest) -> None:
    ours, theirs = pair(request.getfixturevalue(which))
    params = SamplingParams(temperature=0, max_tokens=12)
    assert texts(ours, requests, params) == texts(theirs, requests, params)
    assert ours._decoder is not None and theirs._decoder is None


def test_sampling_and_stop_strings_match_transformers_generate(llama_dir: Path) -> None:
    ours, theirs = pair(llama_dir)
    sampled = SamplingParams(temperature=0.9, top_p=0.8, max_tokens=12, seed=3)
    assert texts(ours, REQUESTS + SHARED, sampled) == texts(theirs, REQUESTS + SHARED, sampled)
    greedy = texts(theirs, REQUESTS, SamplingParams(temperature=0, max_tokens=12))
    stop = next(text[2:4] for text, _, _ in greedy if len(text.strip()) > 4)  # a stop string that does occur
    stopped = SamplingParams(temperature=0, max_tokens=12, stop=[stop])
    ours_stopped = texts(ours, REQUESTS, stopped)
    assert ours_stopped == texts(theirs, REQUESTS, stopped)
    assert any(reason == "stop" and n < 12 for _, n, reason in ours_stopped)


def test_rows_that_end_early_leave_the_batch_without_changing_the_others(llama_dir: Path) -> None:
    ours, theirs = pair(llama_dir)
    theirs.load()
    # the token every greedy row produces first becomes an end token: those rows end at once, the rest go on
    first = asyncio.run(theirs.generate(REQUESTS, SamplingParams(temperature=0, max_tokens=1)))
    end = theirs.tokenizer(first[0].text, add_special_tokens=False)["input_ids"][0]
    for model in (ours, theirs):
        model.load()
        model.generation_config.eos_token_id = [model.tokenizer.eos_token_id, end]
    params = SamplingParams(temperature=0, max_tokens=10)
    got = texts(ours, REQUESTS, params)
    assert got == texts(theirs, REQUESTS, params)
    assert {n for _, n, _ in got} != {10}  # some rows ended early


def test_choice_probs_match_transformers(llama_dir: Path) -> None:
    ours, theirs = pair(llama_dir)
    for requests in (REQUESTS, SHARED, PAIRED, PAIRED[::-1] + SHARED):
        a = asyncio.run(ours.choice_logprobs_batch(requests, ["A", "B"]))
        b = asyncio.run(theirs.choice_logprobs_batch(requests, ["A", "B"]))
        for x, y in zip(a, b):
            assert x.prompt_tokens == y.prompt_tokens
            assert x.probs == pytest.approx(y.probs, abs=1e-5)
            assert x.raw_logprobs == pytest.approx(y.raw_logprobs, abs=1e-4)


def test_rows_sharing_a_start_past_the_common_prefix_run_it_once(llama_dir: Path) -> None:
    ours, theirs = pair(llama_dir)
    a = asyncio.run(ours.choice_logprobs_batch(PAIRED, ["A", "B"]))
    assert ours._decoder.branched_tokens > 2 * MIN_ROW_REUSE  # each start's tokens ran once, not once a row
    b = asyncio.run(theirs.choice_logprobs_batch(PAIRED, ["A", "B"]))
    assert [x.probs for x in a] == [pytest.approx(y.probs, abs=1e-5) for y in b]
    assert [x.prompt_tokens for x in a] == [y.prompt_tokens for y in b]


def test_branch_points_are_the_longest_start_shared_with_another_row() -> None:
    shared = list(range(100, 110))
    x, y = list(range(MIN_ROW_REUSE + 4)), list(range(50, 50 + MIN_ROW_REUSE - 2))
    batch = [shared + x + [1, 2], shared + y + [3], shared + x + [1, 5, 6], shared + x + [7], shared + y + [4]]
    points = _branch_points(batch, len(shared))
    # rows 0 and 2 share x + [1], row 3 shares x with them; rows 1 and 4 share too little past the prefix
    assert points == {0: len(shared) + len(x) + 1, 2: len(shared) + len(x) + 1, 3: len(shared) + len(x)}
    # a row never branches at its own end: one token is left to run
    assert _branch_points([shared + x, shared + x + [9]], len(shared)) == {
        0: len(shared) + len(x) - 1,
        1: len(shared) + len(x),
    }
    assert _branch_points([shared + x], len(shared)) == {}


def test_prefill_groups_are_narrow_on_cpu_and_wide_on_a_gpu() -> None:
    lengths = [300, 290, 280, 150, 140, 20, 10, 10]  # one batch's rows, longest first
    # CPU: about 2k tokens a group, at most 10% padding
    assert local_decode._prefill_groups(lengths) == [(0, 3), (3, 5), (5, 6), (6, 8)]
    # GPU: a group is ~30 layers of kernel launches, so the batch runs as one unless it is very large
    gpu = (local_decode.PREFILL_TOKENS_GPU, local_decode.PREFILL_PADDING_GPU)
    assert local_decode._prefill_groups(lengths, *gpu) == [(0, 8)]
    assert len(local_decode._prefill_groups([1000] * 64, *gpu)) == 2


def test_the_engine_defaults_to_the_decoder_on_cpu_and_to_transformers_on_a_gpu(llama_dir: Path) -> None:
    # on an H100 the decoder's judge pass ran at about half the speed of transformers' (RESULTS.md, "On a GPU")
    assert LocalModel(str(llama_dir), device="cpu")._uses_decoder
    assert not LocalModel(str(llama_dir), device="cuda")._uses_decoder
    assert LocalModel(str(llama_dir), device="cuda", engine="charter")._uses_decoder
    assert not LocalModel(str(llama_dir), device="cpu", engine="transformers")._uses_decoder


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_decoder_gives_transformers_outputs(llama_dir: Path) -> None:
    ours, theirs = (
        LocalModel(str(llama_dir), batch_size=4, device="cuda", dtype="float32", engine=engine)
        for engine in ("charter", "transformers")
    )
    params = SamplingParams(temperature=0, max_tokens=12)
    assert texts(ours, REQUESTS + SHARED, params) == texts(theirs, REQUESTS + SHARED, params)
    assert ours._decoder.prefill_tokens == local_decode.PREFILL_TOKENS_GPU
    for requests in (REQUESTS, SHARED, PAIRED):
        a = asyncio.run(ours.choice_logprobs_batch(requests, ["A", "B"]))
        b = asyncio.run(theirs.choice_logprobs_batch(requests, ["A", "B"]))
        for x, y in zip(a, b):
            assert x.raw_logprobs == pytest.approx(y.raw_logprobs, abs=1e-4)


@pytest.mark.parametrize("which", ["llama_dir", "qwen_dir"])
def test_bfloat16_weights_reordered_once_give_the_same_tokens_and_probabilities(
    which: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not packing_is_exact(torch.bfloat16, "cpu"):
        pytest.skip("this torch build has no exact oneDNN packed bfloat16 product")
    folder = request.getfixturevalue(which)
    packed = LocalModel(str(folder), batch_size=4, device="cpu", dtype="bfloat16", engine="charter")
    packed.load()
    assert all(f.qkv.packed is not None and f.down.packed is not None for f in packed._decoder.fused)
    assert packed._decoder.head.packed is not None
    monkeypatch.setattr("charter.providers.local_decode.packing_is_exact", lambda dtype, device: False)
    plain = LocalModel(str(folder), batch_size=4, device="cpu", dtype="bfloat16", engine="charter")
    plain.load()
    assert plain._decoder.head.packed is None
    assert_same_outputs(packed, plain)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_q_and_k_turned_together_give_the_model_helpers_values(
    dtype: str, qwen_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "folder_is_readable", lambda source: False)  # the transformers model and its helper
    joint = LocalModel(str(qwen_dir), batch_size=4, device="cpu", dtype=dtype, engine="charter")
    joint.load()
    assert joint._decoder._joint_rotary
    monkeypatch.setattr(Rotation, "matches", classmethod(lambda cls, *args: False))
    apart = LocalModel(str(qwen_dir), batch_size=4, device="cpu", dtype=dtype, engine="charter")
    apart.load()
    assert not apart._decoder._joint_rotary
    assert_same_outputs(joint, apart)


@pytest.fixture(scope="module")
def biased_llama_dir(tmp_path_factory: pytest.TempPathFactory, llama_dir: Path) -> Path:
    """A tiny random Llama with biases on every projection, tied output weights and another rotary base."""
    return tiny_beside(
        llama_dir,
        tmp_path_factory.mktemp("tiny-biased-llama"),
        "Llama",
        2,
        attention_bias=True,
        mlp_bias=True,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
    )


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("which", ["llama_dir", "biased_llama_dir"])
def test_weights_read_from_the_folder_give_the_transformers_models_values(
    which: str, dtype: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read straight from config.json and safetensors (no `transformers` model built), the decoder gives the same
    texts and log-probabilities, bit for bit, as when it runs the loaded `transformers` model's weights; the
    tokenizer is the one `AutoTokenizer` gives."""
    folder = request.getfixturevalue(which)
    assert folder_is_readable(folder)
    read = LocalModel(str(folder), batch_size=4, device="cpu", dtype=dtype)
    read.load()
    assert read._model is None and read._decoder is not None
    monkeypatch.setattr(local, "folder_is_readable", lambda source: False)
    loaded = LocalModel(str(folder), batch_size=4, device="cpu", dtype=dtype)
    loaded.load()
    assert loaded._model is not None
    assert type(read.tokenizer) is type(loaded.tokenizer)
    assert [read.tokenizer.pad_token_id, read.tokenizer.eos_token_id, read.tokenizer.bos_token_id] == [
        loaded.tokenizer.pad_token_id,
        loaded.tokenizer.eos_token_id,
        loaded.tokenizer.bos_token_id,
    ]
    assert read._eos_ids() == loaded._eos_ids()
    assert read._max_positions == loaded._max_positions > 0
    assert_same_outputs(read, loaded)


def test_a_folder_whose_tensors_are_named_otherwise_loads_through_transformers(tmp_path: Path, llama_dir: Path) -> None:
    """Keys without the `model.` prefix (a checkpoint saved from the bare model): the reader does not guess,
    `transformers` maps them, and the outputs are those of the original folder."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "unprefixed"
    shutil.copytree(llama_dir, folder)
    tensors = load_file(folder / "model.safetensors")
    save_file(
        {name.removeprefix("model."): t for name, t in tensors.items()},
        folder / "model.safetensors",
        metadata={"format": "pt"},
    )
    assert folder_is_readable(folder)
    moved = LocalModel(str(folder), batch_size=4, device="cpu", dtype="float32")
    moved.load()
    assert moved._model is not None and moved._decoder is not None  # transformers' weights, charter's decoder
    original = LocalModel(str(llama_dir), batch_size=4, device="cpu", dtype="float32")
    params = SamplingParams(temperature=0, max_tokens=8)
    assert texts(moved, REQUESTS, params) == texts(original, REQUESTS, params)


def test_loading_the_embedded_models_folder_imports_no_transformers_modeling_code(llama_dir: Path) -> None:
    """What the folder path is for: `transformers`' modeling code pulls in torch's compiler and distributed
    tensors (~2 s of imports a process); the tokenizer alone does not."""
    script = (
        "import sys, asyncio\n"
        "from charter.providers.local import LocalModel\n"
        "from charter.providers.base import SamplingParams\n"
        "from charter.records import Message\n"
        f"model = LocalModel({str(llama_dir)!r}, device='cpu')\n"
        "hi = [Message(role='user', content='Hi')]\n"
        "asyncio.run(model.generate([hi], SamplingParams(temperature=0, max_tokens=2)))\n"
        "asyncio.run(model.choice_logprobs([Message(role='user', content='A or B?')], ['A', 'B']))\n"
        "heavy = {'transformers.modeling_utils', 'torch._dynamo', 'torch.distributed.tensor'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]


def test_which_folders_are_read_without_transformers(tmp_path: Path, llama_dir: Path, qwen_dir: Path) -> None:
    assert folder_is_readable(llama_dir)
    # qwen2: AutoTokenizer gives Qwen2Tokenizer (another padding token) whatever the folder names
    assert not folder_is_readable(qwen_dir)
    config = json.loads((llama_dir / "config.json").read_text())

    def variant(
        name: str, change: dict | None = None, drop: str | None = None, tokenizer_class: str | None = None
    ) -> Path:
        folder = tmp_path / name
        shutil.copytree(llama_dir, folder)
        (folder / "config.json").write_text(json.dumps({**config, **(change or {})}))
        if drop:
            (folder / drop).unlink()
        if tokenizer_class:
            path = folder / "tokenizer_config.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), "tokenizer_class": tokenizer_class}))
        return folder

    assert folder_is_readable(variant("same"))
    for name, change in {
        "llama3-rope": {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}},
        "old-style-scaling": {"rope_parameters": None, "rope_scaling": {"type": "linear", "factor": 2.0}},
        "gelu": {"hidden_act": "gelu"},
        "gpt2": {"model_type": "gpt2"},
        "mistral": {"model_type": "mistral"},
        "quantized": {"quantization_config": {"quant_method": "gptq"}},
        "tensor-parallel": {"pretraining_tp": 2},
    }.items():
        assert not folder_is_readable(variant(name, change)), name
    assert not folder_is_readable(variant("no-weights", drop="model.safetensors"))
    assert not folder_is_readable(variant("no-tokenizer", drop="tokenizer.json"))
    assert not folder_is_readable(variant("llama-tokenizer", tokenizer_class="LlamaTokenizer"))
    assert not folder_is_readable(tmp_path / "nothing-here")


def test_the_last_layer_runs_its_output_products_only_where_states_are_used(
    llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefill and the judge's pass use each row's last hidden state only, and a prefix pass none: the last layer's
    output product and MLP run on those positions alone (none for a prefix), with the same values bit for bit."""
    if not packing_is_exact(torch.bfloat16, "cpu"):
        pytest.skip("this torch build has no exact oneDNN packed bfloat16 product")
    trimmed = LocalModel(str(llama_dir), batch_size=4, device="cpu", dtype="bfloat16")
    trimmed.load()
    assert trimmed._decoder._rowwise
    widths = []
    down = trimmed._decoder.fused[-1].down
    monkeypatch.setattr(trimmed._decoder.fused[-1], "down", lambda x: widths.append(x.shape[1]) or down(x))
    full = LocalModel(str(llama_dir), batch_size=4, device="cpu", dtype="bfloat16")
    full.load()
    full._decoder._rowwise = False
    assert_same_outputs(trimmed, full)
    assert set(widths) == {1}  # prefill groups, judge passes and decode steps alike: one position a row
    single = LocalModel(str(llama_dir), device="cpu", dtype="float32")  # MKL's products: every position runs
    single.load()
    assert not single._decoder._rowwise


def test_a_rotary_helper_of_another_kind_is_kept() -> None:
    """A model whose helper turns interleaved pairs (GPT-J style), not halves, keeps its own helper."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    def interleaved(q, k, cos, sin):
        def turn(x):
            pairs = torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)
            return x * cos.unsqueeze(1) + pairs * sin.unsqueeze(1)

        return turn(q), turn(k)

    assert Rotation.matches(apply_rotary_pos_emb, 8, torch.float32, "cpu")
    assert not Rotation.matches(interleaved, 8, torch.float32, "cpu")
    assert not Rotation.matches(lambda q, k, cos, sin, position_ids: (q, k), 8, torch.float32, "cpu")


def test_float32_is_packed_only_where_dtype_auto_asks_for_speed(
    llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A named `float32` stays on `F.linear` (MKL), whose results `transformers` gives; `dtype: auto` on a CPU
    without native bfloat16 runs float32 through oneDNN's packed products, which round otherwise: the same greedy
    texts here and log-probabilities within rounding; the last layer then runs its products on used positions alone."""
    assert not packing_is_exact(torch.float32, "cpu") and not packing(torch.float32, "cpu", exact=True)
    if not packing(torch.float32, "cpu", exact=False):
        pytest.skip("this torch build has no oneDNN float32 packed product")
    monkeypatch.setattr(local, "cpu_has_bf16", lambda: False)
    auto = LocalModel(str(llama_dir), batch_size=4, device="cpu")
    named = LocalModel(str(llama_dir), batch_size=4, device="cpu", dtype="float32")
    auto.load()
    named.load()
    assert auto._decoder.dtype == named._decoder.dtype == torch.float32 and auto.model_id == named.model_id
    assert auto._decoder.head.packed is not None and auto._decoder._rowwise
    assert named._decoder.head.packed is None and not named._decoder._rowwise
    greedy = SamplingParams(temperature=0, max_tokens=12)
    assert texts(auto, REQUESTS + SHARED, greedy) == texts(named, REQUESTS + SHARED, greedy)
    for requests in (REQUESTS, PAIRED):
        fast = asyncio.run(auto.choice_logprobs_batch(requests, ["A", "B"]))
        exact = asyncio.run(named.choice_logprobs_batch(requests, ["A", "B"]))
        for x, y in zip(fast, exact, strict=True):
            assert x.raw_logprobs == pytest.approx(y.raw_logprobs, abs=1e-4)


def test_a_prefix_is_reused_across_calls_and_gives_the_same_answers(llama_dir: Path) -> None:
    ours, theirs = pair(llama_dir)
    params = SamplingParams(temperature=0, max_tokens=8)
    first = texts(ours, SHARED[:2], params)
    hits = ours._decoder.cache.hits
    second = texts(ours, SHARED[2:], params)
    assert ours._decoder.cache.hits > hits and ours._decoder.cache.reused_tokens > 20
    assert first + second == texts(theirs, SHARED, params)


def test_a_prompt_continuing_a_generated_row_runs_only_its_new_tokens(llama_dir: Path) -> None:
    ours, theirs = pair(llama_dir)
    params = SamplingParams(temperature=0, max_tokens=8)
    first = asyncio.run(ours.generate(SHARED + REQUESTS, params))
    # the next turn of each conversation: its answer as an assistant message, then a new request
    follow = [
        r + [Message(role="assistant", content=c.text), Message(role="user", content="Revise it.")]
        for r, c in zip(SHARED + REQUESTS, first)
    ]
    hits = ours._decoder.rows.hits
    got = texts(ours, follow, params)
    assert ours._decoder.rows.hits - hits >= len(follow) // 2 and ours._decoder.rows.reused_tokens > 0
    assert got == texts(theirs, follow, params)
    assert asyncio.run(ours.choice_logprobs_batch(follow, ["A", "B"]))[0].probs == pytest.approx(
        asyncio.run(theirs.choice_logprobs_batch(follow, ["A", "B"]))[0].probs, abs=1e-5
    )


def test_the_row_cache_stays_within_its_bytes(llama_dir: Path) -> None:
    ours, _ = pair(llama_dir, prefix_cache_mb=0.01)
    asyncio.run(ours.generate(SHARED + REQUESTS, SamplingParams(temperature=0, max_tokens=8)))
    cache = ours._decoder.rows
    assert 0 < sum(e.nbytes() for e in cache.entries.values()) <= cache.max_bytes
    assert len(cache.entries) < len(SHARED + REQUESTS)


def test_the_prefix_cache_stays_within_its_bytes() -> None:
    def entry(tokens: tuple[int, ...]) -> PrefixKV:
        return PrefixKV(tokens, [torch.zeros(1, len(tokens), 4)], [torch.zeros(1, len(tokens), 4)])

    cache = PrefixCache(max_bytes=2 * 2 * 10 * 4 * 4)  # room for two 10-token entries
    for start in (1, 2, 3):
        cache.put(entry(tuple(range(start * 100, start * 100 + 10))))
    assert len(cache.entries) == 2 and tuple(range(100, 110)) not in cache.entries  # least recently used left
    cache.put(entry(tuple(range(300, 315))))  # supersedes the entry it extends
    assert tuple(range(300, 310)) not in cache.entries
    found = cache.longest(list(range(300, 305)) + [9])
    assert found is not None and len(found) == 5 and found.keys[0].shape[1] == 5
    assert cache.longest([7, 8]) is None
    PrefixCache(max_bytes=0).put(entry((1, 2)))  # a zero budget caches nothing


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_a_cached_prefix_holds_only_the_bytes_it_counts(dtype: str, llama_dir: Path) -> None:
    """Its keys and values are compact copies, not views that keep the whole q/k/v products alive."""
    model = LocalModel(str(llama_dir), device="cpu", dtype=dtype, engine="charter")
    model.load()
    ids = model._encode(SHOTS + ask("Hi"))
    with torch.inference_mode():
        short = model._decoder.prefix(ids[:20])
        longer = model._decoder.prefix(ids)  # extends the cached one
    for entry in (short, longer):
        held = sum(t.untyped_storage().nbytes() for t in (*entry.keys, *entry.values))
        assert held == entry.nbytes() > 0


def test_models_outside_the_llama_family_use_generate(tmp_path: Path, llama_dir: Path) -> None:
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    auto = LocalModel(str(tmp_path), device="cpu", dtype="float32")
    auto.load()
    assert auto._decoder is None and not supports(auto.model)
    assert asyncio.run(auto.generate([ask("Hi")], SamplingParams(temperature=0, max_tokens=3)))[0].completion_tokens
    with pytest.raises(CharterError, match="engine 'charter' runs Llama-family models only.*gpt2"):
        LocalModel(str(tmp_path), device="cpu", engine="charter").load()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"threads": 0}, "threads must be 'auto' or a whole number"),
        ({"engine": "vllm"}, "engine must be one of auto, charter, transformers"),
        ({"prefix_cache_mb": -1}, "prefix_cache_mb must not be negative"),
    ],
)
def test_bad_options_are_one_line_errors(llama_dir: Path, options: dict, message: str) -> None:
    with pytest.raises(CharterError, match=message):
        LocalModel(str(llama_dir), **options)


# --------------------------------------------------------------------------- private operators and helpers


@pytest.fixture
def products_checked_afresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """torch's packed products checked again in the test and after it (after `monkeypatch` restores them)."""
    local_decode._checked_products.cache_clear()
    yield
    local_decode._checked_products.cache_clear()


def break_packed_products(monkeypatch: pytest.MonkeyPatch, breakage: str) -> None:
    """torch's oneDNN operators as a torch upgrade might leave them: gone, refusing their old arguments, or off by
    a thousandth."""
    mkldnn = torch.ops.mkldnn
    if breakage == "absent":
        monkeypatch.setattr(torch.ops, "mkldnn", types.SimpleNamespace())
    elif breakage == "raising":

        def refuse(*args: object) -> None:
            raise RuntimeError("mkldnn::_linear_pointwise() expected at most 5 argument(s) but received 6")

        monkeypatch.setattr(mkldnn, "_linear_pointwise", refuse)
    else:
        pointwise = mkldnn._linear_pointwise
        monkeypatch.setattr(mkldnn, "_linear_pointwise", lambda *args: pointwise(*args) * 1.001)


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("breakage, says", [("absent", "are missing"), ("raising", "fail"), ("straying", "stray")])
def test_without_torchs_packed_products_the_decoder_multiplies_plainly_and_says_so_once(
    breakage: str,
    says: str,
    llama_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    products_checked_afresh: None,
) -> None:
    """`dtype: auto` on a CPU without native bfloat16 packs float32 products where torch's private operators pass
    their check; where they do not, the decoder runs `F.linear`'s products, which give what `dtype: float32` gives
    (bit for bit) and `transformers`' results, and one warning line says what is missing, however many loads."""
    monkeypatch.setattr(local, "cpu_has_bf16", lambda: False)
    break_packed_products(monkeypatch, breakage)
    with caplog.at_level(logging.WARNING, logger="charter"):
        auto = LocalModel(str(llama_dir), batch_size=4, device="cpu")
        auto.load()
        assert auto._decoder is not None and auto._decoder.dtype == torch.float32
        assert all(f.qkv.packed is None and f.down.packed is None for f in auto._decoder.fused)
        assert auto._decoder.head.packed is None and not auto._decoder._rowwise
        assert not packing(torch.float32, "cpu", exact=False)
        named, theirs = pair(llama_dir)
        assert_same_outputs(auto, named)
        for params in (
            SamplingParams(temperature=0, max_tokens=6),
            SamplingParams(temperature=0.9, max_tokens=6, seed=3),
        ):
            assert texts(auto, REQUESTS, params) == texts(theirs, REQUESTS, params)
        for x, y in zip(
            asyncio.run(auto.choice_logprobs_batch(PAIRED, ["A", "B"])),
            asyncio.run(theirs.choice_logprobs_batch(PAIRED, ["A", "B"])),
            strict=True,
        ):
            assert x.raw_logprobs == pytest.approx(y.raw_logprobs, abs=1e-4)
        LocalModel(str(llama_dir), batch_size=4, device="cpu").load()  # checked once a process: no second line
    (warning,) = warnings_in(caplog)
    assert "torch.ops.mkldnn._reorder_linear_weight and _linear_pointwise (float32)" in warning
    assert says in warning and "F.linear instead (results stay correct, slower)" in warning


def test_without_torchs_packed_products_bfloat16_gives_the_packed_bits(
    llama_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, products_checked_afresh: None
) -> None:
    """The default on a CPU with native bfloat16: packed products only where they give `F.linear`'s bits, so the
    plain products that replace missing ones give the same texts and log-probabilities."""
    if not packing_is_exact(torch.bfloat16, "cpu"):
        pytest.skip("this torch build has no exact oneDNN packed bfloat16 product")
    packed = LocalModel(str(llama_dir), batch_size=4, device="cpu", dtype="bfloat16")
    packed.load()
    assert packed._decoder.head.packed is not None
    break_packed_products(monkeypatch, "absent")
    local_decode._checked_products.cache_clear()
    with caplog.at_level(logging.WARNING, logger="charter"):
        plain = LocalModel(str(llama_dir), batch_size=4, device="cpu", dtype="bfloat16")
        plain.load()
        assert plain._decoder.head.packed is None
        assert_same_outputs(packed, plain)
    (warning,) = warnings_in(caplog)
    assert "(bfloat16) are missing from torch" in warning


def strip_rotary_helper(monkeypatch: pytest.MonkeyPatch, replacement: object = None) -> str:
    """Llama's modeling module as charter finds it (`sys.modules`) without `apply_rotary_pos_emb`, or with
    `replacement` in its place; `transformers`' own code keeps its helper. Returns the module's name."""
    from transformers.models.llama import modeling_llama

    stripped = types.ModuleType(modeling_llama.__name__)
    stripped.__dict__.update({k: v for k, v in vars(modeling_llama).items() if k != "apply_rotary_pos_emb"})
    if replacement is not None:
        stripped.apply_rotary_pos_emb = replacement  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, modeling_llama.__name__, stripped)
    return modeling_llama.__name__


@pytest.mark.parametrize(
    "replacement, says",
    [(None, "is missing"), (lambda q, k, cos, sin, position_ids: (q, k), "fails on (q, k, cos, sin): TypeError")],
    ids=["absent", "other-arguments"],
)
def test_without_the_rotary_helper_a_transformers_model_runs_through_transformers_and_says_so_once(
    replacement: object,
    says: str,
    llama_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = strip_rotary_helper(monkeypatch, replacement)
    monkeypatch.setattr(local, "folder_is_readable", lambda source: False)  # the transformers model and its helper
    with caplog.at_level(logging.WARNING, logger="charter"):
        fallen = LocalModel(str(llama_dir), batch_size=4, device="cpu", dtype="float32")
        fallen.load()
        assert fallen._decoder is None and fallen._model is not None
        theirs = LocalModel(str(llama_dir), batch_size=4, device="cpu", dtype="float32", engine="transformers")
        assert_same_outputs(fallen, theirs)
    (warning,) = warnings_in(caplog)
    assert f"{module}.apply_rotary_pos_emb {says}" in warning
    assert warning.endswith("it runs through transformers instead (results stay correct, slower)")


def test_the_rotary_parts_of_a_transformers_model_are_checked_before_use(
    llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    model = transformers.AutoModelForCausalLM.from_pretrained(llama_dir)
    rotary, helper = local_decode.transformers_rotary(model)
    assert helper is apply_rotary_pos_emb
    cos, sin = rotary(torch.zeros(2, 4, 48), torch.arange(4).expand(2, -1))
    assert cos.shape == sin.shape == (2, 4, 12)
    assert local_decode._helper_problem(None, torch.float32, "cpu") == "is missing"
    shapes = local_decode._helper_problem(lambda q, k, cos, sin: (q, k[..., :4]), torch.float32, "cpu")
    assert shapes is not None and shapes.startswith("gives q and k as")
    assert local_decode._helper_problem(lambda q, k, cos, sin: q, torch.float32, "cpu") == "gives Tensor, not q and k"
    monkeypatch.setattr(model.model.rotary_emb, "forward", lambda x: (x, x))  # takes no `position_ids`
    with pytest.raises(local_decode.DecoderUnavailable, match=r"LlamaModel\.rotary_emb fails: TypeError"):
        local_decode.transformers_rotary(model)


# --------------------------------------------------------------------------- threads


def test_cgroup_quota_is_read_from_v2_and_v1(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert local.cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert local.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert local.cgroup_cpu_quota(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert local.cgroup_cpu_quota(tmp_path) is None


def test_available_cpus_is_affinity_capped_by_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "allowed_cpus", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(local, "cgroup_cpu_quota", lambda: None)
    assert local.available_cpus() == 4
    monkeypatch.setattr(local, "cgroup_cpu_quota", lambda: 2.5)
    assert local.available_cpus() == 2
    monkeypatch.setattr(local, "cgroup_cpu_quota", lambda: 0.5)
    assert local.available_cpus() == 1


class Clock:
    """Wall time, this process's CPU time and the CPUs' busy seconds, moved by hand."""

    def __init__(self) -> None:
        self.wall = self.own = self.busy = 0.0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(local.time, "monotonic", lambda: self.wall)
        monkeypatch.setattr(local.time, "process_time", lambda: self.own)
        monkeypatch.setattr(local, "_busy_seconds", lambda cpus: self.busy)

    def tick(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.wall += seconds
        self.own += seconds * own_cores
        self.busy += seconds * (own_cores + other_cores)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], Clock]]:
    """`machine(cores)`: this process on that many cores, no quota, no OMP_NUM_THREADS, time moved by hand; torch's
    thread count restored after."""
    previous = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(local, "cgroup_cpu_quota", lambda: None)

    def make(cores: int) -> Clock:
        monkeypatch.setattr(local, "allowed_cpus", lambda: list(range(cores)))
        clock = Clock()
        clock.install(monkeypatch)
        return clock

    yield make
    torch.set_num_threads(previous)


def test_auto_threads_leave_the_cores_other_processes_keep_busy(machine: Callable[[int], Clock]) -> None:
    clock = machine(4)
    governor = local.ThreadGovernor("auto")
    assert governor.threads == 4 and torch.get_num_threads() == 4
    clock.tick(0.05, own_cores=1, other_cores=3)  # too short a window even for the first decision
    assert governor.adjust() == 4
    clock.tick(0.2, own_cores=1, other_cores=3)  # the first decision needs only a short one (the model's load)
    assert governor.adjust() == 1
    clock.tick(0.2, own_cores=1, other_cores=0)  # later ones a longer one
    assert governor.adjust() == 1
    clock.tick(2.0, own_cores=4, other_cores=0)
    assert governor.adjust() == 4
    clock.tick(2.0, own_cores=2, other_cores=2)  # a neighbour keeps two cores busy
    assert governor.adjust() == 2 and torch.get_num_threads() == 2
    clock.tick(0.1, own_cores=2, other_cores=0)  # too short a window to judge: unchanged
    assert governor.adjust() == 2
    clock.tick(2.0, own_cores=2, other_cores=4)  # more busy than there are cores: still one thread
    assert governor.adjust() == 1
    clock.tick(2.0, own_cores=1, other_cores=0)  # the neighbour is gone
    assert governor.adjust() == 4


def test_the_first_batch_beside_a_busy_neighbour_already_leaves_its_cores(
    machine: Callable[[int], Clock], monkeypatch: pytest.MonkeyPatch, llama_dir: Path
) -> None:
    """The governor starts before the model loads: the load is its first window, so the first batch does not run on
    every core while another process keeps them busy."""
    clock = machine(2)
    read = local.Weights.read

    def slow_read(*args, **kwargs):  # the load, while a neighbour keeps one core busy
        clock.tick(0.3, own_cores=1, other_cores=1)
        return read(*args, **kwargs)

    monkeypatch.setattr(local.Weights, "read", slow_read)
    seen = []  # torch's thread count where each batch runs (it is kept per thread)
    batch = LocalModel._generate_batch
    monkeypatch.setattr(
        LocalModel, "_generate_batch", lambda self, *args: seen.append(torch.get_num_threads()) or batch(self, *args)
    )
    model = LocalModel(str(llama_dir), batch_size=4, device="cpu", dtype="float32")
    asyncio.run(model.generate([ask("Hi")], SamplingParams(temperature=0, max_tokens=2)))
    assert model._governor.threads == 1 and seen == [1]


def test_a_neighbour_arriving_mid_batch_is_met_at_the_next_decode_step(
    machine: Callable[[int], Clock], monkeypatch: pytest.MonkeyPatch, llama_dir: Path
) -> None:
    clock = machine(2)
    counts = []  # torch's thread count at each decode step, where the step runs
    forward = local_decode.Decoder._forward

    def step(self, ids, *args, **kwargs):
        if ids.shape[1] == 1:
            counts.append(torch.get_num_threads())
            if len(counts) == 3:  # a neighbour starts on the other core, mid-batch
                clock.tick(1.0, own_cores=1, other_cores=1)
        return forward(self, ids, *args, **kwargs)

    monkeypatch.setattr(local_decode.Decoder, "_forward", step)
    model = LocalModel(str(llama_dir), batch_size=4, device="cpu", dtype="float32")
    asyncio.run(model.generate(REQUESTS[:2], SamplingParams(temperature=0, max_tokens=8)))
    assert counts[:3] == [2, 2, 2] and counts[3:] and set(counts[3:]) == {1}


def test_every_thread_that_runs_a_batch_gets_the_governors_count(machine: Callable[[int], Clock]) -> None:
    """Torch keeps its thread count per thread once a thread has run a parallel operation: a worker thread that ran
    a batch before another thread changed the count must not keep the old one."""
    from concurrent.futures import ThreadPoolExecutor

    clock = machine(2)
    governor = local.ThreadGovernor("auto")

    def batch() -> int:  # what a batch on a worker thread does first (`LocalModel._pace`), then its work
        governor.adjust()
        torch.ones(1 << 16).sum()  # a parallel operation: this thread keeps its own count from now on
        return torch.get_num_threads()

    with ThreadPoolExecutor(1) as one, ThreadPoolExecutor(1) as another:
        assert one.submit(batch).result() == 2
        clock.tick(2.0, own_cores=1, other_cores=1)  # a neighbour arrives; the other thread adjusts first
        assert another.submit(batch).result() == 1
        assert one.submit(batch).result() == 1  # not its old 2


def test_a_fixed_thread_count_or_omp_num_threads_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = torch.get_num_threads()
    clock = Clock()
    clock.install(monkeypatch)
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        fixed = local.ThreadGovernor(1)
        clock.tick(2.0, own_cores=1, other_cores=0)
        assert fixed.adjust() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        governed = local.ThreadGovernor("auto")
        clock.tick(2.0, own_cores=0, other_cores=0)
        assert governed.adjust() == 1
    finally:
        torch.set_num_threads(previous)
