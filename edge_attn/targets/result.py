"""The GPU accelerator's result, in the one shape every target shares (:mod:`edge_attn.result_shape`,
docs/result-shape.md): what ran where, how much of the graph the accelerator took, its numerics against LiteRT's
CPU kernels, latency, and the verdict with its symptom.

Non-finite numbers stay floats here (an exact match has SNR ``inf``); the report writer turns them into ``null``.
"""

import dataclasses

from edge_attn.result_shape import Numerics, result_dict, verdict_of
from edge_attn.runners.result import DeviceInfo, GraphPlacement

__all__ = ["Numerics", "TargetResult"]


@dataclasses.dataclass(frozen=True)
class TargetResult:
    """What one accelerator target did with one model.

    ``available`` is False when the target could not be used at all (no adapter): ``problems`` then says why.
    ``graph`` is what the target itself reported (CompiledModel: only fully accelerated or not). ``problems`` holds
    one readable line per finding that makes the result unusable (wrong numbers, crashes, shader errors); an empty
    list on an available target means it passed. ``failure`` is the verdict those problems give: ``"failed"``
    or ``"wrong-numbers"`` (None: none). ``latency_ms``: the shared ``{cold_start, warm, threads, times}`` block.
    ``details`` holds target-specific extras (log excerpts, set-up time, the Vulkan driver used).
    """

    target: str
    available: bool
    accelerator: str
    model: str | None = None
    device: DeviceInfo | None = None
    graph: GraphPlacement | None = None
    numerics: Numerics | None = None
    latency_ms: dict | None = None
    failure: str | None = None
    note: str | None = None
    problems: tuple = ()
    details: dict = dataclasses.field(default_factory=dict)

    @property
    def ok(self):
        return self.available and not self.problems

    @property
    def fully_accelerated(self):
        return self.graph.to_dict()["fully_accelerated"] if self.graph else None

    @property
    def verdict(self):
        return verdict_of(available=self.available, failure=self.failure, accelerator=self.accelerator,
                          graph=self.graph.to_dict() if self.graph else None, problems=list(self.problems))[0]

    def to_dict(self):
        return result_dict(target=self.target, model=self.model,
                           device=(self.device or DeviceInfo(name=self.target)).to_dict(),
                           delegate=self.accelerator, accelerator=self.accelerator, available=self.available,
                           graph=self.graph.to_dict() if self.graph else None, numerics=self.numerics,
                           latency=self.latency_ms, failure=self.failure, note=self.note, problems=self.problems,
                           details=self.details)
