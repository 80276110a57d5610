"""Covariates of the subjects (age, sex, ...) from a CSV file, matched to the slices' subjects
and encoded the way the prior takes them (`GatedPixelCNN.covariate_condition`).

The file has one row per subject: a `subject` column (or, without one, the first column) and any
numeric or categorical columns, e.g. IXI's `demographics.csv` (`subject,age,sex`). A slice's
subject is matched by its NIfTI file's subject id (the file name starts with the CSV's id:
`IXI012-HH-1211_T1.nii.gz` for `IXI012-HH-1211`) or, in the OASIS PNG layout, by its case number
(`case_001_slice_4.nii.png` for a subject id whose number is 1, e.g. `1` or `OAS1_0001`).
"""
from __future__ import annotations

import csv
import io
import math
import pathlib
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from brainvq.data.slice_sets import SliceSet, parse_case_slice
from brainvq.errors import DatasetError
from brainvq.hints import PathLike


def read_table(path: PathLike) -> dict[str, dict[str, str]]:
    """{subject id: {column: text}} of a covariates CSV.

    Read as UTF-8 (or, failing that, Windows-1252, which Excel writes), comma-separated, or
    semicolon-separated with decimal commas (`47,5` is 47.5), as European spreadsheets write it.

    Raises:
        DatasetError, naming the file: missing, unreadable, empty, no subject column, or a
            subject id on two rows (named with their line numbers).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"covariates file {path} does not exist: pass --covariates with a CSV "
                           f"of one row per subject (subject, age, sex, ...)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            raise DatasetError(f"{path} is neither UTF-8 nor Windows-1252 text: save it as a "
                               f"UTF-8 CSV") from None
        print(f"note: {path} is not UTF-8; read as Windows-1252")
    header = text.splitlines()[0] if text.strip() else ""
    semicolons = header.count(";") > header.count(",")
    rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=";" if semicolons
                               else ","))
    if semicolons:  # decimal commas: 47,5 is 47.5
        rows = [{key: re.sub(r"^(-?\d+),(\d+)$", r"\1.\2", (value or "").strip())
                 for key, value in row.items()} for row in rows]
    if not rows or not rows[0]:
        raise DatasetError(f"{path} holds no rows: expected a header (subject, age, ...) and one "
                           f"row per subject")
    key = "subject" if "subject" in rows[0] else next(iter(rows[0]))
    table, lines = {}, {}
    for line, row in enumerate(rows, start=2):
        subject = (row.get(key) or "").strip()
        if not subject:
            continue
        if subject in table:
            raise DatasetError(f"{path}: subject {subject!r} has two rows (lines "
                               f"{lines[subject]} and {line}): keep one")
        table[subject], lines[subject] = dict(row, _line=line), line
    return table


def _case_number(text: str) -> int | None:
    digits = re.findall(r"\d+", text)
    return int(digits[-1]) if digits else None


def _starts_with_id(name: str, subject: str) -> bool:
    """Whether the file name begins with the subject id as a whole word: followed by a
    separator or the end, so `IXI01` never matches `IXI013-HH-1212_T1.nii.gz`."""
    if not name.startswith(subject):
        return False
    rest = name[len(subject):]
    return not rest or not rest[0].isalnum()


def subject_of(slice_path: PathLike, table: Mapping[str, Any]) -> str | None:
    """The subject id of `table` a slice belongs to, or None: the longest id that begins the
    NIfTI file's name as a whole word (`IXI012-HH-1211` or `IXI012` for
    `IXI012-HH-1211_T1.nii.gz`; `IXI01` for none of them), else by OASIS case number."""
    name = pathlib.Path(str(slice_path).split(":")[0]).name
    matches = [subject for subject in table if _starts_with_id(name, subject)]
    if matches:
        return max(matches, key=len)
    try:
        case, _ = parse_case_slice(name)
    except (ValueError, DatasetError):
        return None
    numbered = [subject for subject in table if _case_number(subject) == case]
    return numbered[0] if len(numbered) == 1 else None


def _number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def specs(table: dict[str, dict[str, str]], names: Sequence[str], subjects: Iterable[str]
          ) -> list[dict[str, Any]]:
    """One spec per covariate name, from the training subjects' values: {"name", "kind":
    "continuous", "low", "high"} for a numeric column, {"name", "kind": "categorical",
    "classes"} otherwise. DatasetError for a column the file lacks or one without values."""
    columns = [column for column in next(iter(table.values())) if column != "_line"]
    result = []
    for name in names:
        if name not in columns:
            raise DatasetError(f"--condition-on {name}: the covariates file has no such column "
                               f"(it has {', '.join(columns)})")
        given = [subject for subject in subjects if (table[subject][name] or "").strip()]
        values = [table[subject][name].strip() for subject in given]
        if not values:
            raise DatasetError(f"--condition-on {name}: no training subject has a value")
        numbers = [_number(value) for value in values]
        if all(number is not None for number in numbers):
            result.append({"name": name, "kind": "continuous", "low": min(numbers),
                           "high": max(numbers)})
            continue
        if any(number is not None for number in numbers):  # a numeric column with a bad value
            bad = next(subject for subject, number in zip(given, numbers) if number is None)
            raise DatasetError(
                f"--condition-on {name}: {table[bad][name].strip()!r} (subject {bad}, line "
                f"{table[bad].get('_line', '?')} of the covariates file) is not a finite "
                f"number, and the column's other values are numbers: correct it, or leave it "
                f"empty for an unknown {name}")
        spellings = {}
        for value in sorted(set(values)):
            spellings.setdefault(value.casefold(), []).append(value)
        clashing = [forms for forms in spellings.values() if len(forms) > 1]
        if clashing:
            raise DatasetError(f"--condition-on {name}: {' and '.join(map(repr, clashing[0]))} "
                               f"are one class spelled two ways in the covariates file: write "
                               f"it one way")
        result.append({"name": name, "kind": "categorical", "classes": sorted(set(values))})
    return result


def encode(spec: Mapping[str, Any], text: Any) -> float:
    """One covariate value as the prior takes it: a continuous value scaled to its training range
    (low: 0, high: 1), a class's index; NaN for an empty value."""
    text = "" if text is None else str(text).strip()
    if not text:
        return float("nan")
    if spec["kind"] == "continuous":
        value = _number(text)
        if value is None:
            raise DatasetError(f"{spec['name']} {text!r}: not a number")
        return (value - spec["low"]) / max(spec["high"] - spec["low"], 1e-9)
    if text not in spec["classes"]:
        raise DatasetError(f"{spec['name']} {text!r}: not one of the classes the model was "
                           f"trained with ({', '.join(spec['classes'])})")
    return float(spec["classes"].index(text))


