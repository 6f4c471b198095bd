"""Progress of long work on a terminal: the phase it is in, redrawn every second.

    with Phases("rtlsim") as phase:        # draws nothing unless stderr is a terminal
        phase("Verilog")
        ...
        phase("Verilator build")

On a terminal (stderr a TTY) one line on stderr (tqdm) names the task, the phase and the
seconds spent in it, redrawn every ``interval`` seconds by a background thread, and each
finished phase leaves a line ``rtlsim: Verilog 5.2 s``. Anywhere else — a pipe, CI, a test's
captured stderr — it writes nothing, and it never writes to stdout, so ``--json`` output
stays clean. A ``Phases`` is a plain ``Callable[[str], object]``: code that reports its
phases (``hw/``, the benches) takes such a callback and imports nothing from here.
"""

from __future__ import annotations

import sys
import threading
import time


class Phases:
    """Named phases of one task; ``enabled`` defaults to ``stream.isatty()``."""

    def __init__(self, task: str, stream=None, enabled: bool | None = None, interval: float = 1.0):
        self.task = task
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.interval = interval
        self._phase: str | None = None
        self._t0 = 0.0
        self._bar = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Phases":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, phase: str) -> None:
        """End the current phase (if any) and enter ``phase``."""
        if not self.enabled:
            return
        with self._lock:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(file=self.stream, bar_format="{desc}", leave=False, dynamic_ncols=True)
                self._thread = threading.Thread(target=self._tick, daemon=True, name=f"progress-{self.task}")
                self._thread.start()
            else:
                self._finish_phase()
            self._phase, self._t0 = phase, time.perf_counter()
            self._draw()

    def echo(self, text: str = "") -> None:
        """Print ``text`` on stdout without tearing the progress line."""
        if self._bar is None:
            print(text)
            return
        with self._lock:
            self._bar.clear()
            print(text, flush=True)
            self._bar.refresh()

    def close(self) -> None:
        """End the last phase and remove the progress line."""
        if self._bar is None:
            return
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._finish_phase()
            self._bar.close()
            self._bar = None

    def _finish_phase(self) -> None:
        self._bar.write(f"{self.task}: {self._phase} {time.perf_counter() - self._t0:.1f} s", file=self.stream)

    def _draw(self) -> None:
        self._bar.set_description_str(f"{self.task}: {self._phase} {time.perf_counter() - self._t0:.0f} s …")

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self._bar is not None:
                    self._draw()
