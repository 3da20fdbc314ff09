"""``--auto-precision``: raise the precision of the fewest layers, worst local error first, until a budget is met.

The search starts from the per-layer *local* error of the plain int8 model (:mod:`edge_attn.evaluate.local_error`):
the layers whose own quantization costs the most come first, not the ones that only inherit their error. It then
converts with the first 1, 2, ... of them raised to ``int16x8`` (16-bit activations, 8-bit weights: still an integer
graph), and only when that is not enough for ``max_raised`` layers, to ``float``; each candidate is scored against
the float model on the evaluation samples (:func:`edge_attn.evaluate.compare.compare`) and judged by the same budget
``check`` uses (:func:`edge_attn.evaluate.compare.budget_failures`). The first candidate that meets it is the answer;
its rules become an ordinary ``[[precision]]`` recipe (:func:`recipe_toml`) written beside the model, so the run
can be repeated without the search.

"Fewest" is first along that ranking (a prefix of it): a greedy search bounded at ``2 * max_raised`` conversions,
enough when one or a few layers cause the loss. When the error builds up over many layers instead (each losing a
little, as in a deep stack whose activations share one wide range), no short prefix is enough; the search then
raises every ranked layer (int16x8, else float), and if that meets the budget, shrinks the set: chunks of the
raised layers, least local error first, go back to int8 while the budget stays met, halving the chunk when none
can (delta debugging, bounded at ``max_trials`` conversions). A shrink that ran to chunks of one layer leaves a
set from which no single layer can be lowered (``Trial.minimal``). tests/test_auto_precision.py checks the prefix
against a brute-force search over every single-layer choice of a small model, and tests/test_hard_case.py the
shrink on digits-glare. Every candidate converts through the AI Edge Quantizer with float32 model
inputs and outputs (what per-layer rules need, :mod:`edge_attn.convert.precision`), and so does the baseline the
gains are measured from (no rules, the same quantizer), so the table compares like with like.
"""

import dataclasses
import json
import re

from edge_attn.convert.converter import convert_model
from edge_attn.convert.precision import convert_mixed, model_layer_names
from edge_attn.convert.recipe import PrecisionRule
from edge_attn.errors import BadInput
from edge_attn.evaluate.compare import budget_failures, compare
from edge_attn.evaluate.local_error import local_snr, rank_by_local_error

STEPS = ("int16x8", "float")  # the precisions tried, in order: integer first, float last
MAX_RAISED = 8  # layers raised at most per step of the prefix search (at most 2 * MAX_RAISED conversions)
MAX_TRIALS = 60  # conversions the whole search may make (prefix, all raised, shrink)


@dataclasses.dataclass
class Trial:
    """One candidate: ``layers`` raised to ``precision`` (none for the baseline), how it scored, what it costs."""

    precision: str | None
    layers: list
    output_snr_db: float
    top1_agreement: float
    top1_drop_pt: float
    size_bytes: int
    failures: list  # budget_failures: empty when the budget is met
    search: str = "prefix"  # "baseline", "prefix" (worst local error first), "all" or "shrink" (from all raised)
    minimal: bool = False  # shrink only: no single raised layer can go back to int8 (each was tried)
    delegate_cpu_ops: int | None = None  # with a delegate: ops it would leave to the CPU (edge_attn's rules)

    @property
    def met(self):
        return not self.failures

    def to_dict(self):
        return {**dataclasses.asdict(self), "met": self.met}


@dataclasses.dataclass
class AutoPrecision:
    """What the search tried and chose; ``chosen`` is None when no candidate met the budget."""

    budget: dict
    ranking: list  # layer names, worst local error first (the order layers are raised in)
    trials: list  # of Trial, the baseline first
    chosen: Trial | None
    recipe: object  # the Recipe with the chosen rules (the base recipe when nothing met the budget)
    tflite: bytes = dataclasses.field(repr=False, default=b"")

    @property
    def needed(self):
        """False when plain int8 already met the budget and nothing was searched."""
        return bool(self.trials)

    @property
    def replaces_model(self):
        """True when a searched candidate met the budget: it, not the plain int8 model, is written."""
        return self.needed and self.chosen is not None

    def to_dict(self):
        return {"needed": self.needed, "budget": self.budget, "ranking": self.ranking,
                "trials": [t.to_dict() for t in self.trials],
                "chosen": None if self.chosen is None else self.chosen.to_dict(),
                "rules": [rule.to_dict() for rule in self.recipe.precision]}


def require_searchable(recipe):
    """BadInput unless ``recipe`` is one the search can raise layers of: post-training int8 without rules."""
    if recipe.qat or recipe.quantization != "int8":
        raise BadInput("--auto-precision", f"raises layers of a post-training int8 recipe; {recipe.name!r} is "
                                           f"{'quantization-aware' if recipe.qat else recipe.quantization} "
                                           "(use --recipe int8-ptq)")
    if recipe.precision:
        raise BadInput("--auto-precision", f"recipe {recipe.name!r} already has [[precision]] rules; drop them "
                                           "or drop --auto-precision")
    import importlib.util

    if importlib.util.find_spec("ai_edge_quantizer") is None:  # checked before any training, not after it
        raise BadInput("--auto-precision", "converts the candidates with the AI Edge Quantizer: "
                                           "pip install 'edge-attn[mixed]' (ai-edge-quantizer)")


