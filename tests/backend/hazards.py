"""An independent reading of a compiled program, for the back end's tests.

Everything here works from the instruction words (decoded with ``ir.isa.to_dict``) and
docs/isa.md, not from the compiler's own bookkeeping: which memory words each instruction
reads and writes, the happens-before order its token flags establish, and the hazards that
order fails to cover.
"""

from __future__ import annotations

import numpy as np

from shiftflow.ir.cost import ceil_div
from shiftflow.ir.isa import Act, Dataflow, Opcode, VecOp, WgtTarget
from shiftflow.ir.program import Program
from shiftflow.ir.decode import decode_program

UNIT = {"LOAD_ACT": 0, "LOAD_WGT": 0, "CONV": 1, "SPCONV": 1, "VEC": 1, "NOP": 1, "FINISH": 1, "STORE": 2}


_BODY = {Opcode.LOAD_ACT: "load_act", Opcode.LOAD_WGT: "load_wgt", Opcode.STORE: "store", Opcode.CONV: "conv",
         Opcode.VEC: "vec", Opcode.SPCONV: "spconv"}
_ENUMS = {"target": WgtTarget, "op": VecOp, "dataflow": Dataflow, "post.act": Act}


def decode(program: Program) -> list[dict]:
    """Every instruction as ``ir.isa.to_dict`` lays it out (enums by lower-case name), decoded
    with the simulator's layout-derived decoder (``to_dict`` itself is too slow for whole
    models; ``test_decode_agrees_with_to_dict`` checks the two agree)."""
    out = []
    for ins in decode_program(program.instructions, 0, program.n_instructions):
        d = {"opcode": ins.opcode.name, "pop_prev": ins.pop_prev, "pop_next": ins.pop_next,
             "push_prev": ins.push_prev, "push_next": ins.push_next}
        if ins.opcode in _BODY:
            body: dict = {}
            for name, v in ins.f.items():
                if name in _ENUMS:
                    v = _ENUMS[name](v).name.lower()
                *path, leaf = name.split(".")
                node = body
                for p in path:
                    node = node.setdefault(p, {})
                node[leaf] = v
            d[_BODY[ins.opcode]] = body
        out.append(d)
    return out


def segments(program: Program, words: list[dict]):
    for seg in program.manifest["segments"]:
        if seg["kind"] == "accel":
            yield seg["start"], words[seg["start"]:seg["start"] + seg["count"]]


def clocks(seg: list[dict]) -> list[list[int]]:
    """Per instruction: for each unit, the latest instruction (segment index) of that unit
    known complete when it starts. Raises AssertionError on a pop without an earlier push."""
    fifos: dict[tuple[int, int], list[int]] = {}
    last = [-1, -1, -1]
    known: list[list[int]] = []
    out = []
    for k, d in enumerate(seg):
        u = UNIT[d["opcode"]]
        kv = list(known[last[u]]) if last[u] >= 0 else [-1, -1, -1]
        if d["opcode"] == "FINISH":
            kv = [max(kv[v], last[v]) for v in range(3)]
        for flag, other in (("pop_prev", u - 1), ("pop_next", u + 1)):
            if d[flag]:
                q = fifos.get((other, u))
                assert q, f"instruction {k} pops a token never pushed (deadlock)"
                kv = [max(a, b) for a, b in zip(kv, known[q.pop(0)])]
        out.append(list(kv))
        kv[u] = k
        known.append(kv)
        last[u] = k
        for flag, other in (("push_prev", u - 1), ("push_next", u + 1)):
            if d[flag]:
                assert 0 <= other <= 2, f"instruction {k} pushes to a unit that does not exist"
                fifos.setdefault((u, other), []).append(k)
    return out


