"""The staged pipeline: order, nothing lost, flat memory under load, clean failure."""

import multiprocessing
import threading
import time
import tracemalloc

import numpy as np
import pytest

from shiftflow.errors import UsageError
from shiftflow.runtime.pipeline import StageError, run_pipeline


def _stub_accel(seed=0):
    """A stand-in for the accelerator stage: random latency of 0..100 µs, keeps the data."""
    rng = np.random.default_rng(seed)

    def accel(d):
        time.sleep(float(rng.uniform(0, 1e-4)))
        return d
    return accel


def test_load_10k_frames_in_order_none_lost_memory_flat():
    n, seen = 10_000, []

    def frames(count):
        for i in range(count):
            yield f"f{i}", np.full(16, i, np.int64)

    def check(frame):
        seen.append(int(frame.data[0]))
    stages = [("pre", lambda d: d + 1), ("accel", _stub_accel()), ("post", lambda d: d - 1)]
    run_pipeline(stages, frames(500), check)  # warm-up: queues, threads, allocator pools
    seen.clear()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    res = run_pipeline(stages, frames(n), check)
    elapsed = time.perf_counter() - t0
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert seen == list(range(n))
    assert res.fed == res.delivered == n and res.dropped == 0
    assert all(len(t) == n for t in res.times.values())
    # What stays allocated is the per-stage times (3 lists of n floats, ~24 B + 8 B each) and
    # `seen`; frames themselves must not accumulate: bound 4 MB for 10^4 frames of 128 B.
    assert after - before < 4_000_000, (before, after)
    assert elapsed < 45


@pytest.mark.parametrize("mode", ["thread", "process"])
@pytest.mark.parametrize("k", [0, 37])
def test_stage_failure_reports_frame_and_stops(mode, k):
    def bad(d):
        if d == k:
            raise UsageError(f"boom at {d}")
        return d
    done = {}

    def run():
        try:
            run_pipeline([("pre", lambda d: d), ("accel", bad), ("post", lambda d: d)],
                         ((f"img{i}.png", i) for i in range(10_000)), mode=mode, queue_size=2)
        except StageError as exc:
            done["err"] = str(exc)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive(), "pipeline hung after a stage failed"
    assert done["err"] == f"stage 'accel' failed on frame {k} (img{k}.png): boom at {k}"
    assert "\n" not in done["err"]
    alive = [th.name for th in threading.enumerate() if th.name.startswith(("stage-", "pipeline-"))]
    assert not alive
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_rejected_frames_delivered_in_order_run_goes_on(mode):
    """A frame a stage rejects (bad input) skips the later stages and arrives flagged, in
    order; the other frames are processed; nothing is dropped."""
    def pre(d):
        if d % 7 == 3:
            raise UsageError(f"bad input {d}")
        return d * 10
    seen = []
    res = run_pipeline([("pre", pre), ("post", lambda d: d + 1)], ((f"f{i}", i) for i in range(200)),
                       seen.append, mode=mode, queue_size=2, reject=(UsageError,))
    assert [f.index for f in seen] == list(range(200))
    assert res.delivered == 200 and res.dropped == 0 and res.rejected == len(range(3, 200, 7))
    for f in seen:
        assert (f.error, f.data) == ((f"bad input {f.index}", None) if f.index % 7 == 3 else (None, f.index * 10 + 1))
    assert all(len(t) == 200 - res.rejected for t in res.times.values())


def test_output_failure_and_bad_arguments():
    def sink(frame):
        if frame.index == 5:
            raise UsageError("disk full")
    with pytest.raises(StageError, match=r"stage 'output' failed on frame 5 \(5\): disk full"):
        run_pipeline([("a", lambda d: d)], ((str(i), i) for i in range(50)), sink)
    with pytest.raises(UsageError.__mro__[1], match="mode"):
        run_pipeline([("a", lambda d: d)], [], mode="fibers")
