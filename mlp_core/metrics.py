"""Classification metrics from a confusion matrix (``m[true, predicted]``)."""

from __future__ import annotations

import numpy as np


def per_class_metrics(matrix, class_names: list[str]) -> list[dict]:
    """Precision, recall, F1 and support of each class; 0 where a ratio is undefined."""
    m = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(m)
    predicted = m.sum(axis=0)
    actual = m.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(actual > 0, true_positive / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, actual)
    ]


def macro_f1(per_class: list[dict]) -> float:
    return float(np.mean([c["f1"] for c in per_class]))


def final_metrics(history: list[dict]) -> dict[str, float]:
    """A run's last epoch's figures and its median epoch time."""
    last = history[-1]
    return {
        "final_loss": last["loss"],
        "final_train_accuracy": last["train_accuracy"],
        "final_test_accuracy": last["test_accuracy"],
        "median_epoch_seconds": sorted(m["seconds"] for m in history)[len(history) // 2],
        "examples_per_second": last["examples_per_second"],
    }


def hyperparameters(config, placement: str) -> dict[str, "int | float | str"]:
    """What sets a run's numbers (a ``TrainConfig`` and the placement), named for side-by-side run comparison."""
    values = {"epochs": config.epochs, "batch_size": config.batch_size, "step_size": config.step_size,
              "seed": config.seed, "shuffle": int(config.shuffle), "hidden_sizes": config.hidden_sizes,
              "placement": placement}
    return {f"param_{name}": value for name, value in values.items()}
