"""Table layout: what fits, what is left out and said so."""

from __future__ import annotations

from hpsearch.results.tables import fit_table


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
