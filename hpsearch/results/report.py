"""A self-contained HTML report of a study: Optuna's plotly figures plus what they lack.

The report opens offline (plotly's JavaScript is inlined once, no CDN). Each section is
built on its own; one that cannot be drawn yet (an empty or half-finished study) says what
is missing instead of failing the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
import datetime
import errno
import html
import itertools
import logging
import math
import os
from pathlib import Path
import random
import re
from typing import Any
import warnings

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import optuna.visualization as vis
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from hpsearch import files
from hpsearch import storage as db
from hpsearch.results.reading import best_trials
from hpsearch.results.reading import range_edges
from hpsearch.results.reading import status
from hpsearch.results.tables import short_name
from hpsearch.storage.states import best_first
from hpsearch.study.record import records
from hpsearch.study.record import scoring
from hpsearch.study.record import study_summary
from hpsearch.study.record import TIMED_OUT
from hpsearch.study.record import TOO_LARGE
from hpsearch.study.record import TrialRecord

optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per in-memory sample study
_log = logging.getLogger(__name__)
STATE_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728"}


class Missing(Exception):
    """A section that cannot be drawn yet; the message says what is missing."""


# A larger study is drawn from a sample: its best completed trials and others at random (its
# summary still counts every trial), so that a report of 100,000 trials takes the time and
# memory of one of 5,000.
REPORT_TRIALS = 5000
REPORT_BEST = 1000
# Bounds that keep every figure readable, and the page small, at 10,000 trials.
SAMPLE_BEST = 100  # slice plots: the best trials, plus ...
SAMPLE_RANDOM = 400  # ... a seeded random sample of the other completed trials
CONTOUR_BEST, CONTOUR_RANDOM = 50, 100  # a contour's grid grows with its points squared
CURVES_BEST = 20  # learning curves drawn one by one; the rest as percentile bands


@dataclass(frozen=True)
class _Data:
    """A study loaded once for the whole report (each section used to load it again)."""

    study: optuna.Study
    records: list[TrialRecord]
    complete: list[FrozenTrial]  # best first
    shared_params: list[str]  # the params every completed trial has, in suggestion order
    importances: dict[str, float] | Exception  # of the shared params
    # a conditional param's importance among the trials that have it, and how many do
    conditional: dict[str, tuple[float, int]]
    score: str  # what rates its models: r2, balanced_accuracy or accuracy (record.scoring)
    note: str = ""  # what the figures draw, when not every trial

    @classmethod
    def load(cls, study: optuna.Study) -> _Data:
        total = sum(db.trial_counts(study).states.values())
        note = ""
        if total > REPORT_TRIALS:
            trials = db.sample_trials(study, REPORT_BEST, REPORT_TRIALS - REPORT_BEST)
            study = db.study_of_trials(study, trials)
            note = (
                f"The study has {total:,} trials: the figures below draw its best "
                f"{REPORT_BEST:,} completed trials and {len(trials) - REPORT_BEST:,} others "
                "chosen at random (seed 0); the summary counts every trial."
            )
        else:
            trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = best_first(study.directions)
        complete.sort(key=lambda t: (best(t), t.number))
        first = complete[0].params if complete else {}
        shared = [n for n in first if all(n in t.params for t in complete)]
        conditional: dict[str, tuple[float, int]] = {}
        try:
            importances: dict[str, float] | Exception = _importances_of(study, complete, shared)
            conditional = _conditional_importances(study, complete, shared)
        except Exception as e:  # drawn as "not available" where needed
            _log.debug("importances not computed", exc_info=not isinstance(e, Missing))
            importances = e
        return cls(
            study,
            records(study, trials),
            complete,
            shared,
            importances,
            conditional,
            scoring(study).score,
            note,
        )

    def need(self, n: int, what: str) -> None:
        if len(self.complete) < n:
            raise Missing(
                f"{what} needs at least {n} completed trials; the study has {len(self.complete)}"
            )

    def sample(self, best: int, others: int) -> tuple[optuna.Study, str]:
        """A study of the best completed trials plus a seeded random sample of the others
        (all of them if that is every one), and a note saying so."""
        chosen = self.complete[:best]
        rest = self.complete[best:]
        if len(rest) > others:
            rest = random.Random(0).sample(rest, others)
        chosen = sorted(chosen + rest, key=lambda t: t.number)
        sample = _in_memory(self.study, chosen)
        if len(chosen) == len(self.complete):
            return sample, ""
        return sample, (
            f" (sampled: the best {best} and {len(rest)} others at random of "
            f"{len(self.complete)} completed trials)"
        )


def _objective_name(study: optuna.Study, index: int = 0) -> str:
    summary = study_summary(study)
    metrics = summary.metrics if summary else ()
    if index < len(metrics):
        return metrics[index]
    return "value" if index == 0 else f"value {index}"


def _target(study: optuna.Study) -> dict[str, Any]:
    """Optuna's plots take one value: the first objective of a multi-objective study."""
    if len(study.directions) == 1:
        return {"target_name": _objective_name(study)}
    return {"target": lambda t: t.values[0], "target_name": _objective_name(study)}


