"""Integer versions of one recurrent step (relu_add and GRU), and quantisation of trained float cells.

Both integer steps are written once, against a tiny `ops` interface (`round`, `lut`), so that the same
code is the plaintext integer model (`ClearOps`, numpy int64) and, traced by concrete-python, the
encrypted circuit (`htr.fhe.circuits.FheOps`). This module does not import concrete.

Number formats (one `QuantSpec` for both cells, so both circuits see the same inputs):
    x_int in [-Qx, Qx], Qx = 2^(input_bits-1) - 1     input  x ~= x_int * x_scale
    h_int in [-Q, Q],   Q  = 2^(state_bits-1) - 1     state  h ~= h_int / Q        (h lies in [-1, 1])
    weights: one accumulator unit per weight block (gate / candidate ...): min over the block's input
             and recurrent parts of max|part| / Qw, Qw = 2^(weight_bits-1) - 1; the part with the
             coarser natural unit thus gets more than weight_bits levels (never fewer)
    GRU gates r, z in [0, Q]                                  r ~= r_int / Q        (same levels as h)
Accumulators are exact integers. Every table lookup (TLU) whose input is an accumulator first drops
low bits with `round_bit_pattern` so that at most `acc_bits` significant bits remain (the number of
dropped bits per accumulator is fixed at calibration from the largest value seen on the calibration
inputs, which is also the inputset Concrete compiles with).

Rounding, stated once:
- weights and biases: round to nearest (numpy rint, ties to even) on their block's accumulator unit
  (biases are accumulator-sized integers);
- inputs: x_int = clip(rint(x / x_scale), -Qx, Qx);
- accumulator -> fewer bits: Concrete's round_bit_pattern, i.e. v -> floor((v + 2^(k-1)) / 2^k) * 2^k
  (round half up) when k low bits are dropped;
- every TLU output: rint (ties to even) of the exact real function, then clip to its integer range.

relu_add step (equations of htr.nn.relu_add at state scale Q; clip(v) = clamp to [-Q, Q], one TLU):
    acc   = Wq [x; h] + bq                                   (2H,) exact integer, clear weights
    q     = TLU(round(acc_s)) = clip(rint(Q ReLU( s)), 0, Q)   ReLU(s) at state scale; >= Q acts as Q
    r     = TLU(round(acc_s)) = clip(rint(Q ReLU(-s)), 0, Q)
    n     = TLU(round(acc_n)) = clip(rint(Q a), -Q, Q)          the candidate clip(a)
    u     = relu(h - q) - relu(-h - q)                         inh(h, q): two ReLU TLUs
    v     = relu(n - r) - relu(-n - r)                         inh(n, r): two ReLU TLUs
    h'    = TLU(u + v) = clip(u + v, -Q, Q)
  8 TLUs per unit and step; no product of two encrypted values. That is the form lookups="plain".
  The same integer function from fewer lookups (IntReluAddCell.lookups):
  - "relu" (default): as "plain", but a clear zero state (h_0) skips q, u and the clip: inh(0, q) = 0
    and |v| <= Q, so h_1 = v (4 TLUs at step 1, 8 later).
  - "packed": each inh(v, g) (v in [-Q, Q], g in [0, Q]) as one TLU of the packed index
    v + Q + (2Q+1) g, whose (2Q+1)(Q+1) values identify both operands; the gate TLUs emit
    Q + (2Q+1) q and Q + (2Q+1) r directly, so the index is one addition:
        u = TLU(TLU_q(s) + h),  v = TLU(TLU_r(s) + n),  h' = TLU(u + v)
    6 TLUs per step (3 at step 1), but u and v read one bit more than the ReLUs of "relu".
  Rounding costs one bit-extraction bootstrap per dropped bit: lsbs["s"] + lsbs["n"] per unit and step.

relu_add01 (IntReluAdd01Cell, the TFHE-lean variant; float cell htr.fhe.adding.ReluAdd01Cell): state
and candidate in [0, Q], so inh(v, g) = ReLU(v - g), one TLU, on inputs in [-Q, Q]:
    n = TLU(round(acc_n)) = clip(rint(Q a), 0, Q),  u = TLU(h - q),  v = TLU(n - r),  h' = TLU(u + v) = min(u + v, Q)
  6 TLUs per unit and step (3 at step 1). A different function from relu_add's (a different cell).

GRU step (torch's nn.GRU equations, reset gate applied after U_hn as torch does):
    r  = TLU(round(Wr [x; h] + br)) = rint(Q sigmoid(.))          in [0, Q]
    z  = TLU(round(Wz [x; h] + bz))
    m  = TLU(round(Uhn h + bhn))    = clip(rint(. / m_scale), -Q, Q)   U_hn h + b_hn on a Q-level grid
    p  = r * m                                                     encrypted x encrypted
    t  = d (Win x + bin) + c p                                     common integer grid (c, d >= 1 integers)
    n  = TLU(round(t)) = clip(rint(Q tanh(.)), -Q, Q)
    e  = z * (h - n)                                               encrypted x encrypted
    h' = n + TLU(round(e)) = n + rint(e / Q)                       = rint((1 - z) n + z h), in [-Q, Q]
  5 TLUs + 2 encrypted products per unit and step. Each product of two encrypted values is the
  textbook TFHE product, x y = floor((x + y)^2 / 4) - floor((x - y)^2 / 4) (exact for integers): two
  lookups whose outputs need the *product's* bit width (about twice the operands'), which is what
  widens, and slows, the GRU's circuit. (This is also how Concrete lowers `x * y`; it is written out
  here because concrete-python 2.11's own `x * y` gave results differing from the clear product in
  these circuits, by a wrap-around of the following addition; products="native" keeps that
  lowering, for its timings only: its results are not those of the clear model.) products="multivariate"
  instead computes p and rint(z (h - n) / Q) each as one bivariate lookup (fhe.multivariate: both
  operands packed into one table index), the cheapest form of the same products that Concrete offers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths shared by both integer cells (see the module docstring)."""

    input_bits: int = 4
    state_bits: int = 4
    weight_bits: int = 4
    acc_bits: int = 6

    def __post_init__(self) -> None:
        for name in ("input_bits", "state_bits", "weight_bits"):
            if not 2 <= getattr(self, name) <= 16:
                raise ValueError(f"{name} must lie in [2, 16], got {getattr(self, name)}")
        if not 3 <= self.acc_bits <= 16:
            raise ValueError(f"acc_bits must lie in [3, 16], got {self.acc_bits}")

    @property
    def qx(self) -> int:
        return 2 ** (self.input_bits - 1) - 1

    @property
    def q(self) -> int:
        return 2 ** (self.state_bits - 1) - 1

    @property
    def qw(self) -> int:
        return 2 ** (self.weight_bits - 1) - 1

    def describe(self) -> str:
        return (f"x in [-{self.qx}, {self.qx}] ({self.input_bits}-bit), h in [-{self.q}, {self.q}] "
                f"({self.state_bits}-bit), weights in [-{self.qw}, {self.qw}] ({self.weight_bits}-bit), "
                f"TLU inputs rounded to <= {self.acc_bits} bits")