def _lb_rows(inp: dict, win: dict, tile: dict, resize: bool):
    """(slot, ring columns lo..hi) of every in-image row a CONV/VEC tile reads."""
    ring = inp["ring"]
    rows = tile["rows"]
    taps = []
    if resize:
        offs = sorted({r // win["kh"] for r in range(rows)})
        xs = (inp["x_first"], inp["x_first"] + (tile["cols"] - 1) // win["kw"])
    else:
        offs = sorted({r * win["sh"] + y * win["dh"] for r in range(rows) for y in range(win["kh"])})
        xs = (inp["x_first"], inp["x_first"] + (tile["cols"] - 1) * win["sw"] + (win["kw"] - 1) * win["dw"])
    x0, x1 = max(xs[0], 0), min(xs[1], inp["width"] - 1)
    for o in offs:
        if 0 <= inp["y_first"] + o < inp["height"] and x0 <= x1:
            taps.append(((inp["slot_first"] + o) % ring["slots"], x0 - inp["x0"], x1 - inp["x0"]))
    return taps


def accesses(cfg, d: dict) -> list[tuple[str, int, int, bool]]:
    """(memory, first, end, write) ranges: memories ``lb`` (words), ``wb0/1`` (bytes),
    ``pb0/1`` (entries), ``ob0/1`` (words), ``dram`` (bytes)."""
    op, tn = d["opcode"], cfg.tn
    out = []
    if op == "LOAD_ACT":
        b = d["load_act"]
        s, r = b["src"], b["ring"]
        for blk in range(s["nblk"]):
            for row in range(s["nrows"]):
                a = s["dram_addr"] + blk * s["blk_stride"] + row * s["row_stride"]
                out.append(("dram", a, a + s["ncols"] * tn, False))
                w = r["base"] + ((b["slot0"] + row) % r["slots"]) * r["slot_words"] + blk * r["cols"]
                out.append(("lb", w, w + s["ncols"], True))
    elif op == "LOAD_WGT":
        b = d["load_wgt"]
        mem = ("wb" if b["target"] == "weights" else "pb") + str(b["bank"])
        scale = 1 if b["target"] == "weights" else 8
        out.append((mem, b["sram_addr"] // scale, ceil_div(b["sram_addr"] + b["nbytes"], scale), True))
        out.append(("dram", b["dram_addr"], b["dram_addr"] + b["nbytes"], False))
    elif op == "STORE":
        b = d["store"]
        s = b["dst"]
        n = s["nrows"] * s["ncols"] * s["nblk"]
        out.append((f"ob{b['half']}", b["obuf_addr"], b["obuf_addr"] + n, False))
        for blk in range(s["nblk"]):
            for row in range(s["nrows"]):
                a = s["dram_addr"] + blk * s["blk_stride"] + row * s["row_stride"]
                out.append(("dram", a, a + s["ncols"] * tn, True))
    elif op in ("CONV", "VEC", "SPCONV"):
        b = d[op.lower()]
        conv = op != "VEC"
        tile, post = b["tile"], b["post"]
        p = post["pool"] or 1
        inps = [b["inp"]] + ([b["inp_b"]] if op == "VEC" and b["op"] == "add" else [])
        for inp in inps:
            chans = inp["chans"]
            if conv and b["depthwise"]:
                chans = min(chans, cfg.tm)
            for slot, c0, c1 in _lb_rows(inp, b["win"], tile, op == "VEC" and b["op"] == "resize"):
                for blk in range(ceil_div(chans, tn)):
                    w = inp["ring"]["base"] + slot * inp["ring"]["slot_words"] + blk * inp["ring"]["cols"]
                    out.append(("lb", w + c0, w + c1 + 1, False))
        n = (tile["rows"] // p) * tile["obuf_cols"] * tile["obuf_blk"]
        if not (conv and b["psum_out"]):  # a partial sum goes to the partial-sum buffer
            out.append((f"ob{tile['half']}", tile["obuf_addr"], tile["obuf_addr"] + n, True))
        if conv:
            chans, kk = b["inp"]["chans"], b["win"]["kh"] * b["win"]["kw"]
            if op == "SPCONV":  # kept steps' words, then 2-byte index entries (docs/isa.md "SPCONV")
                words = ceil_div(b["kept"], tn) + ceil_div(2 * b["kept"], cfg.tm * tn)
            elif b["dataflow"] == "pixel":
                words = ceil_div(kk if b["depthwise"] else chans * kk, tn)
            else:
                words = ceil_div(chans, tn) * kk
            unit = cfg.tm * cfg.tn
            out.append((f"wb{b['wbank']}", b["w_addr"] * unit, (b["w_addr"] + words) * unit, False))
            out.append((f"pb{b['wbank']}", b["p_addr"], b["p_addr"] + cfg.tm, False))
    return out


def sizes(cfg, dram: int) -> dict[str, int]:
    return {"lb": cfg.line_buffer_words, "wb0": cfg.weight_bank_bytes, "wb1": cfg.weight_bank_bytes,
            "pb0": cfg.param_entries, "pb1": cfg.param_entries, "ob0": cfg.output_half_words,
            "ob1": cfg.output_half_words, "dram": dram}


def check_program(program: Program) -> list[dict]:
    """Assert bounds, token balance and freedom from hazards; return the decoded words."""
    cfg = program.config
    words = decode(program)
    limit = sizes(cfg, program.manifest["dram"]["size"])
    for start, seg in segments(program, words):
        assert seg[-1]["opcode"] == "FINISH" and all(d["opcode"] != "FINISH" for d in seg[:-1])
        known = clocks(seg)
        lastw = {m: np.full((3, n), -1, np.int64) for m, n in limit.items()}
        lastr = {m: np.full((3, n), -1, np.int64) for m, n in limit.items()}
        for k, d in enumerate(seg):
            u = UNIT[d["opcode"]]
            for mem, lo, hi, write in accesses(cfg, d):
                assert 0 <= lo <= hi <= limit[mem], f"instruction {start + k} ({d['opcode']}) touches {mem}[{lo}:{hi}]"
                if hi == lo:
                    continue
                for v in range(3):
                    if v == u:
                        continue
                    w = lastw[mem][v, lo:hi].max()
                    assert w <= known[k][v], f"instruction {start + k} ({d['opcode']}) races {start + w} on {mem}"
                    if write:
                        r = lastr[mem][v, lo:hi].max()
                        assert r <= known[k][v], f"instruction {start + k} ({d['opcode']}) overwrites {mem} " \
                                                 f"before {start + r} read it"
                (lastw if write else lastr)[mem][u, lo:hi] = k
    return words


def stored_pixels(program: Program, words: list[dict], tensor: str) -> np.ndarray:
    """How many times each (channel block, row, column) word of a DRAM tensor is stored."""
    t = program.manifest["tensors"][tensor]
    _, c, h, w = t["shape"]
    tn = program.config.tn
    count = np.zeros((t["blocks"], h, w), np.int64)
    for d in words:
        if d["opcode"] != "STORE":
            continue
        s = d["store"]["dst"]
        for blk in range(s["nblk"]):
            for row in range(s["nrows"]):
                a = s["dram_addr"] + blk * s["blk_stride"] + row * s["row_stride"] - t["addr"]
                if 0 <= a < t["blocks"] * t["blk_stride"]:
                    b, rem = divmod(a, t["blk_stride"])
                    y, x = divmod(rem, t["row_stride"])
                    count[b, y, x // tn:x // tn + s["ncols"]] += 1
    return count
