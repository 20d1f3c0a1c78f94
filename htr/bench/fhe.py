"""`htr bench fhe`: encrypted (TFHE, Concrete) execution of one relu_add layer against one GRU layer.

For each hidden size H and number of steps T, both cells are quantised from random float weights with
the same QuantSpec (same input, state and weight bit widths, same value ranges), unrolled over T steps
into a Concrete circuit (input x (T, I) encrypted, weights clear, output h_T), compiled, given fresh
keys, and run encrypted a few times. Reported per cell: the bit widths and crypto parameters Concrete
chose, compile / key generation / encrypt / run / decrypt seconds (medians over the runs), whether every
decrypted output equals Concrete's simulation of the same circuit, and the error of the clear integer
model against the float cell.

Each (H, T) runs in its own subprocess with a wall-clock limit; whatever finished before the limit is
kept and the rest is recorded as a timeout. The encrypted runs of the cells of one (H, T) are
interleaved (relu_add, gru, relu_add, gru, ...) so that load on a shared machine hits them alike.

Cells: relu_add (lookup form "relu", the reference of every ratio); relu_add_plain, relu_add_packed
(the same integer function in the previous 8-lookup form and in the packed 6-lookup form, see
htr.fhe.quantize); relu_add01 (the TFHE-lean variant, state in [0, 1]: a different cell); gru (torch's
GRU equations; each product of two encrypted values as two lookups, x y = floor((x+y)^2/4) -
floor((x-y)^2/4)); gru_mv (the same GRU with each product, and its rescale, as one bivariate lookup,
fhe.multivariate); gru_native (Concrete's own `x * y`: timings only, since with concrete-python 2.11
its results differ from the clear model's, which the report shows). With --state-copy auto (default)
each cell is compiled with and without the identity-lookup copy of its new state for the matrix
products (htr.fhe.quantize.run_cell) and keeps the one Concrete estimates cheaper.

Per (H, T): the ratios other / relu_add of the encrypted run time (interleaved medians; it depends on
the machine's load), of Concrete's cost estimate (`circuit.complexity`, which does not) and of the PBS
counts. --complexity-only compiles without keys or encrypted runs (minutes for the whole sweep).

Needs the optional extra: pip install -e .[fhe]. Results: docs/results/fhe.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from htr.fhe.quantize import QuantSpec

FULL = dict(hidden=(4, 8, 16), steps=(2, 4, 8), cells=("relu_add", "gru"), runs=3)
QUICK = dict(hidden=(4,), steps=(1, 2), cells=("relu_add", "gru"), runs=1)
DEFAULT_SPEC = QuantSpec(input_bits=3, state_bits=3, weight_bits=3, acc_bits=4)
# relu_add cells: the lookup form of htr.fhe.quantize.IntReluAddCell (same integer function for all)
RELU_ADD_FORMS = {"relu_add": "relu", "relu_add_relu": "relu", "relu_add_packed": "packed",
                  "relu_add_plain": "plain"}
GRU_PRODUCTS = {"gru": "multiply", "gru_mv": "multivariate", "gru_native": "native"}
CELL_KINDS = (*RELU_ADD_FORMS, "relu_add01", *GRU_PRODUCTS)


# ----------------------------------------------------------------------------------------- cells
def make_cell(kind: str, hidden: int, input_size: int, spec: QuantSpec, seed: int = 0):
    """Random float cell (torch's initialisations) -> (integer cell, float step function).

    relu_add's gate bias is drawn like the other biases instead of its -1 training init, so that the
    random cell's state moves (with b_s = -1 a random relu_add cell keeps h = 0, which would make
    the exactness checks trivial). Inputs are taken in [-1, 1]: x_scale = 1 / Qx. Every relu_add
    kind quantises the same float cell (the same integer function, in different lookup forms);
    relu_add01 has the same parameters in its own equations.
    """
    import torch

    from htr.fhe.quantize import quantize_gru, quantize_relu_add, random_float_cells

    ra, gru = random_float_cells(hidden, input_size, seed)
    x_scale = 1.0 / spec.qx
    if kind in RELU_ADD_FORMS or kind == "relu_add01":
        if kind == "relu_add01":
            from htr.fhe.adding import ReluAdd01Cell

            ra01 = ReluAdd01Cell(input_size, hidden)
            ra01.load_state_dict(ra.state_dict())
            ra = ra01
        with torch.no_grad():
            bound = 1.0 / np.sqrt(hidden)
            ra.bias[:hidden].uniform_(-bound, bound)
        cell = quantize_relu_add(ra.weight_ih.detach(), ra.weight_hh.detach(), ra.bias.detach(), spec, x_scale,
                                 positive=kind == "relu_add01")
        if kind != "relu_add01":
            cell.lookups = RELU_ADD_FORMS[kind]

        def float_step(x, h):
            return ra.step(x, h)
    elif kind in GRU_PRODUCTS:
        cell = quantize_gru(gru.weight_ih_l0.detach(), gru.weight_hh_l0.detach(), gru.bias_ih_l0.detach(),
                            gru.bias_hh_l0.detach(), spec, x_scale)
        cell.products = GRU_PRODUCTS[kind]
        gcell = torch.nn.GRUCell(input_size, hidden)
        gcell.load_state_dict({"weight_ih": gru.weight_ih_l0, "weight_hh": gru.weight_hh_l0,
                               "bias_ih": gru.bias_ih_l0, "bias_hh": gru.bias_hh_l0})

        def float_step(x, h):
            return gcell(x, h)
    else:
        raise ValueError(f"unknown cell {kind!r}: expected one of {', '.join(CELL_KINDS)}")
    return cell, float_step


def int_vs_float(cell, float_step, inputs: list[np.ndarray]) -> dict[str, float]:
    """Final-state error of the clear integer model against the float cell on the same inputs."""
    import torch

    from htr.fhe.quantize import ClearOps

    xs = np.stack(inputs)  # (B, T, I) integers
    with torch.no_grad():
        x = torch.as_tensor(xs * cell.x_scale, dtype=torch.float32)
        h = torch.zeros(xs.shape[0], cell.hidden_size)
        for t in range(xs.shape[1]):
            h = float_step(x[:, t], h)
    hi = np.stack([cell.to_float_state(cell.run(ClearOps, xi)) for xi in xs])
    err = np.abs(hi - h.numpy())
    return {"max_abs_err": float(err.max()), "mean_abs_err": float(err.mean()),
            "state_step": 1.0 / cell.spec.q}


# ---------------------------------------------------------------------------------------- worker
def _worker(job: dict[str, Any]) -> None:
    """One (H, T): compile and keygen every cell, then interleaved encrypted runs. Writes job['out']."""
    from htr.fhe import circuits as C
    from htr.fhe.quantize import calibrate, random_inputs

    spec = QuantSpec(**job["spec"])
    H, T, I = job["hidden"], job["steps"], job["input_size"]
    out_path = Path(job["out"])
    result: dict[str, Any] = {"hidden": H, "steps": T, "input_size": I, "cells": {}}

    def save() -> None:
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, out_path)

    rng = np.random.default_rng(job["seed"])
    inputset = random_inputs(rng, spec, T, I, job["inputset"])
    run_inputs = inputset[: job["runs"]]  # inside the inputset: values whose bounds Concrete measured
    circuits = {}
    for kind in job["cells"]:
        rec: dict[str, Any] = {"status": "compiling"}
        result["cells"][kind] = rec
        save()
        cell, float_step = make_cell(kind, H, I, spec, job["seed"])
        calibrate(cell, inputset)
        rec["lsbs"] = dict(cell.lsbs)
        rec["int_vs_float"] = int_vs_float(cell, float_step, inputset)
        rec["form"] = getattr(cell, "lookups", None) if kind != "relu_add01" else "relu_add01"
        t0 = time.perf_counter()
        config = (C.configuration(fhe_execution=False, fhe_simulation=True) if job.get("complexity_only")
                  else C.configuration())
        copy = job.get("state_copy", "auto")
        circuit = None
        for split in {"auto": (True, False), "yes": (True,), "no": (False,)}[copy]:
            cell.split_state = split
            candidate = C.compile_cell(cell, T, inputset, config)
            rec[f"complexity_state_copy_{'yes' if split else 'no'}"] = float(candidate.complexity)
            if circuit is None or candidate.complexity < circuit.complexity:
                circuit, rec["state_copy"] = candidate, split
        cell.split_state = rec["state_copy"]
        rec["compile_s"] = time.perf_counter() - t0  # with state_copy=auto: both compilations
        rec["params"] = C.parameters(circuit)
        rec["pbs_per_unit_step"] = rec["params"]["pbs_count"] / (H * T)
        if job.get("complexity_only"):  # no keys, no encrypted runs: the simulation against the clear model
            rec["simulate_equals_clear"] = all(np.array_equal(circuit.simulate(x), C.clear_run(cell, x))
                                               for x in run_inputs)
            rec["status"] = "done"
            save()
            continue
        rec["status"] = "keygen"
        save()
        t0 = time.perf_counter()
        circuit.keygen(force=True)
        rec["keygen_s"] = time.perf_counter() - t0
        rec.update(status="running", encrypt_s=[], run_s=[], decrypt_s=[], exact=[], matches_clear=[])
        save()
        circuits[kind] = (cell, circuit)
    budget = job["run_budget_s"]
    for i, x in enumerate(run_inputs):
        for kind, (cell, circuit) in circuits.items():
            rec = result["cells"][kind]
            if i > 0 and sum(rec["run_s"]) > budget:
                continue  # enough repeats for this cell within the budget
            timing = C.Timing()
            (dec, sim), = C.timed_encrypted_runs(circuit, [x], timing)
            rec["encrypt_s"] += timing.encrypt_s
            rec["run_s"] += timing.run_s
            rec["decrypt_s"] += timing.decrypt_s
            rec["exact"].append(bool(np.array_equal(dec, sim)))
            rec["matches_clear"].append(bool(np.array_equal(sim, C.clear_run(cell, x))))
            save()
    for rec in result["cells"].values():
        rec["status"] = "done"
    save()


def run_config(hidden: int, steps: int, cells, spec: QuantSpec, runs: int, timeout_s: float, seed: int = 0,
               input_size: int | None = None, inputset: int = 64, run_budget_s: float = 60.0,
               complexity_only: bool = False, state_copy: str = "auto") -> dict[str, Any]:
    """Run one (H, T) in a subprocess with a wall-clock limit; return its (possibly partial) record.

    complexity_only: compile only (Concrete's PBS counts and cost estimate; simulation checked against
    the clear model), no key generation and no encrypted runs. state_copy: "yes" / "no" copies each
    new state by one identity lookup for the matrix products or not (htr.fhe.quantize.run_cell);
    "auto" compiles both and keeps the one of lower Concrete cost estimate, for every cell alike.
    """
    if state_copy not in ("auto", "yes", "no"):
        raise ValueError(f"state_copy={state_copy!r}: expected auto, yes or no")
    with tempfile.TemporaryDirectory(prefix="htr-fhe-") as tmp:
        out = Path(tmp) / "result.json"
        job = dict(hidden=hidden, steps=steps, input_size=input_size or hidden, cells=list(cells),
                   spec=spec.__dict__, runs=runs, seed=seed, inputset=inputset, run_budget_s=run_budget_s,
                   out=str(out), complexity_only=complexity_only, state_copy=state_copy)
        cmd = [sys.executable, "-m", "htr.bench.fhe", "--worker", json.dumps(job)]
        t0 = time.perf_counter()
        timed_out, err = False, ""
        try:
            proc = subprocess.run(cmd, timeout=timeout_s, capture_output=True, text=True)
            if proc.returncode != 0:
                err = proc.stderr[-2000:]
        except subprocess.TimeoutExpired:
            timed_out = True
        wall = time.perf_counter() - t0
        result = json.loads(out.read_text()) if out.exists() else {
            "hidden": hidden, "steps": steps, "input_size": input_size or hidden, "cells": {}}
    result["wall_s"] = wall
    for kind in cells:
        rec = result["cells"].setdefault(kind, {"status": "not started"})
        if rec.get("status") != "done":
            if timed_out:
                rec["status"] = f"timeout ({timeout_s:.0f} s) during {rec.get('status')}"
            elif err:
                rec["status"] = f"error during {rec.get('status')}: {err.strip().splitlines()[-1]}"
        for key in ("encrypt_s", "run_s", "decrypt_s"):
            if rec.get(key):
                rec[key + "_median"] = float(np.median(rec[key]))
        if rec.get("exact"):
            rec["encrypted_equals_simulate"] = all(rec["exact"])
    add_ratios(result, cells)
    return result


def ratio_pairs(cells) -> list[tuple[str, str]]:
    """(kind, reference) pairs of the ratios: every other cell over relu_add, every GRU over relu_add01."""
    pairs = [(k, "relu_add") for k in cells if k != "relu_add"]
    if "relu_add01" in cells:
        pairs += [(k, "relu_add01") for k in cells if k in GRU_PRODUCTS]
    return pairs


def add_ratios(result: dict[str, Any], cells) -> None:
    """Set ratio_, complexity_ratio_ and pbs_ratio_<kind>_over_<reference> of one (H, T) record."""
    for kind, ref in ratio_pairs(cells):
        a, b = result["cells"].get(ref, {}), result["cells"].get(kind, {})
        if a.get("run_s_median") and b.get("run_s_median"):
            result[f"ratio_{kind}_over_{ref}"] = b["run_s_median"] / a["run_s_median"]
        for key, name in (("complexity", "complexity_ratio"), ("pbs_count", "pbs_ratio")):
            x, y = a.get("params", {}).get(key), b.get("params", {}).get(key)
            if x and y:
                result[f"{name}_{kind}_over_{ref}"] = y / x


def run(quick: bool = False, hidden=None, steps=None, cells=None, spec: QuantSpec = DEFAULT_SPEC,
        runs: int | None = None, timeout_s: float = 600.0, seed: int = 0, input_size: int | None = None,
        log=None, complexity_only: bool = False, state_copy: str = "auto") -> dict[str, Any]:
    """The whole benchmark. Returns {'spec', 'configs': [...]} (one record per (H, T))."""
    preset = QUICK if quick else FULL
    hidden = tuple(hidden or preset["hidden"])
    steps = tuple(steps or preset["steps"])
    cells = tuple(cells or preset["cells"])
    if "relu_add" not in cells:
        cells = ("relu_add",) + cells
    runs = runs or preset["runs"]
    import concrete.fhe  # noqa: F401 - fail early, with the install line, before any subprocess

    report: dict[str, Any] = {"spec": spec.__dict__, "spec_text": spec.describe(), "cells": list(cells),
                              "runs": 0 if complexity_only else runs, "timeout_s": timeout_s,
                              "complexity_only": complexity_only, "state_copy": state_copy,
                              "cpu_count": os.cpu_count(),
                              "load_average": list(os.getloadavg()), "concrete_version": _concrete_version(),
                              "configs": []}
    t0 = time.perf_counter()
    for H in hidden:
        for T in steps:
            rec = run_config(H, T, cells, spec, runs, timeout_s, seed, input_size, complexity_only=complexity_only,
                             state_copy=state_copy)
            rec["load_average_after"] = list(os.getloadavg())
            report["configs"].append(rec)
            if log is not None:
                print(_row_text(rec, cells), file=log, flush=True)
    report["wall_s"] = time.perf_counter() - t0
    return report


def _concrete_version() -> str:
    try:
        from importlib.metadata import version

        return version("concrete-python")
    except Exception:  # noqa: BLE001
        return "unknown"


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def _row_text(rec: dict, cells) -> str:
    parts = [f"H={rec['hidden']} T={rec['steps']}"]
    for kind in cells:
        c = rec["cells"].get(kind, {})
        parts.append(f"{kind}: run {_fmt(c.get('run_s_median'))} s keygen {_fmt(c.get('keygen_s'))} s "
                     f"PBS {c.get('params', {}).get('pbs_count', '-')} [{c.get('status')}]")
    for kind, ref in ratio_pairs(cells):
        if rec.get(f"complexity_ratio_{kind}_over_{ref}"):
            parts.append(f"{kind}/{ref} run {_fmt(rec.get(f'ratio_{kind}_over_{ref}'))} "
                         f"complexity {rec[f'complexity_ratio_{kind}_over_{ref}']:.3g}")
    return " | ".join(parts)


def to_tables(report: dict) -> str:
    from htr.tables import format_table

    cells = report["cells"]
    rows, prow = [], []
    for rec in report["configs"]:
        for kind in cells:
            c = rec["cells"].get(kind, {})
            p = c.get("params", {})
            rows.append([rec["hidden"], rec["steps"], kind, c.get("status", "-"),
                         p.get("max_bit_width", "-"), _fmt(c.get("compile_s")), _fmt(c.get("keygen_s")),
                         _fmt(c.get("encrypt_s_median")), _fmt(c.get("run_s_median")),
                         _fmt(c.get("decrypt_s_median")), len(c.get("run_s", [])),
                         {True: "yes", False: "NO"}.get(c.get("encrypted_equals_simulate"), "-"),
                         _fmt(c.get("int_vs_float", {}).get("max_abs_err"), 2)])
            if p:
                widths = ",".join(f"{k}b:{v}" for k, v in p.get("tlu_input_bit_widths", {}).items())
                polys = ",".join(f"{k['polynomial_size']}" for k in p.get("bootstrap_keys", []))
                prow.append([rec["hidden"], rec["steps"], kind, c.get("form") or "-",
                             {True: "yes", False: "no"}.get(c.get("state_copy"), "-"), widths,
                             p.get("graph_lookups", "-"), p.get("graph_rounding_bits", "-"), p.get("pbs_count"),
                             _fmt(c.get("pbs_per_unit_step")), polys, f"{p.get('size_bootstrap_keys_MB', 0):.0f}",
                             f"{p.get('complexity', 0):.3g}"])
    ratio_rows = []
    pairs = ratio_pairs(cells)
    for rec in report["configs"]:
        row = [rec["hidden"], rec["steps"]]
        for kind, ref in pairs:
            row += [_fmt(rec.get(f"{name}_{kind}_over_{ref}")) for name in ("ratio", "complexity_ratio", "pbs_ratio")]
        ratio_rows.append(row)
    out = [f"Value ranges: {report['spec_text']}", "",
           format_table(["H", "T", "cell", "status", "max bits", "compile s", "keygen s", "encrypt s", "run s",
                         "decrypt s", "runs", "enc == sim", "int-float max err"], rows), "",
           format_table(["H", "T", "cell", "form", "state copy", "TLU input bits:count", "graph lookups",
                         "rounding bits", "PBS", "PBS / (H T)", "bootstrap key N", "BSK MB", "complexity"], prow), "",
           format_table(["H", "T"] + [f"{k} / {r} {m}" for k, r in pairs for m in ("run", "complexity", "PBS")],
                        ratio_rows)]
    return "\n".join(out)


# ------------------------------------------------------------------------------ plaintext integer
def run_integer(input_size: int = 256, hidden_size: int = 128, steps: int = 128, batches=(1, 16),
                num_layers: int = 2, bidirectional: bool = True, repeats: int = 10, threads: int = 1) -> dict:
    """Plaintext integer relu_add against float relu_add and torch's dynamic-int8 nn.GRU / nn.LSTM
    (decoder-sized layers, random weights), plus the integer layer's error against the float one."""
    import torch

    from htr.fhe.integer import agreement, speed
    from htr.nn import build_recurrent

    out: dict[str, Any] = {"speed": [speed(input_size, hidden_size, steps, b, num_layers, bidirectional,
                                           repeats, threads) for b in batches]}
    torch.manual_seed(0)
    ra = build_recurrent("relu_add", input_size, hidden_size, num_layers=num_layers,
                         bidirectional=bidirectional).eval()
    with torch.no_grad():
        for c in ra.cells:  # random cells keep h = 0 with the -1 gate-bias init; move it
            torch.nn.init.uniform_(c.bias, -0.5, 0.5)
    out["agreement"] = agreement(ra, torch.randn(steps, 4, input_size))
    return out


