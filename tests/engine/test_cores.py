"""Physical cores and the "auto" thread count, on made-up CPU topologies (engine/cores.py)."""

from __future__ import annotations

import pytest

from writer_app.engine.cores import (
    core_ids_from_cpuinfo,
    free_cores,
    physical_cores,
    resolve_threads,
)


def fake_sys(root, cpus: dict[int, tuple[int, int]]):
    """A /sys/devices/system/cpu with each logical CPU's (package, core)."""
    for cpu, (package, core) in cpus.items():
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return root


def cpuinfo(path, cpus: dict[int, tuple[int, int]]):
    path.write_text("\n".join(
        f"processor\t: {cpu}\nmodel name\t: Test CPU\nphysical id\t: {package}\n"
        f"core id\t\t: {core}\n" for cpu, (package, core) in cpus.items()))
    return path


# 4 cores with 2 hyper-threads each: 8 logical CPUs.
HYPERTHREADED = {cpu: (0, cpu % 4) for cpu in range(8)}
# Two sockets of 2 cores, the same core ids on each: 4 cores.
TWO_SOCKETS = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}


def test_hyper_threads_are_not_cores(tmp_path):
    root = fake_sys(tmp_path / "sys", HYPERTHREADED)
    assert physical_cores(cpus=set(range(8)), sys_root=root) == 4
    assert physical_cores(cpus={0, 4}, sys_root=root) == 1  # two threads of one core
    assert physical_cores(cpus={0, 1, 4}, sys_root=root) == 2


def test_cores_of_another_socket_count(tmp_path):
    root = fake_sys(tmp_path / "sys", TWO_SOCKETS)
    assert physical_cores(cpus={0, 1, 2, 3}, sys_root=root) == 4


def test_without_sysfs_proc_cpuinfo_says_it(tmp_path):
    info = cpuinfo(tmp_path / "cpuinfo", HYPERTHREADED)
    assert physical_cores(cpus=set(range(8)), sys_root=tmp_path / "none", cpuinfo=info) == 4
    assert core_ids_from_cpuinfo(info.read_text(), {1, 5}) == {("0", "1")}


def test_without_any_topology_each_usable_cpu_is_a_core(tmp_path):
    none = tmp_path / "none"
    assert physical_cores(cpus={0, 1, 2}, sys_root=none, cpuinfo=none) == 3


def test_where_affinity_is_unknown_the_logical_count_is_used():
    assert physical_cores(cpus=set(), logical=6) == 6


def test_this_machine_has_at_least_one_core():
    assert physical_cores() >= 1


@pytest.mark.parametrize(("cores", "window", "cli"), [(1, 1, 1), (2, 1, 2), (4, 3, 4), (16, 15, 16)])
def test_auto_is_every_core_on_the_command_line_and_all_but_one_in_the_window(cores, window, cli):
    assert resolve_threads("auto", for_window=True, cores=cores) == window
    assert resolve_threads("auto", for_window=False, cores=cores) == cli
    assert free_cores(for_window=True, cores=cores) == window


@pytest.mark.parametrize(
    ("asked", "cores", "window", "cli"),
    [(1, 4, 1, 1), (3, 4, 3, 3), (4, 4, 3, 4), (8, 4, 3, 4), (2, 1, 1, 1)],
)
def test_a_number_is_kept_but_never_more_than_the_free_cores(asked, cores, window, cli):
    assert resolve_threads(asked, for_window=True, cores=cores) == window
    assert resolve_threads(asked, for_window=False, cores=cores) == cli


@pytest.mark.parametrize("bad", ["fast", True, 2.5, None])
def test_anything_else_is_refused(bad):
    with pytest.raises(ValueError):
        resolve_threads(bad, for_window=True, cores=4)
