"""`python -m bench NAME` runs one benchmark, with or without options of its own."""

from __future__ import annotations

import sys

import pytest

import bench.__main__ as bench_cli
import bench.send_loop


@pytest.fixture
def send_loop_calls(monkeypatch) -> list:
    calls = []
    monkeypatch.setattr(bench.send_loop, "main", lambda argv=None: calls.append(bench.send_loop.parse_args(argv)))
    return calls


def test_send_loop_alone_runs_with_its_defaults(send_loop_calls, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["python -m bench", "send_loop"])
    assert bench_cli.main(["send_loop"]) == 0
    assert send_loop_calls == [bench.send_loop.parse_args([])]


def test_send_loop_options_reach_it(send_loop_calls):
    assert bench_cli.main(["send_loop", "--relay-messages", "0"]) == 0
    assert send_loop_calls[0].relay_messages == 0


def test_options_for_a_benchmark_without_any_are_refused(capsys):
    assert bench_cli.main(["dashboard", "--rows", "5"]) == 2
    assert "usage: python -m bench" in capsys.readouterr().err
