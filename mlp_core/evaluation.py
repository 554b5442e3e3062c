"""Evaluation: the seed's loss and accuracy over a split, one path for arrays and for streams.

An in-memory split is a stream of chunks of itself, so the numbers cannot depend on where the data lives. The loss
is the seed's over the whole split: the summed ``-log_softmax(logits) * one_hot`` over ``examples * classes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mlp_core.model import Params, batched_predict, one_hot

# Examples per compiled evaluation call: large enough to keep a device busy, small enough
# that the [chunk, 512] activations stay a few MiB.
CHUNK = 8192


class Evaluation(NamedTuple):
    loss: float
    accuracy: float
    # Per example, only when asked for (``keep_predictions``): the predicted class and its probability.
    predicted: np.ndarray | None = None
    confidence: np.ndarray | None = None


@jax.jit
def _evaluate_chunk(params: Params, images, labels):
    """Summed loss terms, correct count, predicted classes and their probabilities of one chunk."""
    num_classes = params[-1][1].shape[0]
    log_probs = batched_predict(params, images)
    predicted = jnp.argmax(log_probs, axis=1)
    loss_sum = -jnp.sum(log_probs * one_hot(labels, num_classes))
    return loss_sum, jnp.sum(predicted == labels), predicted, jnp.exp(jnp.max(log_probs, axis=1))


def chunks(images, labels, size: int = CHUNK) -> Iterator[tuple]:
    """``(images, labels)`` in slices of ``size`` examples (arrays stay where they are)."""
    for start in range(0, len(labels), size):
        yield images[start:start + size], labels[start:start + size]


def evaluate_batches(params: Params, batches: Iterable[tuple], keep_predictions: bool = False) -> Evaluation:
    """The seed's loss and accuracy of ``params`` over every ``(images, labels)`` batch of a split."""
    num_classes = params[-1][1].shape[0]
    loss_sum, correct, seen = jnp.zeros(()), jnp.zeros((), jnp.int32), 0
    predicted, confidence = [], []
    for images, labels in batches:
        images = images.reshape(len(images), -1)
        labels = labels if isinstance(labels, jax.Array) else np.asarray(labels, np.int32)
        batch_loss, batch_correct, batch_predicted, batch_confidence = _evaluate_chunk(params, images, labels)
        loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, seen + len(labels)
        if keep_predictions:
            predicted.append(np.asarray(batch_predicted))
            confidence.append(np.asarray(batch_confidence))
    if seen == 0:
        raise ValueError("nothing to evaluate: the split is empty")
    result = Evaluation(float(loss_sum) / (seen * num_classes), int(correct) / seen)
    if keep_predictions:
        result = result._replace(predicted=np.concatenate(predicted), confidence=np.concatenate(confidence))
    return result


def evaluate(params: Params, images, labels, keep_predictions: bool = False) -> Evaluation:
    """``evaluate_batches`` over an in-memory split (numpy or device arrays), chunk by chunk."""
    return evaluate_batches(params, chunks(images, labels), keep_predictions)


def confusion_matrix(labels, predicted, num_classes: int) -> np.ndarray:
    """``m[true, predicted]`` counts."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels), np.asarray(predicted)), 1)
    return m


def class_comparison(per_class: list[dict], champion_per_class: list[dict]) -> list[dict]:
    """Per class, two models on the same split: accuracy on the class's images (recall), F1, and ``worse``."""
    return [
        {"class": ours["class"], "support": ours["support"], "accuracy": ours["recall"],
         "champion_accuracy": theirs["recall"], "f1": ours["f1"], "champion_f1": theirs["f1"],
         "worse": ours["recall"] < theirs["recall"]}  # fewer of the class's images right than the champion
        for ours, theirs in zip(per_class, champion_per_class, strict=True)
    ]
