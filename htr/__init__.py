"""htr: handwritten text-line recognition with a ReLU-addition gated recurrent decoder.

Data -> CNN encoder -> recurrent decoder (relu_add | gru | lstm) -> CTC -> decoding -> CER/WER.
Public entry points: `load_model`, `Transcriber.transcribe`, `build_recurrent`.
"""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so that `import htr` stays cheap for the CLI's help and the kernels.
    if name in ("load_model", "Transcriber", "Transcription", "shipped_models"):
        from htr import inference

        return getattr(inference, name)
    if name == "build_recurrent":
        from htr.nn.recurrent import build_recurrent

        return build_recurrent
    raise AttributeError(name)
