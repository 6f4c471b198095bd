"""Running fuzz cases: what a case executes, how its outcome is classified, and the worker pool
that runs many under a per-case deadline.

A case is ``(domain, seed, index)``: ``domain`` ``"onnx"`` mutates a seed model and runs what
``shiftflow compile`` runs (``import_onnx``, then ``compile_graph`` on ``tiny`` when it
imports); ``"program"`` mutates a seed build and runs what ``shiftflow simulate`` runs
(``load_program``, then ``simulate``). Its random generator is seeded with
``(seed, domain, index)`` only, so ``replay`` reproduces any case alone.

Outcomes: ``error`` (a ``ShiftflowError`` with a one-line message: the user is told what is
wrong), ``accepted`` (ran to the end), ``crash`` (anything else escaping, a warning included,
or a ``ShiftflowError`` whose message is empty or spans lines; also a worker that died) and
``hang`` (over the deadline: the worker is killed after ``faulthandler`` dumps where it was).
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import re
import resource
import signal
import tempfile
import time
import traceback
import warnings
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from shiftflow.errors import ShiftflowError

from .corpus import Corpus
from .onnx_mutations import mutate_model
from .program_mutations import mutate_build

DOMAINS = ("onnx", "program")
MEMORY_LIMIT = 6 << 30  # address space of a worker: a runaway allocation fails, the machine stays usable
_ROOT = str(Path(__file__).resolve().parents[2]) + os.sep


@dataclass
class Outcome:
    domain: str
    index: int
    seed_model: str  # the corpus entry mutated
    kind: str  # the mutation kind
    category: str = "accepted"  # error | accepted | crash | hang
    message: str = ""  # the error's message, or the crash's exception type and first line
    where: str = ""  # crash / hang: file:line (function) of the innermost frame
    seconds: float = 0.0

    @property
    def signature(self) -> str:
        """Crashes with one signature are one bug: exception type (or 'hang') and place."""
        return f"{self.message.split(':', 1)[0] if self.category == 'crash' else 'hang'} at {self.where}"


def _rng(seed: int, domain: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, DOMAINS.index(domain), index])


def make_case(corpus: Corpus, domain: str, seed: int, index: int) -> tuple[Outcome, dict[str, bytes]]:
    """The case's outcome record (not yet run) and the mutated files it runs on."""
    rng = _rng(seed, domain, index)
    if domain == "onnx":
        names = sorted(corpus.models)
        name = names[int(rng.integers(len(names)))]
        kind, data = mutate_model(corpus.models[name], rng)
        return Outcome(domain, index, name, kind), {"model.onnx": data}
    build = corpus.builds[int(rng.integers(len(corpus.builds)))]
    kind, files = mutate_build(build, rng)
    return Outcome(domain, index, build.name, kind), files


def execute(domain: str, files: dict[str, bytes], workdir: Path) -> None:
    """Run one case's files the way the CLI does; raises whatever the code under test raises."""
    from shiftflow.backend.compile import compile_graph
    from shiftflow.frontend.importer import import_onnx
    from shiftflow.ir.config import TINY
    from shiftflow.ir.program import load_program
    from shiftflow.sim.run import simulate

    workdir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    if domain == "onnx":
        compile_graph(import_onnx(workdir / "model.onnx"), TINY)
    else:
        simulate(load_program(workdir), None, seed=0)


def _short(path: str) -> str:
    """A file relative to the repository, or to site-packages for a library's."""
    return path.removeprefix(_ROOT).rpartition("site-packages/")[2]


def _where(tb) -> str:
    frame = traceback.extract_tb(tb)[-1]
    return f"{_short(frame.filename)}:{frame.lineno} ({frame.name})"


def run_case(corpus: Corpus, domain: str, seed: int, index: int, workdir: Path) -> Outcome:
    """Make, run and classify one case."""
    outcome, files = make_case(corpus, domain, seed, index)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # as under pytest: a warning escaping is a bug
            execute(domain, files, workdir)
    except ShiftflowError as exc:
        msg = str(exc)
        outcome.category, outcome.message = "error", msg
        if not msg.strip() or "\n" in msg:
            outcome.category, outcome.where = "crash", _where(exc.__traceback__)
            outcome.message = f"{type(exc).__name__} (not one line): {msg[:200]!r}"
    except Exception as exc:  # classifying everything else is the point
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        outcome.category, outcome.message, outcome.where = "crash", f"{type(exc).__name__}: {first}", _where(
            exc.__traceback__)
    outcome.seconds = time.perf_counter() - t0
    return outcome


