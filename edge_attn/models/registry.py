"""The model zoo as data: every registered name is a ResNet family, a depth and an attention key.

Variants follow timm's pattern: ``se_resnet50`` is ``resnet50`` with ``attention="se"``, nothing more.
Three families, all ResNet v1 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016):

* ``imagenet`` -- ResNet-18/34/50/101 (Table 1): 7x7/2 stem conv, 3x3/2 max-pool, four stages.
* ``cifar``    -- ResNet-20/56 (Section 4.2): 3x3 stem with 16 filters, three stages of 16/32/64 filters
  with n = (depth - 2) / 6 basic blocks each.
* ``1d``       -- the ImageNet ResNet-18/34 layout with Conv1D, for sequences and signals.

Stages are numbered from 2 as in the paper's conv2_x ... conv5_x (conv1 is the stem), for every family.

This module imports no TensorFlow, so listing and describing models stays instant; ``create_model``
imports the Keras builder only when it builds.
"""

import dataclasses
import difflib
import numbers

from edge_attn.errors import BadInput

ATTENTION_KEYS = (None, "se", "cbam")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the builder needs to know about one registered architecture."""

    name: str
    family: str
    dims: int
    depth: int
    block: str  # "basic" | "bottleneck"
    attention: str | None
    stage_blocks: tuple[int, ...]
    stage_filters: tuple[int, ...]
    stem_filters: int
    stem_kernel: int
    stem_strides: int
    stem_pool: bool
    default_input_shape: tuple[int, ...]

    @property
    def downsampling(self):
        """Total stride from input to the last stage (every stage after the first halves the size)."""
        return self.stem_strides * (2 if self.stem_pool else 1) * 2 ** (len(self.stage_blocks) - 1)


# family -> (shared layout, {depth: (block, blocks per stage)})
_FAMILIES = {
    "imagenet": (
        dict(dims=2, stage_filters=(64, 128, 256, 512), stem_filters=64, stem_kernel=7, stem_strides=2,
             stem_pool=True, default_input_shape=(224, 224, 3)),
        {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
         50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))},
    ),
    "cifar": (
        dict(dims=2, stage_filters=(16, 32, 64), stem_filters=16, stem_kernel=3, stem_strides=1,
             stem_pool=False, default_input_shape=(32, 32, 3)),
        {20: ("basic", (3, 3, 3)), 56: ("basic", (9, 9, 9))},
    ),
    "1d": (
        dict(dims=1, stage_filters=(64, 128, 256, 512), stem_filters=64, stem_kernel=7, stem_strides=2,
             stem_pool=True, default_input_shape=(1000, 1)),
        {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3))},
    ),
}


def _base_name(family, depth):
    return f"resnet1d_{depth}" if family == "1d" else f"resnet{depth}"


def _build_registry():
    specs = {}
    for family, (layout, depths) in _FAMILIES.items():
        for depth, (block, stage_blocks) in depths.items():
            for attention in ATTENTION_KEYS:
                name = (f"{attention}_" if attention else "") + _base_name(family, depth)
                specs[name] = ModelSpec(name=name, family=family, depth=depth, block=block, attention=attention,
                                        stage_blocks=stage_blocks, **layout)
    return dict(sorted(specs.items()))


_REGISTRY = _build_registry()


def list_models():
    """Sorted names of every registered architecture."""
    return list(_REGISTRY)


def is_registered(name):
    """True when ``name`` is a registered architecture."""
    return isinstance(name, str) and name in _REGISTRY


def describe_models():
    """One dict per model (sorted by name): name, family, dims, depth, block, attention, default_input_shape."""
    return [
        {"name": s.name, "family": s.family, "dims": s.dims, "depth": s.depth, "block": s.block,
         "attention": s.attention, "default_input_shape": s.default_input_shape}
        for s in _REGISTRY.values()
    ]


def _close_matches(name, cutoff=0.6, margin=0.05):
    """Names whose difflib similarity to ``name`` is above difflib's default cutoff and within ``margin``
    of the best one, best first: "se_resnet5" suggests se_resnet50 and se_resnet56, not every se_ model."""
    scored = sorted((-difflib.SequenceMatcher(None, name.lower(), known).ratio(), known) for known in _REGISTRY)
    best = -scored[0][0]
    return [known for negative, known in scored if -negative >= max(cutoff, best - margin)]


def get_spec(name):
    """The :class:`ModelSpec` of ``name``; ``BadInput("model", ...)`` with close matches when unknown."""
    if is_registered(name):
        return _REGISTRY[name]
    close = _close_matches(str(name))
    if close:
        hint = "did you mean: " + ", ".join(close) + "?"
    else:
        hint = "registered models: " + ", ".join(_REGISTRY)
    raise BadInput("model", f"unknown model {name!r}; {hint}")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate_classes(classes):
    if not _is_int(classes) or classes < 2:
        raise BadInput("classes", f"expected an integer >= 2; Received: classes={classes!r}")
    return int(classes)


def validate_input_shape(spec, input_shape):
    """``input_shape`` (without batch) as a tuple of ints, or the family default when None.

    Every spatial size must be at least the network's total downsampling so the last stage still has one
    position per axis (``padding="same"`` would otherwise silently collapse a 1-pixel map again and again).
    """
    if input_shape is None:
        return spec.default_input_shape
    layout = "(H, W, C)" if spec.dims == 2 else "(length, channels)"
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) != spec.dims + 1 or not all(_is_int(d) and d > 0 for d in shape):
        raise BadInput("input_shape", f"expected {layout} of positive integers for {spec.name}; "
                                      f"Received: input_shape={input_shape!r}")
    shape = tuple(int(d) for d in shape)
    if min(shape[:-1]) < spec.downsampling:
        raise BadInput("input_shape", f"{spec.name} downsamples by {spec.downsampling}, so every spatial size "
                                      f"must be >= {spec.downsampling}; Received: input_shape={input_shape!r}")
    return shape
