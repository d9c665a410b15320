"""Redundant endpoints: the next one at once after a failure, a pause only per round."""

import pytest

from gateway.core.rotation import Rotation


def test_a_failure_moves_to_the_next_and_a_round_of_failures_asks_for_a_pause() -> None:
    nodes = Rotation(["a", "b", "c"])
    assert nodes.current == "a"
    assert nodes.failed() is False
    assert nodes.current == "b"
    assert nodes.failed() is False
    assert nodes.failed() is True  # a, b and c failed in a row: back off once
    assert nodes.current == "a"
    assert nodes.failed() is False  # a new round


def test_a_success_starts_a_new_round_from_the_node_that_answered() -> None:
    nodes = Rotation(["a", "b"])
    nodes.failed()
    nodes.succeeded()
    assert nodes.current == "b"
    assert nodes.failed() is False  # b fails after serving: a is tried at once
    assert nodes.current == "a"
    assert nodes.failed() is True


def test_a_single_endpoint_pauses_after_every_failure() -> None:
    single = Rotation(["a"])
    assert not single.several
    assert single.failed() is True
    assert single.current == "a"


def test_no_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Rotation([])
