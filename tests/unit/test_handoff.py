"""The thread -> greenlet hand-off: the engine thread wakes a greenlet without blocking the hub."""

import threading
import time

import gevent

from glm.stream.handoff import Channel


def test_items_from_a_real_thread_arrive_in_order_while_other_greenlets_run():
    channel = Channel()
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)

    def producer():
        for i in range(5):
            time.sleep(0.05)
            channel.put(i)

    other = gevent.spawn(ticker)
    threading.Thread(target=producer).start()
    received = [channel.get(timeout=5) for _ in range(5)]
    other.kill()
    channel.close()
    assert received == [0, 1, 2, 3, 4]
    # The hub kept running the other greenlet the whole time the reader waited.
    assert len(ticks) >= 15


def test_get_times_out_with_none():
    channel = Channel()
    assert channel.get(timeout=0.05) is None
    channel.close()
