"""The instruction set, defined once.

Every instruction is a 512-bit word: an 8-bit header (opcode + four dependency-token flags)
and a body whose layout depends on the opcode. The layouts are ``amaranth.lib.data``
layouts: the compiler encodes with ``INSTR.const(...).as_bits()``, the simulator decodes with
``INSTR.from_bits(...)``, and the RTL uses ``INSTR`` as the shape of a ``Signal``. There are
no hand-written shifts and masks anywhere else. Semantics: ``docs/isa.md``.

Units and tokens (decoupled access/execute): LOAD_* run on the load unit, CONV/VEC/FINISH on
the compute unit, STORE on the store unit, NMS on the NMS unit (a barrier: it takes no
tokens, starts when every other unit is idle, and nothing is dispatched while it runs). ``pop_prev``/``pop_next`` wait for a token from
the unit before/after in the chain load → compute → store; ``push_prev``/``push_next`` send
one when the instruction completes.
"""

from __future__ import annotations

import numpy as np
from amaranth import signed, unsigned
from amaranth.hdl import Shape
from amaranth.lib import data, enum

INSTR_BITS = 512
INSTR_BYTES = INSTR_BITS // 8


class Opcode(enum.Enum, shape=unsigned(4)):
    NOP = 0
    LOAD_ACT = 1  # DRAM box -> line buffer ring
    LOAD_WGT = 2  # DRAM bytes -> weight bank or parameter bank
    CONV = 3  # PE array: one output-channel block of a tile, post-processing, fused pool
    VEC = 4  # vector unit: add / pool / resize / requant over line-buffer tiles
    STORE = 5  # output buffer box -> DRAM
    FINISH = 6  # end of an accelerator segment: waits for all units, raises done
    NMS = 8  # NMS unit: PSRR-MaxpoolNMS of one image's score maps (docs/nms_core.md)
    SPCONV = 9  # PE array: a pixel-parallel CONV over a list of kept steps (docs/sparsity.md)


class Unit(enum.Enum, shape=unsigned(2)):
    LOAD = 0
    COMPUTE = 1
    STORE = 2
    NMS = 3  # no token neighbour: issued as a barrier (docs/nms_core.md)


UNIT_OF = {Opcode.NOP: Unit.COMPUTE, Opcode.LOAD_ACT: Unit.LOAD, Opcode.LOAD_WGT: Unit.LOAD,
           Opcode.CONV: Unit.COMPUTE, Opcode.VEC: Unit.COMPUTE, Opcode.STORE: Unit.STORE,
           Opcode.FINISH: Unit.COMPUTE, Opcode.NMS: Unit.NMS, Opcode.SPCONV: Unit.COMPUTE}


class Dataflow(enum.Enum, shape=unsigned(1)):
    CHANNEL = 0  # Tn input channels x Tm output channels of one output pixel per cycle
    PIXEL = 1  # Tn output pixels x Tm output channels, one input channel per cycle


class Act(enum.Enum, shape=unsigned(2)):
    NONE = 0
    RELU = 1
    LEAKY = 2  # negative values scaled by 2**leaky_exp (an extra shift)


class WgtTarget(enum.Enum, shape=unsigned(1)):
    WEIGHTS = 0
    PARAMS = 1


# A pow2 weight byte (CONV with ``pow2 = 1``) is a code, docs/isa.md "LOAD_WGT": bit 6 clear is
# zero (the other bits are ignored); bit 6 set is ``±2**e`` with bit 7 the sign and bits 2..0
# the exponent ``e``. Bits 5..3 of a nonzero code are reserved and must be 0: the simulator
# rejects a CONV that reads such a code, the hardware does not check (result undefined).
POW2_SIGN = 0x80
POW2_NONZERO = 0x40
POW2_RESERVED = 0x38
POW2_EXP = 0x07
POW2_MAX_EXP = POW2_EXP  # 2**7: the PE multiplies 9-bit operands
assert POW2_EXP + 1 == 1 << POW2_EXP.bit_length()  # the exponent is the code's low bits

