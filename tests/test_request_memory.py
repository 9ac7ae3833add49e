"""One per-request memory, bounded in bytes (issue 23 item 4): the scenario of the issue, in a
process of its own, measured by its RSS."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .servers import run_command

BUDGET = 16 * 1024 * 1024


def test_running_requests_with_large_prompts_stay_within_the_memory_budget() -> None:
    # 300 running requests without a session, 5 spans of 128 KiB each: 190 MiB if all held.
    env = {
        **os.environ,
        "MALLOC_MMAP_THRESHOLD_": "65536",  # freed prompts go back to the system at once
    }
    script = str(Path(__file__).with_name("rss_scenario.py"))
    grown = int(run_command([sys.executable, script, "300", str(BUDGET)], env).split()[0])
    assert grown < BUDGET + 8 * 1024 * 1024, grown
