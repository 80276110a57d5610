"""Covariates of the subjects (age, sex, ...) from a CSV file, matched to the slices' subjects
and encoded the way the prior takes them (`GatedPixelCNN.covariate_condition`).

The file has one row per subject: a `subject` column (or, without one, the first column) and any
numeric or categorical columns, e.g. IXI's `demographics.csv` (`subject,age,sex`). A slice's
subject is matched by its NIfTI file's subject id (the file name starts with the CSV's id:
`IXI012-HH-1211_T1.nii.gz` for `IXI012-HH-1211`) or, in the OASIS PNG layout, by its case number
(`case_001_slice_4.nii.png` for a subject id whose number is 1, e.g. `1` or `OAS1_0001`).
"""
import csv
import math
import pathlib
import re

import numpy as np

from brainvq.data.slice_sets import parse_case_slice
from brainvq.errors import DatasetError


def read_table(path):
    """{subject id: {column: text}} of a covariates CSV; DatasetError naming the file when it is
    missing, empty or has no subject column."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"covariates file {path} does not exist: pass --covariates with a CSV "
                           f"of one row per subject (subject, age, sex, ...)")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not rows[0]:
        raise DatasetError(f"{path} holds no rows: expected a header (subject, age, ...) and one "
                           f"row per subject")
    key = "subject" if "subject" in rows[0] else next(iter(rows[0]))
    return {row[key].strip(): row for row in rows if row.get(key, "").strip()}


def _case_number(text):
    digits = re.findall(r"\d+", text)
    return int(digits[-1]) if digits else None


def subject_of(slice_path, table):
    """The subject id of `table` a slice belongs to, or None: by NIfTI file name prefix (the
    longest id that starts the name), else by OASIS case number."""
    name = pathlib.Path(str(slice_path).split(":")[0]).name
    matches = [subject for subject in table if name.startswith(subject)]
    if matches:
        return max(matches, key=len)
    try:
        case, _ = parse_case_slice(name)
    except (ValueError, DatasetError):
        return None
    numbered = [subject for subject in table if _case_number(subject) == case]
    return numbered[0] if len(numbered) == 1 else None


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def specs(table, names, subjects):
    """One spec per covariate name, from the training subjects' values: {"name", "kind":
    "continuous", "low", "high"} for a numeric column, {"name", "kind": "categorical",
    "classes"} otherwise. DatasetError for a column the file lacks or one without values."""
    columns = next(iter(table.values())).keys()
    result = []
    for name in names:
        if name not in columns:
            raise DatasetError(f"--condition-on {name}: the covariates file has no such column "
                               f"(it has {', '.join(columns)})")
        values = [table[subject][name].strip() for subject in subjects
                  if table[subject][name].strip()]
        if not values:
            raise DatasetError(f"--condition-on {name}: no training subject has a value")
        numbers = [_number(value) for value in values]
        if all(number is not None for number in numbers):
            result.append({"name": name, "kind": "continuous", "low": min(numbers),
                           "high": max(numbers)})
        else:
            result.append({"name": name, "kind": "categorical", "classes": sorted(set(values))})
    return result


def encode(spec, text):
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


def check_request(spec, text):
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


def slice_covariates(slices, table, covariate_specs, skip_bad=False):
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


def subject_rows(case_ids, slice_rows):
    """[S, C] float32: one covariates row per subject (in the order of their case ids) from the
    rows of their slices [N, C]; every slice of a subject has its subject's row."""
    case_ids = np.asarray(case_ids)
    slice_rows = np.asarray(slice_rows, np.float32).reshape(len(case_ids), -1)
    _, first = np.unique(case_ids, return_index=True)
    return slice_rows[np.sort(first)]


def for_splits(values, splits):
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
    if dropped:
        print(f"--skip-bad: left out {dropped} slice(s) whose subject has no row in "
              f"{values['covariates']}")
    return kept_splits, covariate_specs, arrays
