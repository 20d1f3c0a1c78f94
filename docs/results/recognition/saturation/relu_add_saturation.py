"""How often the shipped relu_add's units sit in their clips on poilus val lines (docs/results/recognition.md).

    python docs/results/recognition/saturation/relu_add_saturation.py [model name or file]   # default: relu_add

For 48 val lines (random.Random(0)), per layer and direction, the share of (step, unit) values with
the state at +-1 (the outer clip saturated: zero exact slope), the candidate's pre-activation beyond
[-1, 1] (the inner clip saturated), a positive gate score (the state shrunk, the candidate kept), the
gate in a dead zone (the state fully reset or the candidate fully blocked: zero slope in the gate score);
and the median |W x_t + b| of its input projection (both blocks): far above 1, the units act as signs.
"""
import random
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

from htr.data.folder import read_folder
from htr.inference import load_model

torch.set_num_threads(1)
model = load_model(sys.argv[1] if len(sys.argv) > 1 else "relu_add")
root = Path("../shared/realdata/poilus")
samples = read_folder(root, "val")
random.Random(0).shuffle(samples)
net, decoder = model.net, model.net.decoder
totals: dict[tuple[int, str], dict[str, list[float]]] = {}
with torch.no_grad():
    for sample in samples[:48]:
        x = model.preprocess(sample.image_path).unsqueeze(0)  # (1, 1, H, W)
        features, frames = net.encode(x, torch.tensor([x.shape[-1]]))
        inputs = features  # (T, 1, F)
        for layer in range(decoder.num_layers):
            outputs = []
            for reverse in (False, True):
                cell = decoder.cell(layer, reverse)
                out, _ = cell(inputs, frames, inputs.new_zeros(1, cell.hidden_size), reverse=reverse)
                seq, xs = (out.flip(0), inputs.flip(0)) if reverse else (out, inputs)  # processing order
                h_prev = torch.cat([seq.new_zeros(1, *seq.shape[1:]), seq[:-1]])
                projection = F.linear(xs, cell.weight_ih, cell.bias)  # (T, 1, 2H)
                s, a = (projection + h_prev @ cell.weight_hh.t()).chunk(2, dim=-1)
                d = totals.setdefault((layer, "backward" if reverse else "forward"),
                                      {"state at +-1": [], "candidate beyond [-1, 1]": [], "gate score > 0": [],
                                       "gate in a dead zone": [], "median |W x + b|": []})
                d["state at +-1"].append(float((seq.abs() >= 1.0).float().mean()))
                d["candidate beyond [-1, 1]"].append(float((a.abs() > 1.0).float().mean()))
                d["gate score > 0"].append(float((s > 0).float().mean()))
                # inh(v, g) = 0 with slope 0 in g where |v| <= g: the state fully reset (s > |h|) or the
                # candidate fully blocked (-s > |n|); there the gate score gets no gradient
                dead = torch.where(s > 0, h_prev.abs() <= s, a.clamp(-1, 1).abs() <= -s)
                d["gate in a dead zone"].append(float(dead.float().mean()))
                d["median |W x + b|"].append(float(projection.abs().median()))
                outputs.append(out)
            inputs = torch.cat(outputs, dim=-1)
print(f"{model.name}: hidden {model.net.config.hidden_size}, 48 poilus val lines, share of (step, unit) values")
for (layer, direction), d in totals.items():
    print(f"layer {layer} {direction:8s} " + "  ".join(f"{k}: {sum(v) / len(v):.3f}" for k, v in d.items()))
