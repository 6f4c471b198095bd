"""Hand assembly of small accelerator programs, written from docs/isa.md alone (independent of
the compiler), and numpy references for what they compute."""

from __future__ import annotations

import math

import numpy as np

from shiftflow.ir.graph import Graph
from shiftflow.ir.intmath import conv2d, round_shift, window_reduce
from shiftflow.ir.isa import PARAM_BYTES, PARAM_DTYPE, Act, Dataflow, Opcode, VecOp, WgtTarget, encode
from shiftflow.ir.program import Program
from shiftflow.sim.accelerator import SimAccelerator

DRAM_SIZE = 1 << 20
ACTS = {"none": Act.NONE, "relu": Act.RELU, "leaky": Act.LEAKY}


def blocked(x: np.ndarray, tn: int) -> bytes:
    """A (C, H, W) integer tensor channel-blocked at default strides (padded lanes zero)."""
    c, h, w = x.shape
    nb = math.ceil(c / tn)
    planes = np.zeros((nb * tn, h, w), np.int64)
    planes[:c] = x
    return (planes.reshape(nb, tn, h, w).transpose(0, 2, 3, 1) & 0xFF).astype(np.uint8).tobytes()


def unblocked(raw: bytes, c: int, h: int, w: int, tn: int, signed: bool) -> np.ndarray:
    """Inverse of ``blocked`` (``raw`` may hold extra padding blocks)."""
    nb = len(raw) // (h * w * tn)
    a = np.frombuffer(raw, np.uint8).reshape(nb, h, w, tn)
    a = a.view(np.int8) if signed else a
    return a.transpose(0, 3, 1, 2).reshape(nb * tn, h, w)[:c].astype(np.int64)


def pow2_codes(w: np.ndarray) -> np.ndarray:
    """Weight codes of docs/isa.md: 0, or bit 7 sign | bit 6 | exponent in bits 2..0."""
    e = np.log2(np.maximum(np.abs(w), 1)).astype(np.int64)
    assert np.array_equal(np.where(w == 0, 0, 1 << e), np.abs(w)), "weights must be 0 or +-2**e"
    return np.where(w == 0, 0, 0x40 | (w < 0) * 0x80 | e)


