"""Fine-tuning from a trained model (htr.transfer, HTRModule(init_from=...)): weights carried over,
the codec merged by character, new characters learnt, bad combinations refused."""
import pytest
import torch

from htr.data.images import collate
from htr.errors import CheckpointError, CodecError
from htr.inference import Transcriber
from htr.nn.recognizer import RecognizerConfig
from htr.text.codec import Codec
from htr.train import HTRModule
from htr.transfer import merge_charsets

SOURCE_CHARSET = "abcdefghijklmnopqrstuvwxyz "
TINY = dict(height=32, channels=(8, 16, 16), feature_size=32, hidden_size=32, num_layers=1, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread is faster


def save_source(tmp_path, cell="relu_add", charset=SOURCE_CHARSET, **overrides) -> str:
    """A randomly initialised model saved as a shipped-format file (what init_from reads)."""
    torch.manual_seed(0)
    module = HTRModule(RecognizerConfig(cell=cell, **{**TINY, **overrides}), charset=charset)
    with torch.no_grad():  # a spread of biases, as a trained classifier has
        module.net.classifier.bias.copy_(torch.linspace(-3, 3, len(module.codec)))
    path = tmp_path / f"{cell}.safetensors"
    Transcriber(module.net, module.codec, name=cell).save(path)
    return str(path)


def images(n: int, width: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 32, width, generator=g), torch.full((n,), width)


def test_merge_charsets_union_keeps_the_model_order_and_new_keeps_the_data():
    assert merge_charsets("abc", "cbxa y", "union") == "abcx y"
    assert merge_charsets("abc", "cbx", "new") == "cbx"
    with pytest.raises(CheckpointError, match="init_charset='resize'"):
        merge_charsets("abc", "x", "resize")


def test_step_0_outputs_on_the_models_own_characters_are_kept(tmp_path):
    source_path = save_source(tmp_path)
    source = Transcriber.from_safetensors(source_path)
    data_charset = SOURCE_CHARSET + "éàç"  # three new characters
    module = HTRModule(charset=data_charset, init_from=source_path).eval()
    assert module.codec.charset == data_charset and module.net.config == source.net.config
    x, widths = images(4)
    with torch.no_grad():
        old, _ = source.net(x, widths)
        new, _ = module.net(x, widths)
    # (T, N, C_old) vs the same classes of (T, N, C_old + 3): new rows take almost no probability mass
    assert new.shape[-1] == old.shape[-1] + 3
    assert (new[..., :old.shape[-1]] - old).abs().max() < 1e-3
    assert torch.equal(new.argmax(-1), old.argmax(-1))
    assert new[..., old.shape[-1]:].exp().max() < 1e-3
    ckpt_meta = {}
    module.on_save_checkpoint(ckpt_meta)
    assert ckpt_meta["htr"]["codec"]["charset"] == data_charset and ckpt_meta["htr"]["init_from"] == source_path


def test_new_mode_keeps_only_the_datas_characters_with_their_rows(tmp_path):
    source_path = save_source(tmp_path)
    source = Transcriber.from_safetensors(source_path)
    module = HTRModule(charset="zyx é", init_from=source_path, init_charset="new")
    assert module.codec.charset == "zyx é"
    w_old, w_new = source.net.classifier.weight, module.net.classifier.weight
    for ch in "zyx ":
        assert torch.equal(w_new[module.codec.encode(ch)[0]], w_old[source.codec.encode(ch)[0]])
    assert torch.equal(w_new[0], w_old[0])  # the blank
    assert not w_new[module.codec.encode("é")[0]].any()  # a new row starts at zero


def test_data_encoded_with_another_order_is_mapped_to_the_models_classes(tmp_path):
    """The data module encodes targets with its own charset; the module maps them to its codec."""
    source_path = save_source(tmp_path)
    module = HTRModule(charset="é" + SOURCE_CHARSET, init_from=source_path)  # union: model order is "a..z é"
    assert module.codec.charset == SOURCE_CHARSET + "é"
    data = Codec("é" + SOURCE_CHARSET)
    mapped = module.target_map[torch.tensor(data.encode("été"))]
    assert module.codec.decode(mapped.tolist()) == "été"


@pytest.mark.parametrize("change, named", [
    (dict(cell="gru"), "cell: 'relu_add' in .* vs 'gru' configured"),
    (dict(hidden_size=16), "hidden_size: 32 in .* vs 16 configured"),
    (dict(height=48), "height: 32 in .* vs 48 configured"),
])
def test_another_architecture_is_refused_naming_both(tmp_path, change, named):
    source_path = save_source(tmp_path)
    with pytest.raises(CheckpointError, match=named):
        HTRModule(RecognizerConfig(**{**TINY, "cell": "relu_add", **change}), charset=SOURCE_CHARSET,
                  init_from=source_path)


def test_missing_source_and_unencodable_data_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no-such-model: no such file, and not a shipped model name"):
        HTRModule(charset=SOURCE_CHARSET, init_from="no-such-model")
    with pytest.raises(CodecError, match="not in the model's charset"):
        HTRModule(charset="abc", data_charset="abcé")


def test_a_new_character_is_learnt_by_fine_tuning(tmp_path, learn_by_heart):
    """Start from a model whose codec lacks 'é' and 'ç'; after fine-tuning on lines that hold them
    the model transcribes them (the lines are learnt by heart, as in test_train's overfit test)."""
    source_path = save_source(tmp_path, charset=SOURCE_CHARSET)
    torch.manual_seed(0)
    module = HTRModule(charset=SOURCE_CHARSET + "éç", init_from=source_path)
    texts = ["été", "ça va", "déçu", "garçon", "épée", "reçu", "café", "leçon"]
    g = torch.Generator().manual_seed(1)
    batch = collate([{"image": torch.rand(1, 32, 96, generator=g), "target": module.codec.encode(t), "text": t}
                     for t in texts], pad_to_multiple=8)
    hyps = learn_by_heart(module, batch, 800)
    assert hyps == texts


def test_a_frozen_encoder_keeps_its_weights_and_statistics(tmp_path):
    source_path = save_source(tmp_path)
    module = HTRModule(charset=SOURCE_CHARSET, init_from=source_path, freeze_encoder=True).train()
    assert not module.net.encoder.training and module.net.decoder.training
    before = {k: v.clone() for k, v in module.net.encoder.state_dict().items()}
    decoder_before = module.net.classifier.weight.clone()
    optimiser = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    assert not any(p.requires_grad for p in module.net.encoder.parameters())
    g = torch.Generator().manual_seed(2)
    batch = collate([{"image": torch.rand(1, 32, 96, generator=g), "target": module.codec.encode(t), "text": t}
                     for t in ("abc", "de f")], pad_to_multiple=8)
    loss, *_ = module.ctc_loss(batch)
    loss.backward()
    optimiser.step()
    after = module.net.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and batch-norm running stats
    assert not torch.equal(decoder_before, module.net.classifier.weight)
