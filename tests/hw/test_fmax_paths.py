"""hw/fmax_paths.py: the slow endpoints of a nextpnr JSON timing report, grouped by register."""

from shiftflow.hw.fmax_paths import format_endpoints, register_name, slow_endpoints, unit_of


def _net(driver, *sinks):
    return {"driver": driver, "port": "F", "net": driver + "_n",
            "endpoints": [{"cell": c, "port": p, "delay": [t - 1, t]} for c, p, t in sinks]}


REPORT = {"detailed_net_timings": [
    _net("a_LUT4_Z", ("dut.controller.q.level_TRELLIS_FF_Q", "DI", 14.0),
         ("dut.controller.q.level_TRELLIS_FF_Q_1", "DI", 15.5)),
    _net("b_LUT4_Z", ("dut.controller.q.level_TRELLIS_FF_Q_1", "CE", 16.0),
         ("dut.load.dma.done_TRELLIS_FF_Q", "LSR", 12.0)),
    _net("c_LUT4_Z", ("dut.controller.fetch.buf.storage.0.7$DPRAM_COMB1", "WRE", 13.5),
         ("dut.compute.retire.scratch1.0.0_DOA3_TRELLIS_FF_Q", "DI", 13.4)),
    # the reset pin's fan-out: timed from no clock edge, so not a register-to-register path
    {**_net("rst$tr_io", ("dut.nms.back.spatial.last_TRELLIS_FF_Q_8", "LSR", 17.7)), "event": "<async>"},
]}


def test_register_names_and_units():
    assert register_name("dut.controller.store_queue.level_TRELLIS_FF_Q_12") == "dut.controller.store_queue.level"
    assert register_name("dut.controller.fetch.buf.storage.0.78$DPRAM_COMB1") == "dut.controller.fetch.buf.storage"
    assert register_name("dut.compute.retire.scratch1.0.1_DOA14_TRELLIS_FF_Q") == "dut.compute.retire.scratch1.0.1"
    assert unit_of("dut.controller.store_queue.level") == "dut.controller.store_queue"
    assert unit_of("dut.controller.done") == "dut.controller"


def test_slow_endpoints_group_by_register_worst_input_first():
    rows = slow_endpoints(REPORT, over_ns=13.3)
    assert [(e.register, e.port, e.ns, e.cells_over) for e in rows] == [
        ("dut.controller.q.level", "CE", 16.0, 2),
        ("dut.controller.fetch.buf.storage", "WRE", 13.5, 1),
        ("dut.compute.retire.scratch1.0.0", "DI", 13.4, 1)]
    assert slow_endpoints(REPORT, over_ns=20.0) == []
    text = format_endpoints(rows, 13.3, top=1)
    assert "3 registers (4 cells)" in text and "16.00 ns  dut.controller.q.level (CE, 2 cells)" in text
    assert "dut.load.dma" not in text and "spatial" not in text