def integer_tables(report: dict) -> str:
    from htr.tables import format_table

    rows = []
    for sp in report["speed"]:
        sec = sp["seconds"]
        base = sec["relu_add float"]
        for name, v in sec.items():
            rows.append([sp["config"]["batch"], name, f"{v * 1e3:.2f}", f"{v / base:.2f}"])
    cfg = report["speed"][0]["config"]
    head = (f"I={cfg['input_size']} H={cfg['hidden_size']} T={cfg['steps']} layers={cfg['num_layers']} "
            f"bidirectional={cfg['bidirectional']} threads={cfg['threads']}; integer vs float outputs: "
            f"max |diff| {report['agreement']['max_abs_err']:.3f}, mean {report['agreement']['mean_abs_err']:.4f}")
    return head + "\n\n" + format_table(["batch", "layer", "ms / call", "x relu_add float"], rows)


# ------------------------------------------------------------------------------------------- CLI
def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="H=4, T=1,2, relu_add and gru, one run each")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--hidden", type=_ints, default=None, help="hidden sizes, e.g. 4,8,16")
    parser.add_argument("--steps", type=_ints, default=None, help="numbers of steps T (default 2,4,8)")
    parser.add_argument("--cells", type=lambda s: tuple(s.split(",")), default=None,
                        help=f"some of {','.join(CELL_KINDS)} (default relu_add,gru; relu_add is always included: "
                             f"it is the reference of the ratios)")
    parser.add_argument("--complexity-only", action="store_true",
                        help="compile only: PBS counts and Concrete's cost estimate, no keys, no encrypted runs")
    parser.add_argument("--state-copy", choices=("auto", "yes", "no"), default="auto",
                        help="copy each new state by one lookup for the matrix products (yes), never (no), or "
                             "whichever Concrete estimates cheaper, per cell and (H, T) (auto: two compilations)")
    parser.add_argument("--bits", type=_ints, default=None,
                        help="input,state,weight,acc bit widths (default 3,3,3,4)")
    parser.add_argument("--runs", type=int, default=None, help="encrypted runs per cell (median reported)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per (H, T) before giving up")
    parser.add_argument("--input-size", type=int, default=None, help="input features I (default: = H)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--integer", action="store_true",
                        help="instead: plaintext integer relu_add vs float relu_add and dynamic-int8 GRU/LSTM "
                             "(decoder-sized: I=256, H=128, T=128, 2 bidirectional layers)")
    parser.add_argument("--adding", action="store_true",
                        help="instead: train a small relu_add on the adding problem, quantise it (--bits, "
                             "default 4,6,6,7), run a few test inputs encrypted, compare with the clear "
                             "integer and float models (--hidden default 6, --steps default 6)")
    parser.add_argument("--memory", action="store_true",
                        help="instead: the adding problem in float for relu_add and relu_add01 (T = --steps, "
                             "default 200; hidden 64, 2000 Adam steps, as htr bench adding)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> None:
    if getattr(args, "worker", None):
        _worker(json.loads(args.worker))
        return
    if getattr(args, "integer", False):
        rep = run_integer(repeats=3 if args.quick else 10, batches=(1,) if args.quick else (1, 16))
        print(json.dumps(rep, indent=1) if args.json else integer_tables(rep))
        return
    if getattr(args, "adding", False):
        from htr.fhe.adding import end_to_end

        rep = end_to_end(hidden=(args.hidden or (6,))[0], steps=(args.steps or (6,))[0],
                         spec=QuantSpec(*args.bits) if args.bits else QuantSpec(4, 6, 6, 7),
                         encrypted=args.runs or 3, seed=args.seed, train_steps=800)
        print(json.dumps(rep, indent=1))
        return
    if getattr(args, "memory", False):
        from htr.fhe.adding import long_memory

        rep = long_memory(steps=(args.steps or (200,))[0], hidden=(args.hidden or (64,))[0], seed=args.seed,
                          train_steps=200 if args.quick else 2000, log=sys.stderr)
        print(json.dumps(rep, indent=1))
        return
    spec = QuantSpec(*args.bits) if args.bits else DEFAULT_SPEC
    report = run(quick=args.quick, hidden=args.hidden, steps=args.steps, cells=args.cells, spec=spec,
                 runs=args.runs, timeout_s=args.timeout, seed=args.seed, input_size=args.input_size,
                 log=sys.stderr, complexity_only=getattr(args, "complexity_only", False),
                 state_copy=getattr(args, "state_copy", "auto"))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(to_tables(report))


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="htr bench fhe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    main(p.parse_args())
