"""A staged pipeline: frames flow through bounded queues, one worker per stage.

    result = run_pipeline([("pre", pre), ("accel", accel), ("post", post)], frames,
                          on_output=write, queue_size=4, mode="thread")

``frames`` yields ``(source, data)`` pairs (``source`` names the frame: its file, or
``synthetic:7``). Each stage is a callable ``data -> data``; the last stage's data goes to
``on_output(frame)`` in the calling thread. Contract (tests/runtime/test_pipeline.py):

- order: frames reach ``on_output`` in the order they were fed (one FIFO worker per stage);
- nothing lost: ``result.dropped`` (fed minus delivered) is 0 unless a stage failed;
- a frame a stage *rejects* (it raises one of the exception types in ``reject``: bad input,
  not a broken stage) skips the later stages and still reaches ``on_output``, in order, with
  ``frame.error`` set to the one-line message; the run goes on (``result.rejected`` counts
  them; they are delivered, not dropped);
- a stage raising anything else on frame k stops the pipeline: every worker and the feeder
  end, all are joined, and ``run_pipeline`` raises ``StageError`` naming the stage, frame
  k's index and source and the cause (a ``ShiftflowError``'s message kept, so the CLI
  prints one line);
- per-stage seconds of every delivered, unrejected frame are in ``result.times[stage]``.

``mode`` ``thread`` runs the workers as threads of this process; ``process`` as forked
processes (frames then cross pipes and must pickle; stage objects are inherited at fork, so
each process has its own accelerator and onnxruntime sessions, and state a stage keeps on
itself stays in its process). docs/runtime.md has the measurement that chose the default.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ShiftflowError

MODES = ("thread", "process")
_DONE = "__pipeline_done__"  # end-of-stream marker passed down the queues
_POLL = 0.05  # seconds between checks of the stop flag while blocked on a queue


class StageError(ShiftflowError):
    """A stage failed on one frame; the message names the stage, the frame and the cause."""


@dataclass
class Frame:
    """One frame in flight: its position, where it came from, its current data, and the
    seconds each stage spent on it."""
    index: int
    source: str
    data: Any
    times: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # set when a stage rejected the frame (see ``reject``)


@dataclass
class PipelineResult:
    fed: int
    delivered: int
    seconds: float
    times: dict[str, list[float]]
    mode: str
    rejected: int = 0

    @property
    def dropped(self) -> int:
        return self.fed - self.delivered

    @property
    def fps(self) -> float:
        """Frames delivered per wall-clock second, start to finish (fill and drain included)."""
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


def _put(q, item, stop) -> bool:
    """Put ``item`` unless ``stop`` is set first; True when it went in."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            pass
    return False


