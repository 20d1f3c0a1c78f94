"""Integer and encrypted (TFHE, via the optional concrete-python extra) execution of recurrent cells.

- htr.fhe.quantize: integer relu_add and GRU steps, quantisation of trained float cells (no concrete).
- htr.fhe.circuits: the same steps as Concrete circuits unrolled over T (needs `pip install -e .[fhe]`).
- htr.fhe.integer: integer-only relu_add recurrent layer (int8 weights, int32 accumulation) for HTR.
"""
from htr.fhe.quantize import (
                              ClearOps,
                              IntGRUCell,
                              IntReluAddCell,
                              QuantSpec,
                              calibrate,
                              quantize_gru,
                              quantize_inputs,
                              quantize_relu_add,
)

__all__ = ["ClearOps", "IntGRUCell", "IntReluAddCell", "QuantSpec", "calibrate", "quantize_gru",
           "quantize_inputs", "quantize_relu_add"]
