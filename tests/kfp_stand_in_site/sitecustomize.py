"""Loaded by the steps that LauncherStandIn runs (it puts this folder on their PYTHONPATH).

Mirrors kfp 2.17's ``kfp/dsl/types/artifact_types.py``: the SDK maps an artifact URI
to a local path under ``/gcs/``, ``/minio/`` or ``/s3/``, where Kubeflow's launcher
downloads inputs and from where it uploads outputs (``backend/src/v2/component/launcher_v2.go``
``LocalPathForURI``). The stand-in has no such mounts; it points kfp's prefixes at the
attempt's own folder instead, the way kfp's executor tests do (``kfp/dsl/executor_test.py``).
"""

import os

if os.environ.get("KFP_STAND_IN_MOUNT"):
    from kfp.dsl.types import artifact_types

    _mount = os.environ["KFP_STAND_IN_MOUNT"]
    artifact_types._GCS_LOCAL_MOUNT_PREFIX = _mount + "gcs/"
    artifact_types._MINIO_LOCAL_MOUNT_PREFIX = _mount + "minio/"
    artifact_types._S3_LOCAL_MOUNT_PREFIX = _mount + "s3/"