def _put_done(q, stop) -> None:
    """Pass the end marker on; after a failure give up once downstream has gone (the
    consumer keeps draining until it sees the marker, so this only waits for room)."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            q.put(_DONE, timeout=_POLL)
            return
        except queue.Full:
            pass


def _worker(name: str, fn: Callable, inq, outq, stop, errors, reject: tuple) -> None:
    while True:
        try:
            frame = inq.get(timeout=_POLL)
        except queue.Empty:
            if stop.is_set() and errors is not None and not errors.empty():
                break  # upstream failed or the run was abandoned; no marker will come
            continue
        if isinstance(frame, str) and frame == _DONE:
            break
        if stop.is_set():
            continue  # a later stage failed: drain without work until the marker
        t0 = time.perf_counter()
        try:
            if frame.error is None:
                frame.data = fn(frame.data)
        except reject as exc:  # bad input: this frame goes on, flagged, without its data
            frame.error, frame.data = str(exc), None
        except BaseException as exc:  # reported with the frame; the pipeline stops
            user = isinstance(exc, ShiftflowError)
            errors.put((name, frame.index, frame.source, str(exc) if user else f"{type(exc).__name__}: {exc}"))
            stop.set()
            continue  # keep draining the input, so upstream can pass its end marker at once
        frame.times[name] = time.perf_counter() - t0
        _put(outq, frame, stop)  # False only once stopped: the loop drains from then on
    _put_done(outq, stop)
    # After a failure a process must not wait at exit for a reader that has gone. Never on a
    # normal end: a cancelled queue drops what its feeder thread has not yet written.
    if stop.is_set() and hasattr(outq, "cancel_join_thread"):
        outq.cancel_join_thread()


def _feed(frames: Iterable, outq, stop, errors, counter: list) -> None:
    try:
        for i, (source, data) in enumerate(frames):
            if not _put(outq, Frame(i, str(source), data), stop):
                break
            counter[0] += 1
    except BaseException as exc:  # a source that fails (e.g. an unreadable directory)
        user = isinstance(exc, ShiftflowError)
        errors.put(("source", counter[0], "?", str(exc) if user else f"{type(exc).__name__}: {exc}"))
        stop.set()
    _put_done(outq, stop)


def run_pipeline(stages: list[tuple[str, Callable]], frames: Iterable, on_output: Callable[[Frame], object] | None = None,
                 queue_size: int = 4, mode: str = "thread", reject: tuple[type[BaseException], ...] = ()
                 ) -> PipelineResult:
    """Run ``frames`` through ``stages`` (see the module docstring); raises ``StageError``
    for the first frame a stage (or ``on_output``) fails on, after every worker ended.
    Exceptions of the types in ``reject`` reject one frame instead."""
    if mode not in MODES:
        raise ShiftflowError(f"pipeline mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not stages:
        raise ShiftflowError("a pipeline needs at least one stage")
    if queue_size < 1:
        raise ShiftflowError(f"queue size must be at least 1, found {queue_size}")
    if mode == "process":
        ctx = mp.get_context("fork")
        make_q, stop, errors = (lambda: ctx.Queue(queue_size)), ctx.Event(), ctx.Queue()
        spawn = ctx.Process
    else:
        make_q, stop, errors = (lambda: queue.Queue(queue_size)), threading.Event(), queue.Queue()
        spawn = threading.Thread
    queues = [make_q() for _ in range(len(stages) + 1)]
    workers = [spawn(target=_worker, args=(name, fn, queues[i], queues[i + 1], stop, errors, tuple(reject)),
                     name=f"stage-{name}", daemon=True) for i, (name, fn) in enumerate(stages)]
    counter = [0]
    # The feeder is a thread in both modes: it only moves frames from the iterable to a queue.
    feeder = threading.Thread(target=_feed, args=(frames, queues[0], stop, errors, counter),
                              name="pipeline-feed", daemon=True)
    times: dict[str, list[float]] = {name: [] for name, _ in stages}
    delivered, rejected, expect = 0, 0, 0
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    feeder.start()
    try:
        while True:
            try:
                frame = queues[-1].get(timeout=_POLL)
            except queue.Empty:
                if stop.is_set() and not any(w.is_alive() for w in workers):
                    break
                continue
            if isinstance(frame, str) and frame == _DONE:
                break
            if stop.is_set():
                continue
            if frame.index != expect:  # cannot happen with FIFO queues: a bug, not a user error
                raise RuntimeError(f"pipeline delivered frame {frame.index} where {expect} was due")
            expect += 1
            try:
                if on_output is not None:
                    on_output(frame)
            except ShiftflowError as exc:
                errors.put(("output", frame.index, frame.source, str(exc)))
                stop.set()
                continue
            delivered += 1
            if frame.error is not None:
                rejected += 1
                continue
            for name, _ in stages:
                times[name].append(frame.times[name])
    finally:
        stop.set()  # harmless after the end marker; on an escaping error it ends every worker
        feeder.join()
        for w in workers:
            w.join()
    seconds = time.perf_counter() - t0
    try:
        name, index, source, message = errors.get_nowait()
    except queue.Empty:
        return PipelineResult(counter[0], delivered, seconds, times, mode, rejected)
    raise StageError(f"stage {name!r} failed on frame {index} ({source}): {message}")
