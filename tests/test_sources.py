"""Task sources: reasoning-gym, local files of each format, hub datasets (a local JSONL dataset
directory stands in for the hub), and bad rows reported with their line numbers."""

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config import FileSource, HubSource, ReasoningGymSource
from data.sources import DataError, file_rows, hub_rows, read_answer, rows

FIXTURES = Path(__file__).parent / "fixtures"


def test_reasoning_gym_rows_are_seeded_and_scorable():
    src = ReasoningGymSource(kind="reasoning_gym", name="chain_sum", size=5, config={"max_digits": 1})
    a, b = list(rows([src], seed=1)), list(rows([src], seed=1))
    assert a == b and len(a) == 5
    row = a[0]
    assert set(row) == {"prompt", "answer", "task", "metadata"}
    assert row["task"] == "chain_sum" and "expression" in json.loads(row["metadata"])
    assert list(rows([src], seed=2)) != a


def test_unknown_reasoning_gym_task():
    src = ReasoningGymSource(kind="reasoning_gym", name="no_such_task", size=5)
    with pytest.raises(DataError, match="no_such_task"):
        list(rows([src], seed=0))


@pytest.mark.parametrize(
    ("raw", "fmt", "expected"),
    [
        ("so 3 + 4 = 7\n#### 7", "gsm8k", "7"),
        ("#### 1,234", "gsm8k", "1234"),
        ("no marker", "gsm8k", None),
        (r"thus \boxed{\frac{1}{2}}.", "boxed", r"\frac{1}{2}"),
        (r"\boxed{1} then \boxed{x^{2}}", "boxed", "x^{2}"),
        ("no box", "boxed", None),
        (" 42 ", "plain", "42"),
        ("", "plain", None),
    ],
)
def test_read_answer(raw, fmt, expected):
    assert read_answer(raw, fmt) == expected


def _write_all_formats(tmp_path):
    records = [{"q": "2 + 2 ?", "a": "4", "level": 1}, {"q": "3 + 3 ?", "a": "6", "level": 2}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (tmp_path / "t.json").write_text(json.dumps(records))
    (tmp_path / "t.csv").write_text("q,a,level\n2 + 2 ?,4,1\n3 + 3 ?,6,2\n")
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "t.parquet")
    return records


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_local_files_of_each_format(tmp_path, suffix):
    _write_all_formats(tmp_path)
    src = FileSource(kind="file", path=str(tmp_path / f"t{suffix}"), columns={"prompt": "q", "answer": "a"})
    got = list(file_rows(src))
    assert [(r["prompt"], r["answer"], r["task"]) for r in got] == [("2 + 2 ?", "4", "t"), ("3 + 3 ?", "6", "t")]
    assert str(json.loads(got[1]["metadata"])["level"]) == "2"


def test_hub_dataset_with_column_mapping_and_gsm8k_answers(tmp_path):
    # datasets.load_dataset reads a local dataset directory exactly as it reads a hub repo.
    repo = tmp_path / "org" / "gsm8k-like"
    repo.mkdir(parents=True)
    shutil.copy(FIXTURES / "gsm8k_like.jsonl", repo / "train.jsonl")
    src = HubSource(kind="hub", name=str(repo), split="train", columns={"prompt": "question", "answer": "answer"},
                    answer_format="gsm8k")
    got = list(hub_rows(src))
    assert [r["answer"] for r in got] == ["7", "2400", "4.5"]
    assert got[0]["task"] == "gsm8k-like"


def test_hub_dataset_that_cannot_load_names_it():
    src = HubSource(kind="hub", name="no-such-org/no-such-dataset")
    with pytest.raises(DataError, match="no-such-org/no-such-dataset"):
        list(hub_rows(src))


BAD_LINES = [
    (b'{"prompt": "ok", "answer": "1"}\n{"prompt": "x"}\n', 2, "missing column"),
    (b'{"prompt": "ok", "answer": "1"}\n\n', 2, "empty line"),
    (b'{"prompt": "ok", "answer": "1"}\n{"prompt": "caf\xe9", "answer": "1"}\n', 2, "invalid UTF-8"),
    (b'{"prompt": "", "answer": "1"}\n', 1, "is empty"),
    (b'{"prompt": "ok", "answer": "1"}\n{not json\n', 2, "not valid JSON"),
    (b'[1, 2]\n', 1, "expected a JSON object"),
]


@pytest.mark.parametrize(("content", "line", "message"), BAD_LINES)
def test_bad_row_stops_with_file_and_line(tmp_path, content, line, message):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        list(file_rows(FileSource(kind="file", path=str(path))))
    assert f"{path}:{line}" in str(err.value) and message in str(err.value)


def test_bad_row_in_a_large_file_can_be_skipped(tmp_path, caplog):
    path = tmp_path / "big.jsonl"
    lines = [json.dumps({"prompt": f"p{i}", "answer": str(i)}) for i in range(1000)]
    lines[500] = '{"prompt": "broken"'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"big.jsonl:501"):
        list(file_rows(FileSource(kind="file", path=str(path))))
    got = list(file_rows(FileSource(kind="file", path=str(path), on_bad_row="skip")))
    assert len(got) == 999
    assert "big.jsonl:501" in caplog.text


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        list(file_rows(FileSource(kind="file", path=str(tmp_path / "none.jsonl"))))
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        list(file_rows(FileSource(kind="file", path=str(tmp_path / "d.txt"))))


def test_every_bad_row_of_a_file_is_reported_at_once(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"prompt": "ok", "answer": "1"}\n'
                     b'{not json\n'                          # line 2: not JSON
                     b'{"prompt": "ok", "answer": "2"}\n'
                     b'{"prompt": "", "answer": "1"}\n'      # line 4: empty prompt
                     b'{"question": "q", "answer": "1"}\n')  # line 5: missing column
    with pytest.raises(DataError) as err:
        list(file_rows(FileSource(kind="file", path=str(path))))
    message = str(err.value)
    assert "3 bad row(s)" in message
    for line, what in ((2, "not valid JSON"), (4, "is empty"), (5, "missing column")):
        assert any(f"{path}:{line}" in m and what in m for m in message.splitlines()), (line, message)


def test_many_bad_rows_are_capped_and_counted(tmp_path):
    from data.sources import MAX_BAD_ROWS

    path = tmp_path / "worse.jsonl"
    path.write_text('{"prompt": ""}\n' * (MAX_BAD_ROWS + 7))
    with pytest.raises(DataError) as err:
        list(file_rows(FileSource(kind="file", path=str(path))))
    message = str(err.value)
    assert f"{path}:{MAX_BAD_ROWS}:" in message and f"{path}:{MAX_BAD_ROWS + 1}:" not in message
    assert "and 7 more bad row(s)" in message
