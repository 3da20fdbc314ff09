"""Where QAT runs: ``tf.distribute`` strategies by name (``--strategy default|mirrored|multi-worker``).

``default``
    TensorFlow's default strategy: one device, no distribution; numerically what edge_attn did before
    strategies existed.
``mirrored``
    ``tf.distribute.MirroredStrategy``: synchronous data parallelism over every GPU of this machine.
    Without a GPU the CPU is split into ``EDGE_ATTN_CPU_REPLICAS`` logical devices (default 1), one
    replica each. That is for testing and reproducing multi-replica numerics on a laptop or a CI runner,
    not for speed (the replicas share the same cores). An environment variable and not a flag because
    logical devices can only be configured before TensorFlow initialises its devices, i.e. before the
    first op runs; an environment variable reaches every entry point (CLI, Python API, a test's
    subprocess) without another argument threaded through, and it has no meaning on GPU machines.
``multi-worker``
    ``tf.distribute.MultiWorkerMirroredStrategy``: the same, across machines. Every worker runs the same
    command with a ``TF_CONFIG`` environment variable naming the cluster and its own task, e.g.
    ``{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, "task": {"type": "worker", "index": 0}}``.
    The *chief* (task ``chief``, or worker 0 when there is none) writes the outputs; the others train
    and write nothing. The strategy must exist before TensorFlow runs any op (it configures collective
    ops at start-up), so :func:`create_strategy` is the first thing ``convert`` does with TensorFlow.

Every strategy splits the recipe's batch size (the *global* batch) over its replicas; gradients are
summed over replicas, so the loss of each replica is scaled by its share of the global batch
(see :mod:`edge_attn.training`).
"""

import json
import os
from dataclasses import dataclass

from edge_attn.errors import BadInput

STRATEGIES = ("default", "mirrored", "multi-worker")
CPU_REPLICAS_ENV = "EDGE_ATTN_CPU_REPLICAS"
_TASK_TYPES = ("chief", "worker")  # MultiWorkerMirroredStrategy's roles (no parameter servers, no evaluator)


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in a multi-worker cluster, as ``TF_CONFIG`` describes it."""

    task_type: str  # "chief" | "worker"
    task_index: int
    cluster: dict  # job name -> list of "host:port"

    @property
    def is_chief(self):
        """The task that writes outputs: ``chief``, or worker 0 when the cluster has no chief."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0
                                             and "chief" not in self.cluster)

    @property
    def name(self):
        return f"{self.task_type}:{self.task_index}"

    @property
    def workers(self):
        return sum(len(addresses) for addresses in self.cluster.values())


def check_strategy_name(name):
    if name not in STRATEGIES:
        raise BadInput("--strategy", f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return name


def cluster_task(environ=None):
    """Parse and check ``TF_CONFIG``; raise ``BadInput("TF_CONFIG", ...)`` when it is missing or malformed.

    Checked: valid JSON; ``cluster`` maps ``chief`` (at most one) and ``worker`` to lists of "host:port";
    ``task`` has a ``type`` present in the cluster and an ``index`` within its list.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        raise BadInput("TF_CONFIG", "is not set; --strategy multi-worker needs it on every worker, e.g. "
                                    '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                                    '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInput("TF_CONFIG", f"is not valid JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not config["cluster"]:
        raise BadInput("TF_CONFIG", "needs a 'cluster' object mapping 'worker' (and optionally 'chief') to "
                                    "lists of host:port addresses")
    cluster = config["cluster"]
    for job, addresses in cluster.items():
        if job not in _TASK_TYPES:
            raise BadInput("TF_CONFIG", f"cluster job {job!r} is not supported by multi-worker training; "
                                        f"use {' and '.join(_TASK_TYPES)}")
        if not isinstance(addresses, list) or not addresses or not all(_is_address(a) for a in addresses):
            raise BadInput("TF_CONFIG", f"cluster.{job} must be a non-empty list of 'host:port' strings; "
                                        f"Received: {addresses!r}")
    if len(cluster.get("chief", [])) > 1:
        raise BadInput("TF_CONFIG", f"cluster.chief must have one address; Received: {cluster['chief']!r}")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise BadInput("TF_CONFIG", 'needs a \'task\' object like {"type": "worker", "index": 0}')
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise BadInput("TF_CONFIG", f"task type {task_type!r} is not a job of the cluster ({', '.join(cluster)})")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise BadInput("TF_CONFIG", f"task index {index!r} is out of range for {len(cluster[task_type])} "
                                    f"{task_type} address(es)")
    return ClusterTask(task_type, index, cluster)


def _is_address(text):
    host, _, port = text.rpartition(":") if isinstance(text, str) else ("", "", "")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def cpu_replicas(environ=None):
    """The number of logical CPU devices ``mirrored`` uses on a machine without GPUs (``EDGE_ATTN_CPU_REPLICAS``)."""
    environ = os.environ if environ is None else environ
    text = environ.get(CPU_REPLICAS_ENV, "1").strip() or "1"
    if not text.isdigit() or int(text) < 1:
        raise BadInput(CPU_REPLICAS_ENV, f"must be a positive integer; Received: {text!r}")
    return int(text)


def create_strategy(name):
    """The ``tf.distribute.Strategy`` called ``name`` (one of :data:`STRATEGIES`).

    Call it before TensorFlow runs any op: ``mirrored`` on CPUs configures logical devices and
    ``multi-worker`` configures collective ops, both of which TensorFlow only accepts at start-up.
    """
    check_strategy_name(name)
    from edge_attn._keras import tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        count = cpu_replicas()
        _split_cpu(tf, count)
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(count)])
    cluster_task()  # a readable error instead of TensorFlow's for a bad TF_CONFIG
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:  # "Collective ops must be configured at program startup"
        raise BadInput("--strategy multi-worker", f"must be created before TensorFlow runs any op ({error})") from None


def _split_cpu(tf, count):
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:  # TensorFlow has started: fine if it already has the devices we want
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise BadInput(CPU_REPLICAS_ENV, f"asks for {count} CPU replicas, but TensorFlow started with "
                                             f"{len(tf.config.list_logical_devices('CPU'))}; create the strategy "
                                             "before running any TensorFlow op") from None


def resolve_strategy(strategy):
    """A ``tf.distribute.Strategy`` from a strategy, a name of :data:`STRATEGIES`, or None (the default)."""
    if strategy is None or isinstance(strategy, str):
        return create_strategy(strategy or "default")
    return strategy


def is_distributed(strategy):
    """True for strategies other than TensorFlow's default (their variables need the strategy to be read)."""
    from edge_attn._keras import tf

    return strategy is not tf.distribute.get_strategy() or tf.distribute.has_strategy()


def is_chief(strategy):
    """True unless ``strategy`` is multi-worker and this process is not its chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    cluster = resolver.cluster_spec().as_dict()
    return ClusterTask(resolver.task_type, int(resolver.task_id or 0), cluster).is_chief


def describe(strategy):
    """JSON-ready summary for reports: strategy name, replicas in sync and, multi-worker, this task."""
    from edge_attn._keras import tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "multi-worker"
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        name = "mirrored"
    else:
        name = "default" if not is_distributed(strategy) else type(strategy).__name__
    summary = {"strategy": name, "replicas": int(strategy.num_replicas_in_sync)}
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type is not None:
        summary["task"] = f"{resolver.task_type}:{resolver.task_id}"
        summary["workers"] = sum(len(v) for v in resolver.cluster_spec().as_dict().values())
    return summary
