"""The program loader refuses a malformed SPCONV index list (ir/sparse.py): an entry naming a
channel, row or column outside the conv, or an unsorted list — one line, and the CLI exits 2;
the disassembler shows SPCONV with its ``kept``; the packed entries name the dense steps."""

import dataclasses

import numpy as np
import onnx
import pytest
from shiftflow.backend.compile import compile_model
from shiftflow.cli import main
from shiftflow.errors import ProgramError
from shiftflow.frontend.prune import prune_model
from shiftflow.ir import sparse
from shiftflow.ir.decode import decode_program
from shiftflow.ir.isa import INSTR, INSTR_BYTES, Opcode, SpConv, WgtTarget
from shiftflow.ir.program import Program, load_program, save_program

from tests.cli_errors import one_line_exit_2
from tests.frontend.test_prune import qdq_chain


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spconv")
    model, _ = prune_model(qdq_chain(tmp / "m.onnx"), 0.25, "tiny")
    onnx.save(model, tmp / "p.onnx")
    program = compile_model(tmp / "p.onnx", "tiny", sparse=True)
    save_program(program, tmp / "build")
    return program, tmp / "build"


def _first_spconv(program: Program):
    """The first SPCONV and the byte of ``weights.bin`` where its index list starts."""
    cfg = program.config
    instrs = decode_program(program.instructions)
    k = next(i for i, ins in enumerate(instrs) if ins.opcode == Opcode.SPCONV)
    f = instrs[k].f
    load = next(ins for ins in reversed(instrs[:k]) if ins.opcode == Opcode.LOAD_WGT
                and ins.f["target"] == WgtTarget.WEIGHTS.value and ins.f["bank"] == f["wbank"])
    start = (f["w_addr"] + sparse.weight_words(cfg, f["kept"])) * cfg.tm * cfg.tn - load.f["sram_addr"]
    return instrs[k], load.f["dram_addr"] - program.manifest["dram"]["const_base"] + start


def _with_index(program: Program, at: int, entries) -> Program:
    weights = bytearray(program.weights)
    raw = sparse.index_bytes(entries)
    weights[at:at + len(raw)] = raw
    return dataclasses.replace(program, weights=bytes(weights))


def test_packed_entries_round_trip():
    for kh, kw, chans in ((1, 1, 300), (3, 3, 7), (5, 2, 3), (15, 15, 2), (1, 7, 5)):
        steps = np.arange(chans * kh * kw)
        entries = sparse.pack_index(steps, kh, kw)
        assert (np.diff(entries) > 0).all() and entries.max() < sparse.index_span(0, chans, kh, kw)
        assert sparse.index_problem(entries, 0, chans, kh, kw) is None
        assert (sparse.index_steps(entries, kh, kw) == steps).all()
        c, y, x = sparse.unpack_index(entries, kh, kw)
        assert (c == steps // (kh * kw)).all() and (y == steps % (kh * kw) // kw).all() and (x == steps % kw).all()


def test_the_loader_accepts_the_compiled_list_and_disasm_shows_it(build, capsys):
    program, path = build
    ins, at = _first_spconv(load_program(path))
    index = np.frombuffer(program.weights[at:at + 2 * ins.f["kept"]], "<u2")
    assert (np.diff(index.astype(int)) > 0).all() and ins.f["kept"] < ins.f["inp.chans"] * 9
    assert main(["disasm", str(path)]) == 0
    out = capsys.readouterr().out
    assert "SPCONV" in out and f"kept={ins.f['kept']}" in out


@pytest.mark.parametrize("how, phrase", [("channel", "outside the"), ("column", "outside the"),
                                         ("order", "must strictly increase")])
def test_a_malformed_list_is_refused(build, tmp_path, capsys, how, phrase):
    program, _ = build
    ins, at = _first_spconv(program)
    kept = ins.f["kept"]
    assert kept >= 2
    kh, kw = ins.f["win.kh"], ins.f["win.kw"]
    assert kw == 3  # so column 3 fits the entry's two column bits but is outside the conv
    entries = sparse.pack_index(np.arange(kept), kh, kw)
    if how == "channel":
        entries[-1] = ins.f["inp.chans"] << 4
    elif how == "column":  # channel 0 row 0 column 3 (ranges are checked before the order)
        entries[0] = 3
    else:
        entries[0], entries[1] = entries[1], entries[0]
    save_program(_with_index(program, at, entries), tmp_path / "bad")
    with pytest.raises(ProgramError, match=rf"instruction {ins.index} \(SPCONV\): index entry") as info:
        load_program(tmp_path / "bad")
    assert phrase in str(info.value) and "\n" not in str(info.value)
    one_line_exit_2(["disasm", str(tmp_path / "bad")], capsys, phrase)


def test_too_long_a_list_is_refused(build, tmp_path, capsys):
    program, _ = build
    ins, _ = _first_spconv(program)
    kept = ins.f["inp.chans"] * ins.f["win.kh"] * ins.f["win.kw"] + 1
    at = dict(INSTR)["body"].offset + SpConv["kept"].offset
    word = int.from_bytes(program.instruction(ins.index), "little")
    word = word & ~(0xFFFF << at) | kept << at
    word = word.to_bytes(INSTR_BYTES, "little")
    code = bytearray(program.instructions)
    code[ins.index * INSTR_BYTES:(ins.index + 1) * INSTR_BYTES] = word
    save_program(dataclasses.replace(program, instructions=bytes(code)), tmp_path / "long")
    with pytest.raises(ProgramError, match=rf"instruction {ins.index} \(SPCONV\): kept is") as info:
        load_program(tmp_path / "long")
    assert "dense steps" in str(info.value)
    one_line_exit_2(["simulate", str(tmp_path / "long")], capsys, "kept is")
