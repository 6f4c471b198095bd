"""The field-rule table (``ir/rules.py``): each rule rejects an instruction with one bad field,
naming the instruction and the field; valid instructions pass; every rule has a case here."""

import dataclasses

import pytest

from shiftflow.ir.config import TINY, AcceleratorConfig
from shiftflow.ir.decode import _BODIES, _extract, _words, decode_program, scan
from shiftflow.ir.isa import Act, Dataflow, Opcode, VecOp, WgtTarget, encode
from shiftflow.ir.program import ProgramError
from shiftflow.ir.rules import RULES, Rule

WIN = {"kh": 1, "kw": 1, "sh": 1, "sw": 1, "dh": 1, "dw": 1}
RING = {"base": 0, "slots": 2, "slot_words": 4, "cols": 4}
BOX = {"dram_addr": 64, "row_stride": 16, "blk_stride": 64, "nblk": 1, "nrows": 2, "ncols": 4}
TILE = {"rows": 1, "cols": 4, "obuf_blk": 1, "obuf_cols": 4}
GEOM = {"ring": RING, "width": 4, "height": 2, "chans": 4}

#: A valid instruction of each opcode on TINY (tm = tn = 4, beat 8, 4096 line-buffer words,
#: 512 weight words and output-buffer words a half, 256 parameter entries).
VALID = {
    Opcode.LOAD_ACT: {"src": BOX, "ring": RING, "slot0": 0},
    Opcode.LOAD_WGT: {"dram_addr": 64, "nbytes": 64, "target": WgtTarget.WEIGHTS, "sram_addr": 0},
    Opcode.STORE: {"dst": dict(BOX, nrows=1), "obuf_addr": 0},
    Opcode.CONV: {"dataflow": Dataflow.PIXEL, "win": WIN, "inp": dict(GEOM, chans=1), "tile": TILE, "cout": 4},
    Opcode.VEC: {"op": VecOp.ADD, "win": WIN, "inp": GEOM, "inp_b": dict(GEOM, ring=dict(RING, base=8)), "tile": TILE},
}

NO_INT = dataclasses.replace(TINY, name="pow2-only", weight_encodings=("pow2",))
NO_POW2 = dataclasses.replace(TINY, name="int-only", weight_encodings=("int",))