def signed_bits(vmax: int) -> int:
    """Bits of a signed integer holding values in [-vmax-1, vmax]."""
    return int(vmax).bit_length() + 1


def _rint(v) -> Array:
    return np.rint(v).astype(np.int64)


# --------------------------------------------------------------------------------------------- ops
class ClearOps:
    """Plaintext semantics of the two primitive operations (numpy int64)."""

    @staticmethod
    def round(v, k: int):
        if k <= 0:
            return v
        return ((np.asarray(v, dtype=np.int64) + (1 << (k - 1))) >> k) << k

    @staticmethod
    def lut(v, fn: Callable[[Array], Array]):
        return fn(np.asarray(v, dtype=np.int64))

    @staticmethod
    def lut2(a, b, fn: Callable[[Array, Array], Array]):
        return fn(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))

    @staticmethod
    def mul(a, b):
        return np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64)

    @staticmethod
    def copy(v):
        return v


class _Recorder(ClearOps):
    """ClearOps that also records, per named accumulator, the largest magnitude before rounding."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}

    def see(self, name: str, v) -> None:
        peak = int(np.abs(np.asarray(v)).max()) if np.size(v) else 0
        self.peaks[name] = max(self.peaks.get(name, 0), peak)


def ramp(v: Array) -> Array:
    """ReLU as a table (named so that Concrete keeps it a plain table lookup)."""
    return np.maximum(v, 0).astype(np.int64)


def _clip_fn(lo: int, hi: int) -> Callable[[Array], Array]:
    def fn(v: Array) -> Array:
        return np.clip(v, lo, hi).astype(np.int64)
    return fn


# ------------------------------------------------------------------------------------ relu_add cell
LOOKUP_FORMS = ("plain", "relu", "packed")


@dataclass
class IntReluAddCell:
    """Integer relu_add step. wx (2H, I), uh (2H, H), b (2H,) integers; rows [0, H) gate, [H, 2H) cand."""

    spec: QuantSpec
    wx: Array
    uh: Array
    b: Array
    scale_s: float          # real value of one accumulator unit, gate rows
    scale_n: float          # ... candidate rows
    x_scale: float
    lsbs: dict[str, int] = field(default_factory=lambda: {"s": 0, "n": 0})
    split_state: bool = True  # see run_cell
    lookups: str = "relu"  # one of LOOKUP_FORMS: the same values from different lookups (module docstring)

    @property
    def hidden_size(self) -> int:
        return self.uh.shape[1]

    @property
    def input_size(self) -> int:
        return self.wx.shape[1]

    # TLU functions (numpy-vectorised, int64 in and out)
    def f_q(self, a: Array) -> Array:
        Q = self.spec.q
        return np.clip(_rint(Q * np.maximum(a * self.scale_s, 0.0)), 0, Q)

    def f_r(self, a: Array) -> Array:
        Q = self.spec.q
        return np.clip(_rint(Q * np.maximum(-a * self.scale_s, 0.0)), 0, Q)

    def f_n(self, a: Array) -> Array:
        Q = self.spec.q
        return np.clip(_rint(Q * a * self.scale_n), -Q, Q)

    def f_q_packed(self, a: Array) -> Array:
        """Q + (2Q+1) q: the packed lookup's offset for inh(h, q), so that h + it lies in [0, (2Q+1)(Q+1))."""
        return self.spec.q + (2 * self.spec.q + 1) * self.f_q(a)

    def f_r_packed(self, a: Array) -> Array:
        return self.spec.q + (2 * self.spec.q + 1) * self.f_r(a)

    def f_inh_packed(self, x: Array) -> Array:
        """inh(v, g) from the packed index x = v + Q + (2Q+1) g (v in [-Q, Q], g in [0, Q]): one lookup."""
        Q = self.spec.q
        g, v = np.divmod(np.asarray(x, dtype=np.int64), 2 * Q + 1)
        v = v - Q
        return (np.maximum(v - g, 0) - np.maximum(-v - g, 0)).astype(np.int64)

    def step(self, ops, x_t, h, rec: _Recorder | None = None, h_mm=None):
        """One step. h_mm: the copy of h that the matrix product reads (default h; see `run`)."""
        H = self.hidden_size
        acc = self.wx @ x_t + self.uh @ (h if h_mm is None else h_mm) + self.b
        acc_s, acc_n = acc[:H], acc[H:]
        if rec is not None:
            rec.see("s", acc_s)
            rec.see("n", acc_n)
        s = ops.round(acc_s, self.lsbs["s"])
        a = ops.round(acc_n, self.lsbs["n"])
        return self._update(ops, s, a, h)

    def _update(self, ops, s, a, h):
        """h' from the rounded accumulators s (gate) and a (candidate), in the chosen lookup form."""
        Q = self.spec.q
        if self.lookups == "plain":
            q = ops.lut(s, self.f_q)
            r = ops.lut(s, self.f_r)
            n = ops.lut(a, self.f_n)
            u = ops.lut(h - q, ramp) - ops.lut(-h - q, ramp)
            v = ops.lut(n - r, ramp) - ops.lut(-n - r, ramp)
            return ops.lut(u + v, _clip_fn(-Q, Q))
        if self.lookups not in LOOKUP_FORMS:
            raise ValueError(f"unknown lookups form {self.lookups!r}: expected one of {', '.join(LOOKUP_FORMS)}")
        n = ops.lut(a, self.f_n)
        if self.lookups == "packed":
            v = ops.lut(ops.lut(s, self.f_r_packed) + n, self.f_inh_packed)
        else:
            r = ops.lut(s, self.f_r)
            v = ops.lut(n - r, ramp) - ops.lut(-n - r, ramp)
        if isinstance(h, np.ndarray) and not h.any():
            return v  # a clear zero state (h_0): inh(0, q) = 0 and |v| <= Q, so h' = v; no q, u or clip
        if self.lookups == "packed":
            u = ops.lut(ops.lut(s, self.f_q_packed) + h, self.f_inh_packed)
        else:
            q = ops.lut(s, self.f_q)
            u = ops.lut(h - q, ramp) - ops.lut(-h - q, ramp)
        return ops.lut(u + v, _clip_fn(-Q, Q))

    def run(self, ops, x_seq, rec: _Recorder | None = None, both: bool = False):
        return run_cell(self, ops, x_seq, rec, both)

    def accumulator_bound(self) -> dict[str, int]:
        """Worst-case |accumulator| per block over all inputs (for reference; lsbs use calibration)."""
        H, Qx, Q = self.hidden_size, self.spec.qx, self.spec.q
        tot = np.abs(self.wx).sum(1) * Qx + np.abs(self.uh).sum(1) * Q + np.abs(self.b)
        return {"s": int(tot[:H].max()), "n": int(tot[H:].max())}

    def to_float_state(self, h_int: Array) -> Array:
        return np.asarray(h_int, dtype=np.float64) / self.spec.q


