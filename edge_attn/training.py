"""One training loop for float training and quantization-aware fine-tuning.

Adam with a cosine or step learning-rate schedule, a tqdm progress bar per epoch, evaluation on the
eval split after every epoch, early stopping on eval loss (the best epoch's weights are restored), and
optional BatchNormalization freezing after a number of steps (for QAT: once the BN statistics have
adapted to quantized weights, freezing them stops the folded-BN weights from jittering).

With a ``teacher`` (QAT: the float model being quantized) the loss adds the mean squared error between
the student's and the teacher's outputs (logit matching, Ba & Caruana 2014, "Do Deep Nets Really Need
to be Deep?"). Label loss alone lets a fine-tune drift away from the float model it is meant to
reproduce: on digits, 2 epochs of plain QAT took se_resnet20's output SNR from 35 dB (calibrated) to
19 dB with the same top-1. The starting weights are scored too, so a fine-tune that does not beat them
is rolled back.

Under a ``tf.distribute`` strategy (:mod:`edge_attn.distribute`) the model, the optimizer and the
teacher live in ``strategy.scope()``; the batch size is the *global* batch, split over the replicas by
``strategy.experimental_distribute_dataset``; each replica's loss is scaled by its share of the global
batch and the optimizer sums the gradients over replicas, so a step follows the mean gradient of the
global batch whatever the number of replicas. On one device, a global batch whose training step would not
fit :func:`edge_attn.resources.training_step_budget` is split into micro-batches whose gradients are
accumulated (weighted by their share of the batch) before one optimizer step: the same update, in
bounded memory (a 224x224 CBAM-ResNet-50 batch of 32 needs ~11 GB at once). BatchNormalization then
sees micro-batch statistics; below ``MIN_BN_BATCH`` samples those are too noisy, so BN is frozen (its
moving statistics used) from the first step. With a checkpoint folder, the loop's whole state (model,
optimizer, epoch and step counters, best weights, early-stopping bookkeeping) is saved after every
epoch and a restarted run continues after the last saved epoch.
"""

import functools
import math
import sys
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from edge_attn._keras import keras, tf
from edge_attn.errors import BadInput
from edge_attn.batchnorm import freeze_batch_norm
from edge_attn.checkpoints import TrainingCheckpoints
from edge_attn.convert.recipe import SCHEDULES
from edge_attn.distribute import describe, is_chief, is_distributed
from edge_attn.resources import release_free_memory
from edge_attn.runners.settings import check_count  # the project's one count validator

MIN_BN_BATCH = 8  # fewer samples per micro-batch: BatchNormalization is frozen rather than fed noisy statistics


@dataclass
class History:
    """What :func:`fit` did, per epoch (eval split)."""

    eval_loss: list = field(default_factory=list)
    eval_accuracy: list = field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0 when no epoch ran or none beat the starting weights
    stopped_early: bool = False
    bn_frozen_at_step: int | None = None
    resumed_from_epoch: int | None = None  # epochs restored from a checkpoint; None: not a resumed run
    distribute: dict = field(default_factory=dict)  # strategy, replicas, global batch, replica batches seen
    micro_batch: int | None = None  # samples per accumulated micro-batch; None: whole batches

    def to_dict(self):
        return {"epochs_run": len(self.eval_loss), "best_epoch": self.best_epoch,
                "eval_loss": [round(v, 6) for v in self.eval_loss],
                "eval_accuracy": [round(v, 6) for v in self.eval_accuracy],
                "stopped_early": self.stopped_early, "bn_frozen_at_step": self.bn_frozen_at_step,
                "resumed_from_epoch": self.resumed_from_epoch, "distribute": self.distribute,
                "micro_batch": self.micro_batch}


