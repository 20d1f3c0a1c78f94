"""Concrete (TFHE) circuits of the integer relu_add and GRU steps, unrolled over T steps.

The circuit of a cell is its clear integer model (htr.fhe.quantize) traced by concrete-python: the
input sequence x (T, I) is encrypted, the weights are clear constants, h_0 = 0, and the output is the
final state h_T (H,) (plus, optionally, a clear-weight linear head). `FheOps` maps the two primitives:
`round` -> fhe.truncate_bit_pattern of v + 2^(k-1) (exact round half up),
`lut` -> fhe.univariate (one programmable bootstrap
per element). An encrypted x encrypted product (GRU only) is numpy's `*` on two tracers, which Concrete
lowers to table lookups of (x + y)^2 / 4 and (x - y)^2 / 4.

Needs the optional extra: pip install -e .[fhe]
"""
from __future__ import annotations

import atexit
import os
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from htr.fhe.quantize import IntGRUCell, IntReluAddCell

FHE_MISSING = ("concrete-python is not installed: install the extra with `pip install -e .[fhe]` "
               "(after torch; needs numpy<2 and setuptools<81)")


def import_fhe():
    """concrete.fhe, or ImportError with the install line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # concrete's namespace package still imports pkg_resources
        try:
            import concrete.compiler
            import concrete.fhe as fhe
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(FHE_MISSING) from err
    # concrete.compiler registers an exit handler that stops its dataflow runtime with a C-level
    # exit(0): every later exit status (a failing test run, a CLI error) would read 0. htr never
    # enables dataflow parallelisation, so that handler has nothing to stop.
    atexit.unregister(concrete.compiler._terminate_df_parallelization)
    return fhe


def fhe_available() -> bool:
    try:
        import_fhe()
    except ImportError:
        return False
    return True


def _identity(v: np.ndarray) -> np.ndarray:
    return v.astype(np.int64)


def _quarter_square(v: np.ndarray) -> np.ndarray:
    return (v.astype(np.int64) ** 2) // 4


class FheOps:
    """The two primitives of the integer cells, for tracing by Concrete."""

    @staticmethod
    def round(v, k: int):
        """Round half up to a multiple of 2^k: truncate_bit_pattern(v + 2^(k-1), k).

        Same values as fhe.round_bit_pattern(v, k), but concrete-python 2.11's round_bit_pattern
        (overflow_protection=True) gives wrong values in simulation and encrypted for some asymmetric
        input ranges, e.g. [-18, 4] with k = 2, where truncation of the shifted value is exact.
        """
        if k <= 0:
            return v
        fhe = import_fhe()
        from concrete.fhe.tracing import Tracer

        if not isinstance(v, Tracer):
            return ((np.asarray(v, dtype=np.int64) + (1 << (k - 1))) >> k) << k
        return fhe.truncate_bit_pattern(v + (1 << (k - 1)), lsbs_to_remove=k)

    @staticmethod
    def lut(v, fn: Callable[[np.ndarray], np.ndarray]):
        fhe = import_fhe()
        from concrete.fhe.tracing import Tracer

        if isinstance(v, Tracer):
            return fhe.univariate(fn)(v)
        return fn(np.asarray(v, dtype=np.int64))  # clear constant (e.g. the first step's h_0 = 0)


    @staticmethod
    def mul(a, b):
        """Product; of two encrypted values: floor((a+b)^2/4) - floor((a-b)^2/4), two lookups."""
        from concrete.fhe.tracing import Tracer

        if isinstance(a, Tracer) and isinstance(b, Tracer):
            return FheOps.lut(a + b, _quarter_square) - FheOps.lut(a - b, _quarter_square)
        return a * b

    @staticmethod
    def copy(v):
        """The same values in a fresh encoding (one identity lookup per element)."""
        from concrete.fhe.tracing import Tracer

        return FheOps.lut(v, _identity) if isinstance(v, Tracer) else v

    @staticmethod
    def lut2(a, b, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        fhe = import_fhe()
        from concrete.fhe.tracing import Tracer

        if isinstance(a, Tracer) and isinstance(b, Tracer):
            return fhe.multivariate(fn)(a, b)
        if isinstance(a, Tracer) or isinstance(b, Tracer):
            return fn(a, b)  # one operand clear (first step, h_0 = 0): a clear product, no lookup needed
        return fn(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))


def configuration(key_cache: str | os.PathLike | None = None, **overrides):
    """A Configuration for these circuits: exact rounding; optional insecure key cache for tests."""
    fhe = import_fhe()
    opts: dict[str, Any] = dict(rounding_exactness=fhe.Exactness.EXACT, show_progress=False)
    if key_cache is not None:
        opts.update(use_insecure_key_cache=True, enable_unsafe_features=True,
                    insecure_key_cache_location=str(key_cache))
    opts.update(overrides)
    return fhe.Configuration(**opts)


def circuit_function(cell: IntReluAddCell | IntGRUCell, T: int,
                     head: tuple[np.ndarray, int] | None = None) -> Callable:
    """The traced function x (T, I) -> h_T (H,), or -> head_w @ h_T + head_b (scalar) with a head."""

    def f(x):
        h, h_wide = cell.run(FheOps, x, both=True)
        if head is not None:
            w, b = head
            return np.sum(h_wide * w) + b  # the head reads the wide copy, like the matrix products
        return h

    return f


def clear_run(cell: IntReluAddCell | IntGRUCell, x: np.ndarray,
              head: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """The plaintext integer model of the same circuit."""
    from htr.fhe.quantize import ClearOps

    h = cell.run(ClearOps, np.asarray(x, dtype=np.int64))  # the copies hold the same values in clear
    if head is not None:
        w, b = head
        return np.sum(h * w) + b
    return h


_BUILD_ROOT: str | None = None


def _build_root() -> str:
    """One temporary folder per process for Concrete's compiled libraries, removed at exit.

    Concrete builds every circuit in its own `tempfile.mkdtemp()` folder and never removes it
    (`Circuit.cleanup` is a no-op in concrete-python 2.11); hundreds piled up in /tmp.
    """
    global _BUILD_ROOT
    if _BUILD_ROOT is None:
        _BUILD_ROOT = tempfile.mkdtemp(prefix="htr-fhe-build-")
        atexit.register(shutil.rmtree, _BUILD_ROOT, True)
    return _BUILD_ROOT


def compile_cell(cell: IntReluAddCell | IntGRUCell, T: int, inputset, config=None,
                 head: tuple[np.ndarray, int] | None = None):
    """Compile the T-step circuit of `cell` on an inputset of integer sequences (T, I)."""
    fhe = import_fhe()
    compiler = fhe.Compiler(circuit_function(cell, T, head), {"x": "encrypted"})
    saved, tempfile.tempdir = tempfile.tempdir, _build_root()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return compiler.compile([np.asarray(x, dtype=np.int64) for x in inputset],
                                    configuration=config or configuration())
    finally:
        tempfile.tempdir = saved


def _bit_widths(circuit) -> dict[str, Any]:
    """Largest integer bit width, the bit widths of the table lookups' inputs, and the graph's counts:
    element-wise lookups and rounding bits (one bit-extraction bootstrap each), before Concrete's
    own simplifications (the measured count is `programmable_bootstrap_count`)."""
    graph = circuit.graph
    out: dict[str, Any] = {"max_bit_width": int(graph.maximum_integer_bit_width())}
    tlu_in: dict[int, int] = {}
    rounding_bits = 0
    try:
        for node in graph.query_nodes(custom_filter=lambda n: bool(n.converted_to_table_lookup)):
            if node.properties.get("name") in ("round_bit_pattern", "truncate_bit_pattern"):
                rounding_bits += int(node.properties["kwargs"]["lsbs_to_remove"]) * int(np.prod(node.output.shape))
                continue  # rounding is reported through its (small) bootstraps, not as a lookup
            pred = graph.ordered_preds_of(node)[0]
            bw = int(pred.output.dtype.bit_width)
            if pred.properties.get("name") in ("round_bit_pattern", "truncate_bit_pattern"):
                bw -= int(pred.properties["kwargs"]["lsbs_to_remove"])  # the lookup reads the kept MSBs
            tlu_in[bw] = tlu_in.get(bw, 0) + int(np.prod(node.output.shape))
    except Exception:  # noqa: BLE001 - reporting only; the graph API differs across versions
        pass
    # {input bit width: number of element-wise lookups}; encrypted products are lowered later, not here
    out["tlu_input_bit_widths"] = {str(k): v for k, v in sorted(tlu_in.items())}
    out["graph_lookups"] = sum(tlu_in.values())
    out["graph_rounding_bits"] = rounding_bits
    return out


def parameters(circuit) -> dict[str, Any]:
    """The crypto parameters Concrete chose: bootstrap / keyswitch keys, PBS counts, sizes, p_error."""
    ki = circuit.client.specs.program_info.get_keyset_info()
    bsk = [dict(polynomial_size=int(b.polynomial_size()), glwe_dimension=int(b.glwe_dimension()),
                input_lwe_dimension=int(b.input_lwe_dimension()), level=int(b.level()),
                base_log=int(b.base_log())) for b in ki.bootstrap_keys()]
    ksk = [dict(level=int(k.level()), base_log=int(k.base_log())) for k in ki.keyswitch_keys()]
    pbs_per_param = {}
    for p, n in circuit.programmable_bootstrap_count_per_parameter.items():
        key = (f"N={p.polynomial_size()},k={p.glwe_dimension()},n={p.input_lwe_dimension()},"
               f"l={p.level()},B=2^{p.base_log()}")
        pbs_per_param[key] = int(n)
    return {
        **_bit_widths(circuit),
        "bootstrap_keys": bsk,
        "keyswitch_keys": ksk,
        "pbs_count": int(circuit.programmable_bootstrap_count),
        "pbs_per_parameter": pbs_per_param,
        "keyswitch_count": int(circuit.key_switch_count),
        "size_bootstrap_keys_MB": round(circuit.size_of_bootstrap_keys / 2**20, 2),
        "size_keyswitch_keys_MB": round(circuit.size_of_keyswitch_keys / 2**20, 2),
        "complexity": float(circuit.complexity),
        "global_p_error": float(circuit.global_p_error),
    }


@dataclass
class Timing:
    compile_s: float = 0.0
    keygen_s: float = 0.0
    encrypt_s: list[float] = field(default_factory=list)
    run_s: list[float] = field(default_factory=list)
    decrypt_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        med = lambda v: float(statistics.median(v)) if v else float("nan")  # noqa: E731
        return {"compile_s": self.compile_s, "keygen_s": self.keygen_s, "encrypt_s": med(self.encrypt_s),
                "run_s": med(self.run_s), "decrypt_s": med(self.decrypt_s), "runs": len(self.run_s)}


def timed_encrypted_runs(circuit, inputs, timing: Timing) -> list[tuple[np.ndarray, np.ndarray]]:
    """Encrypt, run, decrypt each input; return (decrypted, simulated) pairs for the exactness check."""
    pairs = []
    for x in inputs:
        x = np.asarray(x, dtype=np.int64)
        t0 = time.perf_counter()
        enc = circuit.encrypt(x)
        t1 = time.perf_counter()
        res = circuit.run(enc)
        t2 = time.perf_counter()
        dec = circuit.decrypt(res)
        t3 = time.perf_counter()
        timing.encrypt_s.append(t1 - t0)
        timing.run_s.append(t2 - t1)
        timing.decrypt_s.append(t3 - t2)
        pairs.append((np.asarray(dec), np.asarray(circuit.simulate(x))))
    return pairs


def compile_and_run(cell, T: int, inputset, inputs, config=None, head=None) -> dict[str, Any]:
    """Compile, keygen, and run `inputs` encrypted; report timings, parameters and exactness."""
    timing = Timing()
    t0 = time.perf_counter()
    circuit = compile_cell(cell, T, inputset, config, head)
    timing.compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    circuit.keygen(force=True)
    timing.keygen_s = time.perf_counter() - t0
    pairs = timed_encrypted_runs(circuit, inputs, timing)
    clear = [clear_run(cell, x, head) for x in inputs]
    return {
        "timing": timing.summary(),
        "params": parameters(circuit),
        "encrypted_equals_simulate": all(np.array_equal(d, s) for d, s in pairs),
        "simulate_equals_clear": all(np.array_equal(s, c) for (_, s), c in zip(pairs, clear)),
        "outputs": [d.tolist() for d, _ in pairs],
        "circuit": circuit,
    }


def temp_key_cache() -> str:
    path = os.path.join(tempfile.gettempdir(), "htr-fhe-keycache")
    os.makedirs(path, exist_ok=True)
    return path
