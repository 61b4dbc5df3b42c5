"""A node's memory of cameras' homes (``KnownHomes``): how long and how many it keeps."""

from __future__ import annotations

from server.cluster.knownhomes import KNOWN_HOME_SECONDS, KnownHomes


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_home_is_known_for_its_max_age_then_read_again() -> None:
    clock = Clock()
    homes = KnownHomes(clock)
    homes.learn("cam", "a#1")
    clock.now += KNOWN_HOME_SECONDS
    assert homes.home_of("cam") == "a#1"
    clock.now += 0.001
    assert homes.home_of("cam") is None
    assert len(homes) == 0  # let go of once found too old


def test_learning_again_restarts_the_age_and_a_move_replaces_the_home() -> None:
    clock = Clock()
    homes = KnownHomes(clock, max_age=1.0)
    homes.learn("cam", "a#1")
    clock.now += 0.9
    homes.learn("cam", "b#1")
    clock.now += 0.9
    assert homes.home_of("cam") == "b#1"
    homes.forget("cam")
    assert homes.home_of("cam") is None
    homes.forget("never-known")


def test_the_oldest_learnt_go_first_past_the_capacity() -> None:
    clock = Clock()
    homes = KnownHomes(clock, capacity=3)
    for camera_id in ("c1", "c2", "c3"):
        homes.learn(camera_id, "a#1")
    homes.learn("c1", "a#1")  # learnt again: now the newest
    homes.learn("c4", "b#1")
    assert len(homes) == 3
    assert [homes.home_of(c) for c in ("c1", "c2", "c3", "c4")] == ["a#1", None, "a#1", "b#1"]
