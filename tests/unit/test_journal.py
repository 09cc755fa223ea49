"""The journal: append-only, sequence numbers, sent marks, and reading back a file that
a crash left with a torn last line."""

from __future__ import annotations

import json

from greenml.sinks import journal as jr


def test_records_get_sequence_numbers_and_sent_marks(tmp_path) -> None:
    j = jr.Journal(tmp_path / "run.jsonl")
    j.append({"t": "start", "greenml_run_id": "run"})
    a = j.append({"t": "metrics", "ts": 1000, "step": 0, "metrics": {"greenml/energy_kwh": 0.0}})
    b = j.append({"t": "metrics", "ts": 2000, "step": 1, "metrics": {"greenml/energy_kwh": 0.5}})
    j.append({"t": "run", "run_id": "mlflow-run"})
    j.mark_sent([a["seq"]])
    j.close()
    assert (a["seq"], b["seq"]) == (1, 2)

    c = jr.read(tmp_path / "run.jsonl")
    assert c.greenml_run_id == "run" and c.run_id == "mlflow-run"
    assert [r["seq"] for r in c.records] == [1, 2]
    assert [r["seq"] for r in c.unsent] == [2]
    assert c.bad_lines == [] and c.summary is None and c.end is None


def test_flush_puts_records_on_disk_for_another_reader(tmp_path) -> None:
    j = jr.Journal(tmp_path / "run.jsonl")
    j.append({"t": "metrics", "ts": 1, "step": 0, "metrics": {}})
    j.flush()
    # read while the writer still holds the file open: what a SIGKILL would leave
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["seq"] == 1
    j.close()


def test_a_torn_line_is_skipped_with_its_number_and_good_records_are_kept(tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    j = jr.Journal(path)
    j.append({"t": "start", "greenml_run_id": "run"})
    for step in range(3):
        j.append({"t": "metrics", "ts": step, "step": step, "metrics": {"x": float(step)}})
    j.close()
    good = path.read_text()
    # a crash mid-write: half a record, then (after a restart of sync's writer) more lines
    torn = '{"t":"metrics","ts":9,"st'
    path.write_text(good + torn + "\n" + '{"t":"sent","seqs":[1,2]}\n' + "[1, 2]\n")
    c = jr.read(path)
    assert [r["step"] for r in c.records] == [0, 1, 2]
    assert c.sent == {1, 2}
    assert [n for n, _ in c.bad_lines] == [5, 7]
    assert "not valid JSON" in c.bad_lines[0][1]
    assert "not a journal record" in c.bad_lines[1][1]


def test_memory_journal_numbers_records_without_a_file() -> None:
    j = jr.MemoryJournal()
    assert j.append({"t": "params", "params": {}})["seq"] == 1
    assert j.append({"t": "metrics", "metrics": {}})["seq"] == 2
    assert j.path is None


def test_the_run_record_keeps_where_the_block_sits_in_its_run(tmp_path) -> None:
    path = tmp_path / "run.jsonl"
    j = jr.Journal(path)
    j.append({"t": "start", "greenml_run_id": "run", "run_id": "users-run"})
    block = {"number": 2, "step0": 61, "base": {"greenml/energy_kwh": 0.25}}
    j.append({"t": "run", "run_id": "users-run", "block": block})
    j.close()
    c = jr.read(path)
    assert c.run_id == "users-run" and c.block == block
    # a later record for another run (sync to another store) says nothing of the old place
    j = jr.Journal(path)
    j.append({"t": "run", "run_id": "elsewhere", "by": "sync"})
    j.close()
    c = jr.read(path)
    assert c.run_id == "elsewhere" and c.block is None