@dataclass
class IntReluAdd01Cell(IntReluAddCell):
    """Integer step of relu_add01, the TFHE-lean variant: state and candidate in [0, Q] (h ~= h_int / Q).

    With v >= 0, inh(v, g) = ReLU(v - g): one lookup per term, on inputs in [-Q, Q] instead of [-2Q, Q].
    """

    def f_n(self, a: Array) -> Array:
        Q = self.spec.q
        return np.clip(_rint(Q * a * self.scale_n), 0, Q)

    def _update(self, ops, s, a, h):
        Q = self.spec.q
        v = ops.lut(ops.lut(a, self.f_n) - ops.lut(s, self.f_r), ramp)
        if isinstance(h, np.ndarray) and not h.any():
            return v  # h_0 = 0: ReLU(0 - q) = 0 and v <= Q
        return ops.lut(ops.lut(h - ops.lut(s, self.f_q), ramp) + v, _clip_fn(0, Q))


def quantize_relu_add(weight_ih, weight_hh, bias, spec: QuantSpec, x_scale: float,
                      positive: bool = False) -> IntReluAddCell:
    """Float relu_add parameters (W (2H, I), U (2H, H), b (2H)) -> IntReluAddCell (lsbs not yet set).

    Each block (gate rows, candidate rows) gets one accumulator unit (see `_block`); weights and
    biases round to nearest on it. positive=True: the relu_add01 variant (IntReluAdd01Cell).
    """
    W, U, b = (np.asarray(t, dtype=np.float64) for t in (weight_ih, weight_hh, bias))
    H = U.shape[1]
    wx, uh, bq, scales = [], [], [], []
    for rows in (slice(0, H), slice(H, 2 * H)):
        a, c, d, unit = _block(W[rows], U[rows], b[rows], spec, x_scale)
        wx.append(a)
        uh.append(c)
        bq.append(d)
        scales.append(unit)
    cls = IntReluAdd01Cell if positive else IntReluAddCell
    return cls(spec, np.concatenate(wx), np.concatenate(uh), np.concatenate(bq),
               scale_s=scales[0], scale_n=scales[1], x_scale=float(x_scale))


