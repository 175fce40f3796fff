"""A self-contained HTML report of a study: Optuna's plotly figures plus what they lack.

The report opens offline (plotly's JavaScript is inlined once, no CDN). Each section is
built on its own; one that cannot be drawn yet (an empty or half-finished study) says what
is missing instead of failing the report.
"""

from __future__ import annotations

from collections.abc import Callable
import datetime
import html
import logging
from typing import Any
import warnings

import optuna
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import optuna.visualization as vis
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from hpsearch.record import records
from hpsearch.record import study_summary
from hpsearch.record import TrialRecord
from hpsearch.results import best_trials
from hpsearch.results import status

_log = logging.getLogger(__name__)
STATE_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728"}


class Missing(Exception):
    """A section that cannot be drawn yet; the message says what is missing."""


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


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _records(study: optuna.Study) -> list[TrialRecord]:
    return records(study.get_trials(deepcopy=False))


def _need(study: optuna.Study, n: int, what: str) -> None:
    have = len(_complete(study))
    if have < n:
        raise Missing(f"{what} needs at least {n} completed trials; the study has {have}")


def _history(study: optuna.Study) -> go.Figure:
    _need(study, 1, "the optimization history")
    return vis.plot_optimization_history(study, **_target(study))


def _importances(study: optuna.Study) -> go.Figure:
    _need(study, 2, "parameter importance")
    target = _importance_target(study)
    return vis.plot_param_importances(study, target_name=_objective_name(study), **target)


def _parallel(study: optuna.Study) -> go.Figure:
    _need(study, 2, "the parallel coordinates plot")
    return vis.plot_parallel_coordinate(study, **_target(study))


def _slices(study: optuna.Study) -> go.Figure:
    _need(study, 1, "the slice plot")
    return vis.plot_slice(study, **_target(study))


def _contour(study: optuna.Study) -> go.Figure:
    _need(study, 3, "the contour plot")
    importances = optuna.importance.get_param_importances(study, **_importance_target(study))
    if len(importances) < 2:
        raise Missing("the contour plot needs two varied parameters")
    top = list(importances)[:2]
    fig = vis.plot_contour(study, params=top, **_target(study))
    fig.update_layout(title=f"Contour of the two most important parameters: {', '.join(top)}")
    return fig


def _importance_target(study: optuna.Study) -> dict[str, Any]:
    """Importance of the first objective. PED-ANOVA ranks what leads to *low* target values,
    so a maximized objective given as a target is negated (a single objective needs none)."""
    if len(study.directions) == 1:
        return {}
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return {"target": lambda t: sign * t.values[0]}


def _curve_metric(study: optuna.Study) -> str:
    name = _objective_name(study)
    return name if name in ("val_accuracy", "val_loss", "train_loss") else "val_accuracy"


def _learning_curves(study: optuna.Study) -> go.Figure:
    metric = _curve_metric(study)
    trials = [t for t in _records(study) if t.curves]
    if not trials:
        raise Missing("learning curves appear once a trial has finished")
    fig = go.Figure()
    for t in trials:
        y = t.curve(metric)
        color = STATE_COLORS.get(t.state, "#7f7f7f")
        fig.add_scatter(
            x=list(range(1, len(y) + 1)),
            y=y,
            mode="lines",
            name=f"#{t.number} {t.state}",
            line={"color": color, "width": 1, "dash": "dot" if t.state == "PRUNED" else "solid"},
            opacity=0.7,
            legendgroup=t.state,
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
    fig.update_layout(
        title=f"Learning curves ({metric} per epoch; dotted and x: pruned)",
        xaxis_title="epoch",
        yaxis_title=metric,
    )
    return fig


def _val_vs_test(study: optuna.Study) -> go.Figure:
    points = [
        (t.final_val_accuracy, t.test_accuracy, t.number)
        for t in records(_complete(study))
        if t.test_accuracy is not None and t.final_val_accuracy is not None
    ]
    if not points:
        raise Missing("validation against test accuracy needs a completed trial")
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
        title="Final validation accuracy against test accuracy",
        xaxis_title="validation accuracy",
        yaxis_title="test accuracy",
    )
    return fig


def _accuracy_vs_time(study: optuna.Study) -> go.Figure:
    trials = [t for t in _records(study) if t.train_seconds is not None and t.best_val_accuracy]
    if not trials:
        raise Missing("accuracy against training time needs a finished trial")
    fig = go.Figure()
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        group = [t for t in trials if t.state == state]
        if group:
            fig.add_scatter(
                x=[t.train_seconds for t in group],
                y=[t.best_val_accuracy for t in group],
                mode="markers",
                name=state,
                text=[f"#{t.number}" for t in group],
                marker={"color": STATE_COLORS[state]},
            )
    fig.update_layout(
        title="Best validation accuracy against training time",
        xaxis_title="training seconds",
        yaxis_title="best validation accuracy",
    )
    return fig


