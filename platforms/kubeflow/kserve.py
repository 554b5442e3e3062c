"""A KServe InferenceService manifest for a published model version (TensorFlow runtime, TF Serving's REST and gRPC APIs).

The command that writes one for a publish location: ``python -m commands.kserve`` (its docstring says how KServe
serves it).
"""

from __future__ import annotations

import re


# KServe takes an InferenceService's name as a DNS-1035 label and derives Knative service and host names from it:
# at most 45 leaves room for their suffixes.
NAME_LONGEST = 45
# What KServe downloads a model from (its default storage container's URI formats, pvc://, oci://): no local folder.
KSERVE_STORAGE = re.compile(r"^(gs|s3|pvc|https?|hdfs|webhdfs|hf|oci)://")


def inference_service(name: str, storage_uri: str, namespace: "str | None" = None,
                      service_account: "str | None" = None) -> dict:
    """The InferenceService resource serving the TF Serving base path ``storage_uri`` as ``name``."""
    model = {"modelFormat": {"name": "tensorflow"}, "storageUri": storage_uri,
             # sized for small images, where TF Serving's own footprint dominates: the MLP's first layer holds
             # pixels x hidden x 4 bytes (2.7 MB in all for MNIST at the default sizes): large images need more
             "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}
    predictor: dict = {"model": model}
    if service_account:
        predictor["serviceAccountName"] = service_account  # e.g. a Workload Identity account that reads the bucket
    metadata: dict = {"name": name, "labels": {"app.kubernetes.io/managed-by": "jax-mlp-pipeline"}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": metadata,
            "spec": {"predictor": predictor}}
