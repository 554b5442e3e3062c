"""The command lines above the DAG: ``python pipeline.py`` compile/run/submit/schedule (``cli``, ``arguments``), the
local runs with kfp.local (``local``: they run the DAG, so they sit above it) and the KServe manifest (``kserve``).

Imports: anything below: ``pipeline`` (the DAG), ``components``, ``jobs``, ``platforms``, ``mlp_core``, ``artifacts``.
"""
