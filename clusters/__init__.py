"""Sending the pipeline to clusters: Kubeflow Pipelines and Vertex AI (compile options, submit, schedules)."""
