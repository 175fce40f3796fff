"""Table layout: what fits, what is left out and said so."""

from __future__ import annotations

from hpsearch.results.tables import fit_table
from hpsearch.results.tables import format_rows
from hpsearch.results.tables import resolve_column
from hpsearch.results.tables import select_columns


def test_a_table_and_its_notes_fit_the_width() -> None:
    # more metric columns than fit: the note naming them wraps instead of running over
    metrics = {f"metric_number_{i}": 0.5 + i / 100 for i in range(12)}
    rows = [
        {"number": n, "state": "COMPLETE", "value": 0.9 + n / 100, **metrics} for n in range(3)
    ]
    lines = fit_table(rows, width=60).splitlines()
    assert max(len(line) for line in lines) <= 60
    shown = lines[0].split()
    notes = "\n".join(lines[4:])
    assert notes.startswith("not shown: ") and "\n  " in notes
    left_out = [c for c in metrics if c not in shown]
    assert left_out and all(c in notes for c in left_out)


def test_a_tables_numbers_round_to_4_digits_in_lists_too_and_csv_keeps_them_whole() -> None:
    # `hpsearch studies`: each study's best values, a list (one value an objective)
    rows = [{"study": "q", "best": [0.06859968105951945, 2.0]}, {"study": "r", "best": None}]
    assert format_rows(rows, "table").splitlines() == [
        "study  best",
        "q      [0.0686, 2]",
        "r",
    ]
    assert format_rows(rows, "csv").splitlines()[1] == 'q,"[0.06859968105951945, 2.0]"'


def test_a_column_is_named_in_full_by_its_short_name_or_by_its_parameters_name() -> None:
    columns = [
        "number",
        "param.optimizer",
        "param.weight_decay",
        "param.net.width_1",
        "param_count",
    ]
    rows = [dict.fromkeys(columns, 1)]
    for name, full in [
        ("param.optimizer", "param.optimizer"),
        ("optim", "param.optimizer"),  # the table's short name
        ("optimizer", "param.optimizer"),  # the parameter's own name, as in the study file
        ("weight_decay", "param.weight_decay"),
        ("width_1", "param.net.width_1"),
        ("net.width_1", "param.net.width_1"),
        ("param_count", "param_count"),
    ]:
        assert resolve_column(name, columns) == full, name
    assert resolve_column("momentum", columns) is None
    assert select_columns(rows, "number,optimizer") == [{"number": 1, "optimizer": 1}]
