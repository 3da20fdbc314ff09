"""Every deeper zoo model repeats its shallowest sibling's layer patterns (why ``zoo_depth`` cases may be left out).

Reference: the Keras models themselves, built here at small inputs; the negative controls show the comparison
tells a bottleneck network from a basic-block one and an SE network from a plain one.
"""

import pytest

from zoo_patterns import layer_patterns, representative, small_input

from edge_attn.models import create_model, describe_models

VARIANTS = sorted(name for name in (d["name"] for d in describe_models()) if representative(name) != name)


@pytest.fixture(scope="module")
def patterns():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = layer_patterns(create_model(name, input_shape=small_input(name), classes=10))
        return cache[name]

    return get


def test_every_family_block_and_attention_has_a_shallower_representative():
    assert len(VARIANTS) == 12  # 18/34, 50/101, 20/56, 1D 18/34, each plain, SE and CBAM
    assert representative("cbam_resnet101") == "cbam_resnet50"
    assert representative("se_resnet50") == "se_resnet50"
    assert representative("resnet1d_34") == "resnet1d_18"


@pytest.mark.parametrize("name", VARIANTS)
def test_depth_variant_adds_no_layer_pattern(patterns, name):
    assert patterns(name) == patterns(representative(name))


@pytest.mark.parametrize("one, other", [("resnet18", "resnet50"), ("resnet20", "se_resnet20"),
                                        ("se_resnet20", "cbam_resnet20"), ("resnet18", "resnet20")])
def test_the_comparison_tells_different_architectures_apart(patterns, one, other):
    assert patterns(one) != patterns(other)
