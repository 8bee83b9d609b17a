"""watch_socket: a socket monitor nobody reads must never stall the other sockets of its context.

libzmq's I/O thread blocks on a full monitor pipe (pyzmq's get_monitor_socket leaves the
default high-water mark), and then no socket of the context connects any more. A DEALER
retrying a dead endpoint every millisecond fills a default pipe in about a second.
"""

from __future__ import annotations

import time

import zmq

from common.matcher_client import watch_socket
from tests.integration.harness import free_ports


def test_an_unread_monitor_does_not_stall_the_context() -> None:
    context = zmq.Context()
    dead = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    try:
        noisy = context.socket(zmq.DEALER)
        noisy.setsockopt(zmq.LINGER, 0)
        noisy.setsockopt(zmq.RECONNECT_IVL, 1)
        unread = watch_socket(noisy, zmq.EVENT_ALL)
        noisy.connect(dead)
        started = time.monotonic()
        # The time is what is tested: by 2.5 s a default pipe would have been full for a while.
        for at in (0.5, 1.0, 1.5, 2.0, 2.5):
            time.sleep(max(0.0, started + at - time.monotonic()))
            probe = context.socket(zmq.DEALER)
            probe.setsockopt(zmq.LINGER, 0)
            events = watch_socket(probe, zmq.EVENT_CONNECT_DELAYED | zmq.EVENT_CONNECT_RETRIED)
            probe.connect(dead)
            assert events.poll(1000), f"the context stalled {at} s after the noisy socket started"
            probe.disable_monitor()
            probe.close()
            events.close()
        assert unread.poll(0)  # the noisy socket's events are all still there
        noisy.close()
        unread.close()
    finally:
        context.destroy(linger=0)