def _pareto(study: optuna.Study) -> go.Figure:
    if len(study.directions) < 2:
        raise Missing("single-objective study: no Pareto front")
    _need(study, 1, "the Pareto front")
    names = [_objective_name(study, i) for i in range(len(study.directions))]
    return vis.plot_pareto_front(study, target_names=names)


def _one_factor(study: optuna.Study) -> list[tuple[str, go.Figure]]:
    trials = [t for t in _records(study) if t.ofat_factor is not None and t.curves]
    baseline = next((t for t in trials if t.ofat_factor == "baseline"), None)
    factors = sorted({str(t.ofat_factor) for t in trials} - {"baseline"})
    figures = []
    for factor in factors:
        group = [t for t in trials if t.ofat_factor == factor]
        runs = ([("baseline", baseline)] if baseline else []) + [
            (f"{factor}={t.ofat_value}", t) for t in group
        ]
        fig = make_subplots(
            rows=1,
            cols=3,
            subplot_titles=("validation loss", "validation accuracy", "training seconds"),
        )
        for i, (label, t) in enumerate(runs):
            color = f"hsl({(i * 67) % 360},65%,45%)"
            epochs = list(range(1, len(t.curve("val_loss")) + 1))
            for col, key in ((1, "val_loss"), (2, "val_accuracy")):
                fig.add_scatter(
                    x=epochs,
                    y=t.curve(key),
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
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
                col=3,
            )
        fig.update_layout(title=f"One factor at a time: {factor} (others at the baseline)")
        figures.append((f"Factor: {factor}", fig))
    return figures


SECTIONS: list[tuple[str, Callable[[optuna.Study], go.Figure]]] = [
    ("Optimization history", _history),
    ("Parameter importances", _importances),
    ("Parallel coordinates", _parallel),
    ("Slice plots", _slices),
    ("Contour of the two most important parameters", _contour),
    ("Learning curves", _learning_curves),
    ("Validation against test accuracy", _val_vs_test),
    ("Accuracy against training time", _accuracy_vs_time),
    ("Pareto front", _pareto),
]


def _summary(study: optuna.Study) -> str:
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
    for t in records(best[:5]):
        test = t.test_accuracy
        rows.append(
            (
                f"best trial #{t.number}",
                f"values {', '.join(f'{v:.4f}' for v in t.values or ())}; test accuracy "
                f"{'n/a' if test is None else f'{test:.4f}'}",
            )
        )
        rows.append(("params", ", ".join(f"{k}={v}" for k, v in t.params.items())))
    body = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f'<table class="summary">{body}</table>'


def build_report(study: optuna.Study) -> str:
    """The report of ``study`` as one self-contained HTML document."""
    parts = [f"<h2>Summary</h2>{_summary(study)}"]
    figures: list[tuple[str, go.Figure | Exception]] = []
    for title, make in SECTIONS:
        try:
            with warnings.catch_warnings():
                # _importance_target already orients the target as this warning asks
                warnings.filterwarnings("ignore", "PedAnovaImportanceEvaluator computes")
                figures.append((title, make(study)))
        except Exception as e:  # an empty or odd study: say so, keep the rest
            _log.debug("report section %r not drawn", title, exc_info=not isinstance(e, Missing))
            figures.append((title, e))
    try:
        figures += _one_factor(study)
    except Exception as e:
        _log.debug("one-factor section not drawn", exc_info=True)
        figures.append(("One factor at a time", e))
    for title, fig in figures:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if isinstance(fig, Exception):
            reason = str(fig) if isinstance(fig, Missing) else f"{type(fig).__name__}: {fig}"
            parts.append(f'<p class="missing">Not available: {html.escape(reason)}</p>')
        else:
            fig.update_layout(height=480, margin={"t": 60})
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return _PAGE.format(
        title=html.escape(f"hpsearch report: {study.study_name}"),
        plotly=get_plotlyjs(),
        body="\n".join(parts),
        stamp=stamp,
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table.summary th {{ text-align: left; padding-right: 1.5em; vertical-align: top; }}
p.missing {{ color: #888; font-style: italic; }}
h2 {{ border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }}
</style>
<script type="text/javascript">{plotly}</script>
</head><body>
<h1>{title}</h1>
{body}
<p class="missing">Generated by hpsearch on {stamp}.</p>
</body></html>
"""