def pack_weights(w: np.ndarray, tm: int, tn: int, dataflow: str, depthwise: bool, pow2: bool):
    """Weight words of all output blocks of OIHW ``w``; returns (bytes, words per block)."""
    m, c, kh, kw = w.shape
    codes = pow2_codes(w) if pow2 else w
    blocks = []
    for m0 in range(0, m, tm):
        wb = np.zeros((tm, c, kh, kw), np.int64)
        wb[:min(tm, m - m0)] = codes[m0:m0 + tm]
        if dataflow == "channel":
            nb = math.ceil(c / tn)
            words = np.zeros((nb, kh, kw, tm, tn), np.int64)
            for ch in range(c):
                words[ch // tn, :, :, :, ch % tn] = wb[:, ch].transpose(1, 2, 0)
            words = words.reshape(-1, tm, tn)
        else:
            steps = wb.reshape(tm, -1)  # step s = (c*kh + y)*kw + x (depthwise: c = 0 only)
            words = np.zeros((math.ceil(steps.shape[1] / tn), tm, tn), np.int64)
            for s in range(steps.shape[1]):
                words[s // tn, :, s % tn] = steps[:, s]
        blocks.append(words)
    return b"".join((b & 0xFF).astype(np.uint8).tobytes() for b in blocks), len(blocks[0])


def pack_params(bias: np.ndarray, shift: np.ndarray, tm: int) -> bytes:
    n = math.ceil(len(bias) / tm) * tm
    entries = np.zeros(n, dtype=PARAM_DTYPE)
    entries["bias"][:len(bias)] = bias
    entries["shift"][:len(shift)] = shift
    return entries.tobytes()


def ring(base, slots, slot_words, cols):
    return {"base": base, "slots": slots, "slot_words": slot_words, "cols": cols}


def dram_box(addr, nblk, nrows, ncols, row_stride, blk_stride):
    return {"dram_addr": addr, "row_stride": row_stride, "blk_stride": blk_stride, "nblk": nblk,
            "nrows": nrows, "ncols": ncols}


def geom(rg, height, width, chans, signed, y_first=0, x_first=0, x0=0):
    """Input geometry of a whole image held in ring ``rg`` from slot 0 (row y in slot y)."""
    return {"ring": rg, "x0": x0, "width": width, "height": height, "y_first": y_first,
            "slot_first": y_first % rg["slots"], "x_first": x_first, "chans": chans, "signed_": int(signed)}


def post(act="none", leaky_exp=0, lo=-128, hi=127, pool=0):
    return {"act": ACTS[act], "leaky_exp": leaky_exp, "lo": lo, "hi": hi, "pool": pool}


class Asm:
    """Collects instruction words and a DRAM image."""

    def __init__(self):
        self.words: list[bytes] = []
        self.dram = np.zeros(DRAM_SIZE, np.uint8)

    def put(self, addr: int, data: bytes) -> int:
        self.dram[addr:addr + len(data)] = np.frombuffer(data, np.uint8)
        return addr

    def emit(self, op: Opcode, body: dict | None = None, **flags) -> None:
        self.words.append(encode(op, body, **flags))

    def program(self, cfg) -> Program:
        graph = Graph("asm", (), (), (), {})
        return Program(cfg, b"".join(self.words), b"", graph, {"dram": {"size": DRAM_SIZE}})

    def run(self, cfg) -> tuple[SimAccelerator, int]:
        acc = SimAccelerator()
        acc.load_program(self.program(cfg))
        acc.write_dram(0, self.dram.tobytes())
        return acc, acc.run_segment(0, len(self.words))


def load_image(asm: Asm, cfg, x: np.ndarray, addr: int, ring_base: int, **flags) -> dict:
    """Emit a LOAD_ACT of all of (C, H, W) ``x`` (already in DRAM at ``addr``) into a ring
    holding the whole image; returns the ring."""
    c, h, w = x.shape
    nb = math.ceil(c / cfg.tn)
    rg = ring(ring_base, h, nb * w, w)
    asm.emit(Opcode.LOAD_ACT, {"src": dram_box(addr, nb, h, w, w * cfg.tn, h * w * cfg.tn), "ring": rg,
                               "slot0": 0}, **flags)
    return rg


def conv_out_hw(h, w, k, stride, pads, dil):
    return ((h + pads[0] + pads[2] - dil * (k - 1) - 1) // stride + 1,
            (w + pads[1] + pads[3] - dil * (k - 1) - 1) // stride + 1)


def run_conv(cfg, x, w, bias, shift, **kw):
    """Run ``conv_asm``; returns the (M, Ho/p, Wo/p) output codes read back from DRAM and the
    segment's cycles."""
    asm, out, nbytes, shape = conv_asm(cfg, x, w, bias, shift, **kw)
    acc, cycles = asm.run(cfg)
    return unblocked(acc.read_dram(out, nbytes), *shape, cfg.tn, kw.get("lo", -128) < 0), cycles


def conv_asm(cfg, x, w, bias, shift, *, dataflow="channel", depthwise=False, pow2=False, stride=1,
             pads=(0, 0, 0, 0), dil=1, act="none", leaky_exp=0, lo=-128, hi=127, pool=0, x_signed=True):
    """A conv program: one tile per output-channel block over the whole (C, H, W) image.
    Returns (asm, output address, output bytes, (M, Ho/p, Wo/p))."""
    tm, tn = cfg.tm, cfg.tn
    c, h, wd = x.shape
    m, _, k, _ = w.shape
    ho, wo = conv_out_hw(h, wd, k, stride, pads, dil)
    po = pool or 1
    oh, ow = ho // po, wo // po
    asm = Asm()
    asm.put(0, blocked(x, tn))
    wbytes, wwords = pack_weights(w, tm, tn, dataflow, depthwise, pow2)
    wa = asm.put(0x40000, wbytes)
    pa = asm.put(0x60000, pack_params(bias, shift, tm))
    out = 0x80000
    asm.emit(Opcode.LOAD_WGT, {"dram_addr": wa, "nbytes": len(wbytes), "target": WgtTarget.WEIGHTS, "sram_addr": 0})
    asm.emit(Opcode.LOAD_WGT, {"dram_addr": pa, "nbytes": math.ceil(m / tm) * tm * PARAM_BYTES, "target": WgtTarget.PARAMS,
                               "sram_addr": 0})  # the image load after it pushes the token
    blk = tm // tn
    nblocks = math.ceil(m / tm)
    ring_words = cfg.line_buffer_words // max(1, nblocks) if depthwise else 0
    rg = None if depthwise else load_image(asm, cfg, x, 0, 0, push_next=1)
    for mb in range(nblocks):
        if depthwise:  # the ring holds the block's own input channels only
            own = x[mb * tm:(mb + 1) * tm]
            rg = load_image(asm, cfg, own, mb * blk * h * wd * tn, mb * ring_words, push_next=1)
            chans = own.shape[0]
        else:
            chans = c
        inp = geom(rg, h, wd, chans, x_signed, y_first=-pads[0], x_first=-pads[1])
        body = {"dataflow": Dataflow.PIXEL if dataflow == "pixel" else Dataflow.CHANNEL, "depthwise": int(depthwise),
                "pow2": int(pow2), "win": {"kh": k, "kw": k, "sh": stride, "sw": stride, "dh": dil, "dw": dil},
                "inp": inp, "tile": {"rows": ho, "cols": wo, "obuf_addr": 0, "obuf_cols": ow, "obuf_blk": blk,
                                     "half": mb % 2},
                "post": post(act, leaky_exp, lo, hi, pool), "wbank": 0, "w_addr": mb * wwords, "p_addr": mb * tm,
                "cout": min(tm, m - mb * tm), "psum_in": 0, "psum_out": 0}
        asm.emit(Opcode.CONV, body, pop_prev=int(depthwise or mb == 0), pop_next=int(mb >= 2), push_next=1)
        # STORE's output-buffer pixel stride is dst.nblk, so it stores all tm/tn blocks: the
        # output tensor is allocated with a whole number of tm-channel groups.
        asm.emit(Opcode.STORE, {"dst": dram_box(out + mb * blk * oh * ow * tn, blk, oh, ow, ow * tn,
                                                oh * ow * tn), "obuf_addr": 0, "half": mb % 2},
                 pop_prev=1, push_prev=1)
    asm.emit(Opcode.FINISH)
    return asm, out, nblocks * blk * oh * ow * tn, (m, oh, ow)


def requant(v, shift, act="none", leaky_exp=0, lo=-128, hi=127):
    """The post-processing rule of docs/isa.md on exact values ``v``."""
    v = np.asarray(v, np.int64)
    shift = np.broadcast_to(np.asarray(shift, np.int64), v.shape)
    if act == "relu":
        v = np.maximum(v, 0)
    elif act == "leaky":
        shift = np.where(v < 0, shift - leaky_exp, shift)
    return np.clip(round_shift(v, -shift), lo, hi)


def ref_conv(x, w, bias, shift, *, depthwise=False, stride=1, pads=(0, 0, 0, 0), dil=1, act="none", leaky_exp=0,
             lo=-128, hi=127, pool=0, **_):
    c, h, wd = x.shape
    k = w.shape[2]
    ho, wo = conv_out_hw(h, wd, k, stride, pads, dil)
    acc = conv2d(x[None], w, (stride, stride), pads, (dil, dil), c if depthwise else 1, (ho, wo))[0]
    q = requant(acc + np.asarray(bias)[:, None, None], np.asarray(shift)[:, None, None], act, leaky_exp, lo, hi)
    if pool:
        q = window_reduce(q[None], (pool, pool), (pool, pool), (0, 0, 0, 0), (1, 1), (ho // pool, wo // pool), "max")[0]
    return q


def run_vec(cfg, op: VecOp, a, b=None, *, k=(1, 1), stride=(1, 1), pads=(0, 0, 0, 0), dil=(1, 1), out_hw=None,
            shift_a=0, shift_b=0, rshift=0, act="none", leaky_exp=0, lo=-128, hi=127, pool=0, signed=True):
    """One VEC over whole (C, H, W) ``a`` (and ``b``); returns the output codes and cycles."""
    tn = cfg.tn
    c, h, w = a.shape
    ho, wo = out_hw or (h, w)
    po = pool or 1
    nb = math.ceil(c / tn)
    asm = Asm()
    asm.put(0, blocked(a, tn))
    ra = load_image(asm, cfg, a, 0, 0, push_next=int(b is None))
    body = {"op": op, "win": {"kh": k[0], "kw": k[1], "sh": stride[0], "sw": stride[1], "dh": dil[0], "dw": dil[1]},
            "inp": geom(ra, h, w, c, signed, y_first=-pads[0], x_first=-pads[1]),
            "tile": {"rows": ho, "cols": wo, "obuf_addr": 0, "obuf_cols": wo // po, "obuf_blk": nb, "half": 1},
            "post": post(act, leaky_exp, lo, hi, pool), "shift_a": shift_a, "shift_b": shift_b, "rshift": rshift}
    if b is not None:
        asm.put(0x40000, blocked(b, tn))
        rb = load_image(asm, cfg, b, 0x40000, nb * w * h, push_next=1)
        body["inp_b"] = geom(rb, h, w, c, signed)
    asm.emit(Opcode.VEC, body, pop_prev=1, push_next=1)
    oh, ow = ho // po, wo // po
    out = 0x80000
    asm.emit(Opcode.STORE, {"dst": dram_box(out, nb, oh, ow, ow * tn, oh * ow * tn), "obuf_addr": 0, "half": 1},
             pop_prev=1)
    asm.emit(Opcode.FINISH)
    acc, cycles = asm.run(cfg)
    return unblocked(acc.read_dram(out, nb * oh * ow * tn), c, oh, ow, tn, lo < 0), cycles
