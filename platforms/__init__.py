"""Everything that speaks to a platform the pipeline runs on, one package each, and what they share.

``kubeflow`` (Kubeflow Pipelines' API and auth, Trainer TrainJobs, KServe), ``vertex`` (Vertex AI Pipelines,
Experiments, Model Registry, the endpoint and credentials), ``options`` (compile options per backend: resources,
accelerators, retries, caching, images), ``cron`` (schedules both backends accept), ``checks`` (Kubernetes names,
``UserError``).

Imports: ``mlp_core`` and ``artifacts``; never ``jobs``, ``components`` or ``commands``. ``kubeflow`` and ``vertex``
import nothing of each other.
"""