def _importances_of(
    study: optuna.Study, complete: list[FrozenTrial], shared: list[str]
) -> dict[str, float]:
    """Importances of the params every completed trial has, computed once for the importance
    plot and the contour. A conditional param (momentum, only for some optimizers) is left
    out: Optuna would read its absence as a value (see :func:`_conditional_importances`)."""
    if len(complete) < 2:
        raise Missing(
            "parameter importance needs at least 2 completed trials; the study has "
            f"{len(complete)}"
        )
    if not shared:
        raise Missing("no parameter is set in every completed trial")
    return _importance_values(study, shared)  # every completed trial has them: no copy


def _conditional_importances(
    study: optuna.Study, complete: list[FrozenTrial], shared: list[str]
) -> dict[str, tuple[float, int]]:
    """Each conditional param's importance next to the shared params, computed over only the
    completed trials that have it, with how many those are (fewer than 3: left out)."""
    found = {}
    for name in dict.fromkeys(n for t in complete for n in t.params):
        having = [t for t in complete if name in t.params]
        if name in shared or len(having) < 3:
            continue
        values = _importance_values(_in_memory(study, having), [*shared, name])
        found[name] = (values[name], len(having))
    return found


def _in_memory(study: optuna.Study, trials: list[FrozenTrial]) -> optuna.Study:
    """An in-memory study of ``trials`` with the directions of ``study``."""
    copy = optuna.create_study(directions=study.directions)
    copy.add_trials(trials)
    return copy


def _importance_values(study: optuna.Study, params: list[str]) -> dict[str, float]:
    with warnings.catch_warnings():
        # _importance_target already orients the target as this warning asks
        warnings.filterwarnings("ignore", "PedAnovaImportanceEvaluator computes")
        warnings.filterwarnings("ignore", "Some regimes for parameter")
        return optuna.importance.get_param_importances(
            study, params=params, **_importance_target(study)
        )


def _history(data: _Data) -> go.Figure:
    data.need(1, "the optimization history")
    if not data.note:
        return vis.plot_optimization_history(data.study, **_target(data.study))
    # A sample: Optuna's plot reads trial numbers as list positions (numbers 0..n-1).
    done = sorted(data.complete, key=lambda t: t.number)
    values = [t.values[0] for t in done]
    better = max if data.study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else min
    best = list(itertools.accumulate(values, better))
    name = _objective_name(data.study)
    fig = go.Figure()
    fig.add_scatter(
        x=[t.number for t in done], y=values, mode="markers", name=name, marker={"size": 4}
    )
    fig.add_scatter(x=[t.number for t in done], y=best, mode="lines", name="best so far")
    fig.update_layout(
        title=f"Optimization history of the {len(done):,} drawn completed trials",
        xaxis_title="trial",
        yaxis_title=name,
    )
    return fig


