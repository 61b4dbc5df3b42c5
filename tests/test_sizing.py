"""The sizing model and what feeds it: docs/SIZING.md shows what the model computes from
docs/sizing-inputs.json, the line fit, and the parsing of what Redis reports."""

from __future__ import annotations

import dataclasses

import pytest

from bench import sizing_model
from bench.linfit import fit
from bench.redisstats import MonitorCounts, command_calls
from bench.scenarios import sizing, sizing_redis


def test_the_doc_shows_the_model_of_the_stored_inputs() -> None:
    document = sizing_model.DOC.read_text(encoding="utf-8")
    inputs = sizing_model.load_inputs()
    assert sizing_model.generated_block(document) == sizing_model.render(inputs), (
        "docs/SIZING.md is out of date: python -m bench.sizing_model --sizing S --redis R --write"
    )


def test_replacing_the_block_keeps_the_rest() -> None:
    document = f"before\n{sizing_model.BEGIN}\nold\n{sizing_model.END}\nafter\n"
    replaced = sizing_model.replace_block(document, "new")
    assert replaced == f"before\n{sizing_model.BEGIN}\nnew\n{sizing_model.END}\nafter\n"
    assert sizing_model.generated_block(replaced) == "new"


def test_the_model_scales_with_the_fleet() -> None:
    inputs = sizing_model.load_inputs()
    small, big = sizing_model.plan(inputs, 100_000), sizing_model.plan(inputs, 1_000_000)
    assert big.polls_per_s == pytest.approx(10 * small.polls_per_s)
    assert big.polls_per_s == pytest.approx(1_000_000 / sizing_model.HOLD_SECONDS)
    assert big.redis_memory_gb == pytest.approx(10 * small.redis_memory_gb)
    assert big.nodes >= 1_000_000 / sizing_model.CAMERAS_PER_NODE
    assert big.refreshes_per_s == pytest.approx(1_000_000 / sizing_model.REFRESH_SECONDS)
    assert big.primaries >= small.primaries >= 1


def test_inputs_come_from_the_scenarios_figures() -> None:
    names = [field.name for field in dataclasses.fields(sizing_model.Inputs)]
    figures: dict[str, object] = {cost: float(i + 1) for i, cost in enumerate(sizing.COSTS)}
    redis_figures: dict[str, object] = {}
    for tag in (sizing_redis.SINGLE, sizing_redis.CLUSTER):
        for what in (
            sizing_redis.MEMORY,
            sizing_redis.REFRESHES_PER_CORE,
            sizing_redis.REFRESH_COMMANDS,
            sizing_redis.REFRESH_SENT,
            sizing_redis.REFRESH_CPU,
            sizing_redis.REFRESH_NET_IN,
            sizing_redis.REFRESH_NET_OUT,
            sizing_redis.TOTALS_MS,
            f"first {sizing_redis.PAGE_P50}",
            f"middle {sizing_redis.PAGE_P50}",
            "cameras registered",
        ):
            redis_figures[f"{tag}: {what}"] = 7.0
    document = {"machine": {"revision": "abc1234"}}
    inputs = sizing_model.Inputs.from_results(
        {**document, "scenarios": {sizing.NAME: {"figures": figures}}},
        {**document, "scenarios": {sizing_redis.NAME: {"figures": redis_figures}}},
    )
    assert inputs.node_rss_per_camera == figures[sizing.COST_NODE_RSS]
    assert inputs.redis_memory_per_camera_1m == 7.0
    assert len(names) == len(dataclasses.asdict(inputs))
    assert "abc1234" in sizing_model.render(inputs)


def test_idle_cameras_cost_redis_their_refreshes() -> None:
    """With no per-poll cost and no calls left, Redis does one status write per camera
    per refresh interval."""
    inputs = dataclasses.replace(
        sizing_model.load_inputs(),
        redis_commands_per_poll=0.0,
        redis_cpu_us_per_poll=0.0,
        redis_idle_commands_per_node=0.0,
    )
    cameras = 1_000_000
    refreshes = cameras / sizing_model.REFRESH_SECONDS
    calls = cameras * sizing_model.CALLS_PER_CAMERA_HOUR / 3600
    writes = refreshes + calls * sizing_model.STATUS_WRITES_PER_CALL
    planned = sizing_model.plan(inputs, cameras)
    assert planned.redis_commands_per_s == pytest.approx(writes * inputs.refresh_commands)
    assert planned.redis_cpu_cores == pytest.approx(writes * inputs.refresh_cpu_us / 1e6)


def test_a_line_through_points() -> None:
    line = fit([0, 1, 2, 3], [1, 3, 5, 7])
    assert (line.slope, line.intercept, line.r2) == pytest.approx((2.0, 1.0, 1.0))
    assert fit([0, 1, 2], [0, 1, 0]).r2 < 0.5
    with pytest.raises(ValueError, match="distinct"):
        fit([1, 1], [0, 1])
    assert fit([0, 1], [2, 2]).r2 == 1.0


def test_commandstats_and_monitor_lines() -> None:
    calls = command_calls(
        {
            "cmdstat_evalsha": "calls=3,usec=10,usec_per_call=3.33",
            "cmdstat_info": "calls=9,usec=1",
            "cmdstat_config|resetstat": "calls=1,usec=1",
            "cmdstat_hset": "calls=5,usec=2",
        }
    )
    assert calls == {"evalsha": 3, "hset": 5}
    counts = MonitorCounts()
    counts.note(b'+1796533312.384466 [0 127.0.0.1:33348] "evalsha" "abc" "0"\r\n')
    counts.note(b'+1796533312.384522 [0 lua] "HSET" "a" "1"\r\n')
    counts.note(b'+1796533312.384522 [0 127.0.0.1:1] "info" "stats"\r\n')
    assert (dict(counts.sent), dict(counts.in_scripts)) == ({"evalsha": 1}, {"hset": 1})
    assert dict(counts.scripts) == {"abc": 1}


def test_the_nodes_scripts_are_named() -> None:
    from server.cluster.redis.directory import CLAIM

    assert sizing.script_names()[CLAIM.sha] == "directory.CLAIM"
