"""Resident memory of `charter iterate`, per round and per step: the whole process tree (the loop and the processes
its steps run in), its RSS summed from /proc every `--every` seconds.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_loop_memory.py examples/loop.yaml --set rounds=2
    PYTHONPATH=src .venv/bin/python benchmarks/bench_loop_memory.py examples/loop.yaml --set isolate_steps=false

The step a sample belongs to is read from the loop's log lines (`ARM round R: STEP`). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STEP_LINE = re.compile(r"(\S+) round (\d+): (\w+)\s*$")


def tree_rss_mb(root: int) -> float:
    """The RSS of `root` and every process below it, in MiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="examples/loop.yaml")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a loop config override")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--log", type=Path, default=None, help="where the loop's output goes (default: a temp file)")
    args = parser.parse_args()

    out = tempfile.mkdtemp(prefix="bench-loop-memory-")
    command = ["charter", "iterate", args.config, "--set", f"output_dir={out}"]
    for item in args.sets:
        command += ["--set", item]
    log_path = args.log or Path(out) / "iterate.log"
    print("command:", " ".join(command), file=sys.stderr)
    cli = Path(sys.executable).parent / "charter"
    began = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen([str(cli), *command[1:]], stdout=log, stderr=subprocess.STDOUT)
        samples: list[tuple[float, str, float]] = []  # (time, step label, MiB)
        current = ["start"]

        def follow() -> None:  # the step now running, from the loop's log
            with open(log_path) as lines:
                while process.poll() is None or lines.tell() < os.path.getsize(log_path):
                    line = lines.readline()
                    if not line:
                        time.sleep(0.2)
                        continue
                    found = STEP_LINE.search(line.strip())
                    if found:
                        current[0] = f"{found[1]}|{found[2]}|{found[3]}"

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        while process.poll() is None:
            samples.append((time.monotonic() - began, current[0], tree_rss_mb(process.pid)))
            time.sleep(args.every)
    wall = time.monotonic() - began
    report(samples, process.returncode, wall, os.getloadavg())
    return process.returncode


def report(samples: list[tuple[float, str, float]], code: int, wall: float, load: tuple[float, ...]) -> None:
    steps: dict[str, float] = {}
    rounds: dict[str, float] = {}
    for _, label, mb in samples:
        steps[label] = max(steps.get(label, 0.0), mb)
        parts = label.split("|")
        key = label if len(parts) != 3 or parts[2] == "arena" else f"{parts[0]} round {parts[1]}"
        rounds[key] = max(rounds.get(key, 0.0), mb)
    print(f"exit code {code}; {wall:.0f} s wall; {len(samples)} samples; load average at the end {load[0]:.1f}")
    print("peak resident memory of the process tree (MiB), per step:")
    for label, mb in steps.items():
        print(f"  {label.replace('|', ' '):32s} {mb:8.0f}")
    print("per round:")
    for key, mb in rounds.items():
        print(f"  {key.replace('|', ' '):32s} {mb:8.0f}")
    base = rounds.get("shared round 0")
    if base:
        later = [mb for key, mb in rounds.items() if " round " in key and key != "shared round 0"]
        ratio = f"{max(later) / base:.3f}" if later else "no later round"
        print(f"peak {max(mb for _, _, mb in samples):.0f} MiB; largest later round's peak / round 0's: {ratio}")


if __name__ == "__main__":
    sys.exit(main())
