"""Kubeflow: the Pipelines API (``pipelines``: submit, schedule, auth, the backend's version), Kubeflow Trainer
TrainJobs for the train step (``trainer``) and KServe InferenceServices (``kserve``).

Imports: ``platforms.options``/``checks``/``cron``, ``mlp_core``, ``artifacts``; nothing of ``platforms.vertex``.
"""