def _importances(data: _Data) -> go.Figure:
    if isinstance(data.importances, Exception):
        raise data.importances
    names = list(data.importances)[::-1]  # the most important on top
    fig = go.Figure(
        go.Bar(
            x=[data.importances[n] for n in names],
            y=names,
            orientation="h",
            text=[f"{data.importances[n]:.3f}" for n in names],
            name="every completed trial",
        )
    )
    total = len(data.complete)
    if data.conditional:
        names = sorted(data.conditional, key=lambda n: data.conditional[n][0])
        fig.add_bar(
            x=[data.conditional[n][0] for n in names],
            y=[f"{n} ({data.conditional[n][1]} of {total})" for n in names],
            orientation="h",
            text=[f"{data.conditional[n][0]:.3f}" for n in names],
            name="only the trials that have it",
            marker={"color": "#aaa"},
        )
    fig.update_layout(
        title=f"Parameter importances for {_objective_name(data.study)} ({total} trials;"
        " a conditional param over the trials that have it)",
        xaxis_title="importance",
        yaxis_title="parameter",
        height=max(300, 120 + 28 * (len(data.importances) + len(data.conditional))),
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _parallel(data: _Data) -> go.Figure:
    """Every completed trial as one line of a single Parcoords trace (Optuna draws a trace
    per trial, thousands at scale)."""
    data.need(2, "the parallel coordinates plot")
    trials = data.complete
    names = data.shared_params
    left_out = sorted({n for t in trials for n in t.params} - set(names))
    dims = []
    for name in names:
        values = [t.params[name] for t in trials]
        dist = trials[0].distributions[name]
        if isinstance(dist, CategoricalDistribution):
            labels = [str(c) for c in dist.choices]
            codes = [labels.index(str(v)) for v in values]
            dims.append(
                {
                    "label": short_name(name),
                    "values": codes,
                    "tickvals": list(range(len(labels))),
                    "ticktext": labels,
                }
            )
        elif getattr(dist, "log", False):
            label = f"{short_name(name)} (log10)"
            dims.append({"label": label, "values": [math.log10(v) for v in values]})
        else:
            dims.append({"label": short_name(name), "values": values})
    name = _objective_name(data.study)
    objective = [t.values[0] for t in trials]
    dims.append({"label": name, "values": objective})
    fig = go.Figure(
        go.Parcoords(
            dimensions=dims,
            line={"color": objective, "colorscale": "Viridis", "showscale": True},
        )
    )
    note = f"; not drawn (only in some trials): {', '.join(left_out)}" if left_out else ""
    fig.update_layout(
        title=f"Parallel coordinates of {len(trials)} completed trials{note}",
        margin={"l": 80, "r": 80, "t": 120},  # the axis labels sit above the plot
    )
    return fig


SLICE_COLUMNS = 3


def _slices(data: _Data) -> go.Figure:
    """One small scatter per parameter (its value against the objective), three a row: the
    grid fits the page however many parameters there are (Optuna's plot_slice puts them all
    in one row). A conditional param is drawn over the trials that have it."""
    data.need(1, "the slice plot")
    sample, note = data.sample(SAMPLE_BEST, SAMPLE_RANDOM)
    trials = sample.get_trials(deepcopy=False)
    names = list(dict.fromkeys(n for t in trials for n in t.params))
    if not names:
        raise Missing("the study has no searched parameter")
    rows = math.ceil(len(names) / SLICE_COLUMNS)
    titles = []
    for name in names:
        count = sum(name in t.params for t in trials)
        titles.append(name + ("" if count == len(trials) else f" ({count} of {len(trials)})"))
    fig = make_subplots(
        rows=rows, cols=SLICE_COLUMNS, subplot_titles=titles, vertical_spacing=0.5 / rows
    )
    objective = _objective_name(data.study)
    for i, name in enumerate(names):
        row, col = divmod(i, SLICE_COLUMNS)
        having = [t for t in trials if name in t.params]
        dist = having[0].distributions[name]
        categorical = isinstance(dist, CategoricalDistribution)
        fig.add_scatter(
            x=[str(t.params[name]) if categorical else t.params[name] for t in having],
            y=[t.values[0] for t in having],
            mode="markers",
            text=[f"#{t.number}" for t in having],
            marker={"color": [t.number for t in having], "coloraxis": "coloraxis", "size": 5},
            showlegend=False,
            row=row + 1,
            col=col + 1,
        )
        axis = "category" if categorical else "log" if getattr(dist, "log", False) else "linear"
        fig.update_xaxes(type=axis, row=row + 1, col=col + 1)
        if col == 0:
            fig.update_yaxes(title_text=objective, row=row + 1, col=1)
    fig.update_layout(
        title=f"Slice plots: {objective} against each parameter{note}",
        coloraxis={"colorscale": "Viridis", "colorbar": {"title": "trial"}},
        height=120 + 260 * rows,
    )
    return fig


def _contour(data: _Data) -> go.Figure:
    data.need(3, "the contour plot")
    if isinstance(data.importances, Exception):
        raise data.importances
    if len(data.importances) < 2:
        raise Missing("the contour plot needs two parameters that every completed trial has")
    top = list(data.importances)[:2]
    sample, note = data.sample(CONTOUR_BEST, CONTOUR_RANDOM)
    fig = vis.plot_contour(sample, params=top, **_target(data.study))
    fig.update_layout(
        title=f"Contour of the two most important parameters: {', '.join(top)}{note}"
    )
    return fig


def _importance_target(study: optuna.Study) -> dict[str, Any]:
    """Importance of the first objective. PED-ANOVA ranks what leads to *low* target values,
    so a maximized objective given as a target is negated (a single objective needs none)."""
    if len(study.directions) == 1:
        return {}
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return {"target": lambda t: sign * t.values[0]}


def _curve_metric(data: _Data) -> str:
    name = _objective_name(data.study)
    return name if name in PER_EPOCH else f"val_{data.score}"


PER_EPOCH = (
    "val_accuracy",
    "val_balanced_accuracy",
    "val_loss",
    "train_loss",
    "val_rmse",
    "val_mae",
    "val_r2",
)
SCORE_WORDS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "r2": "R²"}


