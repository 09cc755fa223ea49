"""Peak dense tensor throughput per GPU (the denominator of MFU): the shipped figures against
the datasheets, the BF16 -> FP16 fallback, and user tables with and without the columns."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from greenml.cli import main
from greenml.errors import ConfigError
from greenml.factors.hardware import (
    GPU_COLUMNS,
    find_gpu,
    load_gpus,
    peak_flops_factor,
)
from greenml.factors.tables import tables

# Typed from the datasheets (see docs/data-sources.md), not read from the table. Where the
# datasheet prints only the sparse figure (marked * "with sparsity"), it is written here as
# that figure halved, so the test shows what was read.
DATASHEET_DENSE_FLOPS = [
    # A100 datasheet: "312 TFLOPS | 624 TFLOPS*" for BF16 and FP16, every A100 column
    ("A100 SXM4 40GB", "bf16", 312e12),
    ("A100 SXM4 40GB", "fp16", 312e12),
    ("A100 SXM4 80GB", "bf16", 312e12),
    ("A100 PCIe 40GB", "bf16", 312e12),
    # H100 datasheet, sparse only: SXM 1,979* / 3,958*, PCIe 1,513* / 3,026*, NVL 1,671* / 3,341*
    ("H100 SXM", "bf16", 1979e12 / 2),
    ("H100 SXM", "fp16", 1979e12 / 2),
    ("H100 SXM", "fp8", 3958e12 / 2),
    ("H100 PCIe", "bf16", 1513e12 / 2),
    ("H100 PCIe", "fp8", 3026e12 / 2),
    ("H100 NVL", "bf16", 1671e12 / 2),
    ("H100 NVL", "fp8", 3341e12 / 2),
    # H200 product page / datasheet, sparse only (footnote "With sparsity"): 1,979 / 3,958
    ("H200 SXM", "bf16", 1979e12 / 2),
    ("H200 SXM", "fp8", 3958e12 / 2),
    # V100 datasheet "Tensor Performance" (no sparsity on Volta): NVLink 125, PCIe 112
    ("V100 SXM2 16GB", "fp16", 125e12),
    ("V100 PCIe 16GB", "fp16", 112e12),
    # T4: "Mixed Precision (FP16/FP32) 65 TFLOPS" (no sparsity on Turing)
    ("T4", "fp16", 65e12),
    # L4 datasheet, sparse only: BF16 / FP16 242*, FP8 485*
    ("L4", "bf16", 242e12 / 2),
    ("L4", "fp16", 242e12 / 2),
    ("L4", "fp8", 485e12 / 2),
    # L40S datasheet prints both: BF16 / FP16 "362.05 | 733*", FP8 "733 | 1,466*"
    ("L40S", "bf16", 362.05e12),
    ("L40S", "fp16", 362.05e12),
    ("L40S", "fp8", 733e12),
]


@pytest.mark.parametrize(("model", "precision", "flops"), DATASHEET_DENSE_FLOPS)
def test_shipped_peaks_are_the_datasheets_dense_figures(model, precision, flops):
    factor = peak_flops_factor(find_gpu(model), precision)
    assert factor is not None
    assert factor.value == pytest.approx(flops, rel=1e-12)


def test_the_two_figures_the_brief_names():
    assert peak_flops_factor(find_gpu("H100 SXM"), "fp8").value == 1979e12
    assert peak_flops_factor(find_gpu("A100"), "bf16").value == 312e12  # bare A100: SXM4


def test_the_factor_carries_unit_source_year_and_licence_of_the_row():
    spec = find_gpu("NVIDIA H100 80GB HBM3")
    factor = peak_flops_factor(spec)  # bf16 by default
    assert (factor.name, factor.unit) == ("gpu_peak_flops", "FLOP/s")
    assert factor.value == pytest.approx(989.5e12)
    assert "H100 Tensor Core GPU datasheet" in factor.source and "sparsity" in factor.source
    assert (factor.year, factor.licence) == (2022, spec.licence)  # the row's
    assert "dense" in factor.note and "BF16" in factor.note and "H100 SXM" in factor.note


@pytest.mark.parametrize("model", ["A100 SXM4 40GB", "A100 PCIe 40GB", "V100 SXM2 16GB", "T4"])
def test_boards_without_fp8_tensor_cores_have_no_fp8_peak(model):
    spec = find_gpu(model)
    assert spec.fp8_dense_tflops is None
    assert peak_flops_factor(spec, "fp8") is None


@pytest.mark.parametrize(("model", "fp16_flops"), [("V100", 125e12), ("T4", 65e12)])
def test_bf16_on_a_board_without_bf16_falls_back_to_fp16_and_says_so(model, fp16_flops):
    spec = find_gpu(model)
    assert spec.bf16_dense_tflops is None
    factor = peak_flops_factor(spec, "bf16")
    assert factor.value == fp16_flops
    assert "FP16" in factor.note and "no BF16" in factor.note
    # asked for FP16 itself, there is no fallback to mention
    assert "no BF16" not in peak_flops_factor(spec, "fp16").note


def test_a_board_with_bf16_does_not_mention_a_fallback():
    assert "FP16" not in peak_flops_factor(find_gpu("L4"), "bf16").note


@pytest.mark.parametrize("precision", ["fp32", "BF16", "tf32", "", None, 16])
def test_an_unknown_precision_names_the_value_and_the_valid_ones(precision):
    with pytest.raises(ConfigError) as e:
        peak_flops_factor(find_gpu("H100"), precision)
    message = str(e.value)
    assert repr(precision) in message
    assert "'bf16', 'fp16', 'fp8'" in message


def test_every_shipped_row_with_a_figure_has_its_source():
    specs = load_gpus()
    with_figures = [
        s
        for s in specs
        if (s.bf16_dense_tflops, s.fp16_dense_tflops, s.fp8_dense_tflops) != (None, None, None)
    ]
    assert len(with_figures) == len(specs) == 12  # every shipped board has a figure
    for spec in with_figures:
        assert spec.flops_source.strip(), spec.model
        assert "sparsity" in spec.flops_source, spec.model  # says how sparsity was handled
        for tflops in (spec.bf16_dense_tflops, spec.fp16_dense_tflops, spec.fp8_dense_tflops):
            assert tflops is None or 10 <= tflops <= 5000, spec.model


# --- user tables ----------------------------------------------------------------------

OLD_HEADER = ",".join(GPU_COLUMNS)  # a gpus.csv written before the peak columns existed
OLD_ROW = "X1,NVIDIA X1,500,SXM,80,vendor datasheet,2024,facts,"
NEW_HEADER = OLD_HEADER + ",bf16_dense_tflops,fp16_dense_tflops,fp8_dense_tflops,flops_source"


def _write(folder, *lines):
    path = folder / "gpus.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_an_old_user_table_without_the_columns_still_loads(tmp_path):
    _write(tmp_path, OLD_HEADER, OLD_ROW)
    t = tables(str(tmp_path))
    t.validate()
    spec = find_gpu("NVIDIA X1", table=t.gpus())
    assert spec.tdp_w == 500
    assert (spec.bf16_dense_tflops, spec.fp16_dense_tflops, spec.fp8_dense_tflops) == (
        None,
        None,
        None,
    )
    assert spec.flops_source == ""
    for precision in ("bf16", "fp16", "fp8"):
        assert peak_flops_factor(spec, precision) is None


def test_a_user_table_with_the_columns_gives_its_own_peak(tmp_path):
    path = _write(
        tmp_path,
        NEW_HEADER,
        OLD_ROW + ",400,400,800,our vendor's datasheet (dense)",
        "X2,,300,PCIe,48,vendor datasheet,2024,facts,,,,,",  # no figures: no source needed
    )
    x1, x2 = load_gpus(path)
    factor = peak_flops_factor(x1, "fp8")
    assert (factor.value, factor.source) == (800e12, "our vendor's datasheet (dense)")
    assert peak_flops_factor(x2) is None


def test_only_some_of_the_columns_is_fine(tmp_path):
    path = _write(tmp_path, OLD_HEADER + ",fp16_dense_tflops,flops_source", OLD_ROW + ",100,sheet")
    (spec,) = load_gpus(path)
    assert peak_flops_factor(spec).value == 100e12  # bf16 falls back to the FP16 figure
    assert spec.bf16_dense_tflops is None and spec.fp8_dense_tflops is None


def test_a_figure_without_its_source_names_file_row_and_column(tmp_path):
    path = _write(tmp_path, NEW_HEADER, OLD_ROW + ",400,,,")
    with pytest.raises(ConfigError, match=r"gpus\.csv, row 2, column 'flops_source': '' is empty"):
        load_gpus(path)


def test_a_figure_in_a_table_without_the_source_column(tmp_path):
    path = _write(tmp_path, OLD_HEADER + ",bf16_dense_tflops", OLD_ROW + ",400")
    with pytest.raises(ConfigError, match=r"gpus\.csv, row 2: .*'bf16_dense_tflops'.*lacks"):
        load_gpus(path)


@pytest.mark.parametrize(
    ("cell", "problem"),
    [("abc", "not a number"), ("-5", "must be > 0"), ("0", "must be > 0"), ("9.895e14", "TFLOPS")],
)
def test_a_bad_figure_names_file_row_and_column(tmp_path, cell, problem):
    path = _write(tmp_path, NEW_HEADER, OLD_ROW + f",{cell},,,sheet")
    with pytest.raises(ConfigError, match=rf"row 2, column 'bf16_dense_tflops': .*{problem}"):
        load_gpus(path)


# --- the command line -----------------------------------------------------------------


def test_tables_show_gpus_prints_the_peaks_and_their_source():
    result = CliRunner().invoke(main, ["tables", "show", "gpus"])
    assert result.exit_code == 0, result.output
    lines = {x.split(":")[0]: x for x in result.output.splitlines()}
    assert "dense tensor peak BF16 989.5, FP16 989.5, FP8 1979 TFLOPS per GPU" in lines["H100 SXM"]
    assert "H100 Tensor Core GPU datasheet" in lines["H100 SXM"]
    assert "dense tensor peak FP16 65 TFLOPS per GPU" in lines["T4"]


def test_tables_show_gpus_of_an_old_user_table_prints_no_peak(tmp_path):
    _write(tmp_path, OLD_HEADER, OLD_ROW)
    result = CliRunner().invoke(main, ["tables", "show", "gpus", "--tables-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("X1: 500 W") and "peak" not in result.output
