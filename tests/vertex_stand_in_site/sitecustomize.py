"""Loaded by the commands a Vertex AI test runs against the stand-ins (on their PYTHONPATH).

A stand-in for Cloud Resource Manager, which cannot be reached from here: before
``PipelineJob.submit`` creates a job, the Vertex AI SDK checks that the pipeline
root's bucket belongs to the project by comparing the bucket's project number with
the one Resource Manager gives for the project
(``google/cloud/aiplatform/utils/gcs_utils.py``, ``_verify_bucket_ownership``).
Here the project's number is ``JAX_MLP_STAND_IN_PROJECT_NUMBER``, the number that
gcp-storage-emulator gives every bucket.
"""

import os

if os.environ.get("JAX_MLP_STAND_IN_PROJECT_NUMBER"):
    from google.cloud.aiplatform.utils import resource_manager_utils

    def _project_number(project_id, credentials=None):
        return int(os.environ["JAX_MLP_STAND_IN_PROJECT_NUMBER"])

    resource_manager_utils.get_project_number = _project_number
