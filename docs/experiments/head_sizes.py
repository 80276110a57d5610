"""Writes a covariates CSV with each subject's head volume beside its age and sex, so that a
volume model can be trained conditioned on head size (`--covariates FILE --condition-on
age,sex,head_volume`) and, sampled with `--unconditional-covariates drawn`, give each volume one
training subject's size. Head volume: the millilitres of tissue in the subject's stack as the
loader cuts it (`volume_checks.head_volume`). Run from the repository root:

    PYTHONPATH=. python docs/experiments/head_sizes.py --data-dir ../shared/data/ixi \
        --demographics ../shared/data/ixi/demographics.csv --output runs/head-sizes.csv
"""
import argparse
import csv
import pathlib

import numpy as np

from brainvq.data import covariates, layouts
from brainvq.evaluation import volume_checks
from brainvq.runs import run_folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="pretrained/ixi-t1-128-volumes",
                        help="a run cut as stacks: its data settings cut the volumes")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--demographics", required=True, help="CSV: subject, age, sex")
    parser.add_argument("--output", required=True, help="the CSV to write")
    args = parser.parse_args()
    values, _ = run_folder.load_run(args.output_dir, {"data_dir": args.data_dir})
    splits, _ = layouts.load_splits_for(values)
    table = covariates.read_table(args.demographics)
    pixel, spacing = values["field_of_view"] / values["image_size"], values["slice_spacing"]
    rows = {}
    for split in splits.values():
        for case in np.unique(split.case_id):
            picked = np.flatnonzero(split.case_id == case)
            subject = covariates.subject_of(split.paths[picked[0]], table)
            if subject is None:
                continue
            millilitres = volume_checks.head_volume(split.images[picked, ..., 0], pixel, spacing)
            rows[subject] = dict(table[subject], head_volume=f"{millilitres:.1f}")
    output = pathlib.Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    columns = list(next(iter(rows.values())))
    with open(output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows[subject] for subject in sorted(rows))
    sizes = np.array([float(row["head_volume"]) for row in rows.values()])
    print(f"{output}: {len(rows)} subjects, head volume {sizes.mean():.0f} ± {sizes.std():.0f} mL")


if __name__ == "__main__":
    main()
