"""The pipeline's steps: each module declares one step once: its kfp component, its CLI, its cluster policy.

What a step does on its artifacts is in ``jobs`` (and ``mlp_core``); the DAG that wires the steps is ``pipeline.py``.

Imports: ``jobs``, ``platforms``, ``mlp_core``, ``artifacts``; never ``commands`` or ``pipeline``.
"""

import os

if os.environ.get("JAX_MLP_CONSOLE") == "1":  # a task of `pipeline.py run`: mark the lines a person reads
    from components._console import mark_stdout

    mark_stdout()
