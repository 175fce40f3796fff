"""A user's table or images as tensors: every format reads the same, what is learned comes
from the training split only, the splits are fixed and stratified, the task is inferred."""

from __future__ import annotations

import datetime
import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hpsearch.errors import DataError
from hpsearch.spec.config import make_config
from hpsearch.spec.datasource import DataSource
from hpsearch.training import tables
from hpsearch.training.data import device_data
from hpsearch.training.sources import carve
from hpsearch.training.sources import check_data
from hpsearch.training.sources import describe
from hpsearch.training.sources import read_source
from hpsearch.training.sources import split_sizes
from tests.owndata import DIABETES
from tests.owndata import wine_rows
from tests.owndata import write_csv
from tests.owndata import write_images
from tests.owndata import write_npz
from tests.owndata import write_wine


def _data(source: DataSource, val_fraction: float = 0.1, preprocess: str = "standardize") -> Any:
    return device_data(source, None, val_fraction, None, preprocess, "cpu")


@pytest.mark.parametrize("kind", ["tsv", "parquet", "csv.gz", "tsv.gz"])
def test_every_table_format_reads_as_the_csv_does(tmp_path: Path, kind: str) -> None:
    csv = _data(DataSource(str(write_wine(tmp_path, "csv")), target="cultivar"))
    other = _data(DataSource(str(write_wine(tmp_path, kind)), target="cultivar"))
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.allclose(getattr(csv, name).float(), getattr(other, name).float()), name
    assert csv.classes == other.classes == ("barbera", "barolo", "grignolino")


def test_an_npz_file_of_arrays_x_and_y_reads(tmp_path: Path) -> None:
    data = _data(DataSource(str(write_npz(tmp_path))))
    assert data.num_features == 13 and data.num_classes == 3 and data.task == "classification"
    assert len(data.train_y) + len(data.val_y) + len(data.test_y) == 178
    assert data.classes == (0, 1, 2)


@pytest.mark.parametrize(
    ("x", "y", "words"),
    [
        # pandas' .values of one column, or a one-hot label: a traceback from polars before
        (np.zeros((40, 4)), np.zeros((40, 2)), r"y has shape \(40, 2\): expected one value a row"),
        (np.zeros((0, 4)), np.zeros(0), r"x has shape \(0, 4\): expected rows of features"),
        (np.zeros((40, 0)), np.zeros(40), r"x has shape \(40, 0\)"),
        (np.float32(1.0), np.zeros(1), r"x has shape \(\)"),
    ],
)
def test_npz_arrays_of_the_wrong_shape_are_named_with_it(
    tmp_path: Path, x: Any, y: Any, words: str
) -> None:
    path = tmp_path / "t.npz"
    np.savez(path, x=x, y=y)
    with pytest.raises(DataError, match=words):
        read_source(DataSource(str(path), target="y", task="regression"))


@pytest.mark.parametrize(
    ("column", "words"),
    [
        ([[1, 2], [3]] * 20, r"column 'c' holds lists or records \(List\(Int64\)\); a model"),
        ([{"k": 1}] * 40, r"column 'c' holds lists or records \(Struct"),
        (
            [datetime.date(2020, 1, 1) + datetime.timedelta(days=i) for i in range(40)],
            r"column 'c' holds dates or times \(Date\); .* convert it to numbers",
        ),
    ],
)
def test_a_parquet_column_no_encoding_reads_is_named_with_its_type(
    tmp_path: Path, column: list[Any], words: str
) -> None:
    # a list column was a polars traceback; a date column 40 categories, one a day
    import polars as pl

    path = tmp_path / "t.parquet"
    pl.DataFrame({"a": np.arange(40.0), "c": column, "y": np.arange(40) % 2}).write_parquet(path)
    with pytest.raises(DataError, match=words):
        read_source(DataSource(str(path), target="y"))
    target = tmp_path / "target.parquet"
    pl.DataFrame({"a": np.arange(40.0), "y": column}).write_parquet(target)
    if "List" in words:  # a list as the target: the same line
        with pytest.raises(DataError, match=words.replace("'c'", "'y'")):
            read_source(DataSource(str(target), target="y"))


def test_a_table_read_again_with_other_columns_is_the_file_as_it_is_now(
    tmp_path: Path,
) -> None:
    names, rows = wine_rows()
    path = write_csv(tmp_path / "w.csv", names, rows)
    assert read_source(DataSource(str(path), target="cultivar")).rows == len(rows)
    write_csv(path, names, rows[::3])  # written anew: not the frame read before
    assert read_source(DataSource(str(path), target="cultivar", drop=("hue",))).rows == 60


