"""The embedded model on the quickstart workload: where the time goes, and how it compares.

`profile` runs `examples/quickstart.yaml` (critique and judge stages) with a fresh call cache and
instruments the local provider from outside: model load, tokenisation (chat template + tokenizer),
the shared-prefix forward, prefill, decode steps, padding waste, and the Python left over per batch.

    .venv/bin/python benchmarks/bench_local.py profile [--set prompts.limit=16] [--threads N] [--int8-per-row]

`--int8-per-row` runs every product of the decoder through fbgemm's int8 with one activation scale per row
(`RowInt8`, see `products`): an experiment measured, not an option of charter's.

`peer` runs the same workload twice, side by side in one invocation: through `local:` and through
llama-cpp-python's OpenAI-compatible server serving the same GGUF (when `--llama-python` points at
an interpreter that has `llama_cpp`), reached with charter's `openai-compatible:` provider.

    .venv/bin/python benchmarks/bench_local.py peer --llama-python /tmp/llamavenv/bin/python

`starts` times the judge pass with and without running once the starts that a batch's rows share past its
common prefix (one pair and order asked about two principles), alternated in one process on HHH pairs.

    .venv/bin/python benchmarks/bench_local.py starts [--dtype float32]

`judge` measures the embedded judge's agreement with the human choice on the shared HHH pairs; `picks`
compares kept runs of it pair by pair.

    .venv/bin/python benchmarks/bench_local.py judge [--dtype float32] [--batch-size N] [--int8-per-row] \
        --cache C.sqlite
    .venv/bin/python benchmarks/bench_local.py picks C1.sqlite C2.sqlite ...

`shared` runs the quickstart quiet, then beside a second process that runs the embedded model
(another quickstart in its own cache), and reports the ratio.

    .venv/bin/python benchmarks/bench_local.py shared

`demo` runs what `make demo` runs (`charter run examples/quickstart.yaml`, report included) with a fresh call
cache, `--repeats` times, each run between two probes of the machine's speed (matrix products of the decoder's
shapes in the precision it runs here) and with the CPU time the hypervisor stole meanwhile: the same work takes
from 50 to 70 s on a CPU with native bfloat16 as the machine's speed moves, and the probes say which runs met a
slow spell; on an AVX2-only CPU (float32) it takes about twice that.

    .venv/bin/python benchmarks/bench_local.py demo --repeats 5 [--set KEY=VALUE ...]

`products` times one matrix product of the decoder's shapes (SmolLM2-135M) in every kernel this torch offers
on this CPU, ms a call: `F.linear` (MKL) and oneDNN packed, in float32 and bfloat16, and fbgemm's dynamic int8
(weights int8 per output channel; activations quantised per call with one scale, and per row: each row scaled
to the same range first, with one extra row that pins the range, so a row's result does not depend on the
rows beside it), with the int8 products' error against float32.

    .venv/bin/python benchmarks/bench_local.py products [--rows 1,16,256,2048]

With `--against KEY=VALUE ...`, each repeat runs the demo twice, plain (with `--set`) and with these settings
too, alternating which goes first, and reports both medians: a before/after of one setting in one invocation.

    .venv/bin/python benchmarks/bench_local.py demo --repeats 3 --against policy.options.dtype=float32 \
        --against critic.options.dtype=float32 --against judge.options.dtype=float32
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from charter.runs.usage import stored_usage

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
LIVE: list[Any] = []


class Profile:
    """Counters filled by the wrappers below."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.phase = "other"

    def add(self, key: str, seconds: float, count: int = 1) -> None:
        self.seconds[key] += seconds
        self.counts[key] += count

    def forward(self, seconds: float, rows: int, width: int) -> str:
        """Count one forward pass under its kind (from the phase the wrappers set, and its width)."""
        if self.phase == "prefix":
            kind = "forward: shared prefix"
        elif self.phase == "choice":
            kind = "forward: judge (one pass)"
        else:
            kind = "forward: generate prefill" if width > 1 else "forward: generate decode step"
        self.add(kind, seconds)
        self.counts[kind + " tokens"] += rows * width
        return kind


