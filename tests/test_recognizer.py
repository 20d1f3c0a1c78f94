"""Shapes and lengths through the CNN encoder and the recogniser, for each recurrent cell.

(Decoding on another device than the encoder, HTRModule.recurrent_on_cpu, needs a GPU: not tested here.)
"""
import pytest
import torch

from htr.errors import UnknownCellError
from htr.nn.encoder import WIDTH_REDUCTION, CNNEncoder
from htr.nn.recognizer import Recognizer, RecognizerConfig

CELLS = ("relu_add", "gru", "lstm")
SMALL = dict(channels=(4, 8, 8, 8), feature_size=16, hidden_size=8, dropout=0.0)


@pytest.mark.parametrize("height, channels, out_height", [
    (8, (4, 8, 8, 8), 2), (16, (4, 8, 8, 8), 4), (32, (4, 8, 8, 8), 4), (64, (4, 8, 8, 8), 4),
    (40, (4, 8, 8, 8), 2),  # 40 -> 20 -> 10 -> 5 -> 2
    (128, (4, 8, 8, 8), 8),  # one height-only pool per block after the first two: 4 blocks stop at 8
    (128, (4, 8, 8, 8, 8), 4)])
def test_encoder_shapes(height, channels, out_height):
    enc = CNNEncoder(height, channels=channels, feature_size=12).eval()
    # two 2x2 pools, then (2, 1) height-only pools in the following blocks while the height is > 4
    assert enc.out_height == out_height
    for width in (8, 36, 100):
        out = enc(torch.randn(3, 1, height, width))  # (N, 1, H, W) -> (T, N, F)
        assert out.shape == (width // WIDTH_REDUCTION, 3, 12)


def _encoders_with_shared_weights(scale_sign: float) -> tuple[CNNEncoder, CNNEncoder]:
    """A pool-first and a pool-last encoder holding the same trained-looking weights (eval mode)."""
    torch.manual_seed(0)
    first, last = CNNEncoder(32, channels=(4, 8, 8, 8), feature_size=12), CNNEncoder(
        32, channels=(4, 8, 8, 8), feature_size=12, pool_before_norm=False)
    for module in first.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data = scale_sign * torch.rand_like(module.weight).add(0.1)
            module.bias.data.normal_()
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    assert first.state_dict().keys() == last.state_dict().keys()  # one layout for both orders
    last.load_state_dict(first.state_dict())
    return first.eval(), last.eval()


def test_pool_first_encoder_equals_pool_last_when_norm_scales_are_positive():
    """Max pooling commutes with batch norm's per-channel map when its scale is positive, and with
    the ReLU: models trained with pooling last carry over exactly (as the shipped ones did)."""
    first, last = _encoders_with_shared_weights(+1.0)
    images = torch.rand(3, 1, 32, 52)
    assert torch.equal(first(images), last(images))
    first, last = _encoders_with_shared_weights(-1.0)  # a decreasing map does not commute with max
    assert not torch.allclose(first(images), last(images))


@pytest.mark.parametrize("height", [4, 30, 62])
def test_encoder_rejects_bad_heights(height):
    with pytest.raises(ValueError, match="multiple of 4"):
        CNNEncoder(height)


def test_frame_lengths():
    widths = torch.tensor([0, 3, 4, 7, 8, 9, 1001])
    assert CNNEncoder.frame_lengths(widths).tolist() == [1, 1, 1, 1, 2, 2, 250]  # W // 4, at least 1


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_recognizer_shapes(cell, bidirectional):
    torch.manual_seed(0)
    cfg = RecognizerConfig(cell=cell, height=32, num_layers=2, bidirectional=bidirectional, **SMALL)
    net = Recognizer(cfg, num_classes=11).eval()
    assert net.decoder.output_size == (2 if bidirectional else 1) * 8
    images, widths = torch.randn(3, 1, 32, 48), torch.tensor([48, 30, 9])
    features, frames = net.encode(images, widths)
    assert features.shape == (12, 3, 16) and frames.tolist() == [12, 7, 2]
    with torch.no_grad():
        log_probs, lengths = net(images, widths)
    assert log_probs.shape == (12, 3, 11) and torch.equal(lengths, frames)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(12, 3), atol=1e-5)  # log-softmax over classes
    assert torch.isfinite(log_probs).all()


