"""benchmarks/copy_paste.py: the copy-paste baseline of augmentation pastes a real lesion's difference on tissue."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))

from copy_paste import lesion_patches, paste  # noqa: E402


def test_a_lesion_is_cut_with_its_mask_and_pasted_inside_the_brain():
    x = torch.full((2, 1, 12, 12), -1.0)  # black background
    x[:, :, 2:10, 2:10] = 0.0  # a square "brain" of grey 127
    without = x[:1].clone()
    with_lesion = without.clone()
    with_lesion[0, 0, 3:5, 3:5] = 0.8  # a 2 x 2 lesion, +102 grey levels
    diff, mask, background = lesion_patches(with_lesion, without)
    assert mask.sum() == 4 and torch.allclose(background, torch.tensor([0.0]))
    assert torch.allclose(diff.sum(), torch.tensor(4 * 0.8))

    out, fallbacks = paste(x, diff, mask, background, torch.Generator().manual_seed(0))
    assert fallbacks == 0
    added = out - x
    for j in range(2):
        site = added[j, 0] > 0
        assert site.sum() == 4 and (x[j, 0][site] == 0).all()  # the whole lesion, on the brain, not the background
        assert torch.allclose(added[j].sum(), torch.tensor(4 * 0.8))


def test_a_paste_with_no_matching_tissue_takes_the_closest_and_is_counted():
    x = torch.full((1, 1, 12, 12), -1.0)
    x[:, :, 2:10, 2:10] = -0.5  # darker tissue than the donor's (64 grey levels off)
    donor = torch.zeros(1, 1, 12, 12)
    lesion = donor.clone()
    lesion[0, 0, 5, 5] = 0.5
    out, fallbacks = paste(x, *lesion_patches(lesion, donor), torch.Generator().manual_seed(0))
    assert fallbacks == 1
    site = (out - x)[0, 0] > 0
    assert site.sum() == 1 and (x[0, 0][site] == -0.5).all()  # still inside the brain
