"""The garbage collector's schedule a server or a camera fleet sets (``common.collector``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from common.collector import GEN1_COLLECTIONS_PER_FULL

PROBE = """
import gc
from common.collector import settle_collector
young, middle, _ = gc.get_threshold()
settle_collector()
print(gc.get_threshold() == (young, middle, {full}), gc.get_freeze_count() > 0)
"""


@pytest.mark.process
@pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.14 collects incrementally")
def test_a_serving_process_makes_full_collections_rare_and_freezes_start_up() -> None:
    probe = PROBE.format(full=GEN1_COLLECTIONS_PER_FULL)
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.split() == ["True", "True"]
    assert GEN1_COLLECTIONS_PER_FULL >= 100  # minutes apart at a steady poll renewal rate