def _learning_curves(data: _Data) -> go.Figure:
    """The best trials' curves one by one; every other trial as percentile bands per epoch
    (thousands of lines are one unreadable blot, and megabytes)."""
    metric = _curve_metric(data)
    trials = [t for t in data.records if t.curves]
    if not trials:
        raise Missing("learning curves appear once a trial has finished")
    best = {t.number for t in data.complete[:CURVES_BEST]}
    few = len(trials) <= CURVES_BEST
    drawn = [t for t in trials if few or t.number in best]
    rest = [t for t in trials if not (few or t.number in best)]
    fig = go.Figure()
    if rest:
        _bands(fig, [t.curve(metric) for t in rest])
    for t in drawn:
        y = t.curve(metric)
        color = STATE_COLORS.get(t.state, "#7f7f7f")
        fig.add_scatter(
            x=list(range(1, len(y) + 1)),
            y=y,
            mode="lines",
            name=f"#{t.number} {t.state}",
            line={"color": color, "width": 1, "dash": "dot" if t.state == "PRUNED" else "solid"},
            opacity=0.7,
            showlegend=False,
        )
        if t.state == "PRUNED" and y:  # mark where the pruner cut it short
            fig.add_scatter(
                x=[len(y)],
                y=[y[-1]],
                mode="markers",
                showlegend=False,
                marker={"symbol": "x", "color": color, "size": 8},
            )
    which = (
        f"the best {len(drawn)} trials as lines, the other {len(rest)} as percentile bands"
        if rest
        else "dotted and x: pruned"
    )
    fig.update_layout(
        title=f"Learning curves ({metric} per epoch; {which})",
        xaxis_title="epoch",
        yaxis_title=metric,
    )
    return fig


def _bands(fig: go.Figure, curves: list[list[float | None]]) -> None:
    """10-90 and 25-75 percentile bands and the median, per epoch, of many curves."""
    epochs = max(len(c) for c in curves)
    columns = [
        sorted(v for c in curves if len(c) > e and (v := c[e]) is not None) for e in range(epochs)
    ]
    x = [e + 1 for e, col in enumerate(columns) if col]
    columns = [col for col in columns if col]

    def pct(q: float) -> list[float]:
        return [col[min(len(col) - 1, int(q * len(col)))] for col in columns]

    for lo, hi, alpha in ((0.1, 0.9, 0.15), (0.25, 0.75, 0.3)):
        fig.add_scatter(x=x, y=pct(hi), mode="lines", line={"width": 0}, showlegend=False)
        fig.add_scatter(
            x=x,
            y=pct(lo),
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=f"rgba(127,127,127,{alpha})",
            name=f"others, {int(lo * 100)}-{int(hi * 100)}th percentile",
        )
    fig.add_scatter(
        x=x,
        y=pct(0.5),
        mode="lines",
        line={"color": "#555", "dash": "dash"},
        name="others, median",
    )


