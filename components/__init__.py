"""Pipeline steps: each module is a library function, a CLI and a kfp component."""

import os

if os.environ.get("JAX_MLP_CONSOLE") == "1":  # a task of `pipeline.py run`: mark the lines a person reads
    from commands.local_console import mark_stdout

    mark_stdout()
