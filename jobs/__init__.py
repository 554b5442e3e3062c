"""What each step does on its artifacts (paths or URIs), without kfp: the work a component and its CLI both call.

``training`` (the train step: a Dataset in, a Model out, checkpoints, remote artifacts, one process or many),
``evaluation`` (scores the model and the champion on this test split, blesses), ``novelty`` (is there anything new
since the champion?), ``publishing`` (versions, LATEST's compare-and-swap, the champion wherever it is published).

Imports: ``platforms`` (the Model Registry, Trainer), ``mlp_core``, ``artifacts``; never ``components`` or kfp.
"""