# One parameter entry (per output channel) in DRAM and in a LOAD_WGT with ``target = params``:
# bias int32 little endian, shift int8, then zero bytes up to 8. The compiler packs it, the
# simulator reads it, the hardware keeps its ``bias`` and ``shift`` (``PARAM_KEPT``) on chip.
PARAM_ENTRY = data.StructLayout({
    "bias": signed(32),  # added to the accumulator (at its scale)
    "shift": signed(8),  # requantization right shift (round half to even); negative: left shift
    "zero": unsigned(24),  # must be zero
})
PARAM_BYTES = PARAM_ENTRY.size // 8
PARAM_KEPT = PARAM_ENTRY["zero"].offset // 8  # leading bytes that carry information


def _param_dtype() -> np.dtype:
    """``PARAM_ENTRY`` as a numpy structured dtype (little endian), for packing and reading
    whole arrays of entries."""
    names = [name for name, _ in PARAM_ENTRY if name != "zero"]
    fmt = {name: ("<i" if Shape.cast(PARAM_ENTRY[name].shape).signed else "<u") + str(PARAM_ENTRY[name].width // 8)
           for name in names}
    return np.dtype({"names": names, "formats": [fmt[n] for n in names],
                     "offsets": [PARAM_ENTRY[n].offset // 8 for n in names], "itemsize": PARAM_BYTES})


PARAM_DTYPE = _param_dtype()


class VecOp(enum.Enum, shape=unsigned(3)):
    ADD = 0
    MAXPOOL = 1
    AVGPOOL = 2
    RESIZE = 3
    REQUANT = 4


Header = data.StructLayout({
    "opcode": Opcode,
    "pop_prev": unsigned(1),
    "pop_next": unsigned(1),
    "push_prev": unsigned(1),
    "push_next": unsigned(1),
})

# A box of activation words in DRAM: nblk channel blocks x nrows rows x ncols pixels; each word
# is one pixel's block of tn channel bytes. Address of (b, r, x): dram_addr + b*blk_stride +
# r*row_stride + x*tn.
DramBox = data.StructLayout({
    "dram_addr": unsigned(32),
    "row_stride": unsigned(24),
    "blk_stride": unsigned(32),
    "nblk": unsigned(12),
    "nrows": unsigned(12),
    "ncols": unsigned(16),
})

# A region of the line buffer used as a ring of slots (one image row per slot). Word address
# of (block b, image row in slot s, column x): base + s*slot_words + b*cols + x.
Ring = data.StructLayout({
    "base": unsigned(20),
    "slots": unsigned(12),
    "slot_words": unsigned(20),
    "cols": unsigned(16),
})

LoadAct = data.StructLayout({
    "src": DramBox,
    "ring": Ring,
    "slot0": unsigned(12),  # slot of the first loaded row
})

LoadWgt = data.StructLayout({
    "dram_addr": unsigned(32),
    "nbytes": unsigned(24),
    "target": WgtTarget,
    "bank": unsigned(1),
    "sram_addr": unsigned(24),  # byte address inside the bank
})

Store = data.StructLayout({
    "dst": DramBox,
    "obuf_addr": unsigned(20),  # word (tn bytes) address; (b, r, x) at obuf_addr + (r*ncols + x)*nblk + b
    "half": unsigned(1),
})

# Where a tile's input rows are: image geometry for zero padding, the ring they sit in.
InGeom = data.StructLayout({
    "ring": Ring,
    "x0": signed(16),  # image column held in ring column 0
    "width": unsigned(16),  # image width and height: taps outside read zero (-inf for max)
    "height": unsigned(16),
    "y_first": signed(16),  # image row of (first output row, kernel row 0)
    "slot_first": unsigned(12),  # its slot
    "x_first": signed(16),  # image column of (first output column, kernel column 0)
    "chans": unsigned(12),  # channels (conv: input channels; vec: channels of the tensor)
    "signed_": unsigned(1),  # input bytes are two's complement (else unsigned)
})

Post = data.StructLayout({
    "act": Act,
    "leaky_exp": signed(6),
    "lo": signed(16),  # final clamp: saturation range intersected with any clip
    "hi": signed(16),
    "pool": unsigned(3),  # fused max-pool window = stride (0: none)
})

Window = data.StructLayout({
    "kh": unsigned(4),
    "kw": unsigned(4),
    "sh": unsigned(2),
    "sw": unsigned(2),
    "dh": unsigned(3),
    "dw": unsigned(3),
})

Tile = data.StructLayout({
    "rows": unsigned(12),  # output rows (before fused pooling)
    "cols": unsigned(16),  # output columns (before fused pooling)
    "obuf_addr": unsigned(20),
    "obuf_cols": unsigned(16),  # columns per row in the output buffer (after pooling)
    "obuf_blk": unsigned(4),  # output blocks per pixel in the output buffer (tm/tn for conv)
    "half": unsigned(1),
})

Conv = data.StructLayout({
    "dataflow": Dataflow,
    "depthwise": unsigned(1),
    "pow2": unsigned(1),  # weight bytes are pow2 codes (POW2_* above), else int8
    "win": Window,
    "inp": InGeom,
    "tile": Tile,
    "post": Post,
    "wbank": unsigned(1),
    "w_addr": unsigned(20),  # word address of the block's first weight word in the bank
    "p_addr": unsigned(12),  # first parameter entry (bias, shift) of the block
    "cout": unsigned(12),  # output channels of this block that are real (<= tm)
    # Reduction split over several CONVs (docs/isa.md "Partial sums"): ``psum_in`` adds the
    # partial-sum buffer's entry instead of the bias; ``psum_out`` writes the sum back to the
    # partial-sum buffer instead of post-processing it into the output buffer.
    "psum_in": unsigned(1),
    "psum_out": unsigned(1),
    # Wide outputs (docs/isa.md "Wide outputs"): 0 stores the post-processed byte; 1 or 2
    # store each result's ``2**wide`` bytes — the sum after the activation, with no shift or
    # clamp — as byte planes: plane k (byte k, little endian) is a whole tile at
    # ``tile.obuf_addr + k*plane_words``.
    "wide": unsigned(2),
    "plane_words": unsigned(20),
})

Vec = data.StructLayout({
    "op": VecOp,
    "win": Window,
    "inp": InGeom,
    "inp_b": InGeom,  # second operand (ADD)
    "tile": Tile,
    "post": Post,
    "shift_a": unsigned(5),  # ADD: left shifts aligning both operands to a common frac
    "shift_b": unsigned(5),
    "rshift": signed(8),  # right shift of the result (half-to-even); negative: left shift
})

# SPCONV: a pixel-parallel CONV (dense or depthwise) whose accumulation steps are a list: the
# CONV fields at the same bit offsets, then ``kept``, the number of kept steps. The bank holds
# the kept steps' weights from ``w_addr`` on (packed as a dense CONV's steps), then the index
# list: one little-endian 16-bit dense step number a kept step, strictly increasing (formats
# and checks in ir/sparse.py, docs/sparsity.md).
SpConv = data.StructLayout({**{name: fld.shape for name, fld in Conv}, "kept": unsigned(16)})

# PSRR-MaxpoolNMS of one image's score maps (docs/nms_core.md; records and rules in
# ir/nms.py). The parameter table (levels, kernels, pair table), the patch list (the CPU's
# Relationship Recovery) and the survivor list (a 16-byte header, then 16-byte entries) are
# in DRAM.
Nms = data.StructLayout({
    "table_addr": unsigned(32),
    "levels": unsigned(4),
    "channels": unsigned(8),  # anchor channels over all levels
    "classes": unsigned(12),
    "planes": unsigned(2),  # a code is 2**planes bytes (byte planes of a wide output)
    "thr": signed(33),  # a cell takes part when its key (code << level shift) > thr
    "patch_addr": unsigned(32),
    "patches": unsigned(16),
    "out_addr": unsigned(32),
    "capacity": unsigned(16),  # most survivor entries written (the header counts them all)
})

Body = data.UnionLayout({
    "load_act": LoadAct,
    "load_wgt": LoadWgt,
    "store": Store,
    "conv": Conv,
    "vec": Vec,
    "nms": Nms,
    "spconv": SpConv,
})

INSTR = data.StructLayout({
    "header": Header,
    "body": Body,
    "pad": unsigned(INSTR_BITS - Header.size - Body.size),
})

assert INSTR.size == INSTR_BITS, INSTR.size

BODY_OF = {Opcode.LOAD_ACT: "load_act", Opcode.LOAD_WGT: "load_wgt", Opcode.STORE: "store",
           Opcode.CONV: "conv", Opcode.VEC: "vec", Opcode.NMS: "nms",
           Opcode.SPCONV: "spconv"}


def encode(opcode: Opcode, body: dict | None = None, *, pop_prev=0, pop_next=0, push_prev=0, push_next=0) -> bytes:
    """One instruction as 64 little-endian bytes."""
    fields = {"header": {"opcode": opcode, "pop_prev": pop_prev, "pop_next": pop_next,
                         "push_prev": push_prev, "push_next": push_next}}
    if body is not None:
        fields["body"] = {BODY_OF[opcode]: body}
    return INSTR.const(fields).as_bits().to_bytes(INSTR_BYTES, "little")


def decode(word: bytes):
    """The ``data.Const`` view of one 64-byte instruction (fields by attribute)."""
    return INSTR.from_bits(int.from_bytes(word, "little"))


def _fields(view, layout) -> dict:
    out = {}
    for name, fld in layout:
        v = getattr(view, name)
        if isinstance(fld.shape, data.Layout):
            out[name] = _fields(v, fld.shape)
        else:
            out[name] = v.name.lower() if isinstance(v, enum.Enum) else int(v)
    return out


def opcode_of(word: bytes) -> Opcode | None:
    """The opcode of an instruction word, or None when its opcode field is not a valid one."""
    raw = int.from_bytes(word, "little") & ((1 << Opcode.as_shape().width) - 1)
    try:
        return Opcode(raw)
    except ValueError:
        return None


def to_dict(word: bytes) -> dict:
    """A plain dict of an instruction's header and its opcode's body (for disassembly, tests).
    Raises ``ValueError`` for an invalid opcode."""
    op = opcode_of(word)
    if op is None:
        raise ValueError(f"invalid opcode {int.from_bytes(word, 'little') & 15}")
    view = decode(word)
    out = {"opcode": op.name}
    for k in ("pop_prev", "pop_next", "push_prev", "push_next"):
        out[k] = int(getattr(view.header, k))
    if op in BODY_OF:
        out[BODY_OF[op]] = _fields(getattr(view.body, BODY_OF[op]), Body.members[BODY_OF[op]])
    return out


def field_shape(layout: data.Layout, path: str):
    """The shape of field ``path`` (dotted, ``"inp.ring.slots"``) of ``layout``: what the RTL
    sizes a register that holds the field's value with (never a retyped width)."""
    for name in path.split("."):
        layout = layout[name].shape
    return layout


def field_max(layout: data.Layout, path: str) -> int:
    """The largest value field ``path`` of ``layout`` can hold."""
    shape = Shape.cast(field_shape(layout, path))
    return (1 << (shape.width - shape.signed)) - 1


def layout_table(layout, prefix: str = "") -> list[tuple[str, int, int, object]]:
    """``(path, bit offset, width, shape)`` of every leaf field of a layout, in layout order:
    ``path`` dotted (``"inp.ring.base"``), the offset from the layout's bit 0, ``shape`` the
    field's amaranth shape or enum. The one walk over the layouts that the decoder, the
    encoder and the generated field tables (``ir/isa_doc.py``) build on."""
    rows = []
    for name, fld in layout:
        path = f"{prefix}{name}"
        if isinstance(fld.shape, data.Layout):
            rows += [(p, fld.offset + off, w, s) for p, off, w, s in layout_table(fld.shape, path + ".")]
        else:
            rows.append((path, fld.offset, fld.width, fld.shape))
    return rows