# -- the pool -------------------------------------------------------------------------------------
def _worker(conn, corpus: Corpus, domain: str, seed: int, dumpfile: str) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    share_encoder()
    import onnxruntime  # its log of a failing constant fold precedes our error: keep the output readable

    onnxruntime.set_default_logger_severity(3)
    with open(dumpfile, "w") as dump, tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        faulthandler.register(signal.SIGUSR1, file=dump, all_threads=False)
        while (index := conn.recv()) is not None:
            conn.send(run_case(corpus, domain, seed, index, Path(tmp) / str(index)))


def share_encoder() -> None:
    """One ``backend.encode.Encoder`` for every compile of this process. Its tables depend only
    on ``ir/isa.py``; a fresh one per compile rebuilds them through amaranth (about 90 ms, more
    than importing and compiling a small model), which would make import cases 20x slower."""
    from shiftflow.backend import assemble

    encoder = assemble.Encoder()
    assemble.Encoder = lambda: encoder


@dataclass
class _Slot:
    process: multiprocessing.Process
    conn: object
    dumpfile: str
    case: tuple[int, float] | None = None  # (index, start time)


@dataclass
class Pool:
    """``workers`` processes running cases of one domain; ``run`` hands them out one at a time."""

    corpus: Corpus
    domain: str
    seed: int
    workers: int = 2
    deadline: float = 60.0
    _slots: list = field(default_factory=list)

    def _spawn(self, tmp: str, k: int) -> _Slot:
        ctx = multiprocessing.get_context("fork")  # the corpus is inherited, never pickled
        parent, child = ctx.Pipe()
        dumpfile = os.path.join(tmp, f"worker{k}-{time.monotonic_ns()}.txt")
        p = ctx.Process(target=_worker, args=(child, self.corpus, self.domain, self.seed, dumpfile), daemon=True)
        p.start()
        child.close()
        return _Slot(p, parent, dumpfile)

    def _hang(self, slot: _Slot) -> Outcome:
        index, t0 = slot.case
        os.kill(slot.process.pid, signal.SIGUSR1)
        time.sleep(0.5)
        slot.process.kill()
        slot.process.join()
        frames = [m.groups() for ln in Path(slot.dumpfile).read_text().splitlines()
                  if (m := re.match(r'\s*File "(.*)", line (\S+) in (.*)', ln))]
        outcome, _ = make_case(self.corpus, self.domain, self.seed, index)
        outcome.category, outcome.seconds = "hang", time.perf_counter() - t0
        outcome.where = f"{_short(frames[0][0])}:{frames[0][1]} ({frames[0][2]})" if frames else "unknown"
        outcome.message = f"over the {self.deadline:g} s deadline"
        return outcome

    def run(self, indices, on_outcome=None) -> list[Outcome]:
        """Outcomes of the cases ``indices`` (in index order); ``on_outcome`` sees each as it ends."""
        todo, done = deque(indices), {}
        with tempfile.TemporaryDirectory(prefix="fuzzpool-") as tmp:
            slots = [self._spawn(tmp, k) for k in range(min(self.workers, max(1, len(todo))))]
            while todo or any(s.case for s in slots):
                for s in slots:
                    if s.case is None and todo:
                        s.case = (todo.popleft(), time.perf_counter())
                        s.conn.send(s.case[0])
                busy = [s for s in slots if s.case]
                timeout = max(0.0, min(s.case[1] + self.deadline for s in busy) - time.perf_counter())
                ready = wait([s.conn for s in busy], timeout)
                for k, s in enumerate(slots):
                    if not s.case:
                        continue
                    outcome = None
                    if s.conn in ready:
                        try:
                            outcome = s.conn.recv()
                        except EOFError:  # the worker died (a signal, the OOM killer)
                            s.process.join()
                            outcome, _ = make_case(self.corpus, self.domain, self.seed, s.case[0])
                            outcome.category, outcome.where = "crash", "worker process"
                            outcome.message = f"WorkerDied: exit code {s.process.exitcode}"
                    elif time.perf_counter() - s.case[1] > self.deadline:
                        outcome = self._hang(s)
                    if outcome is None:
                        continue
                    done[outcome.index] = outcome
                    if on_outcome:
                        on_outcome(outcome)
                    if outcome.category in ("hang",) or outcome.where == "worker process":
                        slots[k] = self._spawn(tmp, k)
                    else:
                        s.case = None
            for s in slots:
                s.conn.send(None)
                s.process.join(5)
        return [done[i] for i in sorted(done)]


def replay(corpus: Corpus, domain: str, seed: int, index: int, out_dir: Path) -> Outcome:
    """Run one case in this process, its files kept in ``out_dir``; raises what it raises."""
    share_encoder()
    outcome, files = make_case(corpus, domain, seed, index)
    execute(domain, files, out_dir)
    return outcome
