"""htr.nn.sequence: padded batches of sequences of different lengths."""
import torch

from htr.nn.sequence import reverse_within_lengths


def test_reverse_within_lengths_reverses_each_sequence_and_keeps_its_padding():
    x = torch.arange(4)[:, None].expand(4, 3).float()  # x[t, n] = t
    y = reverse_within_lengths(x, torch.tensor([4, 2, 1]))
    assert y[:, 0].tolist() == [3, 2, 1, 0]
    assert y[:, 1].tolist() == [1, 0, 2, 3]
    assert y[:, 2].tolist() == [0, 1, 2, 3]
    # trailing feature dimensions move with their step; a second reversal gives x back
    lengths = torch.tensor([5, 3, 1, 4])
    z = torch.randn(5, 4, 2, 3)
    r = reverse_within_lengths(z, lengths)
    assert torch.equal(r[:3, 1], z[:3, 1].flip(0)) and torch.equal(r[3:, 1], z[3:, 1])
    assert torch.equal(reverse_within_lengths(r, lengths), z)
