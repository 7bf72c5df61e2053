"""The server's counters in the Prometheus text format (requests, rewards, failures, judge calls, cost, latency)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from charter.online.reward import JudgeReward

#: Latency histogram buckets, in seconds.
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """What the server has done since it started."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.rewards = 0
        self.failures = 0
        self.rejected = 0
        self.buckets = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0

    def request(self, path: str, status: int, seconds: float) -> None:
        self.requests[(path, status)] += 1
        self.latency_sum += seconds
        self.latency_count += 1
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1

    def scored(self, scored: list[Any]) -> None:
        self.rewards += len(scored)
        self.failures += sum(s.reward is None for s in scored)

    def render(self, reward: JudgeReward, queued: int) -> str:
        lines = ["# TYPE charter_requests_total counter"]
        for (path, status), n in sorted(self.requests.items()):
            lines.append(f'charter_requests_total{{path="{path}",status="{status}"}} {n}')
        lines += _counter("charter_rewards_total", self.rewards, "rewards answered, failures included")
        lines += _counter("charter_reward_failures_total", self.failures, "failed judgments (null rewards)")
        lines += _counter("charter_rejected_total", self.rejected, "requests answered 429 (queue full)")
        calls, cached, cost = _usage(reward)
        lines += _counter("charter_judge_calls_total", calls, "judge calls paid")
        lines += _counter("charter_cache_hits_total", cached, "judge calls answered by the call cache")
        lines += _counter("charter_cost_usd_total", cost, "judge cost in USD")
        lines += ["# TYPE charter_queued gauge", f"charter_queued {queued}"]
        lines.append("# TYPE charter_request_seconds histogram")
        for bound, n in zip(BUCKETS, self.buckets):
            lines.append(f'charter_request_seconds_bucket{{le="{bound}"}} {n}')
        lines.append(f'charter_request_seconds_bucket{{le="+Inf"}} {self.latency_count}')
        lines.append(f"charter_request_seconds_sum {self.latency_sum:.6f}")
        lines.append(f"charter_request_seconds_count {self.latency_count}")
        return "\n".join(lines) + "\n"


def _counter(name: str, value: float, help_: str) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} counter", f"{name} {value:g}"]


def _usage(reward: JudgeReward) -> tuple[int, int, float]:
    tallies = list(reward.judge.meter.tallies.values())
    return sum(t.calls for t in tallies), sum(t.cached for t in tallies), sum(t.cost_usd for t in tallies)
