"""The cold-start shortcuts read only part of a data file; they must answer exactly what
the whole file answers."""

from __future__ import annotations

import csv
import random

import pytest

from greenml.factors import codecarbon_data
from greenml.factors.cpu_tdp import TdpTable, codecarbon_cpu_table_path


def test_one_country_of_the_energy_mix_decodes_as_in_the_whole_file():
    whole = codecarbon_data.load_json(codecarbon_data.GLOBAL_ENERGY_MIX)
    assert len(whole) > 100
    for key, entry in whole.items():
        assert codecarbon_data.json_entry(codecarbon_data.GLOBAL_ENERGY_MIX, key) == entry
    assert codecarbon_data.json_entry(codecarbon_data.GLOBAL_ENERGY_MIX, "ZZZ") is None


def _models():
    with open(codecarbon_cpu_table_path(), encoding="utf-8", newline="") as f:
        names = [row[0] for row in csv.reader(f)][1:]
    rng = random.Random(5)
    picked = rng.sample(names, 150)
    # Names as /proc/cpuinfo and vendors spell them: suffixes, case, unknown parts.
    variants = [f"{n} CPU @ 2.20GHz" for n in picked[:40]] + [n.upper() for n in picked[40:60]]
    return picked + variants + ["Intel(R) Xeon(R) Processor", "AMD EPYC 9999 Imaginary", ""]


@pytest.mark.parametrize("model", _models())
def test_the_rows_read_for_one_model_give_the_whole_tables_answer(model):
    assert TdpTable.codecarbon_for(model).lookup(model) == TdpTable.codecarbon().lookup(model)
