"""Conversion recipes: how a Keras model becomes a TFLite flatbuffer, as data users copy and edit.

A recipe is a TOML file (the shipped ones live in ``edge_attn/recipes/``: ``int8-qat``, ``int8-ptq``,
``fp16``, ``f32``, ``dynamic``) loaded into the frozen :class:`Recipe`. Every key is checked: an unknown
key, a wrong type, a bad enum value or a key that does not apply to the recipe's quantization (it would be
silently ignored) is a :class:`~edge_attn.errors.BadInput` naming the file and the field.

TOML cannot hold both ``qat = true`` and a ``[qat]`` table, so the quantization-aware fine-tune settings
live in a ``[fine_tune]`` table (:class:`QatSettings`, ``recipe.fine_tune``), allowed only when
``qat = true``.

``int16x8`` (16-bit activations, 8-bit weights) is calibrated post-training only: tfmot's fake-quant models
8-bit activation rounding, so a QAT fine-tune would train the model for the wrong grid (see
``edge_attn/recipes/int16x8.toml``). The calibrated recipes (``int8``, ``int16x8``) may carry an ordered
list of per-layer precision rules (``[[precision]]`` tables: :class:`PrecisionRule`).
"""

import dataclasses
import math
import re
import os

from edge_attn.errors import BadInput
from edge_attn.shipped import load_table, shipped_names

QUANTIZATIONS = ("int8", "int16x8", "fp16", "f32", "dynamic")
CALIBRATED = ("int8", "int16x8")  # integer activations: ranges calibrated on representative data
IO_TYPES = ("int8", "uint8", "int16", "float32")
# The integer input/output types each calibrated quantization can have (besides float32).
_INTEGER_IO = {"int8": ("int8", "uint8"), "int16x8": ("int16",)}
SCHEDULES = ("cosine", "step", "constant")  # learning-rate schedules of the fine-tune


