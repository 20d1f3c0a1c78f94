"""The lookup forms of the integer relu_add step compute one integer function; relu_add01's integer model.

Clear integer models only (numpy, no concrete): the encrypted circuits are checked in tests/test_fhe.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from htr.bench.fhe import DEFAULT_SPEC, int_vs_float, make_cell
from htr.fhe.quantize import LOOKUP_FORMS, ClearOps, QuantSpec, calibrate, random_inputs

pytestmark = pytest.mark.fhe


def _reference_run(cell, x):
    """The step's equations written out once more (htr.fhe.quantize's docstring), independently of `step`."""
    H, Q = cell.hidden_size, cell.spec.q
    h = np.zeros(H, dtype=np.int64)
    states = []
    for x_t in x:
        acc = cell.wx @ x_t + cell.uh @ h + cell.b
        s, a = ClearOps.round(acc[:H], cell.lsbs["s"]), ClearOps.round(acc[H:], cell.lsbs["n"])
        q = np.clip(np.rint(Q * np.maximum(s * cell.scale_s, 0)), 0, Q)
        r = np.clip(np.rint(Q * np.maximum(-s * cell.scale_s, 0)), 0, Q)
        n = np.clip(np.rint(Q * a * cell.scale_n), -Q, Q)
        inh = lambda v, g: np.maximum(v - g, 0) - np.maximum(-v - g, 0)  # noqa: E731
        h = np.clip(inh(h, q) + inh(n, r), -Q, Q).astype(np.int64)
        states.append(h)
    return states


@pytest.mark.parametrize("spec", [DEFAULT_SPEC, QuantSpec(4, 4, 4, 5), QuantSpec(4, 6, 6, 7)])
@pytest.mark.parametrize("H", [3, 6])
def test_every_lookup_form_computes_the_previous_function(spec, H):
    T = 5
    cell, _ = make_cell("relu_add_plain", H, H, spec, seed=H)
    inputs = random_inputs(np.random.default_rng(H), spec, T, H, 200)
    calibrate(cell, inputs)
    for x in inputs:
        ref = _reference_run(cell, x)
        for form in LOOKUP_FORMS:
            cell.lookups = form
            for t in range(1, T + 1):
                assert np.array_equal(cell.run(ClearOps, x[:t]), ref[t - 1]), (form, t)
    assert any(np.any(r) for x in inputs[:20] for r in _reference_run(cell, x))  # the states do move


def test_packed_lookup_is_inh_of_both_operands():
    cell, _ = make_cell("relu_add_packed", 2, 2, QuantSpec(4, 4, 4, 5))
    Q = cell.spec.q
    v, g = np.meshgrid(np.arange(-Q, Q + 1), np.arange(Q + 1))
    inh = np.maximum(v - g, 0) - np.maximum(-v - g, 0)
    assert np.array_equal(cell.f_inh_packed(v + Q + (2 * Q + 1) * g), inh)


def test_unknown_lookup_form_is_an_error():
    cell, _ = make_cell("relu_add", 2, 2, DEFAULT_SPEC)
    cell.lookups = "fast"
    with pytest.raises(ValueError, match="unknown lookups form 'fast'"):
        cell.run(ClearOps, np.ones((2, 2), dtype=np.int64))


def test_relu_add01_integer_model_follows_its_float_cell():
    spec = QuantSpec(8, 8, 8, 10)
    cell, float_step = make_cell("relu_add01", 8, 8, spec)
    inputs = random_inputs(np.random.default_rng(0), spec, 4, 8, 32)
    calibrate(cell, inputs)
    states = [cell.run(ClearOps, x) for x in inputs]
    assert all(s.min() >= 0 and s.max() <= spec.q for s in states) and any(s.any() for s in states)
    assert int_vs_float(cell, float_step, inputs)["max_abs_err"] < 0.1


def test_long_memory_smoke():
    from htr.fhe.adding import long_memory

    rep = long_memory(cells=("relu_add", "relu_add01"), steps=6, hidden=4, batch=8, train_steps=4, eval_every=2,
                      test_size=16)
    for r in rep["cells"].values():
        assert len(r["curve"]) == 3 and r["best_test_mse"] <= r["curve"][0][1]
