"""Plain torch modules (no Lightning): recurrent factory, relu_add cell, CNN encoder, recogniser."""
from htr.nn.encoder import CNNEncoder
from htr.nn.recognizer import Recognizer, RecognizerConfig
from htr.nn.recurrent import CELLS, RecurrentLayer, build_recurrent
from htr.nn.relu_add import ReluAddCell, relu_add_update

__all__ = ["CELLS", "CNNEncoder", "Recognizer", "RecognizerConfig", "RecurrentLayer", "ReluAddCell",
           "build_recurrent", "relu_add_update"]
