"""Covariates from a CSV (brainvq/data/covariates.py): matched to slices by NIfTI subject id or
OASIS case number, specs from the training subjects, missing rows refused by name or dropped,
requests outside the training range refused."""
import numpy as np
import pytest

from brainvq.data import covariates
from brainvq.data.slice_sets import SliceSet
from brainvq.errors import DatasetError
from helpers import SHARED_DATA


def write_table(path, text):
    path.write_text(text)
    return covariates.read_table(path)


def slice_set(paths):
    count = len(paths)
    return SliceSet(images=np.zeros((count, 4, 4, 1), np.float32),
                    slice_index=np.zeros(count, np.int32),
                    case_id=np.arange(count, dtype=np.int32), paths=list(paths), skipped=[])


def test_nifti_subject_ids_and_oasis_case_numbers_match(tmp_path):
    table = write_table(tmp_path / "c.csv", "subject,age,sex\nIXI012-HH-1211,38.8,M\n"
                                            "IXI013-HH-1212,46.7,F\nOAS1_0003,70,F\n")
    assert covariates.subject_of("/d/IXI012-HH-1211_T1.nii.gz:axial=67", table) == \
        "IXI012-HH-1211"
    assert covariates.subject_of("/d/keras_png_slices_train/case_003_slice_4.nii.png",
                                 table) == "OAS1_0003"
    assert covariates.subject_of("/d/IXI999-HH-0000_T1.nii.gz:axial=1", table) is None


def test_specs_come_from_the_training_subjects_and_encode(tmp_path):
    table = write_table(tmp_path / "c.csv", "subject,age,sex\nA,20,M\nB,80,F\nC,95,F\n")
    age, sex = covariates.specs(table, ["age", "sex"], ["A", "B"])  # C is held out
    assert age == {"name": "age", "kind": "continuous", "low": 20.0, "high": 80.0}
    assert sex == {"name": "sex", "kind": "categorical", "classes": ["F", "M"]}
    assert covariates.encode(age, "50") == pytest.approx(0.5)
    assert covariates.encode(sex, "M") == 1.0 and np.isnan(covariates.encode(sex, ""))
    with pytest.raises(DatasetError, match="outside the training range 20 to 80"):
        covariates.check_request(age, "95")
    with pytest.raises(DatasetError, match=r"--sex X: a class the training data did not have"):
        covariates.check_request(sex, "X")
    with pytest.raises(DatasetError, match=r"sex 'X': not one of the classes .*F, M"):
        covariates.encode(sex, "X")
    with pytest.raises(DatasetError, match="no such column"):
        covariates.specs(table, ["height"], ["A"])


def test_slices_of_subjects_without_a_row_are_refused_by_name_or_dropped(tmp_path):
    table = write_table(tmp_path / "c.csv", "subject,age\nIXI012-HH-1211,38\n")
    specs = covariates.specs(table, ["age"], ["IXI012-HH-1211"])
    slices = slice_set(["/d/IXI012-HH-1211_T1.nii.gz:axial=1",
                        "/d/IXI637-HH-2785_T1.nii.gz:axial=1"])
    with pytest.raises(DatasetError, match="IXI637-HH-2785_T1.nii.gz"):
        covariates.slice_covariates(slices, table, specs)
    values, kept = covariates.slice_covariates(slices, table, specs, skip_bad=True)
    assert kept.tolist() == [0] and values.shape == (1, 1)


@pytest.mark.skipif(not (SHARED_DATA / "ixi" / "demographics.csv").is_file(),
                    reason="../shared/data/ixi is absent")
def test_ixi_demographics_match_all_but_the_subjects_without_a_record():
    table = covariates.read_table(SHARED_DATA / "ixi" / "demographics.csv")
    files = sorted((SHARED_DATA / "ixi").glob("*.nii.gz"))
    unmatched = [path.name for path in files if covariates.subject_of(path, table) is None]
    assert len(files) == 165 and len(unmatched) == 3
    age, sex = covariates.specs(table, ["age", "sex"], list(table))
    assert 19 < age["low"] < 21 and 80 < age["high"] < 90 and sex["classes"] == ["F", "M"]


@pytest.mark.parametrize("bad", ["forty", "NaN", "inf"])
def test_a_non_numeric_age_is_named_with_its_row(tmp_path, bad):
    table = write_table(tmp_path / "c.csv", f"subject,age\nS1,30\nS2,{bad}\nS3,50\n")
    with pytest.raises(DatasetError, match=f"'{bad}' \\(subject S2, line 3 .*not a finite"):
        covariates.specs(table, ["age"], ["S1", "S2", "S3"])


def test_one_class_spelled_two_ways_is_refused_naming_both(tmp_path):
    table = write_table(tmp_path / "c.csv", "subject,sex\nS1,M\nS2,m\nS3,F\n")
    with pytest.raises(DatasetError, match="'M' and 'm' are one class spelled two ways"):
        covariates.specs(table, ["sex"], ["S1", "S2", "S3"])


def test_a_subject_on_two_rows_is_refused_and_ids_match_whole_words(tmp_path):
    with pytest.raises(DatasetError, match="'IXI012' has two rows \\(lines 2 and 4\\)"):
        write_table(tmp_path / "d.csv", "subject,age\nIXI012,30\nIXI013,40\nIXI012,50\n")
    table = write_table(tmp_path / "c.csv", "subject,age\nIXI01,30\nIXI013,40\n")
    assert covariates.subject_of("/d/IXI013-HH-1212_T1.nii.gz:axial=1", table) == "IXI013"
    assert covariates.subject_of("/d/IXI014-HH-1212_T1.nii.gz:axial=1", table) is None
    assert covariates.subject_of("/d/IXI01_T1.nii.gz:axial=1", table) == "IXI01"


def test_windows_1252_and_semicolons_with_decimal_commas_are_read(tmp_path, capsys):
    path = tmp_path / "excel.csv"
    path.write_bytes("subject;age;site\nS1;47,5;Malmö\nS2;30;Köln\n".encode("cp1252"))
    table = covariates.read_table(path)
    assert table["S1"]["age"] == "47.5" and table["S2"]["site"] == "Köln"
    assert "read as Windows-1252" in capsys.readouterr().out
    spec, = covariates.specs(table, ["age"], ["S1", "S2"])
    assert (spec["low"], spec["high"]) == (30.0, 47.5)
    with pytest.raises(DatasetError, match="no such column \\(it has subject, age, site\\)"):
        covariates.specs(table, ["sex"], ["S1"])
