"""platforms.kubeflow."""
