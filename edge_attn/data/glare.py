"""``digits-glare``: the built-in digits with a bright highlight, a wide-dynamic-range input int8 loses on.

Plain ``digits`` leaves int8 nothing to lose (SE/CBAM ResNet-20 reach ~0 pt drop and ~36 dB). Real sensor
images often carry a few pixels far brighter than the content: a specular highlight, a hot or saturated
pixel, a status LED in the frame. Per-tensor int8 spends its 256 levels on the whole range, so the
content that matters gets a handful of them. This task is exactly that and nothing else: scikit-learn's
digits, scaled ``x / 16`` to [0, 1] and resized like ``digits`` (default 16×16), with a fixed
``GLARE_SIZE``×``GLARE_SIZE`` patch of value ``GLARE_VALUE`` in the top-left corner (where no digit has
ink). The patch carries no information about the class, so a float model ignores it; the int8 input
scale becomes ``GLARE_VALUE / 255`` and the strokes are rounded to a few levels, and every range the
patch's response reaches is stretched. Measured on se_resnet20 (README): the worst *local* error is in
stage 2's SE blocks (the squeeze, a global mean, and the scale carry the patch's response), the deep
layers only inherit it (``check``'s worst-local-SNR row, report.html's per-layer chart).

Generated from the shipped digits at load time (no download), deterministic, the same stratified split
as ``digits``.
"""

import numpy as np

from edge_attn.data.dataset import Source
from edge_attn.data.images import digits_source

DIGITS_GLARE = "digits-glare"
GLARE_VALUE = 64.0  # in units of the strokes' full scale (1.0): 6 stops brighter
GLARE_SIZE = 2  # pixels per side, at the model's input size


def digits_glare_source(shape) -> Source:
    """:func:`edge_attn.data.images.digits_source` at ``shape`` with the highlight painted on every sample."""
    digits = digits_source(shape)

    def read(indices):
        images = np.array(digits.read(indices), np.float32, copy=True)
        images[:, :GLARE_SIZE, :GLARE_SIZE, :] = GLARE_VALUE
        return images

    info = {**digits.info,
            "source": digits.info["source"] + f"; {DIGITS_GLARE}: a {GLARE_SIZE}x{GLARE_SIZE} highlight of "
                                              f"{GLARE_VALUE:g} in the top-left corner of every image",
            "highlight": {"value": GLARE_VALUE, "size": GLARE_SIZE, "where": "top-left corner, after resize"}}
    return Source(digits.labels, digits.class_names, digits.sample_shape, read, info)
