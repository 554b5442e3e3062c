"""How long ``python -m components.predict`` takes to refuse bad arguments: bare Python, this tree, and a git ref.

    python -m bench.predict_startup                  # this tree: no model, a missing input, a folder of no images
    python -m bench.predict_startup --against acbdb2a~1 --runs 7

Each case runs ``--runs`` times (alternating between the trees, so load on the machine hits both alike) and the
median wall time is printed. ``--against`` exports the ref with ``git archive`` into a temporary folder of its
own (removed after). The goal: an error line in about the time of a bare ``python -c pass``, not the 4-7 s of
importing TensorFlow (tests/test_image_files.py checks that neither TensorFlow nor JAX is imported then).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "no model": ["--model", "no-such-model", "x.png"],
    "missing input": ["--model", "{model}", "no-such-image.png"],
    "no images in folder": ["--model", "{model}", "empty"],
}


def _time(argv: list[str], tree: Path, cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tree)})
    elapsed = time.perf_counter() - start
    if argv[:1] == ["-m"] and (result.returncode != 2 or not result.stderr.startswith("error: ")):
        raise SystemExit(f"{' '.join(argv)} in {tree}: expected one error line, got {result.stderr[-500:]!r}")
    return elapsed


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.predict_startup", description=__doc__.split("\n\n")[0])
    p.add_argument("--against", help="a git ref to time beside this tree (e.g. the commit before a change)")
    p.add_argument("--runs", type=int, default=5, help="runs per case and tree (default: 5)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="predict-startup-") as scratch:
        scratch = Path(scratch)
        trees = {"this tree": ROOT}
        if args.against:
            (scratch / "ref").mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.against], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(scratch / "ref")], input=archive.stdout, check=True)
            trees[args.against] = scratch / "ref"
        cwd = scratch / "cwd"
        (cwd / "empty").mkdir(parents=True)
        (cwd / "model").mkdir()
        (cwd / "model" / "dataset.json").write_text('{"image_shape": [28, 28, 1]}')
        sys.path.insert(0, str(ROOT))
        from artifacts.outputs import commit

        commit(cwd / "model", "model")  # a model folder with its marker: the checks go on to the inputs
        rows = [("python -c pass", {name: [] for name in trees}, ["-c", "pass"])]
        rows += [(case, {name: [] for name in trees}, ["-m", "components.predict", *(a.replace("{model}", "model")
                                                                                     for a in flags)])
                 for case, flags in CASES.items()]
        for _ in range(args.runs):
            for _, times, command in rows:
                for name, tree in trees.items():
                    times[name].append(_time(command, tree, cwd))
        print(f"median wall time of {args.runs} runs (s): " + ", ".join(trees))
        for label, times, _ in rows:
            print(f"  {label:22s} " + "  ".join(f"{statistics.median(times[name]):6.2f}" for name in trees))
    return 0


if __name__ == "__main__":
    sys.exit(main())