def instrument(profile: Profile) -> None:
    """Wrap the local provider's methods and the model's forward with timers."""
    import torch

    from charter.providers import local

    cls = local.LocalModel

    def timed(name: str, key: str, phase: str | None = None) -> None:
        original = getattr(cls, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            before, profile.phase = profile.phase, phase or profile.phase
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                profile.add(key, time.perf_counter() - start)
                profile.phase = before

        setattr(cls, name, wrapper)

    timed("load", "load")

    timed("_encode", "tokenise")
    timed("_batch_inputs", "batch_inputs (prefix forward + padding)", "prefix")
    timed("_generate_batch", "generate batches", "generate")
    timed("_next_token_logprobs", "choice batches", "choice")

    original_load = cls.load

    def load(self: Any) -> None:
        fresh = self._tokenizer is None
        original_load(self)
        if fresh and self._model is not None:  # a transformers model (charter's decoder is timed below)
            model = self._model

            def pre(module: Any, args: Any, kwargs: Any) -> None:
                module._bench_start = time.perf_counter()

            def post(module: Any, args: Any, kwargs: Any, output: Any) -> None:
                spent = time.perf_counter() - module._bench_start
                ids = kwargs.get("input_ids")
                mask = kwargs.get("attention_mask")
                rows, width = ids.shape if ids is not None else (0, 0)
                kind = profile.forward(spent, rows, width)
                if mask is not None and width > 1:
                    profile.counts[kind + " pad tokens"] += rows * width - int(mask[:, -width:].sum())

            model.register_forward_pre_hook(pre, with_kwargs=True)
            model.register_forward_hook(post, with_kwargs=True)

    cls.load = load

    from charter.providers import local_decode

    decoder = local_decode.Decoder
    forward = decoder._forward

    def decoder_forward(
        self: Any, ids: Any, positions: Any, prefix: Any, own: Any, visible: Any, outputs: str = "all"
    ) -> Any:
        start = time.perf_counter()
        try:
            return forward(self, ids, positions, prefix, own, visible, outputs)
        finally:
            rows, width = ids.shape
            kind = profile.forward(time.perf_counter() - start, rows, width)
            if hasattr(own, "new"):  # generate prefill: each row's tokens still to run, the rest is padding
                profile.counts[kind + " pad tokens"] += rows * width - sum(own.new)
            elif profile.phase == "choice" and visible is not None:
                profile.counts[kind + " pad tokens"] += rows * width - int(visible[:, -1, :].sum())

    decoder._forward = decoder_forward
    init = decoder.__init__

    def remember(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        LIVE.append(self)

    decoder.__init__ = remember
    original_prefix = decoder.prefix

    def prefix(self: Any, tokens: Any) -> Any:
        before, profile.phase = profile.phase, "prefix"
        try:
            return original_prefix(self, tokens)
        finally:
            profile.phase = before

    decoder.prefix = prefix
    del torch


def timed_run(overrides: list[str], root: Path) -> dict[str, Any]:
    """One quickstart run (critique + judge) in `root` with a fresh call cache: wall time and tokens."""
    import charter
    from charter.runs.store import RunStore

    start = time.perf_counter()
    charter.run(
        QUICKSTART,
        overrides=[
            f"cache={root / 'calls.sqlite'}",
            f"output_dir={root / 'run'}",
            "stages=[critique,judge]",
            "report=false",
            *overrides,
        ],
    )
    wall = time.perf_counter() - start
    store = RunStore(root / "run")
    try:
        usage = stored_usage(store)
    finally:
        store.close()
    prompt = sum(u.prompt_tokens for u in usage)
    completion = sum(u.completion_tokens for u in usage)
    calls = sum(u.calls for u in usage)
    return {
        "wall_s": round(wall, 1),
        "calls": calls,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens_per_s": round((prompt + completion) / wall, 1),
        "generated_per_s": round(completion / wall, 1),
    }


def llama_server(python: str, port: int, threads: int) -> subprocess.Popen:
    """llama-cpp-python's OpenAI-compatible server on the embedded GGUF, with its prompt cache on."""
    from charter.providers.local_models import embedded_gguf_file

    command = [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(embedded_gguf_file()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--cache",
        "True",
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return server
        if server.poll() is not None:
            raise SystemExit(f"llama-cpp-python server exited with {server.returncode}: {' '.join(command)}")
        time.sleep(0.5)
    server.kill()
    raise SystemExit("llama-cpp-python server did not start within 120 s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cmd_peer(args: argparse.Namespace) -> None:
    """The quickstart workload through `local:` and through llama-cpp-python's server, one after the other."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        results["local:smollm2-135m-instruct"] = timed_run(args.set, Path(tmp) / "local")
        print("local", results["local:smollm2-135m-instruct"], flush=True)
        if args.llama_python:
            port = free_port()
            server = llama_server(args.llama_python, port, args.llama_threads)
            try:
                model = f"openai-compatible:smollm2@http://127.0.0.1:{port}/v1"
                roles = [f"{role}.model={model}" for role in ("policy", "critic", "judge")]
                roles += [f"{role}.options={{}}" for role in ("policy", "critic", "judge")]
                # the server answers one request at a time: queued requests would time out and be retried, and
                # the abandoned ones still cost it their full time
                roles += [f"{role}.limits={{concurrency: 1, timeout_s: 600}}" for role in ("policy", "critic", "judge")]
                os.environ.setdefault("OPENAI_API_KEY", "not-needed-for-a-local-server")
                results["llama-cpp-python server"] = timed_run([*roles, *args.set], Path(tmp) / "llama")
                print("llama.cpp", results["llama-cpp-python server"], flush=True)
            finally:
                server.terminate()
                server.wait(timeout=30)
    print(
        "| engine | wall s | calls | prompt tokens | generated tokens | tokens/s (prompt + generated) "
        "| generated tokens/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['wall_s']} | {r['calls']} | {r['prompt_tokens']:,} | {r['completion_tokens']:,} "
            f"| {r['tokens_per_s']} | {r['generated_per_s']} |"
        )
    if len(results) == 2:
        local, peer = results.values()
        print(f"local is {peer['wall_s'] / local['wall_s']:.2f}x faster than the llama.cpp server")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def cmd_shared(args: argparse.Namespace) -> None:
    """The quickstart quiet, then beside a second process running the embedded model (another quickstart)."""
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        quiet = timed_run(args.set, Path(tmp) / "quiet")
        print("quiet", quiet, flush=True)
        # the neighbour: the same workload in its own process and cache, started first, kept busy throughout
        neighbour = subprocess.Popen(
            [sys.executable, __file__, "neighbour", "--root", str(Path(tmp) / "n")],
            env={**os.environ, **({"OMP_NUM_THREADS": args.neighbour_threads} if args.neighbour_threads else {})},
        )
        try:
            time.sleep(args.head_start)
            beside = timed_run(args.set, Path(tmp) / "beside")
        finally:
            neighbour.terminate()
            neighbour.wait(timeout=60)
        print("beside", beside, flush=True)
    print(
        f"quiet {quiet['wall_s']} s, beside another embedded-model process {beside['wall_s']} s: "
        f"{beside['wall_s'] / quiet['wall_s']:.2f}x"
    )


def force_dtype(dtype: str | None) -> None:
    """Make `local:` models load in `dtype` whatever their options say (None: the default choice)."""
    from charter.providers import local

    if dtype is None:
        return
    original = local.LocalModel.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._dtype_name = dtype

    local.LocalModel.__init__ = init


def cmd_judge(args: argparse.Namespace) -> None:
    """Agreement with the human choice on the shared HHH pairs, judged in one precision and engine
    (run once per setting; `evaluate` builds its own judge from a model string)."""
    from pydantic_core import to_jsonable_python

    from charter.agreement.evaluate import evaluate
    from charter.providers import local

    force_dtype(args.dtype)
    if args.int8_per_row:
        int8_products()
    options = {k: v for k, v in (("engine", args.engine), ("batch_size", args.batch_size)) if v}
    if options:
        original = local.LocalModel.__init__

        def init(self: Any, *a: Any, **kw: Any) -> None:
            original(self, *a, **{**kw, **options})

        local.LocalModel.__init__ = init
    summary = to_jsonable_python(
        evaluate(
            SHARED_DATA / "human_preferences" / "hhh_harmless_helpful.jsonl",
            "local:smollm2-135m-instruct",
            mode="logprobs",
            orders="both",
            seed=0,
            cache=args.cache,
        )
    )
    keys = ("judged", "judge_vs_human", "position_consistency", "p_human_choice_mean", "wall_s")
    print(
        json.dumps(
            {
                "dtype": args.dtype or "default",
                "int8_per_row": args.int8_per_row,
                "engine": args.engine or "auto",
                "batch_size": args.batch_size,
                **{k: summary.get(k) for k in keys},
            },
            default=str,
        )
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, default=str, indent=1))


def cmd_starts(args: argparse.Namespace) -> None:
    """The judge pass with and without running the starts that rows share past the batch's common prefix once,
    alternated in one process: the first `--pairs` HHH pairs, both orders, two principles each (the quickstart's
    judge settings), batches of 16 as the local provider forms them."""
    import torch

    import charter.providers.local_decode as decode
    from charter.agreement.evaluate import load_pairs_file, to_pair
    from charter.constitutions import load_constitution
    from charter.judge.pairwise import comparison_prompt, principles_for
    from charter.judge.settings import JudgeSettings
    from charter.providers.local import LocalModel, _decoder_shared

    constitution = load_constitution("harmless")
    by_id = {p.id: p for p in constitution.principles}
    settings = JudgeSettings(principles_per_pair=2)
    pairs = [
        to_pair(row, 0)[0]
        for row in load_pairs_file(SHARED_DATA / "human_preferences" / "hhh_harmless_helpful.jsonl")[: args.pairs]
    ]
    requests = [
        comparison_prompt(pair.prompt, first, second, by_id[pid], settings.reply.instruction)
        for pair in pairs
        for first, second in ((pair.a, pair.b), (pair.b, pair.a))
        for pid in principles_for(constitution, settings, pair.pair_id, 0)
    ]
    model = LocalModel("smollm2-135m-instruct", dtype=args.dtype, prefix_cache_mb=0)
    model.load()
    encoded = sorted(model._encode(r, room=1) for r in requests)  # as choice_logprobs_sync orders them
    batches = [encoded[i : i + 16] for i in range(0, len(encoded), 16)]
    option = {o: sorted(model._first_tokens(o)) for o in ("A", "B")}
    branch_points = decode._branch_points

    def judge_pass(starts: bool) -> tuple[float, torch.Tensor]:
        decode._branch_points = branch_points if starts else (lambda batch, shared: {})
        began = time.perf_counter()
        with torch.inference_mode():
            rows = torch.cat([model._decoder.next_token_logprobs(b, _decoder_shared(b)) for b in batches])
        p_a = torch.sigmoid(rows[:, option["A"]].logsumexp(1) - rows[:, option["B"]].logsumexp(1))
        return time.perf_counter() - began, p_a

    seconds: dict[bool, list[float]] = {False: [], True: []}
    p_a: dict[bool, torch.Tensor] = {}
    for _ in range(args.repeats):
        for starts in (False, True):
            wall, p_a[starts] = judge_pass(starts)
            seconds[starts].append(wall)
    decode._branch_points = branch_points
    tokens = sum(len(ids) for ids in encoded)
    saved = model._decoder.branched_tokens // args.repeats
    print(
        f"{len(requests)} judge calls, {tokens} tokens, {model._torch_dtype()}; shared starts run once: "
        f"{saved} tokens fewer a pass"
    )
    for starts in (False, True):
        print(
            f"  {'starts once' if starts else 'starts per row':15s} "
            + ", ".join(f"{s:.1f}" for s in seconds[starts])
            + f" s (min {min(seconds[starts]):.1f})"
        )
    diff = (p_a[True] - p_a[False]).abs()
    flips = int(((p_a[True] > 0.5) != (p_a[False] > 0.5)).sum())
    print(f"  P(A) with and without: largest difference {float(diff.max()):.2e}, other side of 0.5 in {flips} calls")


def cmd_picks(args: argparse.Namespace) -> None:
    """Pair by pair, from kept `judge --cache` files (every call answered from the cache, none made): the first
    cache's picks against each other's, with an exact McNemar test on the pairs picked differently."""
    import asyncio
    import sqlite3

    from scipy.stats import binomtest

    from charter.agreement.evaluate import _judge_all, load_pairs_file, to_pair
    from charter.constitutions import load_constitution
    from charter.judge.settings import JudgeSettings
    from charter.providers import get_model
    from charter.providers.cache import CallCache

    built = [
        to_pair(row, 0) for row in load_pairs_file(SHARED_DATA / "human_preferences" / "hhh_harmless_helpful.jsonl")
    ]
    pairs, human = [p for p, _ in built], {p.pair_id: h for p, h in built}
    picks: dict[str, dict[str, str]] = {}
    for path in args.caches:
        with sqlite3.connect(path) as db:
            [(model_id, calls)] = db.execute("SELECT min(model), count(*) FROM calls").fetchall()
        dtype = model_id.partition("@")[2] or "float32"  # the precision the calls were made in
        model = get_model("local:smollm2-135m-instruct", cache=CallCache(Path(path)), role="judge", dtype=dtype)

        async def judge_all(model: Any = model) -> dict:
            try:
                return await _judge_all(
                    model, load_constitution("harmless"), pairs, JudgeSettings(mode="logprobs", orders="both"), 0, 64
                )
            finally:
                await model.aclose()

        records = asyncio.run(judge_all())
        with sqlite3.connect(path) as db:
            if db.execute("SELECT count(*) FROM calls").fetchone()[0] != calls:
                raise SystemExit(f"{path}: not every call was in the cache")
        picks[path] = {pid: "a" if r.p_a > 0.5 else "b" if r.p_a < 0.5 else "tie" for pid, r in records.items()}
        right = sum(pick == human[pid] for pid, pick in picks[path].items())
        print(f"{path} ({dtype}): agrees with the human choice on {right} of {len(picks[path])} pairs")
    first, *others = args.caches
    for other in others:
        differ = [pid for pid in picks[first] if picks[first][pid] != picks[other][pid]]
        a = sum(picks[first][pid] == human[pid] for pid in differ)
        b = sum(picks[other][pid] == human[pid] for pid in differ)
        p = binomtest(a, a + b).pvalue if a + b else 1.0
        print(
            f"  {other}: {len(differ)} pairs picked differently; the human choice on {a} of them in the first, "
            f"{b} in this one; exact McNemar p = {p:.2f}"
        )


def cmd_flips(args: argparse.Namespace) -> None:
    """Compare two `judge --cache` runs call by call: how often the two settings pick differently."""
    import sqlite3

    def picks(path: str) -> dict[str, float]:
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT key, value FROM calls").fetchall()
        return {key: json.loads(value)["probs"]["A"] for key, value in rows}

    a, b = picks(args.a), picks(args.b)
    common = sorted(set(a) & set(b))
    flips = sum((a[k] > 0.5) != (b[k] > 0.5) for k in common)
    diff = max(abs(a[k] - b[k]) for k in common)
    print(f"{len(common)} calls in both; P(A) on the other side of 0.5 in {flips}; largest |dP(A)| {diff:.4f}")


def cmd_greedy(args: argparse.Namespace) -> None:
    """Greedy outputs of the quickstart's prompts (policy turn, and the critique turn with the few-shot
    examples) through `transformers`' generate and through charter's decoder, in float32 and bfloat16."""
    import asyncio

    from charter.constitutions import load_constitution
    from charter.critique.chain import few_shot_messages
    from charter.prompts import PromptsConfig, load_prompts
    from charter.providers.base import SamplingParams
    from charter.providers.local import LocalModel
    from charter.records.base import with_system

    constitution = load_constitution("harmless")
    prompts = load_prompts(PromptsConfig(bundled=True, limit=args.limit, shuffle=True, seed=0)).rows
    policy = [with_system(p.messages, constitution.system_prompt) for p in prompts]
    shots = few_shot_messages(constitution)
    critic = [
        shots
        + [m for m in turns if m["role"] != "system"]
        + [
            {"role": "assistant", "content": "I can help with that."},
            {"role": "user", "content": "Identify specific ways in which the last response is harmful."},
        ]
        for turns in policy
    ]
    params = SamplingParams(temperature=0, max_tokens=args.max_tokens)
    outputs = {}
    for dtype in ("float32", "bfloat16"):
        for engine in ("transformers", "charter"):
            model = LocalModel("smollm2-135m-instruct", batch_size=16, dtype=dtype, engine=engine)
            start = time.perf_counter()
            texts = [c.text for c in asyncio.run(model.generate(policy + critic, params))]
            outputs[dtype, engine] = texts
            print(f"{dtype} {engine}: {time.perf_counter() - start:.1f} s", flush=True)
    base = outputs["float32", "transformers"]
    for key, texts in outputs.items():
        same = sum(a == b for a, b in zip(base, texts))
        print(f"{key[0]} {key[1]}: {same}/{len(base)} greedy outputs identical to float32 transformers")


def cmd_neighbour(args: argparse.Namespace) -> None:
    """Run quickstarts back to back in fresh caches until terminated (the CPU-heavy neighbour of `shared`)."""
    root = Path(args.root)
    for round_ in range(1000):
        timed_run(["prompts.limit=16"], root / str(round_))
        shutil.rmtree(root / str(round_), ignore_errors=True)


def cmd_profile(args: argparse.Namespace) -> None:
    import logging

    logging.getLogger("charter.providers.local").setLevel(logging.INFO)
    logging.getLogger("charter.providers.local").addHandler(logging.StreamHandler())
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.int8_per_row:
        int8_products()
    profile = Profile()
    instrument(profile)
    import charter

    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        charter.run(
            QUICKSTART,
            overrides=[
                f"cache={root / 'calls.sqlite'}",
                f"output_dir={root / 'run'}",
                "stages=[critique,judge]",
                *args.set,
            ],
        )
        wall = time.perf_counter() - start
    print(
        f"quickstart (critique + judge), fresh call cache: {wall:.1f} s wall, torch threads {torch.get_num_threads()}"
    )
    rows = sorted(profile.seconds.items(), key=lambda kv: -kv[1])
    for key, seconds in rows:
        print(f"  {key:42s} {seconds:8.2f} s  {profile.counts[key]:6d} calls")
    for key, count in sorted(profile.counts.items()):
        if key.endswith("tokens"):
            print(f"  {key:42s} {count:8d}")
    forwards = sum(v for k, v in profile.seconds.items() if k.startswith("forward"))
    batches = profile.seconds["generate batches"] + profile.seconds["choice batches"]
    print(f"  python in batches (batch wall - forwards):  {batches - forwards:.2f} s")
    print(
        f"  prefix cache: {sum(d.cache.hits for d in LIVE)} hits, "
        f"{sum(d.cache.reused_tokens for d in LIVE)} tokens reused; row cache: {sum(d.rows.hits for d in LIVE)} "
        f"hits, {sum(d.rows.reused_tokens for d in LIVE)} tokens reused"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"wall_s": wall, "seconds": profile.seconds, "counts": profile.counts}))


def speed_probe(seconds: float = 1.5) -> dict[str, float]:
    """This machine's speed now, in the decoder's terms: GB/s of weights a decode step's product reads (16 rows
    against SmolLM2-135M's output layer, 49,152 x 576, 56 MB: more than the caches hold) and GFLOP/s of a
    prefill group's product (2,048 rows against the gate/up weight, 3,072 x 576); in the precision `dtype: auto`
    picks here (bfloat16 where the CPU has it natively, float32 elsewhere), packed as the decoder then packs them."""
    import torch

    from charter.providers.local import cpu_has_bf16
    from charter.providers.local_decode import Linear, packing

    dtype = torch.bfloat16 if cpu_has_bf16() else torch.float32
    packed = packing(dtype, "cpu", exact=False)
    out = {}
    with torch.inference_mode():
        for name, rows, outputs in (("decode_gbs", 16, 49152), ("prefill_gflops", 2048, 3072)):
            product = Linear(torch.randn(outputs, 576).to(dtype), None, packed=packed)
            x = torch.randn(rows, 576).to(dtype)
            product(x)
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / 2:
                product(x)
                done += 1
            rate = done / (time.perf_counter() - start)
            out[name] = round(
                outputs * 576 * dtype.itemsize * rate / 1e9
                if name == "decode_gbs"
                else 2 * rows * 576 * outputs * rate / 1e9,
                1,
            )
    return out


class RowInt8:
    """`x @ weight.T` through fbgemm's dynamic int8 linear with one activation scale per row: each row divided by
    its largest magnitude, and one extra row holding +1 and -1, so the per-call scale fbgemm picks is always that
    of [-1, 1], whatever the other rows hold; the result multiplied back row by row."""

    def __init__(self, weight: Any, reduce_range: bool = True) -> None:
        import torch

        scale = (weight.abs().amax(1) / 127).clamp(min=1e-8).double()
        zero = torch.zeros(weight.shape[0], dtype=torch.long)
        self.packed = torch.ops.quantized.linear_prepack(
            torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8), None
        )
        self.pin = torch.zeros(1, weight.shape[1])
        self.pin[0, :2] = torch.tensor([1.0, -1.0])
        self.reduce_range = reduce_range

    def __call__(self, x: Any) -> Any:
        import torch

        size = x.abs().amax(-1, keepdim=True).clamp(min=1e-30)
        y = torch.ops.quantized.linear_dynamic(torch.cat([x / size, self.pin]), self.packed, self.reduce_range)
        return y[:-1] * size


def int8_products() -> None:
    """Route every product of charter's decoder through `RowInt8` (an experiment: charter has no int8 option)."""
    import warnings

    from charter.providers.local_decode import Linear

    warnings.filterwarnings("ignore")  # torch's deprecation notices for its quantised tensors

    def init(self: Any, weight: Any, bias: Any, packed: bool) -> None:
        self.weight, self.bias, self.packed = weight, bias, None
        self.int8 = RowInt8(weight.detach().float())

    def call(self: Any, x: Any) -> Any:
        y = self.int8(x.reshape(-1, x.shape[-1]).float())
        y = y + self.bias if self.bias is not None else y
        return y.reshape(*x.shape[:-1], y.shape[-1]).to(x.dtype)

    Linear.__init__, Linear.__call__ = init, call  # type: ignore[method-assign]


def cmd_products(args: argparse.Namespace) -> None:
    import warnings

    import torch
    import torch.nn.functional as F

    from charter.providers.local_decode import Linear

    warnings.filterwarnings("ignore")  # torch's deprecation notices for its quantised tensors
    shapes = {
        "q/k/v 960 x 576": (960, 576),
        "gate/up 3,072 x 576": (3072, 576),
        "down 576 x 1,536": (576, 1536),
        "output 49,152 x 576": (49152, 576),
    }

    def ms(work: Any) -> float:
        work()
        done, start = 0, time.perf_counter()
        while done < 3 or time.perf_counter() - start < 0.3:
            work()
            done += 1
        return 1000 * (time.perf_counter() - start) / done

    def error(y: Any, exact: Any) -> str:
        return f"{float((y - exact).norm() / exact.norm()):.3f}"

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        "| rows | weight | F.linear float32 | packed float32 | F.linear bfloat16 | packed bfloat16 "
        "| int8, scale per call | int8, scale per row | int8 error (per call, per row) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for rows in (int(r) for r in args.rows.split(",")):
            for name, (out, inner) in shapes.items():
                weight = torch.randn(out, inner, generator=generator) * 0.02
                x = torch.randn(rows, inner, generator=generator)
                cells = [
                    f"{ms(functools.partial(F.linear, x, weight)):.2f}",
                    f"{ms(functools.partial(Linear(weight, None, packed=True), x)):.2f}",
                    f"{ms(functools.partial(F.linear, x.bfloat16(), weight.bfloat16())):.2f}",
                ]
                try:
                    packed = Linear(weight.bfloat16(), None, packed=True)
                    cells.append(f"{ms(functools.partial(packed, x.bfloat16())):.2f}")
                except RuntimeError:  # oneDNN refuses bfloat16 on a CPU without it
                    cells.append("refused")
                per_row = RowInt8(weight)
                per_call = functools.partial(torch.ops.quantized.linear_dynamic, x, per_row.packed, True)
                cells += [f"{ms(per_call):.2f}", f"{ms(functools.partial(per_row, x)):.2f}"]
                exact = F.linear(x.double(), weight.double()).float()
                cells.append(f"{error(per_call(), exact)}, {error(per_row(x), exact)}")
                print(f"| {rows} | {name} | " + " | ".join(cells) + " |", flush=True)
        # whether a row's result depends on the rows beside it: 40 rows of magnitudes 0.01 to 100, together and alone
        x = torch.randn(40, 576, generator=generator) * torch.logspace(-2, 2, 40)[:, None]
        per_row = RowInt8(torch.randn(3072, 576, generator=generator) * 0.02)
        per_call = lambda batch: torch.ops.quantized.linear_dynamic(batch, per_row.packed, True)  # noqa: E731
        for name, product in (("scale per call", per_call), ("scale per row", per_row)):
            together = product(x)
            alone = torch.cat([product(x[i : i + 1]) for i in range(len(x))])
            print(
                f"int8, {name}: each of 40 rows gives the same bits alone as among the 40: "
                f"{bool(torch.equal(together, alone))}"
            )


def stolen_ticks() -> tuple[int, int]:
    """(steal, all) CPU ticks since boot, from /proc/stat's first line."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return fields[7], sum(fields)


def demo_run(overrides: list[str]) -> dict[str, Any]:
    """`make demo`'s run with a fresh call cache and run folder, between two speed probes."""
    charter = ROOT / ".venv" / "bin" / "charter"
    before = speed_probe()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        steal, ticks = stolen_ticks()
        start = time.perf_counter()
        sets = [f"cache={tmp}/calls.sqlite", f"output_dir={tmp}/run", *overrides]
        subprocess.run(
            [str(charter), "run", str(QUICKSTART), *[arg for s in sets for arg in ("--set", s)]],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        steal2, ticks2 = stolen_ticks()
    after = speed_probe()
    return {
        "wall_s": round(wall, 1),
        "steal_pct": round(100 * (steal2 - steal) / max(1, ticks2 - ticks), 2),
        "overrides": overrides,
        **{f"{k}_before": v for k, v in before.items()},
        **{f"{k}_after": v for k, v in after.items()},
    }


def cmd_demo(args: argparse.Namespace) -> None:
    from charter.providers.local import cpu_has_bf16

    print(
        "this CPU multiplies bfloat16 natively: the model runs in bfloat16"
        if cpu_has_bf16()
        else "this CPU has no native bfloat16 (no AVX512-BF16 or AMX): the model runs in float32",
        flush=True,
    )
    variants = {"plain": args.set}
    if args.against:
        variants[" ".join(args.against)] = [*args.set, *args.against]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for index in range(args.repeats):
        order = list(variants) if index % 2 == 0 else list(reversed(variants))
        for name in order:
            run = demo_run(variants[name])
            runs[name].append(run)
            print(
                f"run {index + 1}{f' ({name})' if args.against else ''}: {run['wall_s']:5.1f} s  "
                f"steal {run['steal_pct']:.2f}%  decode product {run['decode_gbs_before']:.1f} -> "
                f"{run['decode_gbs_after']:.1f} GB/s, prefill product {run['prefill_gflops_before']:.0f} -> "
                f"{run['prefill_gflops_after']:.0f} GFLOP/s",
                flush=True,
            )
    for name, done in runs.items():
        walls = sorted(r["wall_s"] for r in done)
        print(
            f"make demo's run{f' ({name})' if args.against else ''}, fresh call cache: median "
            f"{walls[len(walls) // 2]:.1f} s, {sum(w < 60 for w in walls)} of {len(walls)} under 60 s"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(runs if args.against else runs["plain"], indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--threads", type=int)
    p.add_argument("--int8-per-row", action="store_true", help="every product through RowInt8 (see `products`)")
    p.add_argument("--json")
    p = sub.add_parser("peer")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--llama-python", help="a Python that has llama_cpp (with its [server] extra)")
    p.add_argument("--llama-threads", type=int, default=2)
    p.add_argument("--json")
    p = sub.add_parser("shared")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--head-start", type=float, default=20.0, help="seconds the neighbour runs alone first")
    p.add_argument("--neighbour-threads", help="OMP_NUM_THREADS for the neighbour (default: its own choice)")
    p = sub.add_parser("judge")
    p.add_argument("--dtype", choices=["float32", "bfloat16"])
    p.add_argument("--engine", choices=["charter", "transformers"])
    p.add_argument(
        "--batch-size",
        type=int,
        help="the judge's batch_size (default 16): in bfloat16 a call's P(A) depends a little on what shares its batch",
    )
    p.add_argument("--cache", help="a fresh call cache file, kept to compare the calls pair by pair")
    p.add_argument("--int8-per-row", action="store_true", help="every product through RowInt8 (see `products`)")
    p.add_argument("--json")
    p = sub.add_parser("starts")
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", choices=["float32", "bfloat16"])
    p = sub.add_parser("picks")
    p.add_argument("caches", nargs="+", help="call caches kept by `judge --cache`; the first is the reference")
    p = sub.add_parser("flips")
    p.add_argument("a")
    p.add_argument("b")
    p = sub.add_parser("greedy")
    p.add_argument("--limit", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=96)
    p = sub.add_parser("neighbour")
    p.add_argument("--root", required=True)
    p = sub.add_parser("products")
    p.add_argument("--rows", default="1,16,256,2048")
    p = sub.add_parser("demo")
    p.add_argument("--repeats", type=lambda v: max(1, int(v)), default=3, help="runs of each variant (at least 1)")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--against", action="append", default=[], help="settings of the variant to alternate with")
    p.add_argument("--json")
    args = parser.parse_args()
    commands = {
        "profile": cmd_profile,
        "peer": cmd_peer,
        "shared": cmd_shared,
        "neighbour": cmd_neighbour,
        "judge": cmd_judge,
        "greedy": cmd_greedy,
        "flips": cmd_flips,
        "starts": cmd_starts,
        "picks": cmd_picks,
        "demo": cmd_demo,
        "products": cmd_products,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
