"""The NMS core's pyramid stage: drop each spatial survivor that a survivor of a competing
channel and the same class beats in a common tile (docs/nms_core.md, "The pyramid stage").

::

    i: survivors (channel, class, y, x, key, box index) ─▶ buffer, lanes banks (entry j in bank j % lanes)
    start ─▶ for each survivor s:
               read s; for each partner slot of s's channel (ir.nms.slot_table):
                   its tile bounds, aligned and shifted, at the pair's coarser stride
                   (four restoring dividers, DIV_STEPS cycles)
               scan the buffer, lanes entries a cycle: t beats s, same class, t's channel is
               a partner and t lies in one of s's two tiles of that pair → s is beaten
           ─▶ o: the buffer address of every survivor not beaten, in order; done

The tile test needs a division by the pair's kernel; doing it once per (survivor, partner)
as bounds, rather than in every comparator, leaves the comparators with range checks.
Cycles: ``ir.nms.pyramid_cycles`` exactly (no stalls on ``o``).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import ShiftflowError
from ..ir.nms import COORD_BITS, DIV_STEPS, SLOT_KERNEL_BITS, SLOT_RATIO_BITS, NmsCore
from .nms import rank


def entry_layout(core: NmsCore) -> data.StructLayout:
    return data.StructLayout({
        "channel": unsigned(max(1, (core.max_channels - 1).bit_length())), "cls": unsigned(16),
        "y": unsigned(COORD_BITS), "x": unsigned(COORD_BITS),
        "key": signed(core.key_bits), "index": unsigned(core.index_bits)})


def slot_layout(core: NmsCore) -> data.StructLayout:
    return data.StructLayout({
        "valid": unsigned(1), "partner": unsigned(max(1, (core.max_channels - 1).bit_length())),
        "k": unsigned(SLOT_KERNEL_BITS), "ks": unsigned(SLOT_KERNEL_BITS),
        "rho_a": unsigned(SLOT_RATIO_BITS), "rho_b": unsigned(SLOT_RATIO_BITS)})


class NmsPyramid(wiring.Component):
    """Pyramid stage of an ``NmsCore`` (see the module docstring). While idle: write the
    slot table (``slot_we``, ``slot_addr`` = channel · partners + slot, ``slot_data``) and
    push the survivors on ``i``; raise ``start`` for a cycle; the kept survivors' buffer
    addresses come out on ``o``; ``done`` for one cycle at the end (the buffer empties);
    ``clear`` (while idle) empties the buffer without a run."""

    def __init__(self, core: NmsCore):
        if core.lanes < 1 or core.partners < 1 or core.survivors < 1:
            raise ShiftflowError(f"NMS core needs lanes, partners and survivors >= 1, found "
                                 f"{core.lanes}, {core.partners}, {core.survivors}")
        self.core = core
        self.entry, self.slot = entry_layout(core), slot_layout(core)
        self.abits = max(1, (core.survivors - 1).bit_length())
        super().__init__({
            "start": In(1), "clear": In(1), "busy": Out(1), "done": Out(1),
            "slot_we": In(1), "slot_addr": In(range(core.max_channels * core.partners)), "slot_data": In(self.slot),
            "i": In(stream.Signature(self.entry)),
            "o": Out(stream.Signature(unsigned(self.abits + 1))),
        })

    def elaborate(self, platform):
        m = Module()
        core, lanes, z_n = self.core, self.core.lanes, self.core.partners
        depth = -(-core.survivors // lanes)

        slots = Memory(shape=self.slot, depth=core.max_channels * z_n, init=[])
        m.submodules.slots = slots
        sw, sr = slots.write_port(), slots.read_port()
        m.d.comb += [sw.addr.eq(self.slot_addr), sw.data.eq(self.slot_data), sw.en.eq(self.slot_we & ~self.busy)]

        n = Signal(self.abits + 1)  # survivors buffered
        i = Signal(self.abits + 1)  # the survivor being decided / sent
        g = Signal(range(depth + 1))  # scan group
        z = Signal(range(z_n + 1))
        step = Signal(range(DIV_STEPS + 1))
        s = Signal(self.entry)
        beaten = Signal()
        kept = Memory(shape=1, depth=core.survivors, init=[])
        m.submodules.kept = kept
        kw, kr = kept.write_port(), kept.read_port()

        # One read port a bank: the scan's, which also reads s (in S_READ, s's group).
        scan_data, reading_s = [], Signal()
        for b in range(lanes):
            mem = Memory(shape=self.entry, depth=depth, init=[])
            m.submodules[f"bank{b}"] = mem
            w, rt = mem.write_port(), mem.read_port()
            m.d.comb += [w.addr.eq(n // lanes), w.data.eq(self.i.payload),
                         w.en.eq(self.i.valid & self.i.ready & (n % lanes == b)),
                         rt.addr.eq(Mux(reading_s, i // lanes, g))]
            scan_data.append(rt.data)
        m.d.comb += self.i.ready.eq(~self.busy & (n < core.survivors))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += n.eq(n + 1)
        with m.If(self.clear & ~self.busy):  # survivors buffered but never run (a flagged list)
            m.d.sync += n.eq(0)

        # Per slot: the partner, its coordinate shift, and s's two tiles as bounds (a shift
        # register: BOUNDS pushes a slot's bounds, so after the last slot bounds[z] holds slot z).
        cb = COORD_BITS + 1
        bound = data.StructLayout({"valid": 1, "partner": self.slot["partner"].shape,
                                   "rho_b": unsigned(SLOT_RATIO_BITS),
                                   **{f"{e}_{g_}{d}": unsigned(cb)
                                      for e in ("lo", "hi") for g_ in ("a", "s") for d in ("y", "x")}})
        bounds = [Signal(bound, name=f"bound{j}") for j in range(z_n)]
        cur = Signal(self.slot)
        # Four restoring dividers: y and x, aligned and shifted (dividend + ks); num keeps the
        # dividends: a tile's first coordinate is num - rem (no multiplier).
        dividend = [Signal(DIV_STEPS, name=f"dividend{j}") for j in range(4)]
        num = [Signal(DIV_STEPS, name=f"num{j}") for j in range(4)]
        rem = [Signal(SLOT_KERNEL_BITS, name=f"rem{j}") for j in range(4)]
        s_sel = Signal(self.entry)
        for b in range(lanes):
            with m.If(i % lanes == b):
                m.d.comb += s_sel.eq(scan_data[b])
        # The scan, three stages a group: (1) the banks' words (the read lands), (2) t, the
        # bounds and stride shift of the slot holding t's channel (picked one-hot; its valid:
        # one matched), registered, (3) each
        # lane's hit registered (t's coordinates shifted against its slot's bounds, the class,
        # the key/index order), then or-ed into ``beaten``. SCAN_END drains the last group's
        # two stages. (Timing: no slot match, selection, shift and compare in one cycle.)
        t_reg = [Signal(self.entry, name=f"t{lane}") for lane in range(lanes)]
        t_ok = Signal(lanes)  # stage 2 holds a buffered entry in that lane
        rho_t = [Signal(SLOT_RATIO_BITS, name=f"rho_t{lane}") for lane in range(lanes)]
        # (The bounds picked in stage 2, not 3: timing, the one-hot select is not in front of
        # stage 3's shift and compares.)
        b_t = [Signal(bound, name=f"slot_of_t{lane}") for lane in range(lanes)]
        hits = Signal(lanes)
        scan_live = Signal()  # the banks' words of a group land this cycle
        scan_next = Signal()  # the next cycle's group is a scan's (SCAN_FIRST and SCAN)
        matches = self._matches_ahead(m, n, g, scan_next, bounds) if core.scan_ahead else None
        m.d.sync += t_ok.eq(0)
        with m.If(scan_live):
            for lane in range(lanes):
                t = scan_data[lane]
                if matches is None:
                    match = [bz.valid & (bz.partner == t.channel) for bz in bounds]
                else:
                    match = list(matches[lane])
                m.d.sync += [t_reg[lane].eq(t), t_ok[lane].eq((g - 1) * lanes + lane < n),
                             rho_t[lane].eq(_or([Mux(hz, bz.rho_b, 0) for hz, bz in zip(match, bounds)])),
                             b_t[lane].eq(_or([Mux(hz, bz.as_value(), 0) for hz, bz in zip(match, bounds)]))]
        for lane in range(lanes):
            t, b = t_reg[lane], b_t[lane]
            ut, vt = t.y >> rho_t[lane], t.x >> rho_t[lane]
            inside = (((b.lo_ay <= ut) & (ut <= b.hi_ay) & (b.lo_ax <= vt) & (vt <= b.hi_ax))
                      | ((b.lo_sy <= ut) & (ut <= b.hi_sy) & (b.lo_sx <= vt) & (vt <= b.hi_sx)))
            beats = rank(t) > rank(s)  # a higher key, or an equal key and a lower index
            # (``b.valid``: t's channel is a partner of s's, one of its slots matched)
            m.d.sync += hits[lane].eq(t_ok[lane] & (t.cls == s.cls) & beats & b.valid & inside)
        m.d.sync += beaten.eq(beaten | hits.any())

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [i.eq(0), g.eq(0)]
                    m.next = "S_READ"
            with m.State("S_READ"):  # s's bank read (address i // lanes) lands next cycle
                m.d.comb += reading_s.eq(1)
                with m.If(i == n):
                    m.d.sync += i.eq(0)
                    m.next = "OUT_READ"
                with m.Else():
                    m.next = "S_GET"
            with m.State("S_GET"):
                m.d.sync += [s.eq(s_sel), z.eq(0), beaten.eq(0)]
                m.d.comb += sr.addr.eq(s_sel.channel * z_n)
                m.next = "SLOT"
            with m.State("SLOT"):
                u, v = s.y >> sr.data.rho_a, s.x >> sr.data.rho_a
                m.d.sync += [cur.eq(sr.data), step.eq(0),
                             dividend[0].eq(u), dividend[1].eq(v),
                             dividend[2].eq(u + sr.data.ks), dividend[3].eq(v + sr.data.ks),
                             num[0].eq(u), num[1].eq(v), num[2].eq(u), num[3].eq(v)]
                m.d.sync += [r.eq(0) for r in rem]
                m.next = "DIV"
            with m.State("DIV"):
                for j in range(4):
                    trial = Signal(SLOT_KERNEL_BITS + 1, name=f"trial{j}")
                    m.d.comb += trial.eq(Cat(dividend[j][-1], rem[j]))
                    fits = trial >= cur.k
                    m.d.sync += [rem[j].eq(Mux(fits, trial - cur.k, trial)), dividend[j].eq(dividend[j] << 1)]
                m.d.sync += step.eq(step + 1)
                with m.If(step == DIV_STEPS - 1):
                    m.next = "BOUNDS"
            with m.State("BOUNDS"):
                # Aligned: the tile starts at u - u mod k. Shifted (dividend u + ks): at
                # u + ks - rem - ks = u - rem, clipped at 0; it ends k - 1 later.
                km1 = Signal(SLOT_KERNEL_BITS)
                m.d.comb += km1.eq(cur.k - 1)
                new = Signal(bound)
                m.d.comb += [new.valid.eq(cur.valid), new.partner.eq(cur.partner), new.rho_b.eq(cur.rho_b)]
                for j, (grid, d) in enumerate((("a", "y"), ("a", "x"), ("s", "y"), ("s", "x"))):
                    first = Signal(signed(DIV_STEPS + 1), name=f"first{j}")
                    m.d.comb += first.eq(num[j] - rem[j])
                    lo = Mux(first[-1], 0, first) if grid == "s" else first
                    m.d.comb += [getattr(new, f"lo_{grid}{d}").eq(lo),
                                 getattr(new, f"hi_{grid}{d}").eq(num[j] + (km1 - rem[j]))]
                m.d.sync += [bounds[-1].eq(new)] + [a_.eq(b_) for a_, b_ in zip(bounds, bounds[1:])]
                m.d.sync += z.eq(z + 1)
                m.d.comb += sr.addr.eq(s.channel * z_n + z + 1)
                with m.If(z == z_n - 1):
                    m.d.sync += g.eq(0)
                    m.next = "SCAN_FIRST"
                with m.Else():
                    m.next = "SLOT"
            with m.State("SCAN_FIRST"):  # group 0's read lands next cycle
                m.d.comb += scan_next.eq(1)
                m.d.sync += g.eq(1)
                m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += [scan_live.eq(1), scan_next.eq(1)]
                m.d.sync += g.eq(g + 1)
                with m.If(g == (n + lanes - 1) // lanes):
                    m.next = "SCAN_END"
            with m.State("SCAN_END"):  # the last group's hits register
                m.next = "SCAN_OR"
            with m.State("SCAN_OR"):  # and are or-ed into beaten
                m.next = "RESULT"
            with m.State("RESULT"):
                m.d.comb += [kw.addr.eq(i), kw.data.eq(~beaten), kw.en.eq(1)]
                m.d.sync += i.eq(i + 1)
                m.next = "S_READ"
            with m.State("OUT_READ"):
                m.d.comb += kr.addr.eq(i)
                with m.If(i == n):
                    m.next = "DONE"
                with m.Else():
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += [kr.addr.eq(i), self.o.valid.eq(kr.data), self.o.payload.eq(i)]
                with m.If(~kr.data | self.o.ready):
                    m.d.sync += i.eq(i + 1)
                    m.next = "OUT_READ"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.d.sync += n.eq(0)
                m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m

    def _matches_ahead(self, m, n, g, scan_next, bounds):
        """``scan_ahead``: per lane, which slots hold the channel of the entry whose word lands
        next cycle, in a register — from a copy of the banks' channels read a cycle ahead of
        the words (address ``g + 1`` while scanning, group 0 before: the last BOUNDS cycle,
        when the bounds' partners are final at the cycle's end). Timing: the word's channel
        compared with every slot's partner, the one-hot select of ~100 bound bits and its
        register were one cycle (16 ns in tiny's whole design on f69e106); now two."""
        core, lanes = self.core, self.core.lanes
        depth = -(-core.survivors // lanes)
        matches = []
        for b in range(lanes):
            mem = Memory(shape=self.entry["channel"].shape, depth=depth, init=[])
            m.submodules[f"chan{b}"] = mem
            w, r = mem.write_port(), mem.read_port()
            m.d.comb += [w.addr.eq(n // lanes), w.data.eq(self.i.payload.channel),
                         w.en.eq(self.i.valid & self.i.ready & (n % lanes == b)),
                         r.addr.eq(Mux(scan_next, g + 1, 0))]
            match = Signal(len(bounds), name=f"match_ahead{b}")
            m.d.sync += match.eq(Cat(bz.valid & (bz.partner == r.data) for bz in bounds))
            matches.append(match)
        return matches


def _or(values: list):
    """The bitwise or of ``values`` (a one-hot selection's and-or)."""
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out