def _val_vs_test(data: _Data) -> go.Figure:
    word = SCORE_WORDS[data.score]
    points = [
        (val, test, t.number)
        for t in data.records
        if t.state == "COMPLETE"
        and (test := t.test_score(data.score)) is not None
        and (val := t.val_score(data.score)) is not None
    ]
    if not points:
        raise Missing(f"validation against test {word} needs a completed trial")
    xs, ys, ns = zip(*points, strict=True)
    lo, hi = min(xs + ys), max(xs + ys)
    fig = go.Figure(
        [
            go.Scatter(x=xs, y=ys, mode="markers", text=[f"#{n}" for n in ns], name="trial"),
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                name="val = test",
                line={"dash": "dash", "color": "#999"},
            ),
        ]
    )
    fig.update_layout(
        title=f"Final validation {word} against test {word}",
        xaxis_title=f"validation {word}",
        yaxis_title=f"test {word}",
    )
    return fig


def _accuracy_vs_time(data: _Data) -> go.Figure:
    word = SCORE_WORDS[data.score]
    trials = [
        t for t in data.records if t.train_seconds is not None and t.val_score(data.score, True)
    ]
    if not trials:
        raise Missing(f"{word} against training time needs a finished trial")
    fig = go.Figure()
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        group = [t for t in trials if t.state == state]
        if group:
            fig.add_scatter(
                x=[t.train_seconds for t in group],
                y=[t.val_score(data.score, best=True) for t in group],
                mode="markers",
                name=state,
                text=[f"#{t.number}" for t in group],
                marker={"color": STATE_COLORS[state], "size": 5},
            )
    fig.update_layout(
        title=f"Best validation {word} against training time",
        xaxis_title="training seconds",
        yaxis_title=f"best validation {word}",
    )
    return fig


def _pareto(data: _Data) -> go.Figure:
    study = data.study
    data.need(1, "the Pareto front")
    names = [_objective_name(study, i) for i in range(len(study.directions))]
    return vis.plot_pareto_front(study, target_names=names)


def _failures(data: _Data) -> str:
    """Why trials failed (grouped by reason, with counts and trial numbers), and at which
    epoch the pruner stopped how many trials."""
    failed = [t for t in data.records if t.state == "FAIL"]
    pruned = [t for t in data.records if t.state == "PRUNED"]
    if not failed and not pruned:
        return "<p>No trial failed or was pruned.</p>"
    parts = []
    if failed:
        numbers: dict[str, list[int]] = {}
        for t in failed:
            numbers.setdefault(_first_line(t.fail_reason), []).append(t.number)
        rows = "".join(
            f"<tr><td>{len(ns)}</td><td>{html.escape(reason)}</td>"
            f"<td>{html.escape(_numbers(ns))}</td></tr>"
            for reason, ns in sorted(numbers.items(), key=lambda item: -len(item[1]))
        )
        parts.append(
            f"<p>{len(failed)} failed trials, by reason:</p>"
            '<table class="grid"><tr><th>trials</th><th>reason</th><th>numbers</th></tr>'
            f"{rows}</table>"
        )
    if pruned:
        at = Counter(len(t.curve("val_loss")) for t in pruned if t.outcome != TOO_LARGE)
        epochs = sorted(at)
        fig = go.Figure(go.Bar(x=epochs, y=[at[e] for e in epochs], text=[at[e] for e in epochs]))
        outcomes = Counter(t.outcome for t in pruned)
        why = ", ".join(
            f"{outcomes[key]} {words}"
            for key, words in (
                (TIMED_OUT, "out of budget.trial_timeout"),
                (TOO_LARGE, "over budget.max_params, never trained"),
            )
            if outcomes[key]
        )
        fig.update_layout(
            title=f"{len(pruned)} pruned trials{f' ({why})' if why else ''}, by the epoch "
            "they were stopped at",
            xaxis_title="epoch",
            yaxis_title="pruned trials",
            height=360,
        )
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
    return "".join(parts)


def _first_line(text: str | None) -> str:
    """A failure reason to group by: its first line, without the trial's own number."""
    if not text or not text.strip():
        return "(no reason recorded)"
    return re.sub(r"\btrial \d+\b", "trial N", text.strip().splitlines()[0])


def _numbers(numbers: list[int], most: int = 12) -> str:
    shown = ", ".join(f"#{n}" for n in numbers[:most])
    return shown + (f" and {len(numbers) - most} more" if len(numbers) > most else "")


