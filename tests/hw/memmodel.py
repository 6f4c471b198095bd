"""Python models for amaranth.sim DMA tests: a DRAM behind the DMA's ``mem`` port and an
on-chip memory behind its ``sram_*`` ports, both with latency and random stalls."""

from __future__ import annotations

import random
from collections import deque


class Dram:
    """Byte-addressed DRAM. A read request's first beat is presented ``latency`` cycles after
    the request is accepted; a write burst's response ``latency`` cycles after its last beat.
    ``stall`` is the probability of withholding ready/valid on any channel in a cycle."""

    def __init__(self, port, beat_bytes: int, *, latency: int = 4, stall: float = 0.0, seed: int = 0):
        self.port, self.bb, self.latency, self.stall = port, beat_bytes, latency, stall
        self.rng = random.Random(seed)
        self.mem: dict[int, int] = {}
        self.beats: deque = deque()  # (ready cycle, address) of read beats, in order
        self.bursts: deque = deque()  # [address, beats left] of accepted write bursts
        self.responses: deque = deque()  # ready cycles of write responses
        self.requests: list[tuple[str, int, int]] = []  # every (kind, addr, beats) accepted
        # While set: in cycles with no beat due, a read beat nobody asked for (junk data), as
        # another initiator's beats show on a port whose read valid is not gated for this one.
        self.stray = False

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.mem.get(addr + i, 0) for i in range(n))

    def write(self, addr: int, payload: bytes) -> None:
        for i, b in enumerate(payload):
            self.mem[addr + i] = b

    def _go(self) -> bool:
        return self.rng.random() >= self.stall

    async def run(self, ctx):
        p, cycle = self.port, 0
        while True:
            ctx.set(p.rd_req.ready, self._go())
            ctx.set(p.wr_req.ready, self._go())
            ctx.set(p.wr_data.ready, bool(self.bursts) and self._go())
            rd_valid = bool(self.beats) and self.beats[0][0] <= cycle and self._go()
            stray = not rd_valid and self.stray and self.rng.random() < 0.5
            ctx.set(p.rd_resp.valid, rd_valid or stray)
            if rd_valid:
                addr = self.beats[0][1]
                ctx.set(p.rd_resp.payload, int.from_bytes(self.read(addr, self.bb), "little"))
            elif stray:
                ctx.set(p.rd_resp.payload, self.rng.getrandbits(8 * self.bb))
            wr_resp_valid = bool(self.responses) and self.responses[0] <= cycle and self._go()
            ctx.set(p.wr_resp.valid, wr_resp_valid)
            sampled = await ctx.tick().sample(
                p.rd_req.valid, p.rd_req.ready, p.rd_req.payload, p.wr_req.valid, p.wr_req.ready, p.wr_req.payload,
                p.wr_data.valid, p.wr_data.ready, p.wr_data.payload, p.rd_resp.ready, p.wr_resp.ready)
            (rq_v, rq_r, rq, wq_v, wq_r, wq, wd_v, wd_r, wd, rs_r, ws_r) = sampled[2:]
            cycle += 1
            if rq_v and rq_r:
                self.requests.append(("rd", rq.addr, rq.beats))
                for k in range(rq.beats):
                    self.beats.append((cycle + self.latency - 1 + k, rq.addr + k * self.bb))
            if rd_valid and rs_r:
                self.beats.popleft()
            if wd_v and wd_r:
                burst = self.bursts[0]
                data, strb = int(wd.data), int(wd.strb)
                for j in range(self.bb):
                    if strb >> j & 1:
                        self.mem[burst[0] + j] = (data >> 8 * j) & 0xFF
                burst[0] += self.bb
                burst[1] -= 1
                if burst[1] == 0:
                    self.bursts.popleft()
                    self.responses.append(cycle + self.latency - 1)
            if wq_v and wq_r:
                self.requests.append(("wr", wq.addr, wq.beats))
                self.bursts.append([int(wq.addr), int(wq.beats)])
            if wr_resp_valid and ws_r:
                self.responses.popleft()


class Sram:
    """On-chip memory (bytes) behind ``sram_wr`` / ``sram_rd`` / ``sram_rdata``; ``tn``-byte
    word ``i`` of a beat lives at ``addr + i*stride`` (writes: contiguous). Reads answer
    ``latency`` cycles after acceptance, in order."""

    def __init__(self, dma, word_bytes: int, *, latency: int = 1, stall: float = 0.0, seed: int = 1):
        self.dma, self.tn, self.latency, self.stall = dma, word_bytes, latency, stall
        self.bb = dma.beat_bytes
        self.rng = random.Random(seed)
        self.mem: dict[tuple[int, int], int] = {}  # (sel, byte address) -> byte
        self.pending: deque = deque()  # (ready cycle, data)

    def _go(self) -> bool:
        return self.rng.random() >= self.stall

    async def run(self, ctx):
        d, cycle, mask = self.dma, 0, (1 << 24) - 1
        while True:
            ctx.set(d.sram_wr.ready, self._go())
            ctx.set(d.sram_rd.ready, self._go())
            out_valid = bool(self.pending) and self.pending[0][0] <= cycle and self._go()
            ctx.set(d.sram_rdata.valid, out_valid)
            if out_valid:
                ctx.set(d.sram_rdata.payload, self.pending[0][1])
            sampled = await ctx.tick().sample(d.sram_wr.valid, d.sram_wr.ready, d.sram_wr.payload,
                                              d.sram_rd.valid, d.sram_rd.ready, d.sram_rd.payload, d.sram_rdata.ready)
            w_v, w_r, w, r_v, r_r, r, o_r = sampled[2:]
            cycle += 1
            if w_v and w_r:
                for j in range(self.bb):
                    if int(w.strb) >> j & 1:
                        self.mem[(int(w.sel), (int(w.addr) + j) & mask)] = (int(w.data) >> 8 * j) & 0xFF
            if r_v and r_r:
                word = 0
                for j in range(self.bb):
                    a = (int(r.addr) + (j // self.tn) * int(r.stride) + j % self.tn) & mask
                    word |= self.mem.get((int(r.sel), a), 0) << 8 * j
                self.pending.append((cycle + self.latency - 1, word))
            if out_valid and o_r:
                self.pending.popleft()
