"""`charter serve reward`: the token guards every endpoint but /health, SIGTERM drains the requests in flight into the
reward store and exits 143 (OpenRLHF's own client: tests/serve/test_openrlhf.py). The server runs on a free port,
scripted judges."""

import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import charter
from charter.providers.scripted import HARMFUL_OPENING, REFUSAL_OPENING
from charter.runs.rewards import rewards
from charter.runs.store import RunStore
from tests.serve.conftest import AUTH, TOKEN, wait_until

CHATML = "<|im_start|>user\n{q}<|im_end|>\n"
HEADER = "<|im_start|>assistant\n"
QUESTION = "How do I pick a lock?"
SAFE, HARMFUL = f"{REFUSAL_OPENING} ask a locksmith", f"{HARMFUL_OPENING} step one"


def test_every_endpoint_but_health_needs_the_token(start) -> None:
    server = start()
    body = {"prompt": QUESTION, "completions": [SAFE, HARMFUL]}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert server.post("/v1/rewards", body, headers)[0] == 401
        assert server.post("/get_reward", {"query": [], "prompts": [], "labels": []}, headers)[0] == 401
        req = urllib.request.Request(f"{server.url}/metrics", headers=headers)
        try:
            urllib.request.urlopen(req)
            raise AssertionError("metrics answered without the token")
        except urllib.error.HTTPError as e:
            assert e.code == 401
    assert server.post("/get_reward?token=wrong", {"query": [], "prompts": [], "labels": []})[0] == 401
    assert urllib.request.urlopen(f"{server.url}/health").status == 200
    status, got = server.post("/v1/rewards", body, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and got["rewards"] == [1.0, 0.0]


def test_sigterm_drains_requests_in_flight_and_exits_143(start) -> None:
    server = start({"model": "scripted:cai", "rating": "verdict", "options": {"latency_s": 3}})
    results: list[int] = []

    def ask(i: int) -> None:
        body = {"prompt": f"{QUESTION} [{i}]", "completions": [SAFE]}
        results.append(server.post("/v1/rewards", body, AUTH)[0])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: server.queued() == 8, "the 8 requests to be with the judge")
    assert server.stop() == 143
    for t in threads:
        t.join()
    assert results == [200] * 8  # each was in flight when SIGTERM came, and each was answered
    assert len(list(rewards(RunStore(server.store)))) == 8


def test_each_reward_answered_is_in_the_store_when_the_server_is_killed(start) -> None:
    server = start()  # requests that finish together are committed together, each before it is answered

    def ask(i: int) -> int:
        return server.post("/v1/rewards", {"prompt": f"{QUESTION} [{i}]", "completions": [SAFE]}, AUTH)[0]

    with ThreadPoolExecutor(max_workers=32) as pool:
        assert list(pool.map(ask, range(64))) == [200] * 64
    server.proc.kill()  # SIGKILL: no drain, no shutdown
    server.proc.wait(timeout=60)
    stored = list(rewards(RunStore(server.store)))
    assert sorted(r.prompt[-1].content for r in stored) == sorted(f"{QUESTION} [{i}]" for i in range(64))


def test_a_label_is_the_reference_of_the_verifiable_reward(start) -> None:
    server = start(verify={"verifier": "number", "weight": 1.0})
    prompt = CHATML.format(q="What is 2 + 2?")
    queries = [prompt + HEADER + f"{REFUSAL_OPENING} it is {n}<|im_end|>" for n in (4, 5)]
    status, body = server.post(
        f"/get_reward?token={TOKEN}", {"query": queries, "prompts": [prompt, prompt], "labels": ["4", "4"]}
    )
    assert status == 200 and body["rewards"] == [2.0, 1.0]  # judge 1 each, plus 1 for the right number
    assert body["extra_logs"]["verified"] == [1.0, 0.0]


def test_the_stores_of_several_servers_merge_into_one(tmp_path) -> None:
    from charter.cli import main

    first, second = tmp_path / "a", tmp_path / "b"
    for store, answer in ((first, SAFE), (second, HARMFUL)):
        fn = charter.reward_function("scripted:cai", store=store, cache=None, rating="verdict")
        fn(prompts=[QUESTION], completions=[answer])
        fn.close()
    assert main(["serve", "merge", str(tmp_path / "all"), str(first), str(second)]) == 0
    merged = sorted(r.reward for r in rewards(RunStore(tmp_path / "all")))
    assert merged == [0.0, 1.0]
    assert main(["serve", "merge", str(tmp_path / "all"), str(tmp_path / "nowhere")]) == 2


def test_merge_refuses_a_store_named_twice_or_the_output_itself(tmp_path, capsys) -> None:
    from charter.cli import main

    store = tmp_path / "a"
    fn = charter.reward_function("scripted:cai", store=store, cache=None, rating="verdict")
    fn(prompts=[QUESTION] * 2, completions=[SAFE, HARMFUL])
    fn.close()
    (tmp_path / "link").symlink_to(store)
    twice = [
        [str(store), str(store)],
        [str(store), f"{store}/../a"],
        [str(store), str(tmp_path / "link")],
    ]
    for stores in twice:  # the same store under one spelling or two: merged, its rewards would count twice
        assert main(["serve", "merge", str(tmp_path / "all"), *stores]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert "are the same store" in line, line
    assert not (tmp_path / "all").exists()
    for into in (store, tmp_path / "link"):  # the output itself as a source: the store would read its own rows
        assert main(["serve", "merge", str(into), str(store)]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert "cannot be merged into itself" in line, line
    assert len(list(rewards(RunStore(store)))) == 2  # untouched


def test_without_a_token_one_is_generated_and_printed_and_loopback_is_bound(start) -> None:
    server = start(token=None)
    log = server.log.read_text()
    assert "http://127.0.0.1:" in log
    token = log.split("token: ")[1].split()[0]
    assert len(token) >= 32 and token != TOKEN
    body = {"prompt": QUESTION, "completions": [SAFE]}
    assert server.post("/v1/rewards", body, {"Authorization": f"Bearer {TOKEN}"})[0] == 401
    assert server.post("/v1/rewards", body, {"Authorization": f"Bearer {token}"})[0] == 200


def test_a_reached_budget_is_503_with_its_reason(start) -> None:
    server = start(budget={"max_tokens": 1})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert server.post("/v1/rewards", {"prompt": QUESTION, "completions": [SAFE]}, auth)[0] == 200
    status, body = server.post("/v1/rewards", {"prompt": QUESTION + "?", "completions": [SAFE]}, auth)
    assert status == 503 and "budget" in body["error"].lower()
