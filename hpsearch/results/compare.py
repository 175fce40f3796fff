"""Several studies of one objective side by side: which sampler, pruner or space found the
best value, how many trials and how much time each took to reach a level all of them
reached, and whether the winner's lead is more than the validation set's noise.

The comparison counts trials in the order they finished (several workers finish trials out
of their numbers' order) and times them from the study's first trial start, so a study run
on more workers is credited with its wall time, not its trial count alone.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
import datetime
import html
import operator
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from hpsearch import files
from hpsearch import storage as db
from hpsearch.errors import ConfigError
from hpsearch.results.reading import selection_noise
from hpsearch.study.record import records
from hpsearch.study.record import scoring
from hpsearch.study.record import study_summary
from hpsearch.study.record import TRAIN_SECONDS

if TYPE_CHECKING:
    import plotly.graph_objects as go

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
PAGE = 2000  # trials read a query at a time


@dataclass(frozen=True)
class Step:
    """A study's best value so far, after one of its finished trials.

    Attributes:
        finished: Trials the study had finished by then (complete, pruned or failed).
        seconds: Since the study's first trial started.
        best: The best value of its completed trials by then.
        trial: The number of the trial that holds it.
    """

    finished: int
    seconds: float
    best: float
    trial: int


@dataclass(frozen=True)
class Compared:
    """One study of a comparison.

    Attributes:
        name: The study's name.
        sampler: Its sampler (with options), as its file said.
        pruner: Its pruner, likewise.
        complete: Completed trials.
        pruned: Pruned trials.
        failed: Failed trials.
        test_score: The test score (accuracy, balanced accuracy or R²) of its best trial.
        train_seconds: Training time of all its trials.
        wall_seconds: From its first trial's start to its last trial's end.
        steps: Its best value so far at each improvement, then after its last trial.
        reached: The first step at the comparison's level, ``None`` until it is there.
    """

    name: str
    sampler: str
    pruner: str
    complete: int
    pruned: int
    failed: int
    test_score: float | None
    train_seconds: float
    wall_seconds: float
    steps: tuple[Step, ...]
    reached: Step | None = None

    @property
    def finished(self) -> int:
        """Trials finished in any state."""
        return self.complete + self.pruned + self.failed

    @property
    def best(self) -> Step | None:
        """Its best completed trial (the first to reach the best value), or ``None``."""
        return self.steps[-1] if self.steps else None


@dataclass(frozen=True)
class Comparison:
    """Studies of one objective compared.

    Attributes:
        metric: The objective they share.
        direction: ``minimize`` or ``maximize``.
        score: The test score their models are rated by (``accuracy``, ``r2``...).
        studies: The studies, best first (those without a completed trial last).
        level: The best value every study with a completed trial reached: the worst of
            their bests; ``None`` when none has one.
        standard_error: Of the winner's best value, when its metric has one.
        val_size: Validation examples that value was measured on.
        examples: What they are: ``images``, or a table's ``rows``.
        within: Other studies whose best is within one standard error of the winner's.
    """

    metric: str
    direction: str
    score: str
    studies: tuple[Compared, ...]
    level: float | None
    standard_error: float | None = None
    val_size: int | None = None
    examples: str = "images"
    within: tuple[str, ...] = ()


def _objective(study: optuna.Study) -> tuple[str, str]:
    summary = study_summary(study)
    metric = summary.metrics[0] if summary and summary.metrics else "value"
    return metric, study.direction.name.lower()


def check_comparable(
    studies: Sequence[optuna.Study], labels: Sequence[str] | None = None
) -> tuple[str, str]:
    """The objective (metric, direction) that all ``studies`` share.

    Args:
        studies: The studies.
        labels: What to call them [their names].

    Raises:
        ConfigError: Fewer than two studies, one named twice, one of several objectives, or
            two of different objectives, each named.
    """
    if len(studies) < 2:
        raise ConfigError(["compare: name two studies or more"])
    problems = []
    names = list(labels or [s.study_name for s in studies])
    for name, study in zip(names, studies, strict=True):
        if len(study.directions) > 1:
            problems.append(
                f"compare: study {name!r} has {len(study.directions)} objectives; "
                "compare takes studies of one objective"
            )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        problems.append(f"compare: study {twice[0]!r} is named twice")
    if problems:
        raise ConfigError(problems)
    first = _objective(studies[0])
    for name, study in zip(names[1:], studies[1:], strict=True):
        other = _objective(study)
        if other != first:
            raise ConfigError(
                [
                    f"compare: study {name!r} has the objective {other[0]} "
                    f"({other[1]}), study {names[0]!r} {first[0]} ({first[1]}): compare "
                    "studies of one objective"
                ]
            )
    return first


def _compared(study: optuna.Study, name: str, score: str, maximize: bool) -> Compared:
    # light trials (times, values; no attribute) a page at a time, not Optuna's load
    pages = db.trial_pages(study, False, PAGE, (), FINISHED)
    trials = [t for page in pages for t in page]
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    first = min(starts) if starts else None

    def since(moment: datetime.datetime | None) -> float:
        return (moment - first).total_seconds() if moment and first else 0.0

    better = operator.gt if maximize else operator.lt
    steps: list[Step] = []
    ended = sorted(trials, key=lambda t: (t.datetime_complete or datetime.datetime.max, t.number))
    for done, trial in enumerate(ended, start=1):
        if trial.state != TrialState.COMPLETE or trial.value is None:
            continue
        if not steps or better(trial.value, steps[-1].best):
            steps.append(Step(done, since(trial.datetime_complete), trial.value, trial.number))
    if steps and ended:  # the line goes on to the last trial
        last, best = ended[-1], steps[-1]
        if best.finished < len(ended):
            steps.append(Step(len(ended), since(last.datetime_complete), best.best, best.trial))
    states = [t.state for t in trials]
    summary = study_summary(study)
    test = None
    if steps:
        best_trial = db.trial_by_number(study, steps[-1].trial)  # whole: its test metrics
        test = records(study, [best_trial])[0].test_score(score)
    return Compared(
        name=name,
        sampler=summary.sampler if summary else "unknown",
        pruner=summary.pruner if summary else "unknown",
        complete=states.count(TrialState.COMPLETE),
        pruned=states.count(TrialState.PRUNED),
        failed=states.count(TrialState.FAIL),
        test_score=test,
        train_seconds=db.user_attr_sum(study, TRAIN_SECONDS),  # summed by the database
        wall_seconds=max((since(t.datetime_complete) for t in trials), default=0.0),
        steps=tuple(steps),
    )


def _first(
    steps: Sequence[Step], better: Callable[[float, float], bool], level: float
) -> Step | None:
    return next((s for s in steps if better(s.best, level)), None)


def labels_of(studies: Sequence[optuna.Study], called: Sequence[str] | None) -> list[str]:
    """What to call each study: its name, or where several share one (a copy in another
    storage, another host's), what the caller ``called`` it (a file, a name)."""
    names = [s.study_name for s in studies]
    if called is None:
        return names
    return [n if names.count(n) == 1 else c for n, c in zip(names, called, strict=True)]


def compare_studies(
    studies: Sequence[optuna.Study], called: Sequence[str] | None = None
) -> Comparison:
    """Compares studies of one objective (see the module's description).

    Args:
        studies: Two or more single-objective studies of the same metric and direction.
        called: What the caller called them (study files, names): their labels where
            their names are the same (see :func:`labels_of`).

    Raises:
        ConfigError: They cannot be compared (see :func:`check_comparable`).
    """
    names = labels_of(studies, called)
    metric, direction = check_comparable(studies, names)
    maximize = direction == "maximize"
    score = scoring(studies[0]).score
    each = [_compared(s, n, score, maximize) for s, n in zip(studies, names, strict=True)]
    bests = [c.best.best for c in each if c.best is not None]
    level = (min if maximize else max)(bests) if bests else None
    better = operator.ge if maximize else operator.le
    if level is not None:
        each = [dataclasses.replace(c, reached=_first(c.steps, better, level)) for c in each]
    sign = -1.0 if maximize else 1.0
    each.sort(key=lambda c: (c.best is None, sign * c.best.best if c.best else 0.0))
    found = Comparison(metric, direction, score, tuple(each), level)
    leader = studies[names.index(each[0].name)]
    noise = selection_noise(leader) if each[0].best else None
    if noise is None:
        return found
    within = tuple(
        c.name
        for c in each[1:]
        if c.best is not None and abs(c.best.best - noise.value) <= noise.standard_error
    )
    return dataclasses.replace(
        found,
        standard_error=noise.standard_error,
        val_size=noise.val_size,
        examples=noise.examples,
        within=within,
    )


def rows(found: Comparison) -> list[dict[str, object]]:
    """The comparison as rows, one a study, best first."""
    test = f"test_{found.score}"
    return [
        {
            "study": c.name,
            "sampler": c.sampler,
            "pruner": c.pruner,
            "finished": c.finished,
            "pruned": c.pruned,
            "failed": c.failed,
            "best": c.best.best if c.best else None,
            "trial": c.best.trial if c.best else None,
            test: c.test_score,
            "to_level": c.reached.finished if c.reached else None,
            "to_level_s": c.reached.seconds if c.reached else None,
            "train_s": c.train_seconds,
            "wall_s": c.wall_seconds,
        }
        for c in found.studies
    ]


def notes(found: Comparison) -> list[str]:
    """What the table cannot say: the level and what reached it, the winner's noise, the
    studies without a completed trial."""
    said = []
    ranked = [c for c in found.studies if c.best is not None]
    if found.level is not None and len(ranked) > 1:
        said.append(
            f"level: {found.metric} {found.level:.4g}, the best every study reached "
            f"({ranked[-1].name}'s); to_level: the trials each study finished until its best "
            "reached it, to_level_s: the seconds from its first trial's start"
        )
    if ranked and found.standard_error is not None:
        winner = ranked[0]
        on = f" on {found.val_size} validation {found.examples}" if found.val_size else ""
        se = f"one standard error ({found.standard_error:.2g}{on})"
        if found.within:
            said.append(
                f"noise: {', '.join(found.within)} within {se} of {winner.name}'s best "
                f"{found.metric}: which of them is best is chance; repeat their best trials "
                "(hpsearch repeat) or compare them on more data"
            )
        elif len(ranked) > 1:
            said.append(f"noise: {winner.name}'s best is ahead of the next study's by over {se}")
    empty = [c.name for c in found.studies if c.best is None]
    if empty:
        said.append(f"no completed trial yet: {', '.join(empty)}")
    return said


def _curves(found: Comparison, seconds: bool) -> go.Figure:
    import plotly.graph_objects as go  # only for a page: the table prints without plotly

    fig = go.Figure()
    for c in found.studies:
        if not c.steps:
            continue
        fig.add_trace(
            go.Scatter(
                x=[s.seconds if seconds else s.finished for s in c.steps],
                y=[s.best for s in c.steps],
                mode="lines+markers",
                line={"shape": "hv"},  # the best holds until the next trial beats it
                name=c.name,
                customdata=[s.trial for s in c.steps],
                hovertemplate="%{y:.4g} (trial %{customdata})<extra>" + c.name + "</extra>",
            )
        )
    if found.level is not None:
        fig.add_hline(y=found.level, line_dash="dot", line_color="#888", annotation_text="level")
    fig.update_layout(
        xaxis_title="seconds from the study's first trial start" if seconds else "trials finished",
        yaxis_title=f"best {found.metric} so far",
    )
    return fig


def _table(found: Comparison) -> str:
    data = rows(found)
    head = "".join(f"<th>{html.escape(k)}</th>" for k in data[0])

    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in r.values()) + "</tr>"
        for r in data
    )
    return f'<table class="grid"><tr>{head}</tr>{body}</table>'