def check_request(spec: Mapping[str, Any], text: str) -> float:
    """Refuses, naming the range or the classes, a requested value the training data did not
    cover; returns the encoded value."""
    if spec["kind"] == "categorical" and str(text).strip() not in spec["classes"]:
        raise DatasetError(f"--{spec['name']} {text}: a class the training data did not have "
                           f"(it had {', '.join(spec['classes'])})")
    value = encode(spec, text)
    if spec["kind"] == "continuous" and not 0.0 <= value <= 1.0:
        raise DatasetError(f"--{spec['name']} {text}: outside the training range "
                           f"{spec['low']:g} to {spec['high']:g}")
    return value


def slice_covariates(slices: SliceSet, table: dict[str, dict[str, str]],
                     covariate_specs: Sequence[Mapping[str, Any]], skip_bad: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
    """[N, C] float32 covariates of a SliceSet's slices, and the indices of the slices kept.

    Raises:
        DatasetError: slices whose subject has no row (named), unless `skip_bad`, which drops
            them (the caller reports the count).
    """
    rows, kept, missing = [], [], []
    for index, path in enumerate(slices.paths):
        subject = subject_of(path, table)
        if subject is None:
            missing.append(pathlib.Path(str(path).split(":")[0]).name)
            continue
        rows.append([encode(spec, table[subject].get(spec["name"]))
                     for spec in covariate_specs])
        kept.append(index)
    if missing and not skip_bad:
        names = sorted(set(missing))
        raise DatasetError(f"{len(names)} subject(s) have no row in the covariates file: "
                           f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''}; add "
                           f"their rows, or pass --skip-bad true to leave their slices out")
    values = np.asarray(rows, np.float32).reshape(len(rows), len(covariate_specs))
    return values, np.asarray(kept, np.int64)


def subject_rows(case_ids: ArrayLike, slice_rows: np.ndarray) -> np.ndarray:
    """[S, C] float32: one covariates row per subject (in the order of their case ids) from the
    rows of their slices [N, C]; every slice of a subject has its subject's row."""
    case_ids = np.asarray(case_ids)
    slice_rows = np.asarray(slice_rows, np.float32).reshape(len(case_ids), -1)
    _, first = np.unique(case_ids, return_index=True)
    return slice_rows[np.sort(first)]


def for_splits(values: Mapping[str, Any], splits: Mapping[str, SliceSet], verbose: bool = True
               ) -> tuple[dict[str, SliceSet], list[dict[str, Any]], dict[str, np.ndarray]]:
    """The covariates a run conditions on (`values["covariates"]`, `values["condition_on"]`) for
    every split: (the splits, less slices dropped by `skip_bad` for want of a row, the specs
    from the training subjects, {split: [N, C] float32})."""
    table = read_table(values["covariates"])
    names = [name.strip() for name in values["condition_on"].split(",") if name.strip()]
    train_subjects = {subject_of(path, table) for path in splits["train"].paths} - {None}
    covariate_specs = specs(table, names, sorted(train_subjects))
    kept_splits, arrays, dropped = {}, {}, 0
    for name, split in splits.items():
        arrays[name], kept = slice_covariates(split, table, covariate_specs, values["skip_bad"])
        dropped += len(split) - len(kept)
        kept_splits[name] = split if len(kept) == len(split) else split.take(kept)
    if dropped and verbose:
        print(f"--skip-bad: left out {dropped} slice(s) whose subject has no row in "
              f"{values['covariates']}")
    return kept_splits, covariate_specs, arrays