def run_cell(cell, ops, x_seq, rec: _Recorder | None = None, both: bool = False):
    """x_seq (T, I) integers -> final state h_T (H,) (and its wide copy with both=True); h_0 = 0.

    With cell.split_state, each new state is also copied by one identity lookup, and the matrix
    products read that copy. In TFHE an encrypted value has one encoding width for all its uses; the
    state feeds both the wide accumulators (W x + U h) and the element-wise lookups, so without the
    copy every lookup reading h would run at the accumulators' width. Whether the copy pays depends
    on the cell and the sizes (Concrete can also run a narrow-range lookup on a wide encoding, at a
    noise cost): `htr bench fhe --state-copy auto` compiles both and keeps the cheaper, for every cell.
    """
    h = np.zeros(cell.hidden_size, dtype=np.int64)
    h_mm = h
    for t in range(x_seq.shape[0]):
        h = cell.step(ops, x_seq[t], h, rec, h_mm=h_mm)
        h_mm = ops.copy(h) if cell.split_state else h
    return (h, h_mm) if both else h


# ----------------------------------------------------------------------------------------- GRU cell
def _product(a, b):
    return (a * b).astype(np.int64)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


@dataclass
class IntGRUCell:
    """Integer GRU step (torch's equations). Blocks r, z act on [x; h]; m = Uhn h; t = d Win x + c p."""

    spec: QuantSpec
    wr: Array
    ur: Array
    br: Array
    wz: Array
    uz: Array
    bz: Array
    uhn: Array
    bhn: Array
    win: Array
    bin: Array
    scale_r: float
    scale_z: float
    scale_macc: float       # real value of one unit of Uhn h + bhn
    m_scale: float          # real value of one level of m (m in [-Q, Q])
    unit_t: float           # real value of one unit of t
    c: int
    d: int
    x_scale: float
    lsbs: dict[str, int] = field(default_factory=lambda: {"r": 0, "z": 0, "m": 0, "t": 0, "e": 0})
    products: str = "multiply"  # "multivariate": each product as one bivariate lookup; "native": Concrete's `*`
    split_state: bool = True  # see run_cell

    @property
    def hidden_size(self) -> int:
        return self.ur.shape[1]

    @property
    def input_size(self) -> int:
        return self.wr.shape[1]

    def f_r(self, a):
        return np.clip(_rint(self.spec.q * _sigmoid(a * self.scale_r)), 0, self.spec.q)

    def f_z(self, a):
        return np.clip(_rint(self.spec.q * _sigmoid(a * self.scale_z)), 0, self.spec.q)

    def f_m(self, a):
        Q = self.spec.q
        return np.clip(_rint(a * self.scale_macc / self.m_scale), -Q, Q)

    def f_n(self, a):
        Q = self.spec.q
        return np.clip(_rint(Q * np.tanh(a * self.unit_t)), -Q, Q)

    def step(self, ops, x_t, h, rec: _Recorder | None = None, h_mm=None):
        hm = h if h_mm is None else h_mm
        acc_r = self.wr @ x_t + self.ur @ hm + self.br
        acc_z = self.wz @ x_t + self.uz @ hm + self.bz
        acc_m = self.uhn @ hm + self.bhn
        if rec is not None:
            rec.see("r", acc_r)
            rec.see("z", acc_z)
            rec.see("m", acc_m)
        r = ops.lut(ops.round(acc_r, self.lsbs["r"]), self.f_r)
        z = ops.lut(ops.round(acc_z, self.lsbs["z"]), self.f_z)
        m = ops.lut(ops.round(acc_m, self.lsbs["m"]), self.f_m)
        p = self._mul(ops, r, m)
        t = (self.win @ x_t + self.bin) * self.d + p * self.c
        if rec is not None:
            rec.see("t", t)
        n = ops.lut(ops.round(t, self.lsbs["t"]), self.f_n)
        # h' = (1 - z) n + z h = n + rint(z (h - n) / Q), which stays in [-Q, Q] without a clip
        if self.products == "multivariate":
            return n + ops.lut2(z, h - n, self.f_zd)
        e = self._mul(ops, z, h - n)
        if rec is not None:
            rec.see("e", e)
        return n + ops.lut(ops.round(e, self.lsbs["e"]), self.f_e)

    def _mul(self, ops, a, b):
        if self.products == "multivariate":
            return ops.lut2(a, b, _product)
        if self.products == "native":  # Concrete's own lowering of `*` (see the module docstring)
            return a * b
        return ops.mul(a, b)

    def f_e(self, e):
        return _rint(e / self.spec.q)

    def f_zd(self, z, dlt):
        return _rint(z * dlt / self.spec.q)

    def run(self, ops, x_seq, rec: _Recorder | None = None, both: bool = False):
        return run_cell(self, ops, x_seq, rec, both)

    def to_float_state(self, h_int: Array) -> Array:
        return np.asarray(h_int, dtype=np.float64) / self.spec.q