def search(model, recipe, representative, x, y, layers, *, max_drop=1.0, min_agreement=0.98, min_snr_db=None,
           max_raised=MAX_RAISED, max_trials=MAX_TRIALS, delegate=None, what="model"):
    """Raise layers of the float Keras ``model`` (the one ``layers`` names, from
    :func:`edge_attn.evaluate.per_layer.layer_errors` of its plain int8 conversion) per ``recipe`` (post-training
    int8) until the budget is met on ``x``/``y``. Returns :class:`AutoPrecision`.

    ``delegate`` ("xnnpack", "gpu", "nnapi"): the target the model is for. A candidate that leaves more ops
    to the CPU than the baseline (by :func:`edge_attn.delegates.check_compat`) misses the budget, and a
    precision the delegate refuses on the first candidate is not tried further (no delegate takes int16x8)."""
    require_searchable(recipe)
    if delegate is not None:
        from edge_attn.delegates import check_compat
        from edge_attn.evaluate.results import TARGET_DELEGATES

        if delegate not in TARGET_DELEGATES:
            raise BadInput("--auto-precision-delegate", f"{delegate!r} is not one of {', '.join(TARGET_DELEGATES)}")
    budget = {"max_drop": max_drop, "min_agreement": min_agreement, "min_snr_db": min_snr_db,
              **({"delegate": delegate} if delegate else {})}
    names = model_layer_names(model)
    # Layers with a finite local figure, worst first; a bit-exact layer has nothing to gain.
    ranking = []
    for layer in rank_by_local_error(layers):
        snr = local_snr(layer)
        if layer["name"] in names and snr is not None and snr != float("inf") and layer["name"] not in ranking:
            ranking.append(layer["name"])
    base = dataclasses.replace(recipe, input_type="float32", output_type="float32")

    def trial(precision, raised):
        rules = tuple(PrecisionRule(match=f"^{re.escape(name)}$", precision=precision) for name in raised)
        candidate = dataclasses.replace(
            base, precision=rules, name=f"{recipe.name}-auto",
            description=(f"{recipe.name} with {len(raised)} layer(s) raised to {precision} by --auto-precision "
                         if raised else f"{recipe.name}, no layer raised by --auto-precision ")
                        + "(float32 inputs and outputs)")
        # the baseline (no rules) goes through the same mixed-precision quantizer as every candidate
        tflite = (convert_model(model, candidate, representative, name=what) if rules
                  else convert_mixed(model, base, representative, what, rules=()))
        accuracy = compare(model, tflite, x, y)
        failures = budget_failures(accuracy, max_drop=max_drop, min_agreement=min_agreement, min_snr_db=min_snr_db)
        cpu_ops = None
        if delegate is not None:
            cpu_ops = sum(1 for verdict in check_compat(tflite, delegate).ops if not verdict.delegated)
            extra = more_on_cpu(cpu_ops) if raised else 0
            if extra:
                failures.append(f"{delegate} would leave {extra} more op(s) to the CPU than all-int8 "
                                f"does (it does not take these {precision} ops)")
        return Trial(precision, list(raised), accuracy["output_snr_db"], accuracy["top1_agreement"],
                     accuracy["top1_drop_pt"], len(tflite), failures, delegate_cpu_ops=cpu_ops), candidate, tflite

    def more_on_cpu(cpu_ops):
        """How many more ops than the baseline the delegate leaves to the CPU (0 without a delegate)."""
        return 0 if delegate is None or not trials else max(0, cpu_ops - trials[0].delegate_cpu_ops)

    trials = []
    baseline, chosen_recipe, chosen_tflite = trial(None, [])
    baseline.search = "baseline"
    trials.append(baseline)
    chosen = baseline if baseline.met else None
    refused = set()  # precisions the delegate would not run

    def attempt(precision, raised, how):
        nonlocal chosen, chosen_recipe, chosen_tflite
        result, candidate, tflite = trial(precision, raised)
        result.search = how
        trials.append(result)
        if more_on_cpu(result.delegate_cpu_ops):
            refused.add(precision)
        if result.met:
            chosen, chosen_recipe, chosen_tflite = result, candidate, tflite
        return result.met

    for precision in STEPS if chosen is None else ():
        for count in range(1, min(max_raised, len(ranking)) + 1):
            if attempt(precision, ranking[:count], "prefix") or precision in refused:
                break
        if chosen is not None:
            break
    if chosen is None and len(ranking) > max_raised:
        for precision in STEPS:
            if precision not in refused and len(trials) < max_trials and attempt(precision, ranking, "all"):
                _shrink(attempt, precision, ranking, lambda: len(trials) < max_trials, lambda: chosen)
                break
    if chosen is None:
        chosen_recipe, chosen_tflite = recipe, b""
    return AutoPrecision(budget, ranking, trials, chosen, chosen_recipe, chosen_tflite)


