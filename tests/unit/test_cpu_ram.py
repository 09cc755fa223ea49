"""CPU TDP x load and RAM W/GB estimates, TDP lookup in CodeCarbon's table, and the
choice between the RAPL DRAM counter and the RAM estimate.

TDPs expected below were read off codecarbon/data/hardware/cpu_power.csv by hand;
energies are worked out by hand from the model's formula.
"""

from __future__ import annotations

import math

import pytest

from greenml.errors import ConfigError, GreenMLWarning
from greenml.factors.cpu_tdp import TdpTable, normalize_cpu_name
from greenml.meters.cpu import CpuEstimateMeter, CpuInfo, read_cpuinfo
from greenml.meters.ram import (
    DEFAULT_WATTS_PER_GB,
    RamEstimateMeter,
    make_ram_meter,
)
from greenml.meters.rapl import RaplDramMeter
from greenml.testing import FakePowercap, ManualClock

GIB = 2**30


@pytest.fixture(scope="module")
def table():
    return TdpTable.codecarbon()


@pytest.fixture
def clock():
    return ManualClock()


class Times:
    """Cumulative (busy, total) CPU seconds, advanced by the test."""

    def __init__(self) -> None:
        self.busy = 5000.0
        self.total = 20000.0
        self.fail = False

    def run(self, busy_s: float, total_s: float) -> None:
        self.busy += busy_s
        self.total += total_s

    def __call__(self) -> tuple[float, float]:
        if self.fail:
            raise OSError("no /proc/stat")
        return self.busy, self.total


# -- TDP table -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpuinfo_model", "table_name", "tdp_w"),
    [
        ("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "Intel Xeon Gold 6248", 150.0),
        ("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", "Intel Xeon Platinum 8259CL", 210.0),
        ("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", "Intel Xeon E5-2686 v4", 145.0),
        ("AMD EPYC 7763 64-Core Processor", "AMD EPYC 7763", 280.0),
        ("AMD Ryzen 9 5950X 16-Core Processor", "AMD Ryzen 9 5950X", 105.0),
        ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", "Intel Core i7-8700", 65.0),
        ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", "Intel Core i7-8700K", 95.0),
        ("11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz", "Intel Core i5-1135G7", 28.0),
    ],
)
def test_tdp_of_real_cpu_strings(table, cpuinfo_model, table_name, tdp_w):
    match = table.lookup(cpuinfo_model)
    assert match is not None
    assert (match.name, match.tdp_w, match.how) == (table_name, tdp_w, "exact")


def test_normalisation():
    assert normalize_cpu_name("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz") == (
        "intel xeon gold 6248"
    )
    assert normalize_cpu_name("AMD EPYC 7763 64-Core Processor") == "amd epyc 7763"
    assert normalize_cpu_name("AMD Ryzen 7 5800H with Radeon Graphics") == "amd ryzen 7 5800h"


def test_token_matches(table):
    # A short user-supplied name is inside exactly one table name.
    m = table.lookup("Xeon Gold 6248")
    assert (m.name, m.tdp_w, m.how) == ("Intel Xeon Gold 6248", 150.0, "token")
    # A table name inside a longer string; the hyphenated model number stays whole.
    m = table.lookup("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz Engineering Sample")
    assert (m.name, m.tdp_w, m.how) == ("Intel Xeon Gold 6248", 150.0, "token")


def test_unknown_and_ambiguous_names_do_not_match(table):
    assert table.lookup("Intel(R) Xeon(R) Processor @ 2.50GHz") is None  # KVM's model
    assert table.lookup("Common KVM processor") is None
    assert table.lookup("") is None
    small = TdpTable([("Acme X100 A", 10.0), ("Acme X100 B", 20.0)], "test")
    assert small.lookup("X100") is None  # two equally good names, two TDPs
    same = TdpTable([("Acme X100 A", 10.0), ("Acme X100 B", 10.0)], "test")
    assert same.lookup("X100").tdp_w == 10.0


def test_read_cpuinfo(tmp_path):
    blocks = []
    for cpu, pkg in [(0, 0), (1, 0), (2, 1), (3, 1)]:
        blocks.append(
            f"processor\t: {cpu}\nvendor_id\t: GenuineIntel\n"
            "model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\n"
            f"physical id\t: {pkg}\ncore id\t\t: {cpu % 2}\n"
        )
    path = tmp_path / "cpuinfo"
    path.write_text("\n".join(blocks))
    assert read_cpuinfo(path) == CpuInfo(
        "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "GenuineIntel", 2, 4
    )


# -- CPU estimate ----------------------------------------------------------------------


