"""Resident memory from /proc (psutil is not installed, and two numbers are all we need)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Memory:
    rss_mib: float  # VmRSS: resident now
    hwm_mib: float  # VmHWM: the peak resident size so far

    @classmethod
    def of(cls, pid: int | str = "self") -> Memory | None:
        """None when the process is gone (or /proc is not there, e.g. not Linux)."""
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        fields = {}
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024  # kB -> MiB
        if len(fields) < 2:
            return None
        return cls(rss_mib=fields["VmRSS"], hwm_mib=fields["VmHWM"])


def cpu_seconds(pid: int | str = "self") -> float | None:
    """User + system CPU time the process has used so far (clock-tick resolution)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name in (...) may contain spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