class LoopState(tf.Module):
    """What the epoch loop of :func:`fit` needs to continue after a restart, as checkpointable variables."""

    def __init__(self, model, epochs):
        super().__init__(name="loop_state")
        self.epoch = tf.Variable(0, dtype=tf.int64)  # epochs finished
        self.step = tf.Variable(0, dtype=tf.int64)  # optimizer steps taken
        self.bn_frozen_at_step = tf.Variable(-1, dtype=tf.int64)  # -1: not frozen
        self.eval_loss = tf.Variable(tf.zeros([epochs], tf.float64))
        self.eval_accuracy = tf.Variable(tf.zeros([epochs], tf.float64))
        self.best_loss = tf.Variable(math.inf, dtype=tf.float64)
        self.best_epoch = tf.Variable(0, dtype=tf.int64)
        self.stale = tf.Variable(0, dtype=tf.int64)  # epochs since the best one
        self.stopped_early = tf.Variable(False)
        self.has_best = tf.Variable(False)
        self.best_weights = [tf.Variable(w, trainable=False) for w in model.get_weights()]

    def keep_best(self, model, loss):
        self.best_loss.assign(loss)
        self.has_best.assign(True)
        for variable, value in zip(self.best_weights, model.get_weights()):
            variable.assign(value)

    def history(self):
        done = int(self.epoch)
        frozen = int(self.bn_frozen_at_step)
        return History(eval_loss=[float(v) for v in self.eval_loss.numpy()[:done]],
                       eval_accuracy=[float(v) for v in self.eval_accuracy.numpy()[:done]],
                       best_epoch=int(self.best_epoch), stopped_early=bool(self.stopped_early),
                       bn_frozen_at_step=None if frozen < 0 else frozen, resumed_from_epoch=done)


def learning_rate_schedule(kind, learning_rate, total_steps):
    """Cosine decay to 0 over ``total_steps``, or steps of ×0.1 at 50% and 75%, or constant."""
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, max(total_steps, 1))
    if kind == "step":
        bounds = [max(1, total_steps // 2), max(2, (3 * total_steps) // 4)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            bounds, [learning_rate, learning_rate * 0.1, learning_rate * 0.01])
    if kind == "constant":
        return learning_rate
    raise BadInput("schedule", f"unknown learning-rate schedule {kind!r}; known: {', '.join(SCHEDULES)}")


def outputs_probabilities(model):
    """True when the model ends in a softmax (so the loss must not apply one again)."""
    from edge_attn.heads import output_head

    return output_head(model) == "softmax"


def make_loss(from_logits, distill_weight):
    """loss(y, student_out, teacher_out) per batch: cross-entropy (+ weight × output MSE with a teacher).

    The batch mean is written out rather than left to ``keras.losses.SparseCategoricalCrossentropy``,
    which refuses its batch-mean reduction inside a ``tf.distribute`` replica; the ops are the ones it
    runs (sum, then divide by the count, 0 for an empty batch), so the numbers are the same.
    """

    def loss(y, out, teacher_out=None):
        per_example = keras.losses.sparse_categorical_crossentropy(y, out, from_logits=from_logits)
        value = tf.math.divide_no_nan(tf.reduce_sum(per_example), tf.cast(tf.size(per_example), per_example.dtype))
        if teacher_out is not None:
            value += distill_weight * tf.reduce_mean(tf.square(out - teacher_out))
        return value

    return loss


def make_evaluator(model, loss_fn, teacher=None, strategy=None):
    """evaluate(dataset) -> (mean loss, top-1 accuracy) of ``model`` over a batched (x, y) dataset, inference mode.

    Under ``strategy`` every replica scores its share of each batch and the sums are reduced. Sums are
    float64 products of each batch's mean loss and size, as a single-device loop would add them up.
    """
    strategy = strategy or tf.distribute.get_strategy()

    def replica_sums(x, y):
        out = model(x, training=False)
        teacher_out = teacher(x, training=False) if teacher is not None else None
        count = tf.cast(tf.shape(y)[0], tf.float64)
        # multiply_no_nan: a replica left without samples adds 0, not the NaN of an empty mean
        loss_sum = tf.math.multiply_no_nan(tf.cast(loss_fn(y, out, teacher_out), tf.float64), count)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(out, axis=-1, output_type=y.dtype), y), tf.float64))
        return loss_sum, correct, count

    def batch_sums(x, y):
        return strategy.run(replica_sums, args=(x, y))

    if is_distributed(strategy):  # eagerly, MirroredStrategy would run each replica in a Python thread
        batch_sums = tf.function(batch_sums, reduce_retracing=True)

    def evaluate(dataset):
        total_loss, correct, count = 0.0, 0.0, 0.0
        for x, y in distribute_dataset(strategy, dataset):
            batch_loss, batch_correct, batch_count = (
                float(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)) for value in batch_sums(x, y))
            total_loss += batch_loss
            correct += batch_correct
            count += batch_count
        return total_loss / max(count, 1), correct / max(count, 1)

    return evaluate