#: (opcode, field, changes, target): one instruction breaking one rule (``changes`` by dotted
#: field path, applied to ``VALID``).
CASES = [
    (Opcode.LOAD_ACT, "src.dram_addr", {"src.dram_addr": 66}, TINY),
    (Opcode.LOAD_ACT, "src.row_stride", {"src.row_stride": 18}, TINY),
    (Opcode.LOAD_ACT, "src.blk_stride", {"src.blk_stride": 66}, TINY),
    (Opcode.LOAD_ACT, "ring.slots", {"ring.slots": 0}, TINY),
    (Opcode.LOAD_ACT, "ring.slot_words", {"src.nblk": 2}, TINY),
    (Opcode.LOAD_ACT, "ring.base", {"ring.base": 4094}, TINY),
    (Opcode.LOAD_ACT, "src.ncols", {"src.ncols": 5}, TINY),
    (Opcode.LOAD_ACT, "slot0", {"slot0": 3}, TINY),
    (Opcode.LOAD_WGT, "nbytes", {"sram_addr": 8192 - 8, "nbytes": 16}, TINY),
    (Opcode.LOAD_WGT, "sram_addr", {"dram_addr": 68}, TINY),
    (Opcode.STORE, "dst.dram_addr", {"dst.dram_addr": 66}, TINY),
    (Opcode.STORE, "dst.row_stride", {"dst.row_stride": 18}, TINY),
    (Opcode.STORE, "dst.blk_stride", {"dst.blk_stride": 66}, TINY),
    (Opcode.STORE, "obuf_addr", {"obuf_addr": 510}, TINY),
    *[(Opcode.CONV, f"win.{n}", {f"win.{n}": 0}, TINY) for n in WIN],
    (Opcode.CONV, "depthwise", {"dataflow": Dataflow.CHANNEL, "depthwise": 1}, TINY),
    (Opcode.CONV, "win.sw", {"win.sw": 3}, TINY),
    (Opcode.CONV, "pow2", {"dataflow": Dataflow.CHANNEL, "pow2": 1}, TINY),
    (Opcode.CONV, "pow2", {"pow2": 1}, NO_POW2),
    (Opcode.CONV, "tile.rows", {"tile.cols": 0}, TINY),
    (Opcode.CONV, "post.pool", {"post.pool": 2}, TINY),
    (Opcode.CONV, "tile.obuf_blk", {"tile.obuf_blk": 2}, TINY),
    (Opcode.CONV, "tile.obuf_cols", {"tile.obuf_cols": 3}, TINY),
    (Opcode.CONV, "tile.obuf_addr", {"tile.obuf_addr": 510}, TINY),
    (Opcode.CONV, "w_addr", {"w_addr": 512}, TINY),
    (Opcode.CONV, "p_addr", {"p_addr": 256}, TINY),
    (Opcode.CONV, "p_addr", {"p_addr": 2}, TINY),
    (Opcode.CONV, "inp.ring.slots", {"inp.ring.cols": 0}, TINY),
    (Opcode.CONV, "inp.ring.slot_words", {"inp.chans": 5}, TINY),
    (Opcode.CONV, "inp.ring.base", {"inp.ring.base": 4094}, TINY),
    (Opcode.CONV, "psum_in", {"psum_out": 1}, dataclasses.replace(TINY, name="psum1", psum_entries=1)),
    (Opcode.CONV, "wide", {"wide": 3}, TINY),
    (Opcode.CONV, "wide", {"wide": 1, "post.pool": 2, "tile.rows": 2, "tile.cols": 2}, TINY),
    (Opcode.CONV, "wide", {"wide": 1, "post.act": Act.LEAKY}, TINY),
    (Opcode.CONV, "wide", {"wide": 2, "psum_out": 1, "plane_words": 64}, TINY),
    (Opcode.CONV, "plane_words", {"wide": 1, "plane_words": 3}, TINY),
    (Opcode.CONV, "plane_words", {"wide": 2, "plane_words": 200}, TINY),
    *[(Opcode.VEC, f"win.{n}", {"op": VecOp.MAXPOOL, f"win.{n}": 0}, TINY) for n in WIN],
    (Opcode.VEC, "tile.rows", {"tile.rows": 0}, TINY),
    (Opcode.VEC, "post.pool", {"post.pool": 2}, TINY),
    (Opcode.VEC, "tile.obuf_blk", {"tile.obuf_blk": 2}, TINY),
    (Opcode.VEC, "tile.obuf_cols", {"tile.obuf_cols": 3}, TINY),
    (Opcode.VEC, "tile.obuf_addr", {"tile.obuf_addr": 510}, TINY),
    (Opcode.VEC, "inp.ring.slots", {"inp.ring.slots": 0}, TINY),
    (Opcode.VEC, "inp.ring.slot_words", {"inp.chans": 8, "tile.obuf_blk": 2}, TINY),
    (Opcode.VEC, "inp.ring.base", {"inp.ring.base": 4094}, TINY),
    (Opcode.VEC, "inp_b.ring.slots", {"inp_b.ring.slots": 0}, TINY),
    (Opcode.VEC, "inp_b.ring.slot_words", {"inp_b.ring.slot_words": 3}, TINY),
    (Opcode.VEC, "inp_b.ring.base", {"inp_b.ring.base": 4094}, TINY),
]
# SPCONV (ir/sparse.py): its own rules, then CONV's, less those it states its own way.
VALID[Opcode.SPCONV] = dict(VALID[Opcode.CONV], kept=1)
CASES += [(Opcode.SPCONV, "dataflow", {"dataflow": Dataflow.CHANNEL}, TINY),
          (Opcode.SPCONV, "kept", {"kept": 2}, TINY),
          (Opcode.SPCONV, "inp.chans", {"inp.chans": 260, "win.kh": 15, "win.kw": 15, "inp.ring.slot_words": 260},
           TINY),  # 260 << (4 + 4) packed values > 65536
          (Opcode.SPCONV, "w_addr", {"w_addr": 511}, TINY),  # 1 weight word + 1 index word
          *[(Opcode.SPCONV, field, changes, cfg) for op, field, changes, cfg in CASES
            if op == Opcode.CONV and field not in ("depthwise", "w_addr") and "dataflow" not in changes]]
