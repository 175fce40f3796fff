"""What a mistyped name is taken to mean, in every did-you-mean hpsearch prints."""

from __future__ import annotations

import pytest

from hpsearch.errors import closest

COLUMNS = ["mean_radius", "radius_error", "mean_texture", "Diagnosis", "worst area"]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("radius_mean", "mean_radius"),  # the same words in another order, not the spelling
        ("diagnosis", "Diagnosis"),  # another case
        ("area_worst", "worst area"),  # other separators too
        ("mean_textur", "mean_texture"),  # a typo: the closest spelling
        ("radius_eror", "radius_error"),
        ("learning_rate", None),  # nothing close
    ],
)
def test_a_mistyped_name_is_taken_for_the_choice_it_most_likely_meant(
    typed: str, meant: str | None
) -> None:
    assert closest(typed, COLUMNS) == meant
