"""What people look at after tuning: the trials table and a plot (HTML and Markdown), and TensorBoard's HParams."""

from __future__ import annotations

import html
import shutil
import tempfile
from pathlib import Path

from mlp_core.report import _png, _pyplot
from mlp_core.tensorboard import copy_events

COLUMNS = ("trial", "step size", "seed", "batch", "hidden", "status", "validation accuracy by epoch")


def _rows(trials: list[dict]) -> list[list[str]]:
    return [[str(t["number"]), f"{t['step_size']:.3g}", str(t["seed"]), str(t["batch_size"]),
             ",".join(map(str, t["hidden_sizes"])), t["status"], " ".join(f"{a:.4f}" for a in t["val_accuracy"])]
            for t in sorted(trials, key=lambda t: -(t["val_accuracy"] or [0])[-1])]


def accuracy_plot(trials: list[dict], best: int) -> str:
    """Validation accuracy (each trial's last) against step size, log scale, one mark per trial (PNG, base64)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for status, marker in (("completed", "o"), ("stopped", "x"), ("diverged", "v")):
        shown = [t for t in trials if t["status"] == status and t["val_accuracy"]]
        if shown:
            ax.scatter([t["step_size"] for t in shown], [t["val_accuracy"][-1] for t in shown], marker=marker,
                       label=f"{status} ({len(shown)})")
    chosen = next(t for t in trials if t["number"] == best)
    ax.scatter([chosen["step_size"]], [chosen["val_accuracy"][-1]], s=160, facecolors="none", edgecolors="red",
               label=f"chosen: trial {best}")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())  # the decades only: minor labels overlap
    ax.set_xlabel("step size")
    ax.set_ylabel("validation accuracy (last epoch trained)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def render(summary: dict, trials: list[dict]) -> tuple[str, str]:
    """``(html, markdown)`` of the tune step's report."""
    best = summary["best"]
    facts = [("chosen", f"trial {best['trial']}: step size {best['step_size']:.4g}, seed {best['seed']}, batch "
                        f"{best['batch_size']}, hidden {best['hidden_sizes']}"),
             ("its validation accuracy", f"{best['validation_accuracy']:.4f}"),
             ("trials", f"{len(trials)} ({summary['populations']} population(s) of shared shapes)"),
             ("search", summary["search"]),
             ("validation split", f"{summary['validation_examples']} of {summary['train_examples']} training examples "
                                  f"({summary['validation_fraction']:.0%} of each class); the test split is not read"),
             ("successive halving", f"eta {summary['eta']}: after epoch(s) "
                                    f"{', '.join(map(str, summary['rungs'])) or '(none: too few epochs)'} the best "
                                    f"1/{summary['eta']} of each population go on"),
             ("epochs", str(summary["epochs"]))]
    rows = _rows(trials)
    plot = accuracy_plot(trials, best["trial"])
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>Tuning report</title></head><body>",
            "<h1>Tuning report</h1><table>",
            *(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts),
            "</table><h2>Validation accuracy against step size</h2>",
            f"<img alt='validation accuracy against step size' src='data:image/png;base64,{plot}'>",
            "<h2>Trials</h2><table border='1' cellpadding='3'><tr>",
            *(f"<th>{c}</th>" for c in COLUMNS), "</tr>",
            *("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows),
            "</table></body></html>"]
    markdown = ["# Tuning report", "", *(f"- **{k}**: {v}" for k, v in facts), "",
                "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS),
                *("| " + " | ".join(row) + " |" for row in rows), ""]
    return "\n".join(page), "\n".join(markdown)


def write_hparams(trials: list[dict], folder: "str | Path") -> None:
    """One TensorBoard run per trial under ``folder``: its HParams and status, and ``validation/accuracy`` per epoch."""
    # TensorFlow here, not above: the report alone (render) does without its 4 s import
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import summary as hparams_v1
    from tensorboard.plugins.hparams import summary_v2 as hparams_summary

    from mlp_core.data.tf import tf

    scratch = Path(tempfile.mkdtemp(prefix="tune-tensorboard-"))
    try:
        for t in trials:
            writer = tf.summary.create_file_writer(str(scratch / f"trial-{t['number']:04d}"))
            with writer.as_default():
                hparams_summary.hparams({"step_size": t["step_size"], "seed": t["seed"], "batch_size": t["batch_size"],
                                         "hidden_sizes": ",".join(map(str, t["hidden_sizes"])), "status": t["status"]},
                                        trial_id=f"trial-{t['number']}")
                status = api_pb2.STATUS_FAILURE if t["status"] == "diverged" else api_pb2.STATUS_SUCCESS
                tf.summary.experimental.write_raw_pb(hparams_v1.session_end_pb(status).SerializeToString(), step=0)
                for epoch, accuracy in enumerate(t["val_accuracy"], start=1):
                    tf.summary.scalar("validation/accuracy", accuracy, step=epoch)
            writer.close()
        copy_events(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # our own temp folder
