"""Progress lines: named phases redrawn on a terminal's stderr, nothing anywhere else."""

import io
import time

from shiftflow.progress import Phases


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_named_phases_redrawn_within_two_seconds(capsys):
    tty = _Terminal()
    with Phases("rtlsim", stream=tty, interval=0.05) as phase:
        phase("Verilog")
        time.sleep(0.3)
        phase.echo("a result line")
        phase("Verilator build")
        time.sleep(0.1)
    out = tty.getvalue()
    assert out.count("rtlsim: Verilog 0 s …") >= 3  # redrawn by the ticker, not only on entry
    assert "rtlsim: Verilog 0.3 s\n" in out and "rtlsim: Verilator build 0.1 s\n" in out
    assert out.endswith("\r")  # the live line is removed at the end
    assert capsys.readouterr().out == "a result line\n"  # results on stdout, progress never


def test_nothing_is_drawn_off_a_terminal(capsys):
    pipe = io.StringIO()
    with Phases("demo", stream=pipe, interval=0.01) as phase:
        phase("quantize")
        time.sleep(0.05)
        phase.echo("kept")
    assert pipe.getvalue() == "" and phase._thread is None
    assert capsys.readouterr() == ("kept\n", "")


def test_default_follows_stderr(monkeypatch):
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert Phases("x").enabled
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not Phases("x").enabled
    assert not Phases("x", enabled=False).enabled