def test_a_column_of_labels_in_an_npz_file_reads_as_a_vector(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    labels = np.arange(40) % 2
    np.savez(path, x=np.arange(80.0).reshape(40, 2), y=labels[:, None])
    assert read_source(DataSource(str(path))).frame["y"].to_list() == labels.tolist()


def test_what_is_learned_comes_from_the_training_split_only(tmp_path: Path) -> None:
    source = DataSource(str(write_wine(tmp_path)), target="cultivar")
    data = _data(source)
    encoding = data.encoding
    own = read_source(source)
    train, _, _ = carve(178, own.strata, True, 0.1, source.path)
    alcohol = own.frame["alcohol"].to_numpy()
    code = encoding.columns[0]
    assert code.name == "alcohol" and code.kind == "number"
    assert code.center == pytest.approx(alcohol[train].mean())  # not the whole file's mean
    assert code.center != pytest.approx(alcohol.mean(), rel=1e-9)
    assert code.scale == pytest.approx(alcohol[train].std())
    # standardized on the training split: mean 0, std 1 there
    assert data.train_x[:, 0].mean().abs() < 1e-5
    assert data.train_x[:, 0].std(unbiased=False) == pytest.approx(1.0, abs=1e-4)
    # the text column is one-hot over its categories, sorted
    shade = next(c for c in encoding.columns if c.name == "shade")
    assert shade.kind == "category" and shade.categories == ("high", "low", "mid")
    assert encoding.num_features == 13 + 3  # the 13 measurements, the shade one-hot
    block = data.train_x[:, 13:16]
    assert torch.equal(block.sum(dim=1), torch.ones(len(block)))


def test_dropped_columns_are_no_inputs_and_new_rows_may_still_hold_them(tmp_path: Path) -> None:
    names, rows = wine_rows()
    names = ["id", "label", *names]  # a number id, and a text one of a distinct value a row
    rows = [[i, f"bottle {i}", *row] for i, row in enumerate(rows)]
    path = str(write_csv(tmp_path / "ids.csv", names, rows))
    with pytest.raises(DataError, match="column 'label' has 178 distinct text values"):
        read_source(DataSource(path, target="cultivar"))
    source = DataSource(path, target="cultivar", drop=("id", "label"))
    assert set(read_source(source).kinds or {}) == set(wine_rows()[0][:-1])
    data = _data(source)
    plain = _data(DataSource(str(write_wine(tmp_path)), target="cultivar"))
    assert data.encoding == plain.encoding  # as if the file never had them
    assert torch.equal(data.train_x, plain.train_x)
    frame = read_source(source).frame
    assert np.array_equal(data.encoding.features(frame), plain.encoding.features(frame))
    assert DataSource(path, target="cultivar", drop="id").drop == ("id",)  # one name


def test_a_column_that_numbers_the_rows_is_named_as_a_likely_id(tmp_path: Path) -> None:
    import polars as pl

    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {
            "id": rng.permutation(np.arange(1000, 1050)),  # every number once, shuffled
            "gap": [*range(49), 60],
            "twice": [*range(49), 0],
            "measured": rng.normal(size=50),  # floats: a measurement
            "missing": [*range(49), None],
            "y": ["a", "b"] * 25,
        }
    )
    kinds = {name: "number" for name in frame.columns if name != "y"}
    assert tables.counters(frame, kinds) == ["id"]
    path = tmp_path / "ids.csv"
    frame.write_csv(path)
    line = describe(DataSource(str(path), target="y"), 0.1)
    assert line.endswith(
        "; column 'id' numbers the rows (each whole number once, no gap): an ID? leave it out "
        "(dataset.drop: [id])"
    )
    assert "an ID?" not in describe(DataSource(str(path), target="y", drop=("id",)), 0.1)


def test_a_column_to_drop_that_the_file_lacks_is_named(tmp_path: Path) -> None:
    source = DataSource(str(write_wine(tmp_path)), target="cultivar", drop=("alcohl",))
    with pytest.raises(DataError, match=r"wine.csv: no column 'alcohl' to drop \(did you mean "
                       r"'alcohol'\?\); its columns: alcohol, malic_acid"):  # fmt: skip
        read_source(source)


def test_missing_cells_are_imputed_from_the_training_split_with_an_indicator(
    tmp_path: Path,
) -> None:
    names, rows = wine_rows()
    for r in range(0, 178, 9):
        rows[r][0] = None  # alcohol missing in 20 rows
        rows[r][13] = None  # and the shade
    source = DataSource(str(write_csv(tmp_path / "wine.csv", names, rows)), target="cultivar")
    data = _data(source)
    alcohol = next(c for c in data.encoding.columns if c.name == "alcohol")
    shade = next(c for c in data.encoding.columns if c.name == "shade")
    assert alcohol.indicator and shade.indicator
    assert data.encoding.num_features == 13 + 1 + 3 + 1
    own = read_source(source)
    train, _, _ = carve(178, own.strata, True, 0.1, source.path)
    seen = [v for v in own.frame["alcohol"].to_numpy()[train] if not np.isnan(v)]
    assert alcohol.fill == pytest.approx(np.mean(seen))  # the training split's mean
    x = data.encoding.features(own.frame[[0, 1]])
    assert x[0, 0] == pytest.approx((alcohol.fill - alcohol.center) / alcohol.scale)
    assert x[0, 1] == 1.0 and x[1, 1] == 0.0  # the indicator says which was missing


