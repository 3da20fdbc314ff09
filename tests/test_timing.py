"""The one timing loop (edge_attn.runners.timing) on a simulated clock: what is timed, what is not, and
when it stops. The clock is advanced by the fake load/inputs/invoke functions themselves, so the expected
numbers follow from the test's own arithmetic, not from a real measurement."""

import pytest

from edge_attn.runners import timing


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def advance_ms(self, ms):
        self.now += ms / 1000.0


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock.now)
    return clock


def test_cold_start_is_load_plus_first_inference_and_input_filling_is_not_timed(clock):
    invoke_costs = iter([30.0, 9.0, 9.0, 2.0, 3.0, 4.0])  # first inference, 2 warm-up, 3 timed

    def invoke():
        clock.advance_ms(next(invoke_costs))

    def fill_inputs(handle):
        assert handle == "model"
        clock.advance_ms(1000.0)  # filling the input with random data is not part of any figure
        return invoke

    handle, session = timing.timed_session(lambda: clock.advance_ms(50.0) or "model", fill_inputs,
                                           warmup=2, runs=3, deadline=float("inf"))
    assert handle == "model"
    assert session["load_ms"] == pytest.approx(50.0) and session["first_inference_ms"] == pytest.approx(30.0)
    assert session["cold_start_ms"] == pytest.approx(80.0)
    assert session["times_ms"] == pytest.approx([2.0, 3.0, 4.0])  # the warm-up runs are not in the list


def test_runs_stop_at_the_deadline_after_at_least_one(clock):
    def invoke():
        clock.advance_ms(400.0)

    assert len(timing.time_runs(invoke, warmup=0, runs=10, deadline=1.0)) == 3  # ends at 0.4, 0.8, 1.2 s
    assert len(timing.time_runs(invoke, warmup=0, runs=10, deadline=0.0)) == 1
