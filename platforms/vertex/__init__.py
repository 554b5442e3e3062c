"""Vertex AI: Pipelines (``pipelines``: submit, schedule), Experiments and TensorBoard (``experiments``), the Model
Registry (``model_registry``), the API endpoint and credentials (``endpoint``).

Imports: ``platforms.checks``/``cron``, ``mlp_core``, ``artifacts``; nothing of ``platforms.kubeflow``.
"""
