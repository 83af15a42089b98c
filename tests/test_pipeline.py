"""The ordered pipeline: results consumed in submission order, within its bounds of items and bytes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from coldvault.engine.pipeline import OrderedPipeline


def test_results_are_consumed_in_submission_order_whatever_order_they_finish_in() -> None:
    consumed: list[tuple[object, str]] = []
    gates = [threading.Event() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        pipeline: OrderedPipeline[str] = OrderedPipeline(pool, lambda r, t: consumed.append((r, t)), max_items=8)
        for i, gate in enumerate(gates):
            pipeline.submit(lambda i=i, gate=gate: gate.wait(5) and i, tag=f"t{i}")
        for gate in reversed(gates):  # the newest finishes first
            gate.set()
        pipeline.drain()
    assert consumed == [(0, "t0"), (1, "t1"), (2, "t2"), (3, "t3")]


def test_has_room_tells_whether_a_submit_would_wait_for_an_older_result() -> None:
    consumed: list[str] = []
    gate = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        pipeline: OrderedPipeline[str] = OrderedPipeline(
            pool, lambda _, t: consumed.append(t), max_items=2, max_bytes=100
        )
        assert pipeline.has_room(1_000)  # an empty pipeline takes anything, or nothing would ever run
        pipeline.submit(gate.wait, 5, tag="a", weight=60)
        assert pipeline.has_room(40) and not pipeline.has_room(41)
        pipeline.submit(gate.wait, 5, tag="b", weight=10)
        assert not pipeline.has_room(0)  # two items: the bound
        gate.set()
        pipeline.submit(lambda: None, tag="c", weight=10)  # consumes "a" first
        assert consumed == ["a"] and len(pipeline) == 2
        pipeline.drain()
    assert consumed == ["a", "b", "c"]


def test_poll_consumes_only_what_is_ready_at_the_head() -> None:
    consumed: list[str] = []
    gate = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        pipeline: OrderedPipeline[str] = OrderedPipeline(pool, lambda _, t: consumed.append(t), max_items=4)
        pipeline.submit(gate.wait, 5, tag="slow")
        pipeline.put(None, "known")
        pipeline.poll()
        assert consumed == [] and len(pipeline) == 2  # "known" waits behind "slow"
        gate.set()
        pipeline.drain()
    assert consumed == ["slow", "known"]