def test_splits_are_fixed_stratified_and_the_test_rows_do_not_depend_on_val_fraction() -> None:
    strata = np.repeat([0, 1, 2], [59, 71, 48])
    a = carve(178, strata, True, 0.1, "f")
    b = carve(178, strata, True, 0.1, "f")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))  # the same each time
    _, val, test = a
    assert sorted(np.concatenate(a).tolist()) == list(range(178))  # a partition
    assert [int((strata[test] == c).sum()) for c in range(3)] == [12, 14, 10]  # 20% of each
    assert [int((strata[val] == c).sum()) for c in range(3)] == [5, 6, 4]
    no_val = carve(178, strata, True, 0.0, "f")
    assert np.array_equal(no_val[2], test) and len(no_val[1]) == 0  # retraining: same test
    _, _, none = carve(178, strata, False, 0.1, "f")  # a test file: nothing carved
    assert len(none) == 0


def test_a_test_file_is_used_whole(tmp_path: Path) -> None:
    names, rows = wine_rows()
    train = write_csv(tmp_path / "train.csv", names, rows[::2])
    test = write_csv(tmp_path / "test.csv", list(reversed(names)), [r[::-1] for r in rows[1::2]])
    source = DataSource(str(train), target="cultivar", test=str(test))
    assert split_sizes(source, 0.1) == {"train": 80, "validation": 9, "test": 89}
    data = _data(source)
    assert len(data.test_y) == 89  # its columns in another order, all of its rows


def test_the_task_is_inferred_from_the_target(tmp_path: Path) -> None:
    assert check_data(DataSource(str(DIABETES), target="progression"), 0.1) == "regression"
    wine = str(write_wine(tmp_path))
    assert check_data(DataSource(wine, target="cultivar"), 0.1) == "classification"
    # a numeric target of few values is classes
    names, rows = wine_rows()
    rows = [[*r[:-1], ["1", "2", "3"][i % 3]] for i, r in enumerate(rows)]
    numbers = str(write_csv(tmp_path / "n.csv", names, rows))
    assert check_data(DataSource(numbers, target="cultivar"), 0.1) == "classification"
    assert check_data("digits", 0.1) == "classification"


def test_a_regression_target_is_standardized_on_the_training_split() -> None:
    data = _data(DataSource(str(DIABETES), target="progression", task="regression"))
    assert data.task == "regression" and data.num_classes == 1
    assert data.train_y.dtype == torch.float32
    assert data.train_y.mean().abs() < 1e-5
    assert (
        data.target_scale == pytest.approx(data.encoding.target_scale)
        and 60 < data.target_scale < 90
    )


def test_a_memory_limit_refuses_a_file_before_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_wine(tmp_path)
    monkeypatch.setenv(tables.MEMORY_ENV, "1000")
    with pytest.raises(DataError, match=r"wine.csv: .* needs about .* of memory .* fits"):
        tables.read_rows(str(path), "csv")
    for bad in ("lots", "-1", "0", "inf", "nan"):  # inf was an OverflowError's traceback
        monkeypatch.setenv(tables.MEMORY_ENV, bad)
        with pytest.raises(DataError, match=f"HPSEARCH_DATA_MEMORY: '{bad}' is not a number"):
            tables.read_rows(str(path), "csv")


def test_a_column_that_turns_to_text_late_is_read_and_judged(tmp_path: Path) -> None:
    # polars guesses a column's type from its first rows: a later misfit is read as text
    path = tmp_path / "late.csv"
    lines = ["a,b,y"] + [f"{i},{i * 2},{i % 2}" for i in range(tables.INFER_ROWS + 10)]
    lines.append("5,oops,1")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError, match=rf"line {tables.INFER_ROWS + 12}: column 'b' holds 'oops'"
    ):
        read_source(DataSource(str(path), target="y"))


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        # an infinite target, then an infinite feature: each would make every number NaN
        (["1.5,2,inf", "3,4,5"], "line 2: column 'y' holds inf, not a finite number"),
        (["1.5,2,3", "3,-inf,5"], "line 3: column 'b' holds -inf, not a finite number"),
        (["1.5,2,3", "3,1e999,5"], "line 3: column 'b' holds inf, not a finite number"),
        # polars names no line for these; Python's reader finds it
        (["1,2,3", "4,5,6,7"], "line 3: 4 fields where the header has 3"),
        (['1,"2,3', "4,5,6"], "line 2: 2 fields where the header has 3 .an unclosed quote"),
    ],
)
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_damaged_table_is_refused_naming_its_line(
    tmp_path: Path, lines: list[str], words: str, suffix: str
) -> None:
    path = tmp_path / f"t{suffix}"
    text = "\n".join(["a,b,y", *lines, *(f"{i},{i},{i}" for i in range(40))]) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if suffix.endswith(".gz") else text.encode())
    with pytest.raises(DataError, match=words):
        read_source(DataSource(str(path), target="y", task="regression"))