def test_tdp_times_load_integral(table, clock):
    times = Times()
    m = CpuEstimateMeter(
        clock=clock,
        cpu_model="Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
        cpuinfo=CpuInfo(None, "GenuineIntel", sockets=2, logical_cpus=4),
        cpu_times=times,
        tdp_table=table,
    )
    (ch,) = m.channels()
    assert (ch.key, ch.kind, ch.method) == ("cpu:estimate", "cpu", "estimated")
    assert ch.power_limit_w == 300.0  # 150 W x 2 sockets
    details = dict(ch.details)
    assert "CodeCarbon" in details["tdp_source"]
    assert "'Intel Xeon Gold 6248' (exact match)" in details["tdp_source"]
    assert (details["tdp_w_per_package"], details["sockets"]) == ("150", "2")

    # 10 s, 4 CPUs: 30 of 40 CPU-seconds busy -> u = 0.75
    # P = 300 x (0.1 + 0.9 x 0.75) = 232.5 W -> 2325 J
    times.run(30.0, 40.0)
    clock.advance(10.0)
    (r,) = m.read()
    assert r.extra["utilisation"] == pytest.approx(0.75)
    assert r.power_w == pytest.approx(232.5)
    assert r.energy_j == pytest.approx(2325.0)
    # 5 s idle: P = 300 x 0.1 = 30 W -> +150 J
    times.run(0.0, 20.0)
    clock.advance(5.0)
    assert m.read()[0].energy_j == pytest.approx(2475.0)
    # 4 s flat out: 300 W -> +1200 J
    times.run(16.0, 16.0)
    clock.advance(4.0)
    assert m.read()[0].energy_j == pytest.approx(3675.0)


def test_integral_does_not_depend_on_sampling(table):
    # The same 20 s (10 s at u = 1, then 10 s at u = 0) read once or ten times.
    def run(reads: int) -> float:
        clock, times = ManualClock(), Times()
        m = CpuEstimateMeter(
            clock=clock, tdp_w=100.0, cpuinfo=CpuInfo("x", None, 1, 2), cpu_times=times
        )
        for i in range(reads):
            step = 20.0 / reads
            t0 = i * step
            busy = max(0.0, min(step, 10.0 - t0)) * 2  # 2 CPUs
            times.run(busy, step * 2)
            clock.advance(step)
            energy = m.read()[0].energy_j
        return energy

    # hand: 100 W x 10 s + 10 W x 10 s = 1100 J
    assert run(1) == pytest.approx(1100.0)
    assert run(10) == pytest.approx(1100.0)


def test_no_cpu_time_progress_keeps_last_utilisation(clock):
    times = Times()
    m = CpuEstimateMeter(clock=clock, tdp_w=200.0, cpuinfo=CpuInfo("x"), cpu_times=times)
    times.run(5.0, 10.0)  # u = 0.5 -> 200 x 0.55 = 110 W
    clock.advance(1.0)
    assert m.read()[0].energy_j == pytest.approx(110.0)
    clock.advance(0.5)  # the kernel's counters did not tick
    assert m.read()[0].energy_j == pytest.approx(165.0)


def test_failed_cpu_times_is_an_error_reading_and_the_gap_is_integrated(clock):
    times = Times()
    m = CpuEstimateMeter(clock=clock, tdp_w=100.0, cpuinfo=CpuInfo("x"), cpu_times=times)
    times.fail = True
    clock.advance(1.0)
    (r,) = m.read()
    assert r.energy_j is None and "no /proc/stat" in r.error
    times.fail = False
    times.run(10.0, 20.0)  # over the 2 s since the last good read: u = 0.5 -> 55 W
    clock.advance(1.0)
    assert m.read()[0].energy_j == pytest.approx(110.0)


def test_unknown_cpu_uses_flagged_fallback_and_warns_once(table, clock):
    times = Times()
    with pytest.warns(GreenMLWarning) as caught:
        m = CpuEstimateMeter(
            clock=clock,
            cpu_model="Common KVM processor",
            cpuinfo=CpuInfo(None, None, sockets=1, logical_cpus=16),
            cpu_times=times,
            tdp_table=table,
        )
        for _ in range(3):
            times.run(16.0, 16.0)
            clock.advance(1.0)
            m.read()
    assert m.tdp_w == 64.0  # CodeCarbon's 4 W x 16 logical CPUs
    source = dict(m.channels()[0].details)["tdp_source"]
    assert source.startswith("fallback: 4 W x 16 logical CPUs")
    assert "'Common KVM processor' not in CodeCarbon" in source
    warnings = [str(w.message) for w in caught if "is not in" in str(w.message)]
    assert len(warnings) == 1
    assert "cpu_tdp_w=" in warnings[0]  # the setting the user has (track(cpu_tdp_w=...))
    assert m.read()[0].energy_j == pytest.approx(3 * 64.0)  # 3 s at full load


def test_user_tdp_overrides_the_table(table, clock):
    m = CpuEstimateMeter(
        clock=clock,
        tdp_w=125,
        cpu_model="Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
        cpuinfo=CpuInfo(None, None, sockets=2, logical_cpus=8),
        cpu_times=Times(),
        tdp_table=table,
    )
    assert m.tdp_w == 250.0
    assert dict(m.channels()[0].details)["tdp_source"] == "user-supplied tdp_w=125 W per package"


