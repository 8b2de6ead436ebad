"""The whole app's resident memory at one moment: every process of the app, summed.

Each process's own peak (VmHWM) added up says nothing about a model switch, when the
old engine process still lives beside the new one (or, since the switch closes it first
when both would not fit, no longer does). So this samples the app's process tree
(the GUI process and all its descendants: engine processes, multiprocessing's resource
tracker) every 20 ms and keeps the largest sum, with what it was made of.

The sampling runs in a process of its own, started by WholeAppSampler in the app's
process, so it never takes the app's GIL:

    with WholeAppSampler() as sampler:
        ...switch models...
    sampler.result  # {"peak_mib": ..., "at_peak": [{"pid", "name", "rss_mib"}, ...], ...}

Only the standard library is imported: it starts in ~20 ms and holds ~10 MiB (not
counted: it leaves itself out).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

INTERVAL_S = 0.02


def _children(pid: int) -> list[int]:
    """Direct children (the kernel lists them per thread that started them)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split())
        except OSError:
            continue
    return found


def _process(pid: int) -> tuple[str, float] | None:
    """(name, VmRSS in MiB), or None for a process gone (or a zombie: no VmRSS)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    name, rss = "", None
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == "Name":
            name = value.strip()
        elif key == "VmRSS":
            rss = int(value.split()[0]) / 1024
    return None if rss is None else (name, rss)


def sample_tree(root: int, leave_out: int) -> dict[int, tuple[str, float]]:
    """Every live process under root (root included), but leave_out."""
    found: dict[int, tuple[str, float]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid == leave_out or pid in found:
            continue
        process = _process(pid)
        if process is not None:
            found[pid] = process
        todo.extend(_children(pid))
    return found


def watch(root: int, interval_s: float = INTERVAL_S) -> dict:
    """Sample until stdin closes; then the peak and what it was made of."""
    peak: dict[int, tuple[str, float]] = {}
    samples, most_processes = 0, 0
    while True:
        tree = sample_tree(root, leave_out=os.getpid())
        if samples == 0:
            print("ready", flush=True)  # WholeAppSampler waits for the first sample
        samples += 1
        most_processes = max(most_processes, len(tree))
        if sum(mib for _, mib in tree.values()) > sum(mib for _, mib in peak.values()):
            peak = tree
        ready, _, _ = select.select([sys.stdin], [], [], interval_s)
        if ready and not sys.stdin.buffer.read1(4096):
            break
    return {
        "peak_mib": round(sum(mib for _, mib in peak.values()), 1),
        "at_peak": [
            {"pid": pid, "name": name, "rss_mib": round(mib, 1)}
            for pid, (name, mib) in sorted(peak.items(), key=lambda item: -item[1][1])
        ],
        "samples": samples,
        "most_processes": most_processes,
        "interval_ms": interval_s * 1000,
    }


class WholeAppSampler:
    """Samples the calling process's tree from another process while in the with-block."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.result: dict | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WholeAppSampler:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.whole_app_memory", str(os.getpid()),
             str(self.interval_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != b"ready":
            raise RuntimeError("the whole-app memory sampler did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._process is not None
        out, _ = self._process.communicate(timeout=30)  # closes stdin: the sampler stops
        self.result = json.loads(out)


if __name__ == "__main__":
    print(json.dumps(watch(int(sys.argv[1]), float(sys.argv[2]))))
