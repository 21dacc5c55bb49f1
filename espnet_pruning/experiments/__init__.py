"""espnet_pruning.experiments: drivers of the paper's experiments, above the ESPnet task.

* :mod:`~espnet_pruning.experiments.runs`: several ``uslu_train`` runs in one process,
  each resumable and skipped once done (the single-task baseline, the runs of a round);
* :mod:`~espnet_pruning.experiments.find_masks`: one round of Algorithm 1 (train every
  task from θ0 under its mask, prune a fraction p of it).
"""
