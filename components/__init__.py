"""The pipeline's steps, one module each: its kfp component, its command line, its cluster policy and its work
(over ``mlp_core``, which knows nothing of kfp). Imports ``platforms``, ``mlp_core``, ``artifacts``; never
``commands`` or ``pipeline``."""

import os

if os.environ.get("JAX_MLP_CONSOLE") == "1":  # a task of `pipeline.py run`: mark the lines a person reads
    from components._console import mark_stdout

    mark_stdout()
