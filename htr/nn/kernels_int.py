"""Compiled integer kernels of the relu_add layer's integer inference (htr.fhe.integer.IntegerReluAdd).

One direction of one layer runs as:
1. the input projection W_int x_int of all T steps at once: one int8 x int8 -> int32 matrix product
   (`int8_matmul`: torch._int_mm, oneDNN's integer GEMM);
2. the recurrence (`recurrence`): per step, U_int h_int as int8 x int8 -> int32 dot products, then the
   gate in integers (requantisation with int64 multipliers, clamps, additions, ReLUs, one shift).

The step's product uses the CPU's integer dot-product instruction when it has one: VPDPBUSD (AVX-512
VNNI) multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four into one of 16 int32
lanes. LLVM's loop vectoriser does not form it from a plain loop (it widens to int16 and uses
VPDPWSSD / VPMADDWD, at half the rate), so `_dot_tile` emits the instruction itself, as an LLVM
intrinsic inside numba-compiled code. The unsigned operand is the state offset by 128
(h + 128 in [1, 255] for h in [-127, 127]); the constant 128 * sum_k U[j, k] is taken off afterwards,
so the sums are exact. CPUs without AVX-512 VNNI run the same driver with a plain-loop product
(`matvec_generic`): the same integers, slower.

U is stored blocked for the tile: ``packed[rg, g, r]`` holds the 64 bytes U[128 rg + 16 r + l, 4 g + c]
(r < 8, l < 16, c < 4), so one 64-byte load feeds one instruction, which adds four products into each
of 16 rows, and a tile reads its rows as one contiguous stream; a tile keeps 8 row blocks x 1 sequence
or 4 row blocks x up to 4 sequences in registers.

The element-wise part of a step (`_gates16`, `_update16`) is written as 16-lane LLVM vector code, which
compiles to 512-bit registers where the CPU has them (numba's loop vectoriser stops at 256 bits).
"""
from __future__ import annotations

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

SHIFT = 20  # fraction bits of the requantisation multipliers (htr.fhe.integer)
ROW_BLOCK = 16  # rows per 64-byte block: 16 int32 lanes
ROW_ALIGN = 128  # rows are padded to a multiple of 8 row blocks (the single-sequence tile)
OFFSET = 128  # the state byte fed to VPDPBUSD: h + 128 (unsigned)


def _host_has_vnni() -> bool:
    """True when numba compiles for this CPU (no NUMBA_CPU_NAME override) and it has AVX-512 VNNI."""
    try:
        import llvmlite.binding as llvm
        from numba.core import config

        if config.CPU_NAME not in (None, "host") or config.CPU_FEATURES is not None:
            return False
        features = llvm.get_host_cpu_features()
        return all(features.get(f, False) for f in ("avx512f", "avx512bw", "avx512vnni"))
    except Exception:  # noqa: BLE001 - no feature query: take the portable kernel
        return False


HAS_VNNI = _host_has_vnni()
KERNELS = ("vnni", "generic")

_I32, _I64 = ir.IntType(32), ir.IntType(64)
_V16 = ir.VectorType(_I32, 16)


