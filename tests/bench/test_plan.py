"""`python -m bench`'s arguments -> what the run does."""

from __future__ import annotations

import pytest

from bench.main import build_parser
from bench.plan import ROWS, Plan


def plan(*argv: str) -> Plan:
    return Plan.from_args(build_parser().parse_args(list(argv)))


def test_a_full_run_has_every_row_and_the_soak() -> None:
    full = plan()
    assert full.rows == list(ROWS) and full.soak and full.rounds == 2


def test_only_takes_names_and_numbers_and_leaves_the_soak_out() -> None:
    some = plan("--only", "rate,2, stream", "--rounds", "1")
    assert some.rows == ["rate", "max", "stream"] and not some.soak and some.rounds == 1


def test_quick_shrinks_every_row() -> None:
    quick, full = plan("--quick"), plan()
    assert quick.rate_seconds < full.rate_seconds and quick.burst_requests < full.burst_requests
    assert quick.conc_count < full.conc_count and quick.soak_seconds < full.soak_seconds


def test_an_unknown_row_is_refused_with_the_list() -> None:
    with pytest.raises(SystemExit, match="unknown row 'latency'; rows are rate, max"):
        plan("--only", "rate,latency")
