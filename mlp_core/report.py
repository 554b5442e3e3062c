"""The evaluation report: HTML (the KFP UI renders it) and the same as Markdown.

Three plots, embedded as PNG data URIs so each report is one self-contained file:
training curves from the train step's per-epoch metrics, a confusion-matrix
heatmap, and the most confidently misclassified test images.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: list[dict]) -> str:
    plt = _pyplot()
    epochs = [m["epoch"] for m in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_loss.plot(epochs, [m["loss"] for m in history], marker="o", label="train loss (during the epoch)")
    if all(m.get("test_loss") is not None for m in history):
        ax_loss.plot(epochs, [m["test_loss"] for m in history], marker="o", label="test loss (after it)")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.plot(epochs, [m["train_accuracy"] for m in history], marker="o", label="train")
    if all(m.get("test_accuracy") is not None for m in history):
        ax_acc.plot(epochs, [m["test_accuracy"] for m in history], marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return _png(fig)


def confusion_heatmap(matrix: list[list[int]], class_names: list[str]) -> str:
    plt = _pyplot()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    ax.imshow(np.log1p(m), cmap="Blues")
    ax.set(xticks=range(len(class_names)), yticks=range(len(class_names)), xlabel="predicted", ylabel="true",
           title="Confusion matrix (colour: log count)")
    ax.set_xticklabels(class_names)
    ax.set_yticklabels(class_names)
    threshold = np.log1p(m).max() / 2
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if np.log1p(m[i, j]) > threshold else "black")
    return _png(fig)


def misclassified_grid(images: np.ndarray, true: list[str], predicted: list[str], confidence: list[float]) -> str:
    plt = _pyplot()
    n = max(1, len(images))
    cols = min(8, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, t, p, c in zip(axes.ravel(), images, true, predicted, confidence):
        ax.imshow(np.squeeze(image), cmap="gray_r")
        ax.set_title(f"true {t}\npred {p} ({c:.2f})", fontsize=7)
    fig.suptitle("Most confidently misclassified", fontsize=9)
    return _png(fig)


def _summary_rows(result: dict) -> list[tuple[str, str]]:
    rows = [
        ("test accuracy", f"{result['test_accuracy']:.4f}"),
        ("test loss", f"{result['test_loss']:.4f}"),
        ("macro F1", f"{result['macro_f1']:.4f}"),
        ("test examples", str(result["num_examples"])),
    ]
    champion = result.get("champion")
    if champion is not None:
        rows.append(("champion", champion["version"]))
        if champion["comparable"]:
            rows += [("champion's test accuracy (this split)", f"{champion['test_accuracy']:.4f}"),
                     ("champion's test loss (this split)", f"{champion['test_loss']:.4f}"),
                     ("classes where the new model is worse", ", ".join(result["worse_classes"]) or "none")]
        else:
            rows.append(("champion incomparable", champion["incomparable"]))
    if "blessed" in result:
        rows += [("blessed", "yes" if result["blessed"] else "no"), ("why", result["reason"])]
    return rows


_COMPARISON_HEAD = ["class", "support", "accuracy", "champion's accuracy", "difference", "F1", "champion's F1", "worse"]


def _comparison_rows(result: dict) -> list[list[str]]:
    """Per class, the new model beside the champion on this test split (accuracy = recall on the class's images)."""
    return [[c["class"], str(c["support"]), f"{c['accuracy']:.4f}", f"{c['champion_accuracy']:.4f}",
             f"{c['accuracy'] - c['champion_accuracy']:+.4f}", f"{c['f1']:.4f}", f"{c['champion_f1']:.4f}",
             "worse" if c["worse"] else ""] for c in result.get("class_comparison") or []]


def render(result: dict, plots: dict[str, str], title: str) -> tuple[str, str]:
    """``(html, markdown)`` of the report; ``plots`` maps a caption to base64 PNG."""
    per_class = result["per_class"]
    e = html.escape
    summary = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _summary_rows(result))
    classes = "".join(
        f"<tr><td>{e(c['class'])}</td><td>{c['precision']:.4f}</td><td>{c['recall']:.4f}</td>"
        f"<td>{c['f1']:.4f}</td><td>{c['support']}</td></tr>"
        for c in per_class
    )
    comparison = ""
    if result.get("class_comparison"):
        head = "".join(f"<th>{e(h)}</th>" for h in _COMPARISON_HEAD)
        body = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in _comparison_rows(result))
        comparison = (f"<h2>Against champion {e(result['champion']['version'])}, on this test split</h2>\n"
                      f'<table id="champion-per-class"><tr>{head}</tr>{body}</table>\n')
    figures = "".join(
        f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{png}"><figcaption>{e(caption)}</figcaption></figure>'
        for caption, png in plots.items()
    )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:1em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}figure{{margin:1em 0}}</style></head>
<body><h1>{e(title)}</h1>
<table id="summary">{summary}</table>
<h2>Per class</h2>
<table id="per-class"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{classes}</table>
{comparison}<h2>Plots</h2>{figures}
</body></html>
"""
    md = [f"# {title}", "", "| metric | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in _summary_rows(result)]
    md += ["", "## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    md += [f"| {c['class']} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |" for c in per_class]
    if result.get("class_comparison"):
        md += ["", f"## Against champion {result['champion']['version']}, on this test split", "",
               "| " + " | ".join(_COMPARISON_HEAD) + " |", "|" + "---|" * len(_COMPARISON_HEAD)]
        md += ["| " + " | ".join(row) + " |" for row in _comparison_rows(result)]
    md += ["", "## Plots", ""]
    md += [f"![{caption}](data:image/png;base64,{png})\n" for caption, png in plots.items()]
    return page, "\n".join(md) + "\n"


# ---- plots of the validate step's report (mlp_core.data.validation)


def class_distribution(class_names: list[str], shares: dict[str, list[float]]) -> str:
    """Grouped bars: each class's share of examples, one bar per named series (splits, the baseline)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(class_names) * max(1, len(shares)) ** 0.5 + 2), 3.2))
    width = 0.8 / max(1, len(shares))
    positions = np.arange(len(class_names))
    for i, (name, values) in enumerate(shares.items()):
        ax.bar(positions + (i - (len(shares) - 1) / 2) * width, values, width, label=name)
    ax.set(xticks=positions, xlabel="class", ylabel="share of examples", title="Label distribution")
    ax.set_xticklabels(class_names, rotation=90 if len(class_names) > 20 else 0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def value_histograms(edges: list[float], shares: dict[str, list[float]], title: str, xlabel: str) -> str:
    """Step histograms over shared bucket ``edges`` (len = buckets + 1), log scale, one line per named series."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for name, values in shares.items():
        ax.stairs(values, edges, label=name, linewidth=1.5)
    ax.set(yscale="log", xlabel=xlabel, ylabel="share of values (log)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