@pytest.mark.parametrize("cell", CELLS)
def test_decoder_ignores_frames_past_each_length(cell):
    """A line's outputs over its valid frames do not depend on what pads it (the backward direction
    starts at the line's own last frame), so batching lines of different widths is transparent."""
    torch.manual_seed(0)
    net = Recognizer(RecognizerConfig(cell=cell, height=32, bidirectional=True, **SMALL), num_classes=7).eval()
    features = torch.randn(10, 2, 16)
    lengths = torch.tensor([10, 6])
    with torch.no_grad():
        batched = net.decode(features, lengths)
        alone = net.decode(features[:6, 1:2].clone(), torch.tensor([6]))
        garbage = features.clone()
        garbage[6:, 1] = 100.0
        batched_garbage = net.decode(garbage, lengths)
    assert torch.allclose(batched[:6, 1], alone[:, 0], atol=1e-5)
    assert torch.allclose(batched_garbage[:6, 1], alone[:, 0], atol=1e-5)
    assert torch.allclose(batched_garbage[:, 0], batched[:, 0], atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_backward_reaches_every_parameter(cell):
    net = Recognizer(RecognizerConfig(cell=cell, height=16, num_layers=1, **SMALL), num_classes=5).train()
    log_probs, _ = net(torch.randn(2, 1, 16, 40), torch.tensor([40, 24]))
    log_probs[:, :, 1].sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_config_round_trip_and_unknown_cell():
    cfg = RecognizerConfig(cell="gru", channels=(8, 16, 16), hidden_size=32)
    d = cfg.to_dict()
    assert d["channels"] == [8, 16, 16]  # JSON-able (checkpoints and safetensors metadata)
    assert RecognizerConfig.from_dict(d) == cfg
    assert RecognizerConfig().pool_before_norm
    # missing keys take the defaults, except the pool order: configs saved before it had pooling last
    assert RecognizerConfig.from_dict({"cell": "lstm"}) == RecognizerConfig(cell="lstm", pool_before_norm=False)
    with pytest.raises(UnknownCellError, match="relu_add"):
        Recognizer(RecognizerConfig(cell="rnn"), num_classes=5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recognizer_runs_torch_layers_unpacked_on_cpu(cell, monkeypatch):
    """The recogniser needs only the decoder's outputs, so on CPU gru and lstm take the padded path
    (packing is slower there: docs/results/cells.md); a caller that wants final states still gets them packed."""
    import htr.nn.recurrent as recurrent

    def no_packing(*args, **kwargs):
        raise AssertionError("packed the batch")

    monkeypatch.setattr(recurrent, "pack_padded_sequence", no_packing)
    net = Recognizer(RecognizerConfig(cell=cell, height=16, **SMALL), num_classes=5).train()
    log_probs, _ = net(torch.randn(3, 1, 16, 40), torch.tensor([40, 24, 12]))
    log_probs.sum().backward()
    with pytest.raises(AssertionError, match="packed"):
        net.decoder(torch.randn(10, 3, 16), torch.tensor([10, 6, 3]))  # final states wanted


def test_recogniser_starts_relu_add_forgetful():
    """The recogniser's relu_add layers start at b_s = +1 (RecognizerConfig.gate_bias), every layer and
    direction; the rest of the initialisation is the cell's."""
    torch.manual_seed(0)
    config = RecognizerConfig(cell="relu_add", hidden_size=16, num_layers=2, bidirectional=True)
    assert config.gate_bias == 1.0
    net = Recognizer(config, 10)
    cells = list(net.decoder.cells)
    assert len(cells) == 4
    for cell in cells:
        assert torch.all(cell.bias[:16] == 1.0)
        assert torch.allclose(cell.weight_hh[:16] @ cell.weight_hh[:16].t(), 0.25 * torch.eye(16), atol=1e-5)