# NMS (ir/nms.py field_rules): addresses, code bytes, levels, classes, the core's buffers.
VALID[Opcode.NMS] = {"table_addr": 64, "levels": 1, "channels": 1, "classes": 1, "patch_addr": 128, "patches": 10,
                     "out_addr": 256, "capacity": 10}
CASES += [(Opcode.NMS, "table_addr", {"table_addr": 72}, TINY), (Opcode.NMS, "patch_addr", {"patch_addr": 136}, TINY),
          (Opcode.NMS, "out_addr", {"out_addr": 264}, TINY), (Opcode.NMS, "planes", {"planes": 3}, TINY),
          (Opcode.NMS, "levels", {"levels": 2}, TINY), (Opcode.NMS, "classes", {"classes": 0}, TINY),
          (Opcode.NMS, "patches", {"patches": 5000}, TINY), (Opcode.NMS, "capacity", {"capacity": 5000}, TINY),
          (Opcode.NMS, "channels", {}, dataclasses.replace(TINY, name="tiny-no-nms", nms_lanes=0))]


def _with(body: dict, changes: dict) -> dict:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in body.items()}
    for path, value in changes.items():
        *outer, name = path.split(".")
        d = out
        for k in outer:
            d[k] = dict(d.get(k, {}))
            d = d[k]
        d[name] = value
    return out


def _word(op: Opcode, changes: dict) -> bytes:
    return encode(op, _with(VALID[op], changes))


def _first_broken(op: Opcode, word: bytes, cfg: AcceleratorConfig) -> Rule | None:
    """The rule the table reports for ``word``: the first one (in table order) it breaks."""
    words = _words(word, 0, 1)
    columns = {fld.name: _extract(words, fld) for fld in _BODIES[op]}
    return next((r for r in RULES if r.opcode == op and not r.ok(columns, cfg)[0]), None)


@pytest.mark.parametrize("op", list(VALID), ids=lambda op: op.name)
def test_valid_instructions_pass(op):
    assert scan(_word(op, {}), config=TINY) == {}


@pytest.mark.parametrize("op, field, changes, cfg", CASES, ids=[f"{c[0].name}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_one_bad_field_is_named(op, field, changes, cfg):
    program = encode(Opcode.NOP) + _word(op, changes) + encode(Opcode.FINISH)
    with pytest.raises(ProgramError, match=rf"^instruction 1 \({op.name}\): ") as info:
        decode_program(program, config=cfg)
    assert field in str(info.value) and "\n" not in str(info.value)
    assert decode_program(program) and not scan(program)  # no target, no field rules


def test_every_rule_has_a_case():
    fired = [_first_broken(op, _word(op, changes), cfg) for op, _, changes, cfg in CASES]
    assert [(r.opcode, r.field) for r in fired] == [(op, field) for op, field, _, _ in CASES]
    assert len({id(r) for r in fired}) == len(RULES) == len(CASES)


def test_empty_transfers_skip_the_alignment_rules():
    for op, changes in ((Opcode.LOAD_ACT, {"src.dram_addr": 66, "src.nrows": 0}),
                        (Opcode.STORE, {"dst.dram_addr": 66, "dst.ncols": 0}),
                        (Opcode.LOAD_WGT, {"dram_addr": 68, "nbytes": 0})):
        assert scan(_word(op, changes), config=TINY) == {}


def test_off_beat_but_congruent_weight_load_passes():
    """The DMA masks a beat's leading bytes: only ``sram_addr`` and ``dram_addr`` modulo the
    beat must agree."""
    assert scan(_word(Opcode.LOAD_WGT, {"dram_addr": 68, "sram_addr": 4}), config=TINY) == {}
    assert scan(_word(Opcode.CONV, {"pow2": 1}), config=NO_INT) == {}
