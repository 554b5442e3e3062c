"""Loaded by the steps that LauncherStandIn runs (it puts this folder on their PYTHONPATH).

kfp maps a ``gs://`` artifact URI to a local path under ``/gcs/``, where Kubeflow's
launcher downloads inputs and from where it uploads outputs. The stand-in has no
``/gcs`` mount; it points kfp's prefix at the attempt's own folder instead, the way
kfp's executor tests do (``kfp/dsl/executor_test.py``).
"""

import os

if os.environ.get("KFP_STAND_IN_GCS_MOUNT"):
    from kfp.dsl.types import artifact_types

    artifact_types._GCS_LOCAL_MOUNT_PREFIX = os.environ["KFP_STAND_IN_GCS_MOUNT"]
