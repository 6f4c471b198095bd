"""The target: one frozen, JSON-serialisable description of the accelerator.

Every stage (compiler, simulator, RTL) takes an ``AcceleratorConfig`` explicitly. A few base
knobs are fields; everything derived is a property. ``TARGETS`` holds the named targets;
``load_target`` accepts a name or a path to a JSON file with the same fields.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field

from ..errors import UsageError
from .isa import INSTR_BYTES, PARAM_ENTRY, Conv, LoadWgt, Ring, Store, field_shape


@dataclass(frozen=True)
class AcceleratorConfig:
    name: str
    #: output channels computed in parallel (rows of the PE array)
    tm: int
    #: input channels (channel-parallel) or output pixels (pixel-parallel) in parallel;
    #: also the channel-block width of activations in DRAM and in the line buffer
    tn: int
    #: clock frequency the figures are quoted at (MHz)
    clock_mhz: float
    #: line buffer (input activations, ring of rows), bytes
    line_buffer_bytes: int
    #: one bank of the double-buffered weight buffer, bytes
    weight_bank_bytes: int
    #: output buffer (two halves, each holding one tile of results), bytes
    output_buffer_bytes: int
    #: per-channel parameter entries (bias + shift) per weight bank
    param_entries: int
    #: DRAM bandwidth, bytes per cycle, of the data (DMA) port and of the separate
    #: instruction-fetch port each
    dram_bytes_per_cycle: int
    #: DRAM latency: cycles from a request to its first data (both ports)
    dram_latency: int
    #: lanes of the post-processing unit (results retired per cycle)
    ppu_lanes: int
    #: fixed pipeline latency of a compute instruction (PE array + post-processing), cycles
    pe_latency: int = 8
    #: depth of each unit's instruction queue
    queue_depth: int = 8
    #: instruction-fetch buffer, instructions: fetched or in flight but not yet dispatched
    fetch_depth: int = 32
    #: depth of each dependency-token FIFO (a counter in hardware); a program whose tokens
    #: would ever exceed it is rejected by the cycle model
    token_depth: int = 15
    #: weight encodings the PE array implements
    weight_encodings: tuple[str, ...] = ("int", "pow2")
    #: accumulator width of the PE array and the post-processing unit
    acc_bits: int = 32
    #: timing only, no cycle: the PPU computes both clamped shifts (plain, leaky) beside its
    #: 32-bit add and lets the add's sign pick one (hw/ppu.py; docs/microarchitecture.md
    #: "Timing closure") — on for tiny's ECP5 Fmax, off for zu3eg (its LUTs: ~17 a lane)
    ppu_early_shift: bool = False
    #: timing only, no cycle: the fetch buffer keeps its head's dispatch classes in a register
    #: (hw/fetch.py ``HeadFifo``), so dispatch decides from flip-flops, not through a LUT-RAM
    #: read — on for tiny's ECP5 Fmax, off for zu3eg (its LUTs: ~29)
    fetch_head_reg: bool = False
    #: timing only, no cycle: each unit queue (hw/control.py, ``HeadFifo(head_word=True)``)
    #: keeps its head's whole word in a register, loaded a cycle ahead like its tag, so what
    #: the word feeds (the units' decoders, the compute unit's product multipliers) starts at
    #: flip-flops, not at a LUT-RAM read — off on both targets: on tiny the word register's
    #: load (the issue decision, from the units' ``done`` through the tokens) became the
    #: slowest path of 3 seeds of 3 (docs/microarchitecture.md, "Timing closure")
    queue_head_reg: bool = False
    #: timing only, no cycle: the compute unit's decoder products (``hw.job.job_products``:
    #: the ring's sizes and offsets in words, multiplier blocks on ECP5) are formed from the
    #: dispatch stage's word register and stored beside the word in the compute queue, so
    #: they reach the compute unit from the queue's read, not through a multiplier behind it
    #: (needs ``dispatch_stage`` 1) — on for tiny, off for zu3eg (the queue's width: its
    #: LUT-RAM)
    queue_products: bool = False
    #: cycles (0 or 1) of the controller's dispatch stage: with 1 a dispatched word waits a
    #: cycle in a register beside its queue, so a queue's head is visible two cycles after its
    #: dispatch, not one (``ir.timeline.schedule``: ``ready = D + 1 + dispatch_stage``;
    #: hw/control.py) — 1 for tiny's ECP5 Fmax (dispatch and the queues sit apart), 0 for zu3eg
    dispatch_stage: int = 0
    #: timing only, no cycle: products wider than an ECP5 multiplier block (18 x 18) cut into
    #: block-sized products joined without an adder — the MAC array's two 9 x 9 products of a
    #: DSP pair in their own multipliers, the VEC shifts' factor in two halves (hw/pe.py,
    #: hw/vecalu.py) — on for tiny, off for zu3eg (its DSP48E2s take the packed 27 x 18 forms)
    split_products: bool = False
    #: timing only, no cycle: the vector ALU's ADD shifts (hw/vecalu.py) made in the fabric,
    #: not as multiplies by ``2**shift`` in multiplier blocks — on for tiny (an ECP5
    #: multiplier block's input → output path was among the whole design's slowest), off for
    #: zu3eg (its DSP48E2s take them; the shifters would cost LUTs)
    vec_shift_luts: bool = False
    #: timing only, no cycle: the compute decoder's row steps (``dh`` and ``sh`` times a ring
    #: slot's words, hw/job.py) as shifted adds in the fabric, not multiplier blocks, whose
    #: paths from the compute queue's LUT-RAM word were tiny's slowest, and the taps ``kh *
    #: kw`` likewise (not a multiplier in front of the channel products') — on for tiny, off
    #: for zu3eg (its DSP48E2s take them; six adders of ~20 bits)
    decode_shift_add: bool = False
    #: timing only, no cycle: the decoded job carries operand a's column bounds less each
    #: lane's column offset, so the sequencer's lane mask compares its column register with
    #: them, with no adder in front (hw/seq.py; the sequencer's slowest path alone) — on for
    #: tiny, off for zu3eg (two bounds a lane in the job register: ~32 subtractors at tn 16)
    seq_lane_bounds: bool = False
    #: timing only, no cycle: the sequencer (hw/seq.py) holds its state at a start's values
    #: while idle, so a start enables only a few registers (the start was the whole state's
    #: enable, tiny's slowest path on 9804e9b) — on for tiny, off for zu3eg, where it cost
    #: the sequencer 364 LUTs and a ninth LUT level (its depth goal is 8)
    seq_idle_hold: bool = False
    #: timing only, no cycle: the SPCONV index walker (hw/spconv_walk.py) makes its steps into
    #: a one-step spare register when its output is held, so the sequencer's ``ready`` reaches
    #: only the output registers, not the walker's state — on for tiny, off for zu3eg (its
    #: LUTs: ~38)
    spconv_spare: bool = False
    #: timing only, no cycle: the retire stage's pool loop (hw/retire.py) keeps each word's
    #: last result in a register of its own and its scratch read data per word, picked by
    #: registered selects, and writes the scratch from a write register a cycle later (one
    #: more write forwarded into the read) — on for tiny, off for zu3eg (a multiplexer more
    #: a scratch bit)
    pool_loop_reg: bool = False
    #: timing only, no cycle: the partial-sum buffer's read address (hw/retire.py) picked by
    #: the drain's ``valid`` from two registered candidates (the chunk count, and one more),
    #: not summed after it — on for tiny, off for zu3eg (~30 LUTs)
    psum_addr_reg: bool = False
    #: one cycle a STORE: the store unit's output-buffer reads pass a register slice
    #: (hw/skid.py ``RegisterSlice``; ``ir.cost.store_read_cycles``), so neither the read
    #: request nor the output buffer's ``ready`` runs combinationally between the two units —
    #: on for tiny's ECP5 Fmax (the store DMA and the output buffer sit apart), off for zu3eg
    store_read_slice: bool = False
    #: timing only, no cycle: each copy of the output buffer (hw/buffers.py) takes its banks'
    #: writes from registers of its own, a cycle after the retire stage offers them, so the
    #: route from the retire stage to copies placed apart ends in a register, not a block
    #: RAM's data input. A STORE accepted in a CONV's done cycle reads from ``ir.cost.DMA_START``
    #: cycles later, after the last write has landed — on for tiny, off for zu3eg
    obuf_write_reg: bool = False
    #: timing only, no cycle: the NMS spatial stage's tile-best memories (hw/nms.py) are
    #: written from a register a cycle after the compare that decides the write, the write in
    #: flight forwarded into the next read, so the compare's verdict reaches a register, not
    #: every LUT-RAM cell's write enable; likewise the position before's best is kept as its
    #: two candidates and the verdict, selected a cycle later — on for tiny, off for zu3eg (two
    #: key compares more a grid: ~120 LUTs)
    nms_write_reg: bool = False
    #: timing only, no cycle: the NMS pyramid stage (hw/nms_pyramid.py) keeps a copy of its
    #: survivors' channels, read a cycle ahead of their words, and registers which partner
    #: slot each matches, so a word's channel is not compared and its slot's bounds selected
    #: in one cycle — on for tiny, off for zu3eg (a copy of the channels: ``nms_survivors`` ×
    #: 5 bits)
    nms_scan_ahead: bool = False
    #: entries of the partial-sum buffer, each ``ppu_lanes`` accumulators: the most result
    #: chunks one CONV tile may have when its reduction is split over several CONVs (docs/isa.md
    #: "Partial sums")
    psum_entries: int = 32
    #: copies of the line buffer: 2 (one read port each: VEC ADD reads both operands in one
    #: cycle, a depthwise group's ``tm/tn`` channel blocks are read together; ``max(2, tm/tn)``
    #: copies are built) or 1 (ADD reads ``b`` in a second cycle, a depthwise group of more
    #: than ``tn`` channels reads its two blocks one after the other: ``ir.cost.conv_inner_steps``,
    #: ``vec_taps``; needs ``tm <= 2*tn``). docs/hardware.md "One line-buffer copy"
    lb_copies: int = 2
    #: the compute unit chains its instructions: it starts the next CONV/VEC when the sequencer
    #: has issued the previous one's last pixel group, while that group drains and the pipeline
    #: empties (``ir.timeline.chain_window``). With ``chain_retire_single`` (and ``chain_front =
    #: pe_latency - 4``) the rule hw/compute.py builds (``ir.timeline.chain_back``); the
    #: controller does not yet, so the RTL bench refuses it (docs/backend.md "Chaining")
    compute_chain: bool = False
    #: with ``compute_chain``: cycles the next instruction waits past the point where the
    #: sequencer would start one more group of the previous one — an RTL that lets the front
    #: pipeline (line-buffer read to the MAC array's sums) empty first, so the operand router
    #: and the array need no second instruction's fields
    chain_front: int = 0
    #: with ``compute_chain``: the retire stage holds one instruction at a time — the next
    #: one's first sums reach retire after the previous one's end (``ir.timeline.chain_back``,
    #: ``chain_start``; else right after its last drain, each chunk carrying its own
    #: instruction's fields through the PPU)
    chain_retire_single: bool = False
    #: DRAM size the program may use, bytes
    dram_bytes: int = 1 << 30
    #: the NMS core (docs/nms_core.md, ``ir.nms.NmsCore``): channels pooled a cycle (0: the
    #: target has no core; it must divide ``tn`` and the DRAM beat), the widest map and the
    #: largest kernel its line memories hold, the spatial survivors and the patches it buffers,
    #: the bits of a key and of a box index, the anchor channels and the competing partners
    #: of one channel its pyramid stage holds
    nms_lanes: int = 0
    nms_max_width: int = 128
    nms_max_kernel: int = 8
    nms_survivors: int = 1024
    nms_patches: int = 1024
    nms_key_bits: int = 32
    nms_index_bits: int = 24
    nms_max_channels: int = 32
    nms_partners: int = 8
    #: resource budget this target must fit (LUT, FF, DSP, BRAM36), for reports
    budget: dict = field(default_factory=dict)

    def __post_init__(self):
        problems = _field_problems(self)
        if problems:  # the relations below compute with the fields
            raise UsageError(f"target {self.name!r} is invalid: " + "; ".join(problems))
        object.__setattr__(self, "weight_encodings", tuple(self.weight_encodings))
        object.__setattr__(self, "budget", dict(self.budget))
        problems = []
        if self.tm % self.tn:
            problems.append(f"tm ({self.tm}) must be a multiple of tn ({self.tn})")
        bw = self.dram_bytes_per_cycle
        if bw & (bw - 1) or bw % self.tn:
            problems.append(f"dram_bytes_per_cycle ({bw}) must be a power of two and a multiple of tn ({self.tn})")
        elif self.instr_bytes % bw:
            problems.append(f"instr_bytes ({self.instr_bytes}) must be whole DRAM beats ({bw} bytes)")
        if not set(self.weight_encodings) <= {"int", "pow2"}:
            problems.append(f"weight_encodings must be a subset of ('int', 'pow2'), got {self.weight_encodings}")
        if self.dispatch_stage not in (0, 1):
            problems.append(f"dispatch_stage ({self.dispatch_stage}) must be 0 or 1")
        if self.queue_products and self.dispatch_stage != 1:
            problems.append("queue_products needs dispatch_stage 1 (the products are formed from its register)")
        if self.lb_copies not in (1, 2):
            problems.append(f"lb_copies ({self.lb_copies}) must be 1 or 2")
        elif self.lb_copies == 1 and self.tm > 2 * self.tn:
            problems.append(f"one line-buffer copy (lb_copies 1) serves at most two channel blocks: tm ({self.tm}) "
                            f"must be at most 2*tn ({2 * self.tn})")
        if self.line_buffer_bytes % self.tn or self.output_buffer_bytes % (2 * self.tn):
            problems.append("buffer sizes must be whole words (multiples of tn; the output buffer of 2*tn)")
        problems += [f"{name} ({value}) must be at most {limit} ({why})" for name, value, limit, why in _isa_limits(self)
                     if value > limit]
        if problems:
            raise UsageError(f"target {self.name!r} is invalid: " + "; ".join(problems))

    # -- derived values ------------------------------------------------------------------------
    @property
    def instr_bytes(self) -> int:
        """Bytes per instruction word: the ISA's (``ir.isa.INSTR_BYTES``), not a knob."""
        return INSTR_BYTES

    @property
    def macs_per_cycle(self) -> int:
        return self.tm * self.tn

    @property
    def line_buffer_words(self) -> int:
        """Words of ``tn`` bytes (one pixel's channel block) in the line buffer."""
        return self.line_buffer_bytes // self.tn

    @property
    def output_half_words(self) -> int:
        """Words of ``tn`` bytes in one half of the output buffer."""
        return self.output_buffer_bytes // (2 * self.tn)

    @property
    def weight_bank_words(self) -> int:
        """Words of ``tm * tn`` weights in one weight bank."""
        return self.weight_bank_bytes // (self.tm * self.tn)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(d: dict) -> "AcceleratorConfig":
        names = {f.name for f in dataclasses.fields(AcceleratorConfig)}
        d = dict(d)
        # Target files written before instr_bytes became the ISA's fact carry it: accept the
        # ISA's value, refuse any other (no machine could fetch such words).
        if "instr_bytes" in d and (given := d.pop("instr_bytes")) != INSTR_BYTES:
            raise UsageError(f"instr_bytes is fixed by the ISA at {INSTR_BYTES} bytes (ir/isa.py), the target sets "
                             f"{given!r}: remove the field")
        unknown = set(d) - names
        if unknown:
            raise UsageError(f"unknown target field(s) {sorted(unknown)}; valid fields: {sorted(names)}")
        missing = [f.name for f in dataclasses.fields(AcceleratorConfig)
                   if f.name not in d and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise UsageError(f"target is missing field(s) {missing}")
        try:
            return AcceleratorConfig(**d)
        except TypeError as exc:
            raise UsageError(f"bad target description: {exc}") from None


def _span(layout, path: str) -> int:
    """How many addresses field ``path`` of ``layout`` reaches."""
    return 1 << field_shape(layout, path).width


def _isa_limits(cfg: AcceleratorConfig) -> list[tuple[str, int, int, str]]:
    """``(field, value, limit, why)``: the largest memories the ISA's address fields reach and
    the widest accumulator its int32 bias feeds; a target beyond them is no machine the ISA can
    drive (and the simulator would allocate what no program can address). The PPU's lanes and
    the partial-sum buffer have no address field: they are capped for the same reason."""
    t = cfg.tm * cfg.tn
    return [("tm", cfg.tm, (1 << field_shape(Conv, "cout").width) - 1, "a CONV's cout field holds at most tm"),
            ("line_buffer_bytes", cfg.line_buffer_bytes, cfg.tn * _span(Ring, "base"), "words the ring base reaches"),
            ("output_buffer_bytes", cfg.output_buffer_bytes, 2 * cfg.tn * _span(Store, "obuf_addr"),
             "two halves of the words obuf_addr reaches"),
            ("weight_bank_bytes", cfg.weight_bank_bytes, min(t * _span(Conv, "w_addr"), _span(LoadWgt, "sram_addr")),
             "words w_addr and bytes sram_addr reach"),
            ("param_entries", cfg.param_entries, _span(Conv, "p_addr"), "entries p_addr reaches"),
            ("dram_bytes", cfg.dram_bytes, _span(LoadWgt, "dram_addr"), "bytes a DRAM address reaches"),
            ("acc_bits", cfg.acc_bits, PARAM_ENTRY["bias"].width, "the width of a parameter entry's bias"),
            ("ppu_lanes", cfg.ppu_lanes, t, "lanes past the tm*tn results of a cycle carry nothing"),
            ("psum_entries", cfg.psum_entries, MAX_PSUM_ENTRIES, "the simulator holds them as int64")]


#: A cap on the partial-sum buffer (``psum_entries``): far above any real target (zu3eg: 512).
MAX_PSUM_ENTRIES = 1 << 20


#: Integer fields that may be 0 (all others must be positive)
_NON_NEGATIVE = ("dram_latency", "nms_lanes", "chain_front", "dispatch_stage")


def _field_problems(cfg: AcceleratorConfig) -> list[str]:
    """Each field's type and sign, by its annotation: an ``int`` field takes an integer (not a
    bool or a float such as ``4.0``), ``clock_mhz`` a positive finite number, a ``bool`` field a bool, ``name`` a
    non-empty string, ``weight_encodings`` a list of encoding names, ``budget`` a mapping of
    resource names to non-negative integers."""
    problems = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if f.type == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                problems.append(f"{f.name} must be an integer, got {v!r}")
            elif v < 0 or v == 0 and f.name not in _NON_NEGATIVE:
                problems.append(f"{f.name} must be {'>= 0' if f.name in _NON_NEGATIVE else 'positive'}, got {v}")
        elif f.type == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                problems.append(f"{f.name} must be a positive number, got {v!r}")
        elif f.type == "bool":
            if not isinstance(v, bool):
                problems.append(f"{f.name} must be True or False, got {v!r}")
        elif f.type == "str":
            if not isinstance(v, str) or not v:
                problems.append(f"{f.name} must be a non-empty string, got {v!r}")
        elif f.name == "weight_encodings":
            if isinstance(v, str) or not isinstance(v, (list, tuple)) or not v:
                problems.append(f"{f.name} must be a non-empty list of 'int'/'pow2', got {v!r}")
        elif f.name == "budget":
            if not isinstance(v, dict) or not all(isinstance(k, str) and not isinstance(n, bool)
                                                  and isinstance(n, int) and n >= 0 for k, n in v.items()):
                problems.append(f"{f.name} must map resource names to non-negative integers, got {v!r}")
    return problems


TINY = AcceleratorConfig(
    name="tiny", tm=4, tn=4, clock_mhz=100.0, line_buffer_bytes=16 * 1024, weight_bank_bytes=8 * 1024,
    output_buffer_bytes=4 * 1024, param_entries=256, dram_bytes_per_cycle=8, dram_latency=16, ppu_lanes=8,
    pe_latency=11, queue_depth=4, psum_entries=64, ppu_early_shift=True, fetch_head_reg=True,
    dispatch_stage=1,
    split_products=True, spconv_spare=True, pool_loop_reg=True, psum_addr_reg=True, store_read_slice=True,
    obuf_write_reg=True, nms_write_reg=True, nms_scan_ahead=True, vec_shift_luts=True,
    decode_shift_add=True, seq_lane_bounds=True, seq_idle_hold=True, queue_products=True,
    # A core small enough for CI's RTL tests: 1 lane (zu3eg's count; 2 lanes cost the whole
    # design ~6 MHz on ECP5, docs/nms_core.md; tests/hw/test_nms_dma.py runs 2 and 4), 16-wide
    # maps, 64 survivors, 128 patches.
    nms_lanes=1, nms_max_width=16, nms_max_kernel=4, nms_survivors=64, nms_patches=128, nms_index_bits=16,
    nms_max_channels=16, nms_partners=4,
)

# Ultra96 / ZU3EG class: 32x16 MACs — 512 int8 MACs in 256 DSP48E2 (two MACs sharing the
# broadcast activation per DSP) — and buffers within the 216 BRAM36 budget: the line buffer
# 32 (one copy, lb_copies=1: its second copy and rotator freed ~6k LUTs and 32 BRAM36 for the
# NMS core, for depthwise and VEC ADD reads made one after the other), the weight banks 2 x 512 B x 256 rows 64, the output buffer and the pool
# scratch 8 each, the partial-sum buffer 11 (512 entries of 32 x 24 bits: BRAM36 are 72 bits
# wide, so 32 entries would take as many, or ~1.2k LUTs as LUT RAM; docs/hardware.md,
# "Synthesis figures"). A 128 KiB line buffer (was 256) frees 64 BRAM36 for 0.5 % of the
# detector's frame rate (25.96 -> 25.82 fps; 192 KiB saves nothing: a BRAM36 is 1K deep at
# 36 bits, so only halving the depth halves the count). 32 PPU lanes (the fewest a 32-row
# array drains whole pixels with) cost 0.1 fps against 64 on the detector. 24-bit accumulators:
# the compiler bounds every layer's accumulator from its weights and input range and keeps a
# layer that needs more on the host; every zoo network needs at most 23 bits (docs/hardware.md).
# 512 parameter entries a bank (32 rows of the parameter buffer's LUT RAM instead of 64): the
# detector's cycles are the same as with 1024. pe_latency 11 (was 10): the third extra stage
# splits the sequencer's line-buffer address sums, as on tiny (its deepest path, 9 LUT levels
# into the line buffer's banking; docs/hardware.md); the compiler then plans the detector in
# fewer cycles, not more (7,335,709 against 7,352,747).
ZU3EG = AcceleratorConfig(
    name="zu3eg", tm=32, tn=16, clock_mhz=200.0, line_buffer_bytes=128 * 1024, weight_bank_bytes=128 * 1024,
    output_buffer_bytes=32 * 1024, param_entries=512, dram_bytes_per_cycle=16, dram_latency=40, ppu_lanes=32,
    pe_latency=11, queue_depth=16, acc_bits=24, psum_entries=512, lb_copies=1,
    # One lane (NmsBack alone is ~2.6k LUTs at 1 lane, 31.7k at 16: docs/nms_core.md); maps up
    # to 64 wide (the 512x512 detector's stride-8 level), its 32,256 boxes in 16-bit indices; 32-bit
    # keys (a wide head's 24-bit codes shifted to the common exponent).
    nms_lanes=1, nms_max_width=64, nms_max_kernel=8, nms_index_bits=16,
    budget={"lut": 70560, "ff": 141120, "dsp": 360, "bram36": 216},
)

TARGETS = {t.name: t for t in (TINY, ZU3EG)}


def load_target(spec: str | AcceleratorConfig) -> AcceleratorConfig:
    """A named target (``tiny``, ``zu3eg``) or the path of a JSON file with the fields above."""
    if isinstance(spec, AcceleratorConfig):
        return spec
    if spec in TARGETS:
        return TARGETS[spec]
    if not os.path.isfile(spec):
        raise UsageError(f"unknown target {spec!r}: give one of {sorted(TARGETS)} or a JSON file")
    try:
        with open(spec) as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read target {spec!r}: {exc}") from None
    if not isinstance(d, dict):
        raise UsageError(f"target {spec!r} must be a JSON object")
    try:
        return AcceleratorConfig.from_json(d)
    except UsageError as exc:
        raise UsageError(f"target file {spec!r}: {exc}") from None
