"""The evaluation report: HTML (the KFP UI renders it) and the same as Markdown.

What the numbers are of (run, data, hyperparameters), the metrics, the champion and the blessing, per-class tables,
and three plots (training curves, confusion matrix, the most confidently misclassified images) as PNG data URIs,
so each report is one self-contained file.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from datetime import datetime, timezone

import numpy as np


def data_fingerprint(shards: "dict[str, list[str]]") -> str:
    """One sha256 for a Dataset's content: over every split's shard sha256s (``dataset_identity``'s ``shards``)."""
    return hashlib.sha256(json.dumps(shards, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# matplotlib (half a second) loads with the first plot: the train step imports data_fingerprint from here.

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


def loss_definition(num_classes: int) -> str:
    """What the loss figures are: the notebook's loss, which averages over the classes too."""
    return (f"Loss: the notebook's -mean(log_softmax(logits) * one_hot(labels)), averaged over the examples and "
            f"the {num_classes} classes, i.e. the usual cross-entropy divided by {num_classes}.")


def training_curves(history: list[dict], num_classes: int) -> str:
    plt = _pyplot()
    epochs = [m["epoch"] for m in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_loss.plot(epochs, [m["loss"] for m in history], marker="o", label="train loss (during the epoch)")
    if all(m.get("test_loss") is not None for m in history):
        ax_loss.plot(epochs, [m["test_loss"] for m in history], marker="o", label="test loss (after it)")
    ax_loss.set(xlabel="epoch", ylabel=f"loss (cross-entropy / {num_classes})", title="Loss")
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


def dataset_facts(metadata: dict, trained_on: dict) -> dict:
    """What identifies a Dataset artifact (its ``metadata.json``) in the report, and ``trained_on`` if it differs."""
    shards = {split: [s["sha256"] for s in info["shards"]] for split, info in metadata["splits"].items()}
    name, version = metadata["dataset"]["name"], metadata["dataset"]["version"]
    source = metadata.get("source")
    if source:
        spans = [span["name"] for span in source["spans"]]
        where = f"image folder {source['pattern']}" + (f": {', '.join(spans)}" if spans else "")
    else:
        splits = ", ".join(info.get("tfds_split", split) for split, info in metadata["splits"].items())
        where = f"TensorFlow Datasets {name} {version}: {splits}"
    facts = {
        "name": name,
        "version": version,
        "source": where,
        "spans": [span["span"] for span in source["spans"]] if source else [],
        "examples": {split: info["num_examples"] for split, info in metadata["splits"].items()},
        "fingerprint": data_fingerprint(shards),
        "source_fingerprint": source["fingerprint"] if source else None,
        "trained_on": None,
    }
    if trained_on["shards"] != shards:
        facts["trained_on"] = {"name": trained_on["name"], "version": trained_on["version"],
                               "fingerprint": data_fingerprint(trained_on["shards"])}
    return facts


def _when(iso: "str | None") -> str:
    """``2026-11-30T02:10:00+00:00`` -> ``2026-11-30 02:10:00 UTC``."""
    if not iso:
        return "not recorded"
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _run_rows(result: dict) -> list[tuple[str, str]]:
    run = result.get("run") or {}
    return [
        ("run id", run.get("run_id") or "not recorded (only a pipeline run's train step records it)"),
        ("model", run.get("model", "")),
        ("trained", _when(run.get("trained_at"))),
        ("evaluated", _when(run.get("evaluated_at"))),
        *([("hyperparameters", _tuned(run["tuned"]))] if run.get("tuned") not in (None, "", "{}") else []),
    ]


def _tuned(text: str) -> str:
    """The tune step's choice (its best_hyperparameters JSON) in words."""
    best = json.loads(text)
    return (f"chosen by the tune step: trial {best['trial']} of {best['trials']} (step size {best['step_size']:.4g}, "
            f"seed {best['seed']}, batch {best['batch_size']}, hidden {best['hidden_sizes']}; validation accuracy "
            f"{best['validation_accuracy']:.4f})")


def _dataset_rows(result: dict) -> list[tuple[str, str]]:
    data = result.get("dataset")
    if not data:
        return []
    rows = [
        ("dataset", f"{data['name']} {data['version']}"),
        ("source", data["source"]),
        ("examples", ", ".join(f"{split} {n}" for split, n in data["examples"].items())),
        ("fingerprint (sha256 of its shards' sha256s)", data["fingerprint"]),
    ]
    if data.get("source_fingerprint"):
        rows.append(("source fingerprint (every file read)", data["source_fingerprint"]))
    if result.get("test_set_sha256"):
        rows.append(("test split sha256 (what champions are compared on)", result["test_set_sha256"]))
    if data.get("trained_on"):
        other = data["trained_on"]
        rows.append(("the model was trained on other data",
                     f"{other['name']} {other['version']}, fingerprint {other['fingerprint']}"))
    return rows


def _hyperparameter_rows(result: dict) -> list[tuple[str, str]]:
    """The model's TrainConfig (its ``config.json``), by the names it holds them under."""
    def shown(value) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, (list, tuple)):
            return "-".join(str(v) for v in value)
        return str(value)

    return [(name, shown(value)) for name, value in (result.get("hyperparameters") or {}).items()]


def _summary_rows(result: dict) -> list[tuple[str, str]]:
    rows = [
        ("test accuracy", f"{result['test_accuracy']:.4f}"),
        ("test loss", f"{result['test_loss']:.4f}"),
        ("macro F1", f"{result['macro_f1']:.4f}"),
        ("test examples", str(result["num_examples"])),
    ]
    champion = result.get("champion")
    if champion is None:
        rows.append(("champion", "none yet"))
    else:
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
    loss = loss_definition(len(result["class_names"]))

    def table(rows: list[tuple[str, str]]) -> str:
        return "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)

    summary = table(_summary_rows(result))
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
    notes = {"Training curves": loss}  # a figure's caption beyond its name
    figures = "".join(
        f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{png}">'
        f'<figcaption>{e(caption)}{(". " + e(notes[caption])) if caption in notes else ""}</figcaption></figure>'
        for caption, png in plots.items()
    )
    about = ""
    for heading, anchor, rows in (("Data", "dataset", _dataset_rows(result)),
                                  ("Hyperparameters", "hyperparameters", _hyperparameter_rows(result))):
        if rows:
            about += f'<h2>{heading}</h2>\n<table id="{anchor}">{table(rows)}</table>\n'

    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:1em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}figure{{margin:1em 0}}</style></head>
<body><h1>{e(title)}</h1>
<table id="run">{table(_run_rows(result))}</table>
<table id="summary">{summary}</table>
<p id="loss">{e(loss)}</p>
{about}<h2>Per class</h2>
<table id="per-class"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{classes}</table>
{comparison}<h2>Plots</h2>{figures}
</body></html>
"""
    def md_table(head: str, rows: list[tuple[str, str]]) -> list[str]:
        return [f"| {head} | value |", "|---|---|", *(f"| {k} | {_md_cell(v)} |" for k, v in rows)]

    md = [f"# {title}", "", *md_table("run", _run_rows(result)), "", *md_table("metric", _summary_rows(result)),
          "", loss]
    for heading, rows in (("Data", _dataset_rows(result)), ("Hyperparameters", _hyperparameter_rows(result))):
        if rows:
            md += ["", f"## {heading}", "", *md_table(heading.lower().rstrip("s"), rows)]
    md += ["", "## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    md += [f"| {c['class']} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |" for c in per_class]
    if result.get("class_comparison"):
        md += ["", f"## Against champion {result['champion']['version']}, on this test split", "",
               "| " + " | ".join(_COMPARISON_HEAD) + " |", "|" + "---|" * len(_COMPARISON_HEAD)]
        md += ["| " + " | ".join(row) + " |" for row in _comparison_rows(result)]
    md += ["", "## Plots", ""]
    md += [f"![{caption}](data:image/png;base64,{png})\n" + (f"\n{notes[caption]}\n" if caption in notes else "")
           for caption, png in plots.items()]
    return page, "\n".join(md) + "\n"


def _md_cell(text: str) -> str:
    """``text`` inside a Markdown table cell: a ``|`` escaped, a line break made a space."""
    return str(text).replace("|", "\\|").replace("\n", " ")


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