@pytest.mark.parametrize("bad", [0, -5.0, "150", True, math.nan, math.inf, [150]])
def test_bad_tdp_is_a_config_error(bad, clock):
    with pytest.raises(ConfigError, match=r"tdp_w=.*finite number > 0") as info:
        CpuEstimateMeter(clock=clock, tdp_w=bad, cpuinfo=CpuInfo("x"), cpu_times=Times())
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_idle_fraction_is_a_config_error(clock):
    with pytest.raises(ConfigError, match=r"idle_fraction=1\.5"):
        CpuEstimateMeter(clock=clock, tdp_w=100, idle_fraction=1.5, cpu_times=Times())


# -- RAM -------------------------------------------------------------------------------


def test_ram_estimate_by_hand(clock):
    m = RamEstimateMeter(clock=clock, total_bytes=64 * GIB)
    (ch,) = m.channels()
    assert (ch.key, ch.kind, ch.method) == ("ram", "ram", "estimated")
    details = dict(ch.details)
    assert details["watts_per_gb"] == "0.3725"
    assert "Green Algorithms" in details["watts_per_gb_source"]
    assert "2021" in details["watts_per_gb_source"]
    assert m.read()[0].energy_j == 0.0
    clock.advance(3600.0)
    (r,) = m.read()
    # 0.3725 W/GB x 64 GB = 23.84 W; x 3600 s = 85 824 J
    assert r.power_w == pytest.approx(23.84)
    assert r.energy_j == pytest.approx(85_824.0)


def test_ram_estimate_user_figure(clock):
    m = RamEstimateMeter(clock=clock, total_bytes=16 * GIB, watts_per_gb=0.25)
    clock.advance(10.0)
    assert m.read()[0].energy_j == pytest.approx(40.0)  # 0.25 x 16 x 10
    assert dict(m.channels()[0].details)["watts_per_gb_source"] == "user-supplied"


def test_ram_default_size_is_the_machines(clock):
    import psutil

    m = RamEstimateMeter(clock=clock)
    assert m.total_bytes == psutil.virtual_memory().total


@pytest.mark.parametrize(
    "kwargs",
    [
        {"total_bytes": 0},
        {"total_bytes": -1},
        {"total_bytes": 1.5e9},
        {"total_bytes": "64G"},
        {"watts_per_gb": -0.1},
        {"watts_per_gb": math.nan},
        {"watts_per_gb": "0.37"},
    ],
)
def test_bad_ram_input_is_a_config_error(kwargs, clock):
    args = {"total_bytes": 8 * GIB, **kwargs}
    name, value = next(iter(kwargs.items()))
    with pytest.raises(ConfigError, match=name) as info:
        RamEstimateMeter(clock=clock, **args)
    assert repr(value) in str(info.value)


def test_dram_counter_preferred_over_estimate(tmp_path, clock):
    fake = FakePowercap(tmp_path / "pc")
    fake.add_package(0, dram=True)
    m = make_ram_meter(fake.root, clock=clock, opener=fake.open, total_bytes=64 * GIB)
    assert isinstance(m, RaplDramMeter)
    (ch,) = m.channels()
    assert (ch.kind, ch.method) == ("ram", "counter")
    m.read()
    fake.add_energy(0, 12.0, domain="dram")
    clock.advance(1.0)
    assert m.read()[0].energy_j == pytest.approx(12.0)  # measured, not 0.3725 x 64 W


def test_estimate_when_no_dram_or_unreadable(tmp_path, clock):
    fake = FakePowercap(tmp_path / "pc")
    assert isinstance(make_ram_meter(fake.root, clock=clock, opener=fake.open), RamEstimateMeter)
    fake.add_package(0)  # packages but no DRAM domain
    m = make_ram_meter(fake.root, clock=clock, opener=fake.open, total_bytes=GIB)
    assert isinstance(m, RamEstimateMeter)
    assert m.watts_per_gb == DEFAULT_WATTS_PER_GB
    fake.add_package(1, dram=True, readable=True)
    fake.set_readable(1, False, domain="dram")
    m = make_ram_meter(fake.root, clock=clock, opener=fake.open, total_bytes=GIB)
    assert isinstance(m, RamEstimateMeter)
    assert isinstance(
        make_ram_meter(tmp_path / "missing", clock=clock, total_bytes=GIB), RamEstimateMeter
    )
    with pytest.raises(ConfigError):
        make_ram_meter(fake.root, clock=clock, opener=fake.open, total_bytes=0)


def test_unreadable_cpu_times_at_the_start_are_said_and_retried(clock):
    times = Times()
    times.fail = True
    with pytest.warns(GreenMLWarning, match=r"cannot read the CPU times \(no /proc/stat\)"):
        m = CpuEstimateMeter(clock=clock, tdp_w=100.0, cpuinfo=CpuInfo("x"), cpu_times=times)
    times.fail = False
    m.read()  # the first good reading is the base
    clock.advance(2.0)
    times.run(1.0, 1.0)  # 2 s fully busy on one CPU: 100 W x (0.1 + 0.9 x 1.0) x 2 s
    assert m.read()[0].energy_j == pytest.approx(200.0)