@dataclasses.dataclass(frozen=True)
class QatSettings:
    """The quantization-aware fine-tune run before an int8 conversion (the ``[fine_tune]`` table)."""

    epochs: int = 2  # 0 = wrap the model quantize-aware and convert, no fine-tune
    learning_rate: float = 1e-4
    schedule: str = "cosine"  # "cosine" | "step" | "constant"
    batch_size: int = 32
    bn_freeze_steps: int = 0  # steps after which BatchNormalization statistics stop updating
    early_stop_patience: int = 2  # epochs without improvement before stopping; 0 = never stop early


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One conversion recipe; see the comments in the shipped TOML files for what each field does."""

    name: str
    quantization: str  # "int8" | "int16x8" | "fp16" | "f32" | "dynamic"
    description: str = ""
    qat: bool = False  # quantization-aware fine-tune before conversion (int8 only)
    input_type: str = "float32"  # "int8" | "uint8" | "float32"
    output_type: str = "float32"
    calibration_samples: int = 200  # representative samples (int8 and int16x8 only)
    batch_size: int = 1  # fixed batch at conversion: folds Reshape/Shape ops
    allow_float_ops: bool = False  # int8/int16x8: keep ops without an integer kernel in float instead of failing
    lower_thin_convs: bool = True  # rewrite 1-2 channel convs as exact row convolutions (edge_attn.convert.row_conv)
    fine_tune: QatSettings = QatSettings()
    precision: tuple = ()  # of PrecisionRule, first match wins (calibrated only)
    source: str = ""  # the TOML file the recipe was read from

    @property
    def calibrated(self):
        """Integer activations calibrated on representative data (``int8``, ``int16x8``)."""
        return self.quantization in CALIBRATED

    def to_dict(self):
        """The recipe as plain JSON-serialisable data (for report.json)."""
        return dataclasses.asdict(self) | {"precision": [rule.to_dict() for rule in self.precision]}


def list_recipes():
    """Names of the shipped recipes, sorted."""
    return shipped_names("recipes")


def load_recipe(name_or_path):
    """Load a shipped recipe by name (``"int8-qat"``) or any recipe file by path (``"my.toml"``)."""
    return parse_recipe(*load_table(name_or_path, "recipes", "recipe", "recipes"))


def parse_recipe(table, source):
    """Validate a TOML table (a dict) into a :class:`Recipe`; ``source`` names it in errors."""
    fields = TableFields(table, source, prefix="")

    quantization = fields.choice("quantization", QUANTIZATIONS, required=True)
    calibrated = quantization in CALIBRATED
    default_io = _INTEGER_IO[quantization][0] if calibrated else "float32"
    recipe = Recipe(
        name=fields.string("name", default=os.path.splitext(os.path.basename(source))[0]),
        description=fields.string("description", default=""),
        quantization=quantization,
        qat=fields.boolean("qat", default=False),
        input_type=fields.choice("input_type", IO_TYPES, default=default_io),
        output_type=fields.choice("output_type", IO_TYPES, default=default_io),
        calibration_samples=fields.integer("calibration_samples", default=Recipe.calibration_samples, minimum=1),
        batch_size=fields.integer("batch_size", default=Recipe.batch_size, minimum=1),
        allow_float_ops=fields.boolean("allow_float_ops", default=False),
        lower_thin_convs=fields.boolean("lower_thin_convs", default=True),
        fine_tune=_parse_fine_tune(fields.table("fine_tune"), source),
        precision=parse_precision_rules(fields.array_of_tables("precision"), source),
        source=str(source),
    )
    fields.reject_unknown()

    if recipe.qat and quantization == "int16x8":
        raise BadInput(source, "qat: int16x8 is post-training only: tfmot's fake-quant rounds activations to 8 bits, "
                               "so a quantization-aware fine-tune would train for the wrong grid; set qat = false "
                               "(int16x8 calibrates 16-bit ranges directly)")
    if recipe.qat and not calibrated:
        raise BadInput(source, f"qat: quantization-aware fine-tune needs quantization = \"int8\", not {quantization!r}")
    if not calibrated:
        for field in ("input_type", "output_type"):
            if getattr(recipe, field) != "float32":
                raise BadInput(source, f"{field}: only int8/int16x8 recipes have integer inputs/outputs; use "
                                       "\"float32\"")
        for field in ("calibration_samples", "allow_float_ops", "precision"):
            if field in table:
                raise BadInput(source, f"{field}: only applies to int8/int16x8 recipes (remove it)")
    else:
        for field in ("input_type", "output_type"):
            value = getattr(recipe, field)
            allowed = _INTEGER_IO[quantization] + ("float32",)
            if value not in allowed:
                raise BadInput(source, f"{field}: quantization = {quantization!r} takes "
                                       f"{', '.join(map(repr, allowed))}, got {value!r}")
        if recipe.qat and any(rule.precision == "int16x8" for rule in recipe.precision):
            position = next(i for i, rule in enumerate(recipe.precision, 1) if rule.precision == "int16x8")
            raise BadInput(source, f"precision[{position}].precision: \"int16x8\" layers need post-training "
                                   "calibration, but qat = true: tfmot's fake-quant rounds activations to 8 bits; "
                                   "use \"float\" or \"int8\" under QAT, or a post-training recipe")
        if recipe.precision and (recipe.input_type, recipe.output_type) != ("float32", "float32"):
            raise BadInput(source, "precision: per-layer precision rules convert through a mixed-precision quantizer "
                                   "that keeps float32 model inputs and outputs; set input_type = \"float32\" and "
                                   "output_type = \"float32\"")
    if recipe.batch_size != 1:
        raise BadInput(source, f"batch_size: edge_attn checks and runs a converted model one sample per invoke, so "
                               f"only batch_size = 1 works end to end (got {recipe.batch_size})")
    if "fine_tune" in table and not recipe.qat:
        raise BadInput(source, "fine_tune: only applies when qat = true (remove the table or set qat = true)")
    return recipe


def _parse_fine_tune(table, source):
    fields = TableFields(table, source, prefix="fine_tune.")
    defaults = QatSettings()
    settings = QatSettings(
        epochs=fields.integer("epochs", default=defaults.epochs, minimum=0),
        learning_rate=fields.positive_float("learning_rate", default=defaults.learning_rate),
        schedule=fields.choice("schedule", SCHEDULES, default=defaults.schedule),
        batch_size=fields.integer("batch_size", default=defaults.batch_size, minimum=1),
        bn_freeze_steps=fields.integer("bn_freeze_steps", default=defaults.bn_freeze_steps, minimum=0),
        early_stop_patience=fields.integer("early_stop_patience", default=defaults.early_stop_patience, minimum=0),
    )
    fields.reject_unknown()
    return settings


class TableFields:
    """Typed reads from one TOML table that remember which keys were used, to reject the rest."""

    def __init__(self, table, source, prefix):
        self.values = table
        self.source = source
        self.prefix = prefix
        self.seen = set()

    def _get(self, key, default, required=False):
        self.seen.add(key)
        if key not in self.values:
            if required:
                raise BadInput(self.source, f"{self.prefix}{key}: missing (required)")
            return default
        return self.values[key]

    def _bad(self, key, problem):
        return BadInput(self.source, f"{self.prefix}{key}: {problem}")

    def string(self, key, default):
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self._bad(key, f"expected a string, got {value!r}")
        return value

    def choice(self, key, choices, default=None, required=False):
        value = self._get(key, default, required)
        if value not in choices:
            raise self._bad(key, f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value

    def boolean(self, key, default):
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, f"expected true or false, got {value!r}")
        return value

    def integer(self, key, default, minimum):
        value = self._get(key, default)
        # bool is a subclass of int in Python; `batch_size = true` is a mistake, not 1
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad(key, f"expected an integer, got {value!r}")
        if value < minimum:
            raise self._bad(key, f"must be >= {minimum}, got {value}")
        return value

    def positive_float(self, key, default):
        value = self._get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._bad(key, f"expected a number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise self._bad(key, f"must be a positive number, got {value!r}")
        return float(value)

    def array_of_tables(self, key):
        """A TOML array of tables (``[[key]]``), as a list of (position from 1, table)."""
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self._bad(key, f"expected [[{key}]] tables (a list of tables), got {value!r}")
        return list(enumerate(value, 1))

    def table(self, key):
        value = self._get(key, {})
        if not isinstance(value, dict):
            raise self._bad(key, f"expected a [{key}] table, got {value!r}")
        return value

    def reject_unknown(self):
        unknown = sorted(set(self.values) - self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen))
            raise BadInput(self.source, f"{self.prefix}{unknown[0]}: unknown key (known keys: {known})")


PRECISIONS = ("int8", "int16x8", "float")  # what a [[precision]] rule may ask for


@dataclasses.dataclass(frozen=True)
class PrecisionRule:
    """One ``[[precision]]`` table: layers whose name ``match`` finds (re.search) compute at ``precision``."""

    match: str
    precision: str  # "int8" | "int16x8" | "float"

    def to_dict(self):
        return {"match": self.match, "precision": self.precision}

    def matches(self, layer_name):
        return re.search(self.match, layer_name) is not None


def parse_precision_rules(tables, source):
    """``[(position, table), ...]`` (the ``[[precision]]`` array) → a tuple of :class:`PrecisionRule`.

    Each table needs ``match`` (a regular expression that compiles) and ``precision`` (one of
    :data:`PRECISIONS`); any other key is an error naming ``precision[N].key`` in ``source``.
    """
    rules = []
    for position, table in tables:
        fields = TableFields(table, source, prefix=f"precision[{position}].")
        if "match" not in table:
            raise BadInput(source, f"precision[{position}].match: missing (required)")
        match = fields.string("match", default="")
        precision = fields.choice("precision", PRECISIONS, required=True)
        fields.reject_unknown()
        try:
            re.compile(match)
        except re.error as e:
            raise BadInput(source, f"precision[{position}].match: not a regular expression ({e}): {match!r}") from e
        rules.append(PrecisionRule(match=match, precision=precision))
    return tuple(rules)
