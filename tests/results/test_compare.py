"""Comparing studies: ranked by their best, timed to a level all reached, refused when their
objectives differ, written as one HTML page, and from the command line."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import pytest

from hpsearch.errors import ConfigError
from hpsearch.results.compare import compare_studies
from hpsearch.results.compare import notes
from hpsearch.results.compare import Step
from hpsearch.results.compare import write_comparison
from tests.helpers import hpsearch
from tests.helpers import stand_in_study

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0)

# (number, state, value, seconds from T0 to its start, to its end)
Trial = tuple[int, TrialState, float | None, float, float]


def _study(
    storage: str, name: str, trials: list[Trial], direction: str = "minimize"
) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name=name, direction=direction)
    for number, state, value, start, end in trials:
        study.add_trial(
            FrozenTrial(
                number=number,
                state=state,
                value=value,
                datetime_start=T0 + datetime.timedelta(seconds=start),
                datetime_complete=T0 + datetime.timedelta(seconds=end),
                params={},
                distributions={},
                user_attrs={"train_seconds": end - start},
                system_attrs={},
                intermediate_values={},
                trial_id=number,
            )
        )
    return study


DONE, PRUNED, FAIL = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL


@pytest.fixture
def storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'c.db'}"


def test_studies_are_ranked_by_their_best_and_timed_to_the_level_all_reached(
    storage: str,
) -> None:
    slow = _study(
        storage,
        "slow",
        [
            (0, DONE, 5.0, 0, 10),
            (1, DONE, 3.0, 10, 20),
            (2, DONE, 4.0, 20, 30),
            (3, DONE, 1.0, 30, 40),
            (4, DONE, 1.5, 40, 50),
        ],
    )
    # two workers: trial 1 ends before trial 0, and a pruned and a failed trial count too
    quick = _study(
        storage,
        "quick",
        [
            (0, DONE, 2.0, 100, 106),
            (1, DONE, 4.0, 100, 103),
            (2, PRUNED, None, 103, 104),
            (3, FAIL, None, 104, 105),
            (4, DONE, 2.5, 106, 108),
        ],
    )
    found = compare_studies([quick, slow])
    assert (found.metric, found.direction, found.level) == ("value", "minimize", 2.0)
    best, worst = found.studies
    assert (best.name, worst.name) == ("slow", "quick")  # the lower best first
    # counted as they finished: trial 1 first (3 s), then pruned, failed, trial 0 (6 s)
    assert quick.trials[1].datetime_complete < quick.trials[0].datetime_complete
    assert worst.steps == (Step(1, 3.0, 4.0, 1), Step(4, 6.0, 2.0, 0), Step(5, 8.0, 2.0, 0))
    assert worst.reached == Step(4, 6.0, 2.0, 0)
    assert (worst.complete, worst.pruned, worst.failed, worst.finished) == (3, 1, 1, 5)
    assert (worst.train_seconds, worst.wall_seconds) == (13.0, 8.0)
    assert best.steps[-1] == Step(5, 50.0, 1.0, 3) and best.best == best.steps[-1]
    assert best.reached == Step(4, 40.0, 1.0, 3)  # its first value at or below 2.0
    said = notes(found)
    assert said[0].startswith("level: value 2, the best every study reached (quick's)")


def test_a_maximized_objective_levels_at_the_lowest_best(storage: str) -> None:
    a = _study(storage, "a", [(0, DONE, 0.9, 0, 1), (1, DONE, 0.95, 1, 2)], "maximize")
    b = _study(storage, "b", [(0, DONE, 0.8, 0, 1), (1, DONE, 0.97, 1, 2)], "maximize")
    c = _study(storage, "c", [(0, DONE, 0.93, 0, 1)], "maximize")
    found = compare_studies([a, b, c])
    assert [s.name for s in found.studies] == ["b", "a", "c"]
    assert found.level == 0.93
    assert [s.reached.finished if s.reached else None for s in found.studies] == [2, 2, 1]


def test_a_study_without_a_completed_trial_comes_last_and_is_named(storage: str) -> None:
    a = _study(storage, "a", [(0, FAIL, None, 0, 1)])
    b = _study(storage, "b", [(0, DONE, 3.0, 0, 1)])
    found = compare_studies([a, b])
    assert [s.name for s in found.studies] == ["b", "a"]
    assert found.level == 3.0 and found.studies[1].best is None
    assert found.studies[1].reached is None and found.studies[1].failed == 1
    assert notes(found) == ["no completed trial yet: a"]  # one study with a best: no level


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda s: [_study(s, "a", [])], "compare: name two studies or more"),
        (
            lambda s: [_study(s, "a", []), optuna.load_study(study_name="a", storage=s)],
            "compare: study 'a' is named twice",
        ),
        (
            lambda s: [
                _study(s, "a", []),
                optuna.create_study(storage=s, study_name="m", directions=["minimize"] * 2),
            ],
            "compare: study 'm' has 2 objectives; compare takes studies of one objective",
        ),
        (
            lambda s: [_study(s, "a", []), _study(s, "b", [], "maximize")],
            "compare: study 'b' has the objective value (maximize), study 'a' value "
            "(minimize): compare studies of one objective",
        ),
    ],
)
def test_studies_that_cannot_be_compared_are_refused(
    storage: str, make: object, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        compare_studies(make(storage))  # type: ignore[operator]
    assert str(caught.value) == message


def test_the_comparison_page_holds_every_study_and_both_curves(
    storage: str, tmp_path: Path
) -> None:
    a = _study(storage, "first_study", [(0, DONE, 2.0, 0, 1), (1, DONE, 1.0, 1, 2)])
    b = _study(storage, "second_study", [(0, DONE, 3.0, 0, 1)])
    path = tmp_path / "compare.html"
    write_comparison([a, b], path)
    page = path.read_text(encoding="utf-8")
    assert page.count("first_study") >= 3 and page.count("second_study") >= 3  # table, traces
    assert "Best so far, by trials" in page and "Best so far, by time" in page
    assert "level: value 3" in page
    assert 'src="http' not in page and len(page) > 1_000_000  # plotly inlined: no CDN
    with pytest.raises(ConfigError):  # refused before anything is written
        write_comparison([a], tmp_path / "other.html")
    assert not (tmp_path / "other.html").exists()


def test_compare_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # study t in two storages, by file, other seeds: called by their files
    files = []
    for folder, seed in ((tmp_path / "one", 0), (tmp_path / "two", 1)):
        folder.mkdir()
        sampler = {"name": "random", "seed": seed}
        files.append(str(stand_in_study(folder, monkeypatch, trials=8, sampler=sampler)))
    shown = hpsearch("compare", *files, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert sorted(r["study"] for r in data) == files
    assert all(r["finished"] == 8 and r["sampler"] == "random" for r in data)
    assert all(0.0 < r["test_accuracy"] <= 1.0 for r in data)  # of each one's best trial
    assert data[0]["best"] >= data[1]["best"]  # val_accuracy: the higher first
    table = hpsearch("compare", *files, "-o", str(tmp_path / "c.html"))
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:4] == ["study", "sampler", "pruner", "finished"]
    assert "level: val_accuracy" in table.stdout
    assert "validation images" in table.stdout and table.stdout.count("noise: ") == 1
    assert (tmp_path / "c.html").is_file() and f"wrote {tmp_path / 'c.html'}" in table.stderr
    refused = hpsearch("compare", files[0])
    assert refused.returncode == 2
    assert refused.stderr == "error: compare: name two studies or more\n"
    url = f"sqlite:///{tmp_path / 'one' / 'hp.db'}"
    for again in (files[0], "t"):  # the file twice; its study by name in its storage
        twice = hpsearch("compare", files[0], again, "--storage", url)
        assert twice.returncode == 2
        assert twice.stderr == (
            f"error: compare: {files[0]} and {again} are one study ('t' in {url}): "
            "name each study once\n"
        )
    missing = hpsearch("compare", files[0], "nope", "--storage", url)
    assert missing.returncode == 2 and "no study 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