def comparison_page(found: Comparison) -> str:
    """The comparison as one self-contained HTML document: the table, its notes, and each
    study's best value so far by trials and by time."""
    from hpsearch.results.report import figure_html
    from hpsearch.results.report import page

    names = ", ".join(c.name for c in found.studies)
    parts = [
        f"<h2>Studies of {html.escape(found.metric)} ({found.direction})</h2>",
        _table(found),
        *(f'<p class="note">{html.escape(n)}</p>' for n in notes(found)),
        "<h2>Best so far, by trials</h2>",
        figure_html(_curves(found, seconds=False)),
        "<h2>Best so far, by time</h2>",
        figure_html(_curves(found, seconds=True)),
    ]
    return page(f"hpsearch compare: {names}", "\n".join(parts))


def write_comparison(
    studies: Sequence[optuna.Study], path: str | Path, called: Sequence[str] | None = None
) -> Comparison:
    """Compares ``studies`` (see :func:`compare_studies`) and writes
    :func:`comparison_page` to ``path``, whole or not at all (as
    :func:`hpsearch.results.report.write_report`).

    Raises:
        ConfigError: They cannot be compared.
        OSError: ``path`` is a folder, or its folder does not exist.
    """
    from hpsearch.results.report import writable_page

    target = writable_page(path)
    found = compare_studies(studies, called)
    with files.whole(target) as part:
        part.write_text(comparison_page(found), encoding="utf-8")
    return found