def test_a_gzipped_table_is_judged_unpacked_and_a_cut_one_named_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "zeros.csv.gz"
    rows = "".join(f"0,0,{i % 2}\n" for i in range(20000))
    path.write_bytes(gzip.compress(f"a,b,y\n{rows}".encode()))
    unpacked = len(rows) + 6
    assert path.stat().st_size * 10 < unpacked  # packed tightly: its size on disk says little
    monkeypatch.setenv(tables.MEMORY_ENV, str(2 * unpacked))  # the packed file would fit
    with pytest.raises(DataError, match=r"zeros\.csv\.gz: .* needs about .* of memory"):
        tables.read_rows(str(path), "csv")
    monkeypatch.delenv(tables.MEMORY_ENV)
    assert tables.read_rows(str(path), "csv").height == 20000
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.csv\.gz: not a readable gzip file \(Compressed"):
        tables.read_rows(str(cut), "csv")


def test_a_file_of_another_encoding_or_separator_is_named_so(tmp_path: Path) -> None:
    rows = [f"{i},{i % 3},{'xy'[i % 2]}" for i in range(40)]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("\n".join(["a,b,y", *rows, "1,2,café"]).encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv: line 42: not UTF-8 text; save the file as"):
        read_source(DataSource(str(latin), target="y"))
    semi = tmp_path / "semi.csv"
    semi.write_text("\n".join(["a;b;y", *(r.replace(",", ";") for r in rows)]))
    with pytest.raises(DataError, match=r"no column 'y' \(its lines are split by ';': a \.csv fi"):
        read_source(DataSource(str(semi), target="y"))


def test_image_folders_are_read_grey_or_rgb_at_the_most_common_size(tmp_path: Path) -> None:
    folder = write_images(tmp_path / "photos", per_class=10, size=(12, 10))
    write_images(tmp_path / "odd", per_class=1, size=(20, 20))
    for name in ("bright", "dark", "striped"):  # one odd-sized image per class
        (tmp_path / "odd" / name / "000.png").rename(folder / name / "odd.png")
    grey = _data(DataSource(str(folder)))
    assert grey.image_shape == (1, 12, 10) and grey.num_features == 120
    assert grey.classes == ("bright", "dark", "striped") and grey.num_classes == 3
    rgb = _data(DataSource(str(folder), color="rgb", image_size=8))
    assert rgb.image_shape == (3, 8, 8) and rgb.num_features == 192
    assert len(rgb.train_y) + len(rgb.val_y) + len(rgb.test_y) == 33


def test_a_class_folder_without_images_is_refused_and_hidden_folders_are_no_class(
    tmp_path: Path,
) -> None:
    folder = write_images(tmp_path / "photos", per_class=10)
    hidden = folder / ".ipynb_checkpoints"  # what Jupyter leaves: not a fourth class
    hidden.mkdir()
    (hidden / "000.png").write_bytes((folder / "dark" / "000.png").read_bytes())
    assert _data(DataSource(str(folder))).classes == ("bright", "dark", "striped")
    (folder / "blurry").mkdir()  # a class no image teaches: every answer of it wrong
    (folder / "blurry" / "notes.txt").write_text("to do")
    read_source.cache_clear()  # the folder's source, read once a process
    with pytest.raises(DataError, match=r"photos/blurry: a class folder without images"):
        read_source(DataSource(str(folder)))


def test_a_config_takes_a_data_source_and_says_its_task() -> None:
    config = make_config({"dataset": {"path": "x.csv", "target": "y", "task": "regression"}})
    assert config.task == "regression"
    assert config.to_dict()["dataset"] == {"path": "x.csv", "target": "y", "task": "regression"}
    assert make_config(config.to_dict()) == config  # a saved config reads back
    assert make_config({}).task == "classification"


def test_an_empty_column_is_a_number_column_all_missing(tmp_path: Path) -> None:
    names, rows = wine_rows()
    names = [*names[:-1], "empty", names[-1]]
    rows = [[*r[:-1], None, r[-1]] for r in rows]
    source = DataSource(str(write_csv(tmp_path / "w.csv", names, rows)), target="cultivar")
    data = _data(source)
    empty = next(c for c in data.encoding.columns if c.name == "empty")
    assert empty.kind == "number" and empty.indicator  # its indicator is always 1
    assert data.num_features == 13 + 3 + 2
