"""The ranking comparison used across code paths forgives near-ties and nothing else."""

from __future__ import annotations

import pytest

from tests.ranking import assert_same_ranking


def test_a_near_tie_at_the_cut_off_may_differ():
    # The case seen on one CPU: items 19 and 11 tie in the last place, each path keeps another one.
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    assert_same_ranking(
        [14, 0, 2, 6, 8, 7, 15, 19], scores, [14, 0, 2, 6, 8, 7, 15, 11], scores[:7] + [0.2000001]
    )


def test_near_tied_items_may_swap_places():
    assert_same_ranking([1, 2, 3], [0.9, 0.5, 0.5000001], [1, 3, 2], [0.9, 0.5000001, 0.5])


def test_a_swap_of_clearly_different_scores_fails():
    with pytest.raises(AssertionError):
        assert_same_ranking([1, 2, 3], [0.9, 0.5, 0.1], [2, 1, 3], [0.9, 0.5, 0.1])


def test_another_item_above_the_cut_off_fails():
    with pytest.raises(AssertionError, match="differ beyond near-ties"):
        assert_same_ranking([1, 2, 3], [0.9, 0.5, 0.1], [1, 4, 3], [0.9, 0.5, 0.1])


def test_different_scores_fail():
    with pytest.raises(AssertionError):
        assert_same_ranking([1, 2], [0.9, 0.5], [1, 2], [0.9, 0.4])


def test_different_lengths_fail():
    with pytest.raises(AssertionError, match="lengths"):
        assert_same_ranking([1, 2], [0.9, 0.5], [1], [0.9])
