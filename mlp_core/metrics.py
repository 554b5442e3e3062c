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
