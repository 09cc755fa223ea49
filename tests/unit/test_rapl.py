"""RAPL metering on a fake powercap tree: discovery, mirrors, wraparound, failures.

Expected energies are worked out by hand from the joules fed to the fake counters.
"""

from __future__ import annotations

import logging

import pytest

from greenml.errors import DeviceNotFoundError, MeasurementError, NotSupportedError
from greenml.meters.base import Meter
from greenml.meters.cpu import CpuInfo
from greenml.meters.rapl import RaplDramMeter, RaplMeter, discover_zones
from greenml.testing import FakePowercap, ManualClock

INTEL = CpuInfo("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "GenuineIntel", 2, 80)
AMD = CpuInfo("AMD EPYC 9654 96-Core Processor", "AuthenticAMD", 1, 192)
RANGE_UJ = 262_143_328_850  # a real max_energy_range_uj (2^32 units of 61.035 uJ)


@pytest.fixture
def fake(tmp_path):
    return FakePowercap(tmp_path / "powercap")


@pytest.fixture
def clock():
    return ManualClock()


def meter(fake, clock, cpuinfo=INTEL):
    return RaplMeter(fake.root, clock=clock, opener=fake.open, cpuinfo=cpuinfo)


def energies(readings):
    return {r.key: r.energy_j for r in readings}


def test_package_counter_in_joules(fake, clock):
    fake.add_package(0, energy_uj=1_000_000)
    m = meter(fake, clock)
    assert isinstance(m, Meter)
    (ch,) = m.channels()
    assert (ch.key, ch.kind, ch.method, ch.index) == ("cpu:package-0", "cpu", "counter", 0)
    assert ch.name == "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz"
    (r0,) = m.read()
    assert (r0.t_s, r0.energy_j, r0.error) == (1000.0, 1.0, None)
    fake.add_energy(0, 12.5)
    clock.advance(2.0)
    (r1,) = m.read()
    # 1 J at the start + 12.5 J added = 13.5 J, read at t = 1002 s
    assert (r1.t_s, r1.energy_j) == (1002.0, pytest.approx(13.5, abs=1e-9))


def test_name_without_cpuinfo_model(fake, clock):
    fake.add_package(0)
    m = meter(fake, clock, CpuInfo(None, None, 1, 4))
    assert m.channels()[0].name == "CPU package 0"


def test_wraparound_adds_the_range(fake, clock):
    # 2 J before the end of the range; 5 J more wraps the raw counter to 3 J.
    fake.add_package(0, energy_uj=RANGE_UJ - 2_000_000, max_energy_range_uj=RANGE_UJ)
    m = meter(fake, clock)
    (before,) = m.read()
    fake.add_energy(0, 5.0)
    assert fake.energy_uj(0) == 3_000_000  # hand: (R - 2e6 + 5e6) mod R = 3e6
    clock.advance(1.0)
    (after,) = m.read()
    assert before.energy_j == pytest.approx(262_141.328_850, abs=1e-6)
    assert after.energy_j == pytest.approx(262_146.328_850, abs=1e-6)
    assert after.energy_j - before.energy_j == pytest.approx(5.0, abs=1e-6)


def test_repeated_wraps_accumulate(fake, clock):
    # A small 1 kJ range, 400 J per read: the raw counter wraps on the 3rd and 5th read.
    fake.add_package(0, energy_uj=0, max_energy_range_uj=1_000_000_000)
    m = meter(fake, clock)
    m.read()
    raws = []
    for _ in range(5):
        fake.add_energy(0, 400.0)
        clock.advance(1.0)
        (r,) = m.read()
        raws.append(fake.energy_uj(0))
    assert raws == [400e6, 800e6, 200e6, 600e6, 0]
    assert r.energy_j == pytest.approx(2000.0)  # 5 x 400 J, never going back


def test_symlink_mirror_is_counted_once(fake, clock):
    # Both root/intel-rapl:0 and root/intel-rapl/intel-rapl:0 exist and are one zone.
    fake.add_package(0, mirror_symlink=True)
    assert (fake.root / "intel-rapl:0").is_symlink()
    assert (fake.root / "intel-rapl" / "intel-rapl:0").is_dir()
    m = meter(fake, clock)
    assert [c.key for c in m.channels()] == ["cpu:package-0"]
    (r0,) = m.read()
    fake.add_energy(0, 7.0)
    (r1,) = m.read()
    assert r1.energy_j - r0.energy_j == pytest.approx(7.0)


def test_discovery_lists_each_zone_once(fake):
    # Reached through the flat symlinks and the control-type folders: same realpath.
    fake.add_package(0, dram=True, mmio_mirror=True)
    zones = discover_zones(fake.root)
    assert [(z.control, z.ids, z.name, z.parent_name) for z in zones] == [
        ("intel-rapl", ("0",), "package-0", None),
        ("intel-rapl", ("0", "0"), "core", "package-0"),
        ("intel-rapl", ("0", "1"), "dram", "package-0"),
        ("intel-rapl-mmio", ("0",), "package-0", None),
    ]


def test_mmio_mirror_is_counted_once_preferring_msr(fake, clock):
    fake.add_package(0, mmio_mirror=True)
    assert (fake.root / "intel-rapl-mmio" / "intel-rapl-mmio:0" / "name").read_text() == (
        "package-0\n"
    )
    m = meter(fake, clock)
    (ch,) = m.channels()
    assert dict(ch.details)["interface"] == "intel-rapl"
    assert dict(ch.details)["zone"].endswith("intel-rapl/intel-rapl:0")
    (r0,) = m.read()
    fake.add_energy(0, 7.0)
    (r1,) = m.read()
    assert r1.energy_j - r0.energy_j == pytest.approx(7.0)  # not 14


def test_tree_without_class_symlinks(fake, clock):
    # Pointing at /sys/devices/virtual/powercap: control types only, no flat links.
    fake.add_package(0, mirror_symlink=False, energy_uj=4_000_000)
    assert not (fake.root / "intel-rapl:0").exists()
    (r,) = meter(fake, clock).read()
    assert r.energy_j == 4.0


def test_subzones_and_psys_are_not_added(fake, clock):
    fake.add_package(0, dram=True)
    fake.add_psys(1, energy_uj=50_000_000)
    m = meter(fake, clock)
    assert [c.key for c in m.channels()] == ["cpu:package-0"]
    (r0,) = m.read()
    fake.add_energy(0, 10.0)  # the fake's core sub-zone advances 6 J with it
    fake.add_energy(0, 3.0, domain="dram")
    assert fake.energy_uj(0, domain="core") == 6_000_000
    (r1,) = m.read()
    assert r1.energy_j - r0.energy_j == pytest.approx(10.0)  # not 16, 13 or 19


def test_packages_are_separate_channels_that_sum(fake, clock):
    fake.add_package(0, energy_uj=1_000_000)
    fake.add_package(1, energy_uj=3_000_000)
    m = meter(fake, clock)
    assert [(c.key, c.index) for c in m.channels()] == [("cpu:package-0", 0), ("cpu:package-1", 1)]
    e0 = energies(m.read())
    assert e0 == {"cpu:package-0": 1.0, "cpu:package-1": 3.0}
    fake.add_energy(0, 10.0)
    fake.add_energy(1, 30.0)
    clock.advance(2.0)
    e1 = energies(m.read())
    total = sum(e1.values()) - sum(e0.values())
    assert total == pytest.approx(40.0)  # 10 J + 30 J
    assert total / 2.0 == pytest.approx(20.0)  # 20 W over 2 s


def test_vanished_file_gives_an_error_reading_for_that_channel_only(fake, clock):
    fake.add_package(0)
    fake.add_package(1)
    m = meter(fake, clock)
    m.read()
    fake.add_energy(0, 1.0)
    fake.add_energy(1, 2.0)
    fake.remove(0)
    clock.advance(1.0)
    r0, r1 = m.read()
    assert r0.key == "cpu:package-0" and r0.energy_j is None and not r0.lost
    assert "energy_uj" in r0.error
    assert (r1.energy_j, r1.error) == (pytest.approx(2.0), None)
    # The counter kept running while its file was gone; when it is back, the energy
    # of the gap is there: 1 J + 4 J.
    fake.add_energy(0, 4.0)
    fake.restore(0)
    clock.advance(1.0)
    r0, _ = m.read()
    assert (r0.energy_j, r0.error) == (pytest.approx(5.0), None)


def test_counter_lower_after_a_failed_read_is_a_reset_not_a_wrap(fake, clock, caplog):
    fake.add_package(0, energy_uj=50_000_000)
    m = meter(fake, clock)
    (first,) = m.read()
    assert first.energy_j == 50.0
    fake.remove(0)
    assert m.read()[0].error is not None
    fake.set_energy_uj(0, 2_000_000)  # the driver came back from zero
    fake.restore(0)
    with caplog.at_level(logging.WARNING, logger="greenml.meters.rapl"):
        (again,) = m.read()
    assert again.energy_j == 50.0  # re-based: neither -48 J nor +262 kJ
    assert "reset" in caplog.text
    fake.add_energy(0, 1.5)
    assert m.read()[0].energy_j == pytest.approx(51.5)


def test_garbage_in_the_counter_is_an_error_reading(fake, clock):
    path = fake.add_package(0) / "energy_uj"
    m = meter(fake, clock)
    path.write_text("not a number\n")
    (r,) = m.read()
    assert r.energy_j is None and r.error


def test_unreadable_counter_raises_not_supported_with_the_fix(fake, clock):
    fake.add_package(0, readable=False)
    with pytest.raises(NotSupportedError) as info:
        meter(fake, clock)
    msg = str(info.value)
    assert "permission denied" in msg
    assert "root only" in msg
    assert "chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj" in msg
    assert "udev" in msg
    assert "estimates CPU power from TDP x load" in msg
    assert isinstance(info.value, MeasurementError)


def test_no_package_domain_raises_device_not_found(fake, clock, tmp_path):
    with pytest.raises(DeviceNotFoundError):
        meter(fake, clock)  # an empty powercap folder
    fake.add_psys(0)
    with pytest.raises(DeviceNotFoundError, match="psys"):
        meter(fake, clock)  # a platform zone only
    with pytest.raises(DeviceNotFoundError, match="no powercap folder"):
        RaplMeter(tmp_path / "missing", clock=clock, cpuinfo=INTEL)


def test_amd_per_die_zones_mirror_one_socket_counter(fake, clock):
    # Zen 4 with die topology before the 2024 kernel fix: 4 zones for 2 sockets, hex ids.
    for n, name in [(0, "package-0-die-0"), (1, "package-0-die-1")]:
        fake.add_package(n, name=name, energy_uj=9_000_000)
    for n, name in [(10, "package-1-die-0"), (11, "package-1-die-1")]:
        fake.add_package(n, name=name, energy_uj=1_000_000)
    assert (fake.root / "intel-rapl:a").is_symlink()
    m = meter(fake, clock, AMD)
    assert [c.key for c in m.channels()] == ["cpu:package-0-die-0", "cpu:package-1-die-0"]
    e0 = energies(m.read())
    for n in (0, 1):  # the hardware updates every view of socket 0 alike
        fake.add_energy(n, 8.0)
    for n in (10, 11):
        fake.add_energy(n, 2.0)
    e1 = energies(m.read())
    assert sum(e1.values()) - sum(e0.values()) == pytest.approx(10.0)  # 8 + 2, not 20


def test_intel_per_die_zones_are_real_counters(fake, clock):
    # Cascade Lake-AP: one counter per die, all counted.
    fake.add_package(0, name="package-0-die-0")
    fake.add_package(1, name="package-0-die-1")
    m = meter(fake, clock, INTEL)
    assert [c.key for c in m.channels()] == ["cpu:package-0-die-0", "cpu:package-0-die-1"]
    assert [c.index for c in m.channels()] == [0, 0]


def test_dram_meter_reads_dram_zones_only(fake, clock):
    fake.add_package(0, dram=True, dram_energy_uj=500_000, mmio_mirror=True)
    fake.add_package(1, dram=True)
    m = RaplDramMeter(fake.root, clock=clock, opener=fake.open)
    chans = m.channels()
    assert [(c.key, c.kind, c.method, c.index) for c in chans] == [
        ("ram:dram-0", "ram", "counter", 0),
        ("ram:dram-1", "ram", "counter", 1),
    ]
    assert energies(m.read()) == {"ram:dram-0": 0.5, "ram:dram-1": 0.0}
    fake.add_energy(0, 100.0)  # package energy: not RAM
    fake.add_energy(0, 3.25, domain="dram")
    fake.add_energy(1, 1.75, domain="dram")
    clock.advance(1.0)
    assert energies(m.read()) == {
        "ram:dram-0": pytest.approx(3.75),
        "ram:dram-1": pytest.approx(1.75),
    }


def test_dram_meter_without_dram_or_permission(fake, clock):
    fake.add_package(0)
    with pytest.raises(DeviceNotFoundError):
        RaplDramMeter(fake.root, clock=clock, opener=fake.open)
    fake.add_package(1, dram=True)
    fake.set_readable(1, False, domain="dram")
    with pytest.raises(NotSupportedError, match="chmod"):
        RaplDramMeter(fake.root, clock=clock, opener=fake.open)


def test_close_is_safe_twice(fake, clock):
    fake.add_package(0)
    m = meter(fake, clock)
    m.close()
    m.close()
