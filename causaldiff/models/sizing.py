"""``widths: auto``: the encoder's and the UNet's widths and depth from the image size.

At 32 px the rule gives the recipe measured on every test bed (docs/results.md, "Test beds": 1.4 M parameters, encoder
[32, 64, 128], UNet [32, 64, 64], no attention); at 64 px the GPU template's earlier hand-written sizes (encoder
[32, 64, 128, 256], UNet [32, 64, 128, 128], attention at 16 px). Sizes other than 32 px are not measured.
"""

from __future__ import annotations

BASE = 32  # the first level's channels, as in the measured recipe
BOTTOM = 8  # the UNet halves the image down to at least this many pixels (32 px: 32, 16, 8)
POOLED = 4  # the encoder's strided stages halve it to at most this many before pooling (32 px: 16, 8, 4)
WIDEST = 256  # no level wider (as pendulum96, the widest config)


def auto_widths(image_size: int) -> dict:
    """``{encoder_widths, unet_channels, attention_levels}`` for square images of ``image_size`` pixels.

    UNet: one level per halving while the resolution stays even and at least :data:`BOTTOM` (each level must
    halve exactly for the skip connections to line up), channels doubling from :data:`BASE` up to :data:`WIDEST`, the
    last level as wide as the one before; from 64 px up, self-attention at the first level of 16 px or less.
    Encoder: one strided stage per halving down to :data:`POOLED` px, channels doubling from :data:`BASE` up to
    :data:`WIDEST`.
    """
    if image_size < BOTTOM:
        raise ValueError(f"widths: auto needs images of at least {BOTTOM} px, got {image_size}")
    levels, res = [image_size], image_size
    while res % 2 == 0 and res // 2 >= BOTTOM:
        res //= 2
        levels.append(res)
    unet = [min(BASE * 2 ** min(i, max(len(levels) - 2, 0)), WIDEST) for i in range(len(levels))]
    attention = [next(i for i, r in enumerate(levels) if r <= 16)] if image_size >= 64 else []
    stages, res = 0, image_size
    while res > POOLED:
        res = (res + 1) // 2
        stages += 1
    encoder = [min(BASE * 2**i, WIDEST) for i in range(stages)]
    return {"encoder_widths": encoder, "unet_channels": unet, "attention_levels": attention}
