"""Task sources: every source yields rows {prompt, answer, task, metadata}.

Three kinds, chosen by `kind` in the recipe: reasoning-gym procedural tasks (scored later by
reasoning-gym's own `score_answer`), local JSONL / JSON / CSV / Parquet files, and `datasets` hub
names with a column mapping (GSM8K `#### 42` and MATH `\\boxed{}` answers are read out).
`metadata` is a JSON string so that rows of different tasks share one Arrow schema.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

from core.config import AnswerFormat, ColumnMap, FileSource, HubSource, ReasoningGymSource, SourceConfig
from data.seeds import world_seed
from rewards.extract import last_boxed

log = logging.getLogger(__name__)


class TaskRow(TypedDict):
    prompt: str
    answer: str
    task: str
    metadata: str


class DataError(ValueError):
    """A task source or row that cannot be used; the message names the file, line and field."""


def read_answer(raw: Any, fmt: AnswerFormat) -> str | None:
    """The gold answer in a raw answer cell, by the dataset's convention (None when unreadable)."""
    if raw is None:
        return None
    text = str(raw)
    if fmt == "gsm8k":
        if "####" not in text:
            return None
        text = text.rsplit("####", 1)[1].replace(",", "")
    elif fmt == "boxed":
        text = last_boxed(text) or ""
    text = text.strip()
    return text or None


def _row(record: Mapping[str, Any], columns: ColumnMap, fmt: AnswerFormat, task: str, where: str) -> TaskRow:
    missing = [c for c in (columns.prompt, columns.answer) if c not in record]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; the row has {sorted(record)} "
                        f"(map yours with columns.prompt / columns.answer)")
    prompt = record[columns.prompt]
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: column '{columns.prompt}' is empty; expected the prompt text")
    answer = read_answer(record[columns.answer], fmt)
    if answer is None:
        raise DataError(f"{where}: column '{columns.answer}' holds no {fmt} answer: {record[columns.answer]!r:.80}")
    extra = {k: v for k, v in record.items() if k not in (columns.prompt, columns.answer)}
    return TaskRow(prompt=prompt.strip(), answer=answer, task=task, metadata=json.dumps(extra, default=str))


def _records(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | DataError]]:
    """(line number, record or the error for that line) for each row of a local file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                where = f"{path}:{number}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield number, DataError(f"{where}: invalid UTF-8 at byte {exc.start}; expected UTF-8 text")
                    continue
                if not line.strip():
                    yield number, DataError(f"{where}: empty line; expected a JSON object")
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, DataError(f"{where}: not valid JSON ({exc.msg}); expected one object per line")
                    continue
                yield number, record if isinstance(record, dict) else DataError(
                    f"{where}: expected a JSON object, got {type(record).__name__}")
    elif suffix == ".json":
        records = json.loads(_utf8(path))
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a JSON list of objects")
        yield from enumerate(records, start=1)
    elif suffix == ".csv":
        reader = csv.DictReader(_utf8(path).splitlines())
        for record in reader:
            yield reader.line_num, record
    elif suffix == ".parquet":
        import pyarrow.parquet as pq  # only for .parquet files

        for number, record in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield number, record
    else:
        raise DataError(f"{path}: unsupported file type '{suffix}'; expected .jsonl, .json, .csv or .parquet")


def _utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 at byte {exc.start}; expected UTF-8 text") from None


MAX_BAD_ROWS = 20  # bad rows listed in one error; the rest are counted


def _kept(records: Iterable[tuple[str, Mapping[str, Any] | DataError]], src: FileSource | HubSource, task: str,
          name: str, skipped: Counter[str] | None) -> Iterator[TaskRow]:
    """The rows that parse. With on_bad_row: stop, every record is read first and every bad row is
    reported at once (the first MAX_BAD_ROWS with where they are, then a count); with skip, bad rows
    are dropped and counted in `skipped` under the source's task."""
    good: list[TaskRow] = []
    bad: list[DataError] = []
    for where, record in records:
        try:
            if isinstance(record, DataError):
                raise record
            good.append(_row(record, src.columns, src.answer_format, task, where))
        except DataError as exc:
            bad.append(exc)
            if src.on_bad_row == "skip":
                log.warning("skipping bad row: %s", exc)
    if bad and src.on_bad_row == "stop":
        listed = "\n  ".join(str(e) for e in bad[:MAX_BAD_ROWS])
        more = f"\n  ... and {len(bad) - MAX_BAD_ROWS} more bad row(s)" if len(bad) > MAX_BAD_ROWS else ""
        raise DataError(f"{name}: {len(bad)} bad row(s) (set on_bad_row: skip to drop them)\n  {listed}{more}")
    if bad:
        log.warning("%s: skipped %d bad row(s)", name, len(bad))
        if skipped is not None:
            skipped[task] += len(bad)
    yield from good


def file_rows(src: FileSource, base_dir: Path | None = None, skipped: Counter[str] | None = None) -> Iterator[TaskRow]:
    path = Path(src.path)
    if not path.is_absolute() and base_dir is not None and not path.exists():
        path = base_dir / path
    if not path.is_file():
        raise DataError(f"{src.path}: data file not found")
    yield from _kept(((f"{path}:{n}", r) for n, r in _records(path)), src, src.task or path.stem, str(path), skipped)


def hub_rows(src: HubSource, skipped: Counter[str] | None = None) -> Iterator[TaskRow]:
    import datasets  # seconds to import: only recipes with a hub source need it here

    try:
        ds = datasets.load_dataset(src.name, src.subset, split=src.split)
    except Exception as exc:
        raise DataError(f"hub dataset {src.name!r} (subset {src.subset!r}, split {src.split!r}) "
                        f"could not be loaded: {exc}") from exc
    if src.limit:
        ds = ds.select(range(min(src.limit, len(ds))))
    task = src.task or src.name.split("/")[-1]
    yield from _kept(((f"{src.name}[{src.split}] row {i}", r) for i, r in enumerate(ds)), src, task,
                     f"hub dataset {src.name!r}", skipped)


def reasoning_gym_rows(src: ReasoningGymSource, seed: int) -> Iterator[TaskRow]:
    import reasoning_gym  # imports its ~100 task modules (seconds): only recipes that use it

    try:
        ds = reasoning_gym.create_dataset(src.name, size=src.size, seed=seed, **src.config)
    except Exception as exc:
        raise DataError(f"reasoning-gym task {src.name!r} with config {src.config}: {exc}") from exc
    for entry in ds:
        yield TaskRow(prompt=entry["question"], answer=str(entry["answer"]), task=src.name,
                      metadata=json.dumps(entry["metadata"], default=str))


def rows(sources: Iterable[SourceConfig], seed: int, base_dir: Path | None = None,
         skipped: Counter[str] | None = None, first_stream: int = 0) -> Iterator[TaskRow]:
    """All rows of all sources, in order (reasoning-gym sources are seeded from `seed`, each source
    a stream of its own from `first_stream` on); rows a source's on_bad_row: skip dropped are
    counted per task in `skipped`."""
    for i, src in enumerate(sources):
        if isinstance(src, ReasoningGymSource):
            yield from reasoning_gym_rows(src, world_seed(seed, first_stream + i))
        elif isinstance(src, FileSource):
            yield from file_rows(src, base_dir, skipped)
        else:
            yield from hub_rows(src, skipped)
