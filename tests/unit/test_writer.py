"""The background writer keeps write order, bounds what is queued and never hides a failure."""

from __future__ import annotations

import threading

import pytest

from pathatlas.attribution.run.writer import BackgroundWriter, StoreWriteError


def test_writes_run_in_submission_order_and_flush_waits_for_all():
    writer = BackgroundWriter()
    gate, order = threading.Event(), []
    writer.submit("first", 10, lambda: (gate.wait(5), order.append(1)))
    for i in range(2, 6):
        writer.submit(f"write {i}", 10, lambda i=i: order.append(i))
    assert order == []  # nothing has waited for the blocked first write
    gate.set()
    writer.flush()
    assert order == [1, 2, 3, 4, 5]
    assert writer.busy_s > 0
    writer.close()


def test_a_submission_waits_while_too_much_is_queued():
    writer = BackgroundWriter(limit_bytes=100)
    gate, done = threading.Event(), []
    writer.submit("big", 80, lambda: (gate.wait(5), done.append("big")))
    threading.Timer(0.2, gate.set).start()
    writer.submit("next", 40, lambda: done.append("next"))  # 80 + 40 > 100: waits for "big"
    assert done[:1] == ["big"] and writer.waited_s >= 0.1
    writer.close()


def test_a_failed_write_is_raised_with_what_was_written():
    writer = BackgroundWriter()
    gate, written = threading.Event(), []

    def broken() -> None:
        gate.wait(5)
        raise OSError("No space left on device")

    writer.submit("stage 'attribute': shard 3 of method 'ig'", 10, broken)
    writer.submit("stage 'attribute': shard 4 of method 'ig'", 10, lambda: written.append(4))
    gate.set()
    with pytest.raises(StoreWriteError, match=r"shard 3 of method 'ig' failed: OSError: No space left on device"):
        writer.flush()
    writer.flush()  # the later, independent write still happened
    assert written == [4]
    # a failure that is already known is raised by the next submission
    writer.submit("shard 5", 10, broken)
    writer._pending[0][1].exception()  # wait until it has failed
    with pytest.raises(StoreWriteError, match="shard 5"):
        writer.submit("shard 6", 10, lambda: None)
