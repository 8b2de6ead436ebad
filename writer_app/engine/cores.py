"""How many threads an engine gets: physical cores, and the "auto" setting, stated once.

ggml's worker threads spin-wait between steps, so each one holds a whole core: two
engine threads on one core (hyper-threads) or on the core the GUI needs make everything
slower, never faster. So "auto" counts PHYSICAL cores, not logical CPUs:

  * the window: the physical cores minus one, left for the GUI thread (at least 1);
  * the command line: all physical cores (nothing else to keep responsive);

and a number the writer chose is capped to the same free cores.

Physical cores on Linux come from /sys (each CPU's package and core id; the distinct
pairs are the cores), else /proc/cpuinfo ("physical id" + "core id"), because
os.cpu_count() counts hyper-threads. Elsewhere (macOS, Windows) the standard library has
no portable way to ask and this module keeps to it: os.cpu_count() is used there.
Only the CPUs this process may run on (its affinity, e.g. a container's cpuset) count.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

AUTO = "auto"
Threads = int | str  # a count, or AUTO

SYS_CPU = Path("/sys/devices/system/cpu")
PROC_CPUINFO = Path("/proc/cpuinfo")


def usable_cpus() -> set[int] | None:
    """The logical CPUs this process may run on (None where the OS can't say)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def core_ids_from_sys(cpus: Iterable[int], root: Path = SYS_CPU) -> set[tuple[str, str]]:
    """(package id, core id) of each logical CPU in `cpus`, read from sysfs topology."""
    cores = set()
    for cpu in cpus:
        topology = root / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return set()  # partial topology: don't guess from part of it
        cores.add((package, core))
    return cores


def core_ids_from_cpuinfo(text: str, cpus: set[int] | None) -> set[tuple[str, str]]:
    """(physical id, core id) of each processor block in /proc/cpuinfo text."""
    cores = set()
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if "processor" not in fields or "core id" not in fields:
            continue
        if cpus is not None and int(fields["processor"]) not in cpus:
            continue
        cores.add((fields.get("physical id", "0"), fields["core id"]))
    return cores


def physical_cores(
    *,
    cpus: set[int] | None = None,
    sys_root: Path = SYS_CPU,
    cpuinfo: Path = PROC_CPUINFO,
    logical: int | None = None,
) -> int:
    """The physical cores this process may use (at least 1). The arguments are the
    topology to read (tests pass a made-up one); the defaults read this machine's."""
    cpus = cpus if cpus is not None else usable_cpus()
    if cpus:
        cores = core_ids_from_sys(sorted(cpus), sys_root)
        if not cores:
            try:
                cores = core_ids_from_cpuinfo(cpuinfo.read_text(), cpus)
            except OSError:
                cores = set()
        if cores:
            return len(cores)
        return len(cpus)  # no topology at all: every usable CPU counts as a core
    return max(1, logical if logical is not None else os.cpu_count() or 1)


def free_cores(*, for_window: bool, cores: int | None = None) -> int:
    """Cores an engine may keep busy: all of them on the command line, all but the GUI's
    in the window (never fewer than 1)."""
    cores = cores if cores is not None else physical_cores()
    return max(1, cores - 1 if for_window else cores)


def resolve_threads(requested: Threads, *, for_window: bool, cores: int | None = None) -> int:
    """The engine thread count for a setting: AUTO is every free core, a number is kept
    but never more than the free cores (a spinning thread with no core of its own slows
    the others down)."""
    free = free_cores(for_window=for_window, cores=cores)
    if requested == AUTO:
        return free
    if not isinstance(requested, int) or isinstance(requested, bool):
        raise ValueError(f"threads must be {AUTO!r} or a whole number, got {requested!r}")
    return max(1, min(requested, free))