def _block(W, U, b, spec: QuantSpec, x_scale: float):
    """One weight block acting on [x_int; h_int] -> (W_int, U_int, b_int, accumulator unit).

    The input part acts on x_int (scale x_scale) and the recurrent part on h_int (scale 1 / Q); each
    has a natural unit max|part| / Qw. Both must share one accumulator unit: the smaller of the two,
    so the part with the smaller natural unit keeps exactly weight_bits and the other gets
    proportionally more levels (never fewer than weight_bits). Round to nearest; bias on the same unit.
    """
    wx, uh = W * x_scale, U / spec.q
    nat = [max(float(np.abs(part).max()), 1e-12) / spec.qw for part in (wx, uh)]
    unit = min(nat)
    return _rint(wx / unit), _rint(uh / unit), _rint(b / unit), unit


def quantize_gru(weight_ih, weight_hh, bias_ih, bias_hh, spec: QuantSpec, x_scale: float,
                 m_max: float | None = None) -> IntGRUCell:
    """torch nn.GRU layer parameters (3H, I), (3H, H), (3H,), (3H,) in r, z, n order -> IntGRUCell.

    m_max is the largest |U_hn h + b_hn| expected (default: the worst case over |h| <= 1); m is
    quantised to Q levels of m_max / Q. Win's unit is then made an exact integer ratio of the product
    grid (m_scale / Q): t = d (Win x + bin) + c p with small integers c, d, at the cost of up to one
    weight bit of Win's resolution.
    """
    Wi, Wh, bi, bh = (np.asarray(t, dtype=np.float64) for t in (weight_ih, weight_hh, bias_ih, bias_hh))
    H = Wh.shape[1]
    Q, Qw = spec.q, spec.qw
    R, Z, N = slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)
    wr, ur, br, sr = _block(Wi[R], Wh[R], bi[R] + bh[R], spec, x_scale)
    wz, uz, bz, sz = _block(Wi[Z], Wh[Z], bi[Z] + bh[Z], spec, x_scale)
    # m = U_hn h + b_hn on its own accumulator unit
    u_unit = max(float(np.abs(Wh[N] / Q).max()), 1e-12) / Qw
    uhn = np.clip(_rint(Wh[N] / Q / u_unit), -Qw, Qw)
    bhn = _rint(bh[N] / u_unit)
    if m_max is None:
        m_max = float((np.abs(Wh[N]).sum(1) + np.abs(bh[N])).max())
    m_scale = max(m_max, 1e-6) / Q
    # t = Win x + bin (+ p): natural unit of Win, then an exact integer ratio to the product grid
    nat = max(float(np.abs(Wi[N] * x_scale).max()), 1e-12) / Qw
    grid = m_scale / Q  # real value of one unit of p = r * m
    if grid >= nat:
        c, d = int(grid // nat), 1
        unit = grid / c
    else:
        c, d = 1, int(math.ceil(nat / grid))
        unit = grid
    win_unit = unit * d  # >= nat, so |win| <= Qw
    win = np.clip(_rint(Wi[N] * x_scale / win_unit), -Qw, Qw)
    bin_ = _rint(bi[N] / win_unit)
    return IntGRUCell(spec, wr, ur, br, wz, uz, bz, uhn, bhn, win, bin_, scale_r=sr, scale_z=sz,
                      scale_macc=u_unit, m_scale=m_scale, unit_t=unit, c=c, d=d, x_scale=float(x_scale))


# ------------------------------------------------------------------------------------- calibration
def quantize_inputs(x, spec: QuantSpec, x_scale: float) -> Array:
    """Float inputs -> x_int = clip(rint(x / x_scale), -Qx, Qx)."""
    return np.clip(_rint(np.asarray(x, dtype=np.float64) / x_scale), -spec.qx, spec.qx)


def calibrate(cell, inputs: Sequence[Array], passes: int = 6):
    """Set cell.lsbs so that each rounded accumulator keeps <= spec.acc_bits bits on these inputs.

    inputs: integer sequences (T, I). Runs the clear integer model, records each accumulator's peak,
    drops low bits accordingly, and repeats (dropping bits changes later steps' accumulators) until
    the choice is stable. Returns the recorded peaks.
    """
    cell.lsbs = {k: 0 for k in cell.lsbs}
    peaks: dict[str, int] = {}
    for _ in range(passes):
        rec = _Recorder()
        for x in inputs:
            cell.run(ClearOps, np.asarray(x, dtype=np.int64), rec)
        peaks = rec.peaks
        # monotone: dropping more bits never has to be undone, so this settles in a few passes
        new = {k: max(cell.lsbs[k], signed_bits(peaks.get(k, 0)) - cell.spec.acc_bits) for k in cell.lsbs}
        if new == cell.lsbs:
            break
        cell.lsbs = new
    return peaks


def random_inputs(rng: np.random.Generator, spec: QuantSpec, T: int, I: int, count: int) -> list[Array]:
    """Integer input sequences covering the value range: uniform draws plus the two extremes."""
    xs = [rng.integers(-spec.qx, spec.qx + 1, size=(T, I)) for _ in range(max(count - 2, 0))]
    xs += [np.full((T, I), spec.qx), np.full((T, I), -spec.qx)]
    return [x.astype(np.int64) for x in xs[:count]]


def random_float_cells(H: int, I: int, seed: int = 0):
    """Float relu_add and GRU parameters of the same sizes, torch's default initialisations."""
    import torch

    from htr.nn.relu_add import ReluAddCell

    torch.manual_seed(seed)
    ra = ReluAddCell(I, H)
    gru = torch.nn.GRU(I, H)
    return ra, gru


__all__ = ["QuantSpec", "ClearOps", "IntReluAddCell", "IntReluAdd01Cell", "IntGRUCell", "LOOKUP_FORMS",
           "quantize_relu_add", "quantize_gru", "quantize_inputs", "calibrate", "random_inputs",
           "random_float_cells", "signed_bits", "replace"]