def distribute_dataset(strategy, dataset):
    """``dataset`` split over ``strategy``'s replicas (each global batch is divided among them)."""
    if not is_distributed(strategy):
        return dataset
    options = tf.data.Options()
    # Every worker builds the same (same-seed) pipeline and keeps its share of each batch: in-memory
    # arrays have no files to shard by.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _releasing_memory(function):
    """Hand memory back to the OS after ``function``: the optimizer, its slots, the traced steps and their
    buffers die with the training loop, and the next step (a conversion: ~1.5 GB at 224x224) should not
    stack its peak on them (measured: 6.6 GB peak for CBAM-ResNet-50 at 224 with 2 QAT epochs without this)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            release_free_memory()
    return wrapper


@_releasing_memory
def fit(model, data, *, epochs, learning_rate, schedule="cosine", batch_size=32, bn_freeze_steps=None,
        early_stop_patience=None, teacher=None, distill_weight=1.0, seed=0, progress=True, desc="train",
        strategy=None, checkpoint_dir=None, resume=False, micro_batch=None):
    """Train ``model`` on ``data`` (an :class:`edge_attn.data.DataSet`); return a :class:`History`.

    ``micro_batch``: samples per gradient-accumulation step (None: the largest that fits
    :func:`edge_attn.resources.training_step_budget`, the whole batch when it does; one device only).

    ``bn_freeze_steps``: freeze every BatchNormalization after this many steps (None: never).
    ``early_stop_patience``: stop after this many epochs without a better eval loss (None: never).
    ``teacher``: a model whose outputs ``model`` should keep matching (see the module docstring).
    ``strategy``: the ``tf.distribute.Strategy`` whose scope ``model`` and ``teacher`` were built in
    (None: the default strategy); ``batch_size`` is the global batch, split over its replicas.
    ``checkpoint_dir``: save the loop's state there after every epoch (see :mod:`edge_attn.checkpoints`);
    with ``resume``, first restore the latest checkpoint found there and continue after its epoch.
    """
    history = History()
    if epochs <= 0:
        return history
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    from_logits = not outputs_probabilities(model)
    full_batches, remainder = divmod(len(data.x_train), batch_size)
    # With several replicas a last batch smaller than the replica count is dropped: a replica without
    # samples would feed BatchNormalization an empty batch (NaN statistics). One replica keeps it.
    steps_per_epoch = full_batches + (remainder >= replicas)
    with strategy.scope():
        optimizer = keras.optimizers.Adam(learning_rate_schedule(schedule, learning_rate, epochs * steps_per_epoch))
        optimizer.build(model.trainable_variables)  # slots exist before a restore, so it fills them at once
    loss_fn = make_loss(from_logits, distill_weight)
    evaluate = make_evaluator(model, loss_fn, teacher, strategy)
    if micro_batch is None and not is_distributed(strategy):
        from edge_attn.resources import micro_batch_within, training_step_budget

        micro_batch = micro_batch_within(model, batch_size, training_step_budget())
    if is_distributed(strategy) or micro_batch is None or micro_batch >= batch_size:
        micro_batch = None
    else:
        micro_batch = check_count("micro_batch", micro_batch)
        history.micro_batch = micro_batch

    def make_accumulating_step():
        # Python-level loop over micro-batches; each micro step is one traced function (a smaller last
        # micro-batch costs one more trace), the optimizer step another.
        variables = model.trainable_variables
        sums = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

        @tf.function(reduce_retracing=True)
        def micro_step(x, y, share):
            teacher_out = teacher(x, training=False) if teacher is not None else None  # not on the tape
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True), teacher_out) * share
            for total, grad in zip(sums, tape.gradient(loss, variables)):
                if grad is not None:
                    total.assign_add(tf.convert_to_tensor(grad))
            return loss

        @tf.function
        def apply():
            optimizer.apply_gradients(zip([total.read_value() for total in sums], variables))
            for total in sums:
                total.assign(tf.zeros_like(total))

        def step(x, y):
            count = int(y.shape[0])
            loss = 0.0
            for start in range(0, count, micro_batch):
                part = y[start:start + micro_batch]
                loss += micro_step(x[start:start + micro_batch], part, tf.constant(len(part) / count, tf.float32))
            apply()
            return loss
        return step

    def make_step():
        if micro_batch is not None:
            return make_accumulating_step()
        # Re-traced after BN freezing: ``trainable`` is read when the function is traced. Distributed,
        # one trace serves every batch size (a smaller last batch would cost a trace of the whole model).
        @tf.function(reduce_retracing=is_distributed(strategy))
        def step(x, y):
            def replica_step(x, y):
                samples = tf.cast(tf.shape(y)[0], tf.float32)
                global_samples = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, samples)
                teacher_out = teacher(x, training=False) if teacher is not None else None  # not on the tape
                with tf.GradientTape() as tape:
                    batch_loss = loss_fn(y, model(x, training=True), teacher_out)
                    # This replica's share of the global-batch mean (summed over replicas it is the mean),
                    # i.e. tf.nn.compute_average_loss with the samples really in this step (its default,
                    # local size x replicas, is wrong for a smaller last batch). One replica: x 1.0 exactly.
                    loss = tf.math.multiply_no_nan(batch_loss, samples / global_samples)
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))  # sums over replicas
                return loss
            return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x, y)), axis=None)
        return step

    if micro_batch is not None and micro_batch < MIN_BN_BATCH:
        bn_freeze_steps = 0  # noisy statistics of a few samples would wreck the BN moving averages
    state = LoopState(model, epochs)
    checkpoints = None
    if checkpoint_dir is not None:
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, loop=state)
        checkpoints = TrainingCheckpoints(checkpoint, checkpoint_dir, chief=is_chief(strategy))
    if resume and checkpoints is not None and checkpoints.restore():
        history = state.history()
        print(f"{desc}: resumed after epoch {history.resumed_from_epoch} of {epochs} from {checkpoint_dir}",
              file=sys.stderr)
        if history.bn_frozen_at_step is not None:
            freeze_batch_norm(model)
    else:
        history.resumed_from_epoch = 0 if resume else None
        if teacher is not None:  # fine-tuning: the starting point is a candidate too
            best_loss, _ = evaluate(data.eval_dataset(batch_size))
            state.keep_best(model, best_loss)
    step_fn = make_step()
    global_step = int(state.step)
    for epoch in range(int(state.epoch) + 1, epochs + 1):
        if history.stopped_early:  # restored from a run that had already stopped
            break
        batches = data.train_dataset(batch_size, shuffle=True, seed=seed + epoch)
        if replicas > 1:
            batches = batches.filter(lambda x, y: tf.shape(y)[0] >= replicas)
        bar = tqdm(distribute_dataset(strategy, batches), total=steps_per_epoch, desc=f"{desc} {epoch}/{epochs}",
                   unit="batch", disable=None if progress else True, leave=False)  # None: off when not a terminal
        for x, y in bar:
            if bn_freeze_steps is not None and history.bn_frozen_at_step is None and global_step >= bn_freeze_steps:
                freeze_batch_norm(model)
                history.bn_frozen_at_step = global_step
                step_fn = make_step()
            if not history.distribute:  # what each local replica really receives, as the strategy hands it out
                history.distribute = {**describe(strategy), "global_batch": batch_size,
                                      "replica_batch_sizes": [int(t.shape[0]) for t in
                                                              strategy.experimental_local_results(x)]}
            loss = step_fn(x, y)
            global_step += 1
            bar.set_postfix(loss=f"{float(loss):.4f}")
        bar.close()
        eval_loss, eval_accuracy = evaluate(data.eval_dataset(batch_size))
        history.eval_loss.append(eval_loss)
        history.eval_accuracy.append(eval_accuracy)
        if progress:
            tqdm.write(f"{desc} {epoch}/{epochs}: eval loss {eval_loss:.4f}, eval top-1 {eval_accuracy:.4f}",
                       file=sys.stderr)
        if eval_loss < float(state.best_loss):
            state.keep_best(model, eval_loss)
            state.stale.assign(0)
            history.best_epoch = epoch
        else:
            state.stale.assign_add(1)
            if early_stop_patience is not None and int(state.stale) >= early_stop_patience:
                history.stopped_early = True
        if checkpoints is not None:
            _record(state, history, epoch, global_step)
            checkpoints.save()
        if history.stopped_early:
            break
    if bool(state.has_best):
        model.set_weights([variable.numpy() for variable in state.best_weights])
    return history


def _record(state, history, epoch, global_step):
    """Copy the loop's Python-side progress into ``state`` before it is checkpointed."""
    state.epoch.assign(epoch)
    state.step.assign(global_step)
    state.eval_loss[epoch - 1].assign(history.eval_loss[-1])
    state.eval_accuracy[epoch - 1].assign(history.eval_accuracy[-1])
    state.best_epoch.assign(history.best_epoch)
    state.stopped_early.assign(history.stopped_early)
    state.bn_frozen_at_step.assign(-1 if history.bn_frozen_at_step is None else history.bn_frozen_at_step)
