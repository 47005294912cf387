"""Local files: the data folder, and csv/tsv/jsonl/parquet files read into columns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sycophancy.errors import UserError
from sycophancy.sources.common import Table, _name, _split_entry

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def read_table(path: Path, fmt: str | None = None) -> Table:
    """Read a csv/tsv (with header; tsv unquoted), jsonl or parquet file into columns."""
    fmt = fmt or FORMATS.get(path.suffix.lower())
    readers = {"csv": _read_delimited, "tsv": _read_delimited, "jsonl": _read_jsonl}
    if fmt == "parquet":
        return _read_parquet(path)
    if fmt not in readers:
        raise UserError(
            f"Cannot tell how to read {path}: format {fmt!r} is not one of csv, tsv, jsonl, "
            "parquet. Set dataset.format=csv|tsv|jsonl|parquet or rename the file."
        )
    return readers[fmt](path, fmt)


def _no_data_dir(cfg: dict) -> UserError:
    """UserError for a local data set without a data_dir."""
    return UserError(
        f"dataset {_name(cfg)} reads local files but dataset.data_dir is not set. Point it at "
        f"the folder holding {_expected(cfg)}, e.g. dataset.data_dir=/path/to/folder."
    )


def _expected(cfg: dict) -> str:
    """The configured files, for messages."""
    files = cfg.get("files") or {}
    return ", ".join(f"{v} ({k})" for k, v in files.items()) or "the data files"


def _data_dir(cfg: dict) -> Path:
    """The configured data folder, checked to exist."""
    raw = cfg.get("data_dir")
    if raw in (None, "", "???"):
        raise _no_data_dir(cfg)
    path = Path(str(raw)).expanduser()
    if not path.is_dir():
        raise UserError(
            f"dataset {_name(cfg)}: data_dir {path} (absolute: {path.absolute()}) is not an "
            f"existing folder; it should hold {_expected(cfg)}. Fix dataset.data_dir "
            "(relative paths count from the working directory)."
        )
    return path


def _local_file(cfg: dict, split: str, **fields: str) -> Path:
    """The existing file for `split` under data_dir."""
    data_dir = _data_dir(cfg)
    path = data_dir / _split_entry(cfg, "files", split).format(**fields)
    if not path.is_file():
        raise UserError(
            f"dataset {_name(cfg)}, split {split!r}: file {path} does not exist. The config "
            f"expects {_expected(cfg)} under {data_dir}. Fix dataset.data_dir or dataset.files."
        )
    return path


def _local_table(cfg: dict, split: str) -> tuple[Table, str]:
    """The table of a local classification file."""
    path = _local_file(cfg, split)
    return read_table(path, cfg.get("format")), str(path)


def _malformed(path: Path, where: str, problem: str) -> UserError:
    """UserError for a file that cannot be parsed."""
    return UserError(
        f"The data file {path} is malformed{where}: {problem}. Fix or re-export the file "
        "(tsv files are read without quoting; csv files with standard double-quote quoting)."
    )


def _read_delimited(path: Path, fmt: str) -> Table:
    """Read a csv (quoted) or tsv (unquoted) file with a header row."""
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    delimiter = "\t" if fmt == "tsv" else ","
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle, delimiter=delimiter, quoting=quoting))
    except (UnicodeDecodeError, csv.Error) as err:
        raise _malformed(path, "", str(err)) from err
    if not rows:
        raise _malformed(path, "", "it is empty (no header row)")
    header = [h.strip() for h in rows[0]]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise _malformed(path, f" at line {line}", f"{len(row)} fields, header has {header}")
    return {h: [row[j] for row in rows[1:]] for j, h in enumerate(header)}


def _read_jsonl(path: Path, _fmt: str) -> Table:
    """Read JSON lines (or one JSON list) of objects into columns."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        lines = [(n, ln) for n, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
        records = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(ln) for _, ln in lines]
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _malformed(path, "", f"not valid JSON lines ({err})") from err
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise _malformed(path, "", "every record must be a JSON object")
    columns = list(dict.fromkeys(k for r in records for k in r))
    return {c: [r.get(c) for r in records] for c in columns}


def _read_parquet(path: Path) -> Table:
    """Read a parquet file into columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pydict()
    except (pa.ArrowException, OSError) as err:
        raise _malformed(path, "", str(err)) from err


def jsonl_rows(cfg: dict, split: str) -> list[tuple[int, dict]]:
    """(line number, record) of every non-blank line of a split's local JSON-lines file."""
    path = _local_file(cfg, split)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        return [(n, json.loads(line)) for n, line in enumerate(lines, start=1) if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _malformed(path, "", f"not valid JSON lines ({err})") from err