def _one_factor(data: _Data) -> list[tuple[str, go.Figure]]:
    """Per factor: its runs' curves next to the baseline's (validation loss, one panel per
    kind of loss: an MSE and a cross-entropy are not on one scale), validation accuracy, and
    training time."""
    trials = [t for t in data.records if t.ofat_factor is not None and t.curves]
    baseline = next((t for t in trials if t.ofat_factor == "baseline"), None)
    factors = sorted({str(t.ofat_factor) for t in trials} - {"baseline"})
    figures = []
    for factor in factors:
        group = [t for t in trials if t.ofat_factor == factor]
        runs = ([("baseline", baseline)] if baseline else []) + [
            (f"{factor}={t.ofat_value}", t) for t in group
        ]
        losses = list(dict.fromkeys(_loss_of(t) for _, t in runs))
        fig = make_subplots(
            rows=1,
            cols=len(losses) + 2,
            subplot_titles=(
                *(f"validation loss ({loss})" for loss in losses),
                f"validation {SCORE_WORDS[data.score]}",
                "training seconds",
            ),
        )
        accuracy_col, seconds_col = len(losses) + 1, len(losses) + 2
        for i, (label, t) in enumerate(runs):
            color = f"hsl({(i * 67) % 360},65%,45%)"
            epochs = list(range(1, len(t.curve("val_loss")) + 1))
            loss_col = losses.index(_loss_of(t)) + 1
            for col, key in ((loss_col, "val_loss"), (accuracy_col, f"val_{data.score}")):
                fig.add_scatter(
                    x=epochs,
                    y=t.curve(key),
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=col == accuracy_col,
                    line={"color": color},
                    row=1,
                    col=col,
                )
            fig.add_bar(
                x=[label],
                y=[t.train_seconds],
                name=label,
                legendgroup=label,
                showlegend=False,
                marker={"color": color},
                row=1,
                col=seconds_col,
            )
        for col, loss in enumerate(losses, start=1):
            fig.update_yaxes(title_text=f"val_loss ({loss})", row=1, col=col)
        for col in range(1, accuracy_col + 1):
            fig.update_xaxes(title_text="epoch", row=1, col=col)
        fig.update_yaxes(title_text=f"val_{data.score}", row=1, col=accuracy_col)
        fig.update_xaxes(title_text="run", row=1, col=seconds_col)
        fig.update_yaxes(title_text="seconds", row=1, col=seconds_col)
        fig.update_layout(title=f"One factor at a time: {factor} (others at the baseline)")
        figures.append((f"Factor: {factor}", fig))
    return figures


def _loss_of(t: TrialRecord) -> str:
    return str((t.config or {}).get("loss", "loss"))


def _always(data: _Data) -> bool:
    return True


def _multi_objective(data: _Data) -> bool:
    return len(data.study.directions) > 1


# (title, builder, whether the section applies to the study at all): a section that does not
# apply is left out; one that applies but lacks data says what is missing.
SECTIONS: list[tuple[str, Callable[[_Data], go.Figure | str], Callable[[_Data], bool]]] = [
    ("Optimization history", _history, _always),
    ("Parameter importances", _importances, _always),
    ("Parallel coordinates", _parallel, _always),
    ("Slice plots", _slices, _always),
    ("Contour of the two most important parameters", _contour, _always),
    ("Learning curves", _learning_curves, _always),
    ("Validation against test", _val_vs_test, _always),
    ("Score against training time", _accuracy_vs_time, _always),
    ("Pareto front", _pareto, _multi_objective),
    ("Failed and pruned", _failures, _always),
]


