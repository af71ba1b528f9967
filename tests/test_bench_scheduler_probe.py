"""The app-vs-CLI benchmark's probe of a training thread's time on and waiting for a CPU."""

import os
import threading

import pytest

from tests.harness import busiest_thread_shares, thread_schedstats


def test_the_busiest_thread_is_the_one_that_ran_most_and_a_new_thread_counts_from_zero():
    before = {"10": (5_000_000_000, 1_000_000_000), "11": (1_000_000_000, 0)}
    after = {
        "10": (5_500_000_000, 1_100_000_000),  # ran 0.5 s
        "11": (1_200_000_000, 0),  # ran 0.2 s
        "12": (1_800_000_000, 150_000_000),  # started since: ran 1.8 s, waited 0.15 s
    }
    shares = busiest_thread_shares(before, after, seconds=2.0)
    assert shares == pytest.approx({"on_cpu": 0.9, "runqueue_wait": 0.075})
    assert busiest_thread_shares(before, {}, seconds=2.0) is None
    assert busiest_thread_shares(before, after, seconds=0.0) is None


def test_schedstats_cover_every_thread_of_the_process_and_only_grow():
    started, stop = threading.Event(), threading.Event()

    def spin() -> None:
        started.set()
        while not stop.is_set():
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        started.wait()
        first = thread_schedstats(os.getpid())
        stop.wait(0.05)
        second = thread_schedstats(os.getpid())
    finally:
        stop.set()
        worker.join()
    tid = str(worker.native_id)
    assert tid in first and tid in second and str(threading.get_native_id()) in second
    assert second[tid][0] > first[tid][0] and second[tid][1] >= first[tid][1]
