"""GPU board power and embodied carbon: shipped provenance, name matching, SCI amortisation."""

from __future__ import annotations

import math

import pytest

from greenml.errors import ConfigError
from greenml.factors.hardware import (
    GPU_COLUMNS,
    embodied_kg,
    find_gpu,
    gpu_power_factor,
    load_embodied,
    load_gpus,
)

GPU_HEADER = ",".join(GPU_COLUMNS)
EMBODIED_HEADER = "item,kg_co2e,lifetime_years,source,year,licence,note"


def _write(tmp_path, name, *lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- shipped tables -------------------------------------------------------------------


def test_every_shipped_gpu_row_has_provenance_and_a_possible_value():
    specs = load_gpus()
    assert len(specs) >= 10
    for spec in specs:
        assert spec.source and spec.licence, spec.model
        assert 2015 <= spec.year <= 2026, spec.model
        assert 50 <= spec.tdp_w <= 1200, spec.model
        assert spec.memory_gb > 0 and spec.form_factor, spec.model


def test_every_shipped_embodied_row_has_provenance():
    items = load_embodied()
    assert set(items) == {"server_base", "gpu"}
    for item in items.values():
        assert item.source and item.licence and 2015 <= item.year <= 2026
        assert item.kg_co2e > 0 and item.lifetime_years > 0


@pytest.mark.parametrize(
    ("name", "watts"),
    [
        ("A100 SXM4 40GB", 400),
        ("A100 SXM4 80GB", 400),
        ("V100 SXM2 16GB", 300),  # not swapped with the PCIe board
        ("V100 PCIe 16GB", 250),
        ("T4", 70),
        ("H100 PCIe", 350),
    ],
)
def test_spot_checks_typed_from_the_datasheets(name, watts):
    assert find_gpu(name).tdp_w == watts


def test_shipped_table_is_cached():
    assert load_gpus() is load_gpus()


# --- name matching --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nvml_name", "model"),
    [
        ("NVIDIA A100-SXM4-40GB", "A100 SXM4 40GB"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
        ("NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("Tesla V100-SXM2-16GB", "V100 SXM2 16GB"),
        ("Tesla V100-PCIE-16GB", "V100 PCIe 16GB"),
        ("Tesla T4", "T4"),
        ("NVIDIA L4", "L4"),
    ],
)
def test_nvml_names(nvml_name, model):
    assert find_gpu(nvml_name).model == model


def test_matching_ignores_case_punctuation_and_vendor_prefix():
    assert find_gpu("  nvidia a100_sxm4_40gb ").model == "A100 SXM4 40GB"
    assert find_gpu("a100").model == "A100 SXM4 40GB"  # bare family name: the SXM board


def test_unknown_name_is_named_with_suggestions():
    with pytest.raises(ConfigError, match=r"unknown GPU 'H100 SMX'; did you mean 'H100 SXM'"):
        find_gpu("H100 SMX")


def test_board_not_in_the_table_is_not_mapped_to_a_sibling():
    # The 80 GB PCIe A100 is left out (its power was not confirmed); it must not silently
    # become the 250 W 40 GB board.
    with pytest.raises(ConfigError, match="unknown GPU 'NVIDIA A100 80GB PCIe'"):
        find_gpu("NVIDIA A100 80GB PCIe")


def test_empty_name():
    with pytest.raises(ConfigError, match="non-empty"):
        find_gpu("  ")


def test_gpu_power_factor():
    f = gpu_power_factor(find_gpu("T4"))
    assert (f.name, f.value, f.unit) == ("gpu_power", 70, "W")
    assert f.source and f.licence and f.year
    assert "T4" in f.note


# --- embodied carbon ------------------------------------------------------------------


def test_embodied_hand_worked_example():
    # 8 GPUs, 100 h, whole server: (1000 + 8 x 150) kg x 100 h / (4 years x 8760 h)
    expected = (1000 + 8 * 150) * 100 / (4 * 8760)  # = 6.2785... kg
    kg, factors = embodied_kg(8, 100)
    assert kg == pytest.approx(expected)
    assert kg == pytest.approx(6.27854, rel=1e-5)
    assert [(f.name, f.value, f.unit) for f in factors] == [
        ("embodied_server_base", 1000, "kgCO2e"),
        ("embodied_gpu", 150, "kgCO2e/GPU"),
    ]
    assert all(f.source and f.licence and f.year for f in factors)


def test_embodied_share_scales_linearly():
    whole, _ = embodied_kg(8, 100)
    quarter, _ = embodied_kg(8, 100, share=0.25)
    assert quarter == pytest.approx(whole / 4)


def test_embodied_without_gpus_is_the_server_base_only():
    kg, _ = embodied_kg(0, 8760)
    assert kg == pytest.approx(1000 / 4)


def test_embodied_user_table(tmp_path):
    path = _write(
        tmp_path,
        "embodied.csv",
        EMBODIED_HEADER,
        "server_base,2000,5,own LCA,2024,internal,",
        "gpu,300,5,own LCA,2024,internal,",
    )
    kg, _ = embodied_kg(2, 8760, table=load_embodied(path))
    assert kg == pytest.approx((2000 + 2 * 300) / 5)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((-1, 10), {}, "gpu_count"),
        ((1.5, 10), {}, "gpu_count"),
        ((True, 10), {}, "gpu_count"),
        ((8, -1), {}, "reserved_hours"),
        ((8, math.nan), {}, "reserved_hours"),
        ((8, "10"), {}, "reserved_hours"),
        ((8, 10), {"share": 0}, "share"),
        ((8, 10), {"share": 1.5}, "share"),
    ],
)
def test_embodied_rejects_bad_input(args, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        embodied_kg(*args, **kwargs)


# --- bad user tables ------------------------------------------------------------------

GOOD_ROW = "X1,X1-SXM|NVIDIA X1,500,SXM,80,vendor datasheet,2024,facts,"


def test_user_gpu_table_is_used(tmp_path):
    path = _write(tmp_path, "gpus.csv", GPU_HEADER, GOOD_ROW)
    assert find_gpu("NVIDIA X1", table=load_gpus(path)).tdp_w == 500


def test_missing_column_names_file_and_column(tmp_path):
    header = GPU_HEADER.replace("tdp_w,", "")
    path = _write(tmp_path, "nocol.csv", header, "X1,,SXM,80,src,2024,lic,")
    with pytest.raises(ConfigError, match=r"nocol\.csv, row 1: missing column\(s\) 'tdp_w'"):
        load_gpus(path)


@pytest.mark.parametrize(
    ("row", "column", "problem"),
    [
        ("X2,,abc,SXM,80,src,2024,lic,", "tdp_w", "not a number"),
        ("X2,,0,SXM,80,src,2024,lic,", "tdp_w", "must be > 0"),
        ("X2,,-5,SXM,80,src,2024,lic,", "tdp_w", "must be > 0"),
        ("X2,,300,SXM,nan,src,2024,lic,", "memory_gb", "not a finite number"),
        ("X2,,300,SXM,80,,2024,lic,", "source", "empty"),
        ("X2,,300,SXM,80,src,recent,lic,", "year", "not a year"),
    ],
)
def test_bad_value_names_file_row_and_column(tmp_path, row, column, problem):
    path = _write(tmp_path, "bad.csv", GPU_HEADER, GOOD_ROW, row)
    with pytest.raises(ConfigError, match=rf"bad\.csv, row 3, column '{column}': .*{problem}"):
        load_gpus(path)


def test_duplicate_alias_names_both_rows(tmp_path):
    path = _write(tmp_path, "dup.csv", GPU_HEADER, GOOD_ROW, "X2,x1 sxm,300,SXM,80,s,2024,l,")
    with pytest.raises(ConfigError, match=r"dup\.csv, row 3, column 'aliases': 'x1 sxm' .*row 2"):
        load_gpus(path)


def test_duplicate_model_is_rejected(tmp_path):
    path = _write(tmp_path, "dup.csv", GPU_HEADER, GOOD_ROW, "X1,,300,SXM,80,s,2024,l,")
    with pytest.raises(ConfigError, match=r"dup\.csv, row 3, column 'model': 'X1'"):
        load_gpus(path)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.csv: cannot read"):
        load_gpus(tmp_path / "missing.csv")


def test_embodied_table_missing_item_and_bad_lifetime(tmp_path):
    only_base = _write(tmp_path, "e1.csv", EMBODIED_HEADER, "server_base,1000,4,s,2021,l,")
    with pytest.raises(ConfigError, match=r"e1\.csv: missing item\(s\) gpu"):
        load_embodied(only_base)
    bad_life = _write(
        tmp_path, "e2.csv", EMBODIED_HEADER, "server_base,1000,4,s,2021,l,", "gpu,150,0,s,2021,l,"
    )
    with pytest.raises(ConfigError, match=r"e2\.csv, row 3, column 'lifetime_years'"):
        load_embodied(bad_life)


# --- the GPUs of a priced instance ----------------------------------------------------


@pytest.mark.parametrize(
    ("price_table_name", "model"),
    [
        ("A100-40GB", "A100 SXM4 40GB"),  # p4d: the SXM4 board, not the 40 GB PCIe one
        ("A100-80GB", "A100 SXM4 80GB"),  # p4de
        ("H100", "H100 SXM"),  # p5
        ("V100", "V100 SXM2 16GB"),  # p3
        ("T4", "T4"),
        ("L40S", "L40S"),
    ],
)
def test_instance_gpu_names_of_the_price_table(price_table_name, model):
    from greenml.factors.hardware import find_instance_gpu

    assert find_instance_gpu(price_table_name).model == model


@pytest.mark.parametrize("name", ["B200", "A10G", "A100-80GB-PCIe", "A100 PCIe 80GB"])
def test_instance_gpu_not_in_the_table_is_none_not_a_sibling(name):
    from greenml.factors.hardware import find_instance_gpu

    assert find_instance_gpu(name) is None


def test_embodied_of_several_servers():
    from greenml.factors.hardware import embodied_kg

    # By hand: 2 servers x (1000 + 8 x 150) kg x 100 h / 35,040 h = 12.557 kg
    kg, factors = embodied_kg(8, 100, servers=2)
    assert kg == pytest.approx(2 * 2200 * 100 / 35040)
    assert "2 servers" in factors[0].note
    with pytest.raises(ConfigError, match="servers"):
        embodied_kg(8, 100, servers=0)


def test_unknown_gpu_advice_in_python_and_on_the_command_line():
    from greenml.config import Voice

    with pytest.raises(ConfigError) as python:
        find_gpu("A10")
    assert "gpus.csv in your tables_dir folder" in str(python.value)
    assert "power_w=" in str(python.value)
    with pytest.raises(ConfigError) as cli:
        find_gpu("A10", voice=Voice(flags={}))
    message = str(cli.value)
    assert message.startswith("--gpu 'A10'")
    assert "--power-w" in message and "gpus.csv in --tables-dir" in message
    assert "load_gpus(" not in message and "=" not in message.split("Known boards")[0]