def _summary(data: _Data) -> str:
    study = data.study
    info = status(study)
    summary = study_summary(study)
    rows = [
        ("study", study.study_name),
        ("sampler", summary.sampler if summary else "unknown"),
        ("pruner", summary.pruner if summary else "unknown"),
        (
            "objectives",
            ", ".join(
                f"{_objective_name(study, i)} ({d})" for i, d in enumerate(info["directions"])
            ),
        ),
        (
            "trials",
            f"{info['trials']}: "
            + ", ".join(f"{k.lower()} {v}" for k, v in info["states"].items() if v),
        ),
        (
            "time spent",
            f"{info['wall_seconds']:.1f} s wall, {info['train_seconds']:.1f} s training",
        ),
    ]
    best = best_trials(study)
    if not best:
        rows.append(("best", "no completed trial yet"))
    failed = [t for t in data.records if t.state == "FAIL"]
    if failed and not data.complete:
        reason, count = Counter(_first_line(t.fail_reason) for t in failed).most_common(1)[0]
        rows.append(
            ("why", f"every finished trial failed; {count} of {len(failed)} with: {reason}")
        )
    for t in records(study, best[:5]):
        test = t.test_score(data.score)
        rows.append(
            (
                f"best trial #{t.number}",
                f"values {', '.join(f'{v:.4f}' for v in t.values or ())}; test "
                f"{SCORE_WORDS[data.score]} {'n/a' if test is None else f'{test:.4f}'}",
            )
        )
        rows.append(("params", ", ".join(f"{k}={v}" for k, v in t.params.items())))
    edges = range_edges(best[0]) if best and len(study.directions) == 1 else []
    if edges:
        text = "; ".join(map(str, edges))
        rows.append((f"edges of #{best[0].number}", f"{text}: better values may lie beyond"))
    body = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f'<table class="summary">{body}</table>'


def build_report(study: optuna.Study) -> str:
    """The report of ``study`` as one self-contained HTML document."""
    data = _Data.load(study)
    parts = [f"<h2>Summary</h2>{_summary(data)}"]
    if data.note:
        parts.append(f'<p class="note">{html.escape(data.note)}</p>')
    figures: list[tuple[str, go.Figure | str | Exception]] = []
    for title, make, applies in SECTIONS:
        if not applies(data):
            continue
        try:
            figures.append((title, make(data)))
        except Exception as e:  # an empty or odd study: say so, keep the rest
            _log.debug("report section %r not drawn", title, exc_info=not isinstance(e, Missing))
            figures.append((title, e))
    try:
        figures += _one_factor(data)
    except Exception as e:
        _log.debug("one-factor section not drawn", exc_info=True)
        figures.append(("One factor at a time", e))
    for title, fig in figures:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if isinstance(fig, Exception):
            reason = str(fig) if isinstance(fig, Missing) else f"{type(fig).__name__}: {fig}"
            parts.append(f'<p class="missing">Not available: {html.escape(reason)}</p>')
        elif isinstance(fig, str):
            parts.append(f'<div class="section">{fig}</div>')
        else:
            parts.append(figure_html(fig))
    return page(f"hpsearch report: {study.study_name}", "\n".join(parts))


def figure_html(fig: go.Figure) -> str:
    """A figure as a page's section (plotly's JavaScript is the page's, once)."""
    if fig.layout.height is None:
        fig.update_layout(height=480)
    if fig.layout.margin.t is None:
        fig.update_layout(margin={"t": 60})
    html_text: str = fig.to_html(full_html=False, include_plotlyjs=False)
    return html_text


def page(title: str, body: str) -> str:
    """One self-contained HTML document: ``body`` under ``title``, plotly inlined."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return _PAGE.format(title=html.escape(title), plotly=get_plotlyjs(), body=body, stamp=stamp)


def write_report(study: optuna.Study, path: str | Path) -> Path:
    """Writes :func:`build_report` of ``study`` to ``path``, whole or not at all.

    The folder is checked before the report is built (a large study's takes seconds), and
    the page is written beside ``path`` and renamed onto it, so that a full disk or a stop
    never leaves half a page where an earlier report was.

    Raises:
        OSError: ``path`` is a folder, or its folder does not exist.
    """
    target = writable_page(path)
    text = build_report(study)
    with files.whole(target) as part:
        part.write_text(text, encoding="utf-8")
    return target


def writable_page(path: str | Path) -> Path:
    """``path`` as a page's path, checked before the page is built.

    Raises:
        OSError: ``path`` is a folder, or its folder does not exist.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    if not target.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(target.parent))
    return target


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table.summary th {{ text-align: left; padding-right: 1.5em; vertical-align: top; }}
table.grid {{ border-collapse: collapse; }}
table.grid td, table.grid th {{ border: 1px solid #ddd; padding: .2em .6em; }}
table.grid td {{ overflow-wrap: anywhere; }}
p.missing {{ color: #888; font-style: italic; }}
p.note {{ background: #f4f4f4; padding: .5em .8em; }}
h2 {{ border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }}
</style>
<script type="text/javascript">{plotly}</script>
</head><body>
<h1>{title}</h1>
{body}
<p class="missing">Generated by hpsearch on {stamp}.</p>
</body></html>
"""