def _dot_tile(rows: int, seqs: int):
    """A numba intrinsic: acc[b, 16 r + l] = sum_{g < G} dpbusd(h[b, 4g:4g+4], U block (r, g)) for
    r < rows, b < seqs, the 16 x 4 block (r, g) at u_addr + 64 r + g_stride g; addresses in bytes,
    strides of h in bytes, of acc in int32 elements. Only compiled when called (needs AVX-512 VNNI)."""

    @intrinsic
    def tile(typingctx, u_addr, g_stride, h_addr, h_stride, acc_addr, acc_stride, G):
        sig = types.void(*([types.int64] * 7))

        def codegen(context, builder, signature, args):
            u_addr, g_stride, h_addr, h_stride, acc_addr, acc_stride, G = args
            dpbusd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16, [_V16, _V16, _V16]),
                                                    "llvm.x86.avx512.vpdpbusd.512")

            def const(v):
                return ir.Constant(_I64, v)

            entry = builder.basic_block
            loop = builder.append_basic_block("dot.loop")
            done = builder.append_basic_block("dot.done")
            builder.branch(loop)
            builder.position_at_end(loop)
            g = builder.phi(_I64)
            g.add_incoming(const(0), entry)
            accs = []
            for _ in range(rows * seqs):
                acc = builder.phi(_V16)
                acc.add_incoming(ir.Constant(_V16, None), entry)
                accs.append(acc)
            g_off, g4 = builder.mul(g, g_stride), builder.mul(g, const(4))
            weights = []
            for r in range(rows):
                addr = builder.add(builder.add(u_addr, const(64 * r)), g_off)
                weights.append(builder.load(builder.inttoptr(addr, _V16.as_pointer()), align=1))
            new = [None] * (rows * seqs)
            for b in range(seqs):
                addr = builder.add(builder.add(h_addr, builder.mul(h_stride, const(b))), g4)
                four = builder.load(builder.inttoptr(addr, _I32.as_pointer()), align=1)
                lane = builder.insert_element(ir.Constant(_V16, ir.Undefined), four, ir.Constant(_I32, 0))
                state = builder.shuffle_vector(lane, ir.Constant(_V16, ir.Undefined), ir.Constant(_V16, None))
                for r in range(rows):
                    new[r * seqs + b] = builder.call(dpbusd, [accs[r * seqs + b], state, weights[r]])
            g_next = builder.add(g, const(1))
            body_end = builder.basic_block
            g.add_incoming(g_next, body_end)
            for acc, value in zip(accs, new):
                acc.add_incoming(value, body_end)
            builder.cbranch(builder.icmp_signed("<", g_next, G), loop, done)
            builder.position_at_end(done)
            for b in range(seqs):
                for r in range(rows):
                    offset = builder.add(builder.mul(acc_stride, const(4 * b)), const(64 * r))
                    addr = builder.add(acc_addr, offset)
                    builder.store(new[r * seqs + b], builder.inttoptr(addr, _V16.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile_8x1 = _dot_tile(8, 1)
_tile_4x2 = _dot_tile(4, 2)
_tile_4x3 = _dot_tile(4, 3)
_tile_4x4 = _dot_tile(4, 4)
GROUP = 8  # row blocks per group: the single-sequence tile's height


@njit(cache=True)
def matvec_vnni(packed, hb, n, acc):
    """acc[b, j] = sum_k U[j, k] hb[b, k] for the first n sequences, with VPDPBUSD.

    packed (R/128, K/4, 8, 64) int8 (`pack`), hb (>= n, K) uint8, acc (>= n, R) int32.
    Four sequences at a time share each 64-byte load of U (4 x 4 tiles: 16 accumulators), over half a
    group of rows (4 KiB per 64 columns, kept in L1 across the sequences); a single sequence takes
    8 row blocks at a time (8 accumulators: VPDPBUSD's latency hidden).
    """
    ngroups, G = packed.shape[0], packed.shape[1]
    u, h, a = np.int64(packed.ctypes.data), np.int64(hb.ctypes.data), np.int64(acc.ctypes.data)
    gs = np.int64(GROUP * 64)  # bytes from one column group to the next within a row group
    rs = np.int64(G) * gs  # bytes per row group
    hs, acs = np.int64(hb.shape[1]), np.int64(acc.shape[1])
    G = np.int64(G)
    full, rest = n - n % 4, n % 4
    for rg in range(ngroups):
        for half in range(2):
            base = u + rg * rs + half * 4 * 64
            row = rg * GROUP * ROW_BLOCK + half * 4 * ROW_BLOCK
            for b in range(0, full, 4):
                _tile_4x4(base, gs, h + b * hs, hs, a + (b * acs + row) * 4, acs, G)
            if rest == 3:
                _tile_4x3(base, gs, h + full * hs, hs, a + (full * acs + row) * 4, acs, G)
            elif rest == 2:
                _tile_4x2(base, gs, h + full * hs, hs, a + (full * acs + row) * 4, acs, G)
    if rest == 1:
        for rg in range(ngroups):
            row = rg * GROUP * ROW_BLOCK
            _tile_8x1(u + rg * rs, gs, h + full * hs, hs, a + (full * acs + row) * 4, acs, G)


_V16_64 = ir.VectorType(_I64, 16)
_V16_8 = ir.VectorType(ir.IntType(8), 16)


def _splat(builder, value, vtype):
    lane = builder.insert_element(ir.Constant(vtype, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(lane, ir.Constant(vtype, ir.Undefined), ir.Constant(ir.VectorType(_I32, 16), None))


def _vmax(builder, a, b):
    return builder.select(builder.icmp_signed(">", a, b), a, b)


def _vmin(builder, a, b):
    return builder.select(builder.icmp_signed("<", a, b), a, b)


def _load(builder, addr, vtype):
    return builder.load(builder.inttoptr(addr, vtype.as_pointer()), align=1)


def _store(builder, value, addr):
    builder.store(value, builder.inttoptr(addr, value.type.as_pointer()), align=1)


@intrinsic
def _gates16(typingctx, accx_addr, acc_addr, mx_addr, mh_addr, c0_addr, gates_addr, QF):
    """16 gate pre-activations at once (plain LLVM vector code: 512-bit registers where the CPU has them):
    gates = clamp((accx M_x + acc M_h + C0) >> SHIFT, -QF, QF); accx, acc int32, M_x, M_h, C0 int64."""
    sig = types.void(*([types.int64] * 7))

    def codegen(context, builder, signature, args):
        accx_addr, acc_addr, mx_addr, mh_addr, c0_addr, gates_addr, QF = args
        ax = builder.sext(_load(builder, accx_addr, _V16), _V16_64)
        ac = builder.sext(_load(builder, acc_addr, _V16), _V16_64)
        g = builder.add(builder.add(builder.mul(ax, _load(builder, mx_addr, _V16_64)),
                                    builder.mul(ac, _load(builder, mh_addr, _V16_64))),
                        _load(builder, c0_addr, _V16_64))
        g = builder.ashr(g, _splat(builder, ir.Constant(_I64, SHIFT), _V16_64))
        qf = _splat(builder, QF, _V16_64)
        g = _vmin(builder, _vmax(builder, g, builder.neg(qf)), qf)
        _store(builder, builder.trunc(g, _V16), gates_addr)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _update16(typingctx, s_addr, a_addr, hb_addr, out_addr, F, Q):
    """16 units of the step in int32 lanes: reads the gate score s and candidate a (int32, on the grid
    1 / (Q 2^F), clamped to [-Q 2^F, Q 2^F]) and the state bytes h + 128; writes h' + 128 and h' (int8)."""
    sig = types.void(*([types.int64] * 6))

    def codegen(context, builder, signature, args):
        s_addr, a_addr, hb_addr, out_addr, F, Q = args
        F32, Q32 = builder.trunc(F, _I32), builder.trunc(Q, _I32)

        def vec(v):
            return _splat(builder, v if isinstance(v, ir.Value) else ir.Constant(_I32, v), _V16)

        zero, offset = vec(0), vec(OFFSET)
        sc, a = _load(builder, s_addr, _V16), _load(builder, a_addr, _V16)
        q, r = _vmax(builder, sc, zero), _vmax(builder, builder.neg(sc), zero)
        h = builder.sub(builder.zext(_load(builder, hb_addr, _V16_8), _V16), offset)
        hf = builder.shl(h, vec(F32))
        u = builder.sub(_vmax(builder, builder.sub(hf, q), zero), _vmax(builder, builder.sub(builder.neg(hf), q), zero))
        v = builder.sub(_vmax(builder, builder.sub(a, r), zero), _vmax(builder, builder.sub(builder.neg(a), r), zero))
        fhalf = builder.lshr(builder.shl(ir.Constant(_I32, 1), F32), ir.Constant(_I32, 1))  # 2^(F-1), 0 if F = 0
        z = builder.ashr(builder.add(builder.add(u, v), vec(fhalf)), vec(F32))
        qv = vec(Q32)
        hn = _vmin(builder, _vmax(builder, z, builder.neg(qv)), qv)
        _store(builder, builder.trunc(builder.add(hn, offset), _V16_8), hb_addr)
        _store(builder, builder.trunc(hn, _V16_8), out_addr)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def matvec_generic(packed, hb, n, acc):
    """`matvec_vnni` in plain loops (any CPU; LLVM vectorises them); packed is U itself, (R, K) int8."""
    R, K = packed.shape
    for b in range(n):
        for j in range(R):
            s = np.int32(0)
            for k in range(K):
                s += np.int32(packed[j, k]) * np.int32(hb[b, k])
            acc[b, j] = s


def pack(u_int: np.ndarray, kernel: str) -> tuple[np.ndarray, np.ndarray]:
    """U (R, K) int8 -> (U in the kernel's layout, zero-padded to Rp rows, Rp % 128 == 0, and a multiple
    of 4 columns; the offset correction 128 * sum_k U[j, k], (Rp,) int64)."""
    R, K = u_int.shape
    Rp, Kp = -(-R // ROW_ALIGN) * ROW_ALIGN, -(-K // 4) * 4
    u = np.zeros((Rp, Kp), dtype=np.int8)
    u[:R, :K] = u_int
    correction = OFFSET * u.astype(np.int64).sum(axis=1)
    if kernel == "generic":
        return u, correction
    # [row group, column group, row block in the group, (row in the block, column in the group)]
    blocked = u.reshape(Rp // ROW_ALIGN, GROUP, ROW_BLOCK, Kp // 4, 4).transpose(0, 3, 1, 2, 4)
    return np.ascontiguousarray(blocked).reshape(Rp // ROW_ALIGN, Kp // 4, GROUP, 64), correction


@njit(cache=True)
def _step(i, n, accx, acc, hb, gates, mx, mh, c0, lengths, order, reverse, Q, F, out, col):
    """The element-wise part of step i for the n running sequences, given acc = U (h + 128) (see
    `recurrence_vnni`): the gate pre-activations, then the new states (in hb, as h + 128) and outputs."""
    T, N, H2 = accx.shape
    H = H2 // 2
    Rp, Kp, C = acc.shape[1], hb.shape[1], out.shape[2]
    QF = np.int64(Q) << F
    fhalf = np.int32((1 << (F - 1)) if F > 0 else 0)
    q32 = np.int32(Q)
    H2v, Hv = H2 - H2 % 16, H - H % 16  # 16 lanes at a time, then the rest one by one
    p_accx, p_acc, p_hb = np.int64(accx.ctypes.data), np.int64(acc.ctypes.data), np.int64(hb.ctypes.data)
    p_out, p_gates = np.int64(out.ctypes.data), np.int64(gates.ctypes.data)
    p_mh, p_c0 = np.int64(mh.ctypes.data), np.int64(c0.ctypes.data)
    F64, Q64 = np.int64(F), np.int64(Q)
    for s in range(n):
        b = order[s]
        t = lengths[b] - 1 - i if reverse else i
        row_x = p_accx + (t * N + b) * H2 * 4
        row_acc = p_acc + s * Rp * 4
        row_mx = np.int64(mx.ctypes.data) + b * Rp * 8  # this line's input multipliers
        for j in range(0, H2v, 16):  # requantise both accumulators and the bias onto the gate grid
            _gates16(row_x + 4 * j, row_acc + 4 * j, row_mx + 8 * j, p_mh + 8 * j, p_c0 + 8 * j, p_gates + 4 * j, QF)
        for j in range(H2v, H2):
            g = (np.int64(accx[t, b, j]) * mx[b, j] + np.int64(acc[s, j]) * mh[j] + c0[j]) >> SHIFT
            gates[j] = np.int32(min(max(g, -QF), QF))  # every use of s or a clamps to [-QF, QF]
        row_out = p_out + (t * N + b) * C + col
        for j in range(0, Hv, 16):
            _update16(p_gates + 4 * j, p_gates + 4 * (H + j), p_hb + s * Kp + j, row_out + j, F64, Q64)
        for j in range(Hv, H):
            sc = gates[j]
            a = gates[H + j]
            q = max(sc, 0)
            r = max(-sc, 0)
            hf = (np.int32(hb[s, j]) - OFFSET) << F
            u = max(hf - q, 0) - max(-hf - q, 0)
            v = max(a - r, 0) - max(-a - r, 0)
            z = (u + v + fhalf) >> F
            hn = min(max(z, -q32), q32)
            hb[s, j] = np.uint8(hn + OFFSET)
            out[t, b, col + j] = np.int8(hn)


@njit(cache=True)
def _final_states(hb, order, h_last):
    for s in range(hb.shape[0]):
        for j in range(h_last.shape[1]):
            h_last[order[s], j] = np.int32(hb[s, j]) - OFFSET


@njit(cache=True)
def recurrence_vnni(accx, packed, mx, mh, c0, lengths, order, reverse, Q, F, out, col, h_last):
    """One direction of one layer over a batch, U_int h_int by `matvec_vnni`.

    accx (T, N, 2H) int32 = W_int x_int (C-contiguous); packed: U in `pack`'s layout; mx (N, Rp) int64
    input multipliers (one row per line), mh (Rp,) int64, c0 (Rp,) int64 = bias + 2^(SHIFT-1) - mh *
    correction; lengths (N,) int64; order: the sequences by decreasing length, so that those still
    running at a step are a prefix; Q, F: the state and gate grids (htr.fhe.integer). Writes
    out[t, b, col:col+H] (int8, C-contiguous; untouched past each length) and h_last (N, H) int32.
    """
    N = accx.shape[1]
    hb = np.full((N, packed.shape[1] * 4), OFFSET, dtype=np.uint8)  # h + 128; padding columns meet zero weights
    acc = np.empty((N, mx.shape[1]), dtype=np.int32)
    gates = np.empty(accx.shape[2], dtype=np.int32)
    n = N
    for i in range(lengths[order[0]] if N else 0):
        while lengths[order[n - 1]] <= i:
            n -= 1
        matvec_vnni(packed, hb, n, acc)
        _step(i, n, accx, acc, hb, gates, mx, mh, c0, lengths, order, reverse, Q, F, out, col)
    _final_states(hb, order, h_last)


@njit(cache=True)
def recurrence_generic(accx, packed, mx, mh, c0, lengths, order, reverse, Q, F, out, col, h_last):
    """`recurrence_vnni` with `matvec_generic` (packed: U itself, padded)."""
    N = accx.shape[1]
    hb = np.full((N, packed.shape[1]), OFFSET, dtype=np.uint8)
    acc = np.empty((N, mx.shape[1]), dtype=np.int32)
    gates = np.empty(accx.shape[2], dtype=np.int32)
    n = N
    for i in range(lengths[order[0]] if N else 0):
        while lengths[order[n - 1]] <= i:
            n -= 1
        matvec_generic(packed, hb, n, acc)
        _step(i, n, accx, acc, hb, gates, mx, mh, c0, lengths, order, reverse, Q, F, out, col)
    _final_states(hb, order, h_last)


def recurrence(kernel: str, *args) -> None:
    """`recurrence_vnni` (kernel "vnni") or `recurrence_generic` (kernel "generic") on the same arguments."""
    (recurrence_vnni if kernel == "vnni" else recurrence_generic)(*args)


@njit(cache=True)
def quantize_input(x, qmax, lengths):
    """x (T, N, C) float32, C-contiguous, lengths (N,) -> (int8 x_int, scales (N,)): one scale per line,
    max |x| over its valid steps / qmax, and x_int = clip(rint(x / scale)) on every step, in float32 as
    numpy computes it for a float32 array (round half to even). The max runs over the bits without the
    sign (the same order for every non-NaN float32), which LLVM vectorises where it leaves a float max
    scalar."""
    T, N, C = x.shape
    bits = x.view(np.int32)
    one = np.empty(1, dtype=np.int32)
    lim = np.float32(qmax)
    out = np.empty(x.shape, dtype=np.int8)
    scales = np.empty(N)
    for b in range(N):
        m = np.int32(0)
        for t in range(min(lengths[b], T)):
            for c in range(C):
                m = max(m, bits[t, b, c] & np.int32(0x7FFFFFFF))
        one[0] = m
        scales[b] = max(float(one.view(np.float32)[0]), 1e-12) / qmax
        s32 = np.float32(scales[b])
        for t in range(T):
            for c in range(C):
                out[t, b, c] = np.int8(min(max(np.rint(x[t, b, c] / s32), -lim), lim))
    return out, scales


@njit(cache=True)
def dequantize(x_int, scale, out):
    """out = float32(x_int) * float32(scale), as numpy's x_int.astype(np.float32) * scale."""
    s32 = np.float32(scale)
    src, dst = x_int.ravel(), out.ravel()
    for i in range(src.size):
        dst[i] = np.float32(src[i]) * s32


def int8_matmul(x: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    """(M, K) int8 @ (K, N) int8 -> (M, N) int32, exact: torch's integer GEMM (oneDNN, VNNI/AMX where the
    CPU has them), or float32 BLAS on the integers where torch._int_mm is missing (exact for K < 1040:
    every partial sum stays below 2^24)."""
    if hasattr(torch, "_int_mm"):
        return torch._int_mm(torch.from_numpy(x), torch.from_numpy(w_t)).numpy()
    if x.shape[1] * 127 * 127 >= 2 ** 24:
        return x.astype(np.int64) @ w_t.astype(np.int64)
    return (x.astype(np.float32) @ w_t.astype(np.float32)).astype(np.int32)
