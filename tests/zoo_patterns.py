"""Which zoo models the conversion tests run, and the structural fact that lets them skip the rest by default.

The zoo's depth variants (ResNet-34 of ResNet-18, ResNet-101 of ResNet-50, ResNet-56 of ResNet-20, the 1D
34 of the 1D 18) repeat the blocks of the shallowest model of their family, block type and attention: same
layer classes with the same configurations, wired to the same kinds of layers, only more of them.
:func:`layer_patterns` is that set, and ``tests/test_zoo_patterns.py`` checks it is the same set for every
variant, so converting the shallowest one exercises every pattern the deeper ones contain. Converting the
deeper ones too is then a check of the converter on longer graphs, not of a new pattern, and they are the
suite's slowest conversions (the last CI run was killed past 90 min among them), so those cases carry the
``zoo_depth`` marker, left out by default (``python -m pytest -m zoo_depth`` runs them).
"""

import json

import pytest

from edge_attn.models import describe_models

_DESCRIPTIONS = {d["name"]: d for d in describe_models()}
# The smallest input each family's models take whole: ImageNet and 1D ResNets downsample by 32, CIFAR ones by 4.
SMALL_INPUT = {"imagenet": (32, 32, 3), "cifar": (16, 16, 1), "1d": (64, 1)}


def small_input(name):
    """A small input shape for zoo model ``name`` (its family's entry in ``SMALL_INPUT``)."""
    return SMALL_INPUT[_DESCRIPTIONS[name]["family"]]


def _kind(name):
    d = _DESCRIPTIONS[name]
    return d["family"], d["dims"], d["block"], d["attention"]


def representative(name):
    """The shallowest zoo model of ``name``'s family, block type and attention (``name`` itself if it is)."""
    same = [n for n in _DESCRIPTIONS if _kind(n) == _kind(name)]
    return min(same, key=lambda n: (_DESCRIPTIONS[n]["depth"], n))


def zoo_params(names, quick):
    """pytest params for ``names``: those in ``quick`` plain, other representatives ``slow``, depth variants
    ``slow`` and ``zoo_depth``."""
    params = []
    for name in names:
        if name in quick:
            params.append(name)
        elif representative(name) == name:
            params.append(pytest.param(name, marks=pytest.mark.slow))
        else:
            params.append(pytest.param(name, marks=[pytest.mark.slow, pytest.mark.zoo_depth]))
    return params


def layer_patterns(model):
    """The set of (layer class, configuration without the name, sorted classes of the layers feeding it)."""
    patterns = set()
    for layer in model.layers:
        config = layer.get_config()
        config.pop("name", None)
        inbound = []
        for node in layer._inbound_nodes:
            layers = node.inbound_layers
            inbound += [type(source).__name__ for source in (layers if isinstance(layers, list) else [layers])]
        patterns.add((type(layer).__name__, json.dumps(config, sort_keys=True, default=str), tuple(sorted(inbound))))
    return patterns