def _shrink(attempt, precision, ranking, may_try, best):
    """Lower chunks of the raised layers back to int8 while the budget stays met (delta debugging): the layers
    with the least local error go first (the end of ``ranking``); a chunk whose lowering misses the budget stays
    raised; a pass that lowers nothing halves the chunk. ``attempt(precision, layers, how)`` converts and scores a
    candidate (and keeps it as the best when it meets the budget); ``best()`` is the current best trial."""
    raised = list(ranking)
    chunk = max(1, len(raised) // 2)
    missed = set()  # sets already tried that missed the budget: a later pass would try some of them again
    while raised and may_try():
        lowered_any = False
        order = raised[::-1]  # least local error first
        for start in range(0, len(order), chunk):
            if not may_try():
                return
            lower = set(order[start:start + chunk])
            keep = [name for name in raised if name not in lower]
            if not keep or len(keep) == len(raised) or frozenset(keep) in missed:
                continue
            if attempt(precision, keep, "shrink"):
                raised, lowered_any = keep, True
            else:
                missed.add(frozenset(keep))
        if not lowered_any:
            if chunk == 1:
                best().minimal = True  # every single raised layer was tried against this set and is needed
                return
            chunk = max(1, chunk // 2)


def recipe_toml(recipe, note=""):
    """``recipe`` (post-training, with its ``[[precision]]`` rules) as a TOML recipe file ``--recipe`` loads."""
    def value(v):
        return ("true" if v else "false") if isinstance(v, bool) else json.dumps(v)

    lines = [f"# {line}" for line in note.splitlines()]
    for field in ("name", "description", "quantization", "qat", "input_type", "output_type",
                  "calibration_samples", "batch_size", "allow_float_ops"):
        lines.append(f"{field} = {value(getattr(recipe, field))}")
    for rule in recipe.precision:
        lines += ["", "[[precision]]", f"match = {value(rule.match)}", f"precision = {value(rule.precision)}"]
    return "\n".join(lines) + "\n"


_SEARCH_NOTE = {"all": " (all ranked)", "shrink": " (shrunk)"}


def missed_in_shrink(trial):
    """Whether ``trial`` (a :meth:`Trial.to_dict`) is one of a shrink's many sets that missed the budget: the
    terminal and report.html list a shrink's sets that met it (each smaller than the last) and count these."""
    return trial.get("search") == "shrink" and not trial["met"]


def summary_lines(searched, out):
    """The terminal lines for a search result (``report.json``'s ``auto_precision``): what was tried and the
    recipe written in ``out``; none without a search."""
    import os

    if not searched:
        return []
    if not searched["needed"]:
        return ["auto-precision: plain int8 meets the budget; nothing raised"]
    lines = ["auto-precision (layers raised worst local error first):", format_table(searched)]
    if searched["chosen"] is None:
        lines.append(f"auto-precision: no candidate met the budget; kept the plain int8 model (budget: "
                     f"{searched['budget']})")
        return lines
    chosen = searched["chosen"]
    if chosen["layers"]:
        lines.append(f"auto-precision: {len(chosen['layers'])} layer(s) raised to {chosen['precision']}"
                     + ("; lowering any one of them back to int8 misses the budget" if chosen.get("minimal") else ""))
    lines.append(f"recipe: {os.path.join(os.path.abspath(out), 'recipe.toml')} (pass it as --recipe to repeat this)")
    return lines


def format_table(result):
    """The terminal table of ``result`` (:meth:`AutoPrecision.to_dict`, as in report.json): each candidate tried,
    what it gained against the baseline and what it cost in size."""
    trials = result["trials"]
    base = trials[0]
    rows = [f"  {'raised':<40} {'SNR dB':>7} {'agree':>6} {'KiB':>7}  budget"]
    hidden = sum(1 for t in trials if missed_in_shrink(t))
    for t in trials:
        if missed_in_shrink(t):
            continue
        label = "none (all int8, float32 I/O)" if t["precision"] is None else \
            f"{len(t['layers'])} to {t['precision']}{_SEARCH_NOTE.get(t.get('search'), '')}: " + ", ".join(t["layers"])
        label = label if len(label) <= 40 else label[:37] + "..."
        gain = "" if t is base else (f" ({t['output_snr_db'] - base['output_snr_db']:+.1f} dB, "
                                     f"{(t['size_bytes'] - base['size_bytes']) / 1024:+.1f} KiB)")
        rows.append(f"  {label:<40} {t['output_snr_db']:>7.1f} {t['top1_agreement']:>6.3f} "
                    f"{t['size_bytes'] / 1024:>7.1f}  {'met' if t['met'] else 'missed'}{gain}")
    if hidden:
        rows.append(f"  (and {hidden} shrink candidates that missed the budget: report.json auto_precision.trials)")
    return "\n".join(rows)
