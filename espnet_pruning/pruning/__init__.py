"""Per-task binary masks over one set of shared weights (framework-free core).

One concept per module:

* :mod:`~espnet_pruning.pruning.scope`: which parameters are prunable;
* :mod:`~espnet_pruning.pruning.masks`: the validated per-task mask set;
* :mod:`~espnet_pruning.pruning.select`: global/layer-wise magnitude and random pruning;
* :mod:`~espnet_pruning.pruning.apply`: masks applied out of place, update restriction;
* :mod:`~espnet_pruning.pruning.storage`: bit-packed mask files with a JSON manifest;
* :mod:`~espnet_pruning.pruning.report`: sparsity, Param% One/All, overlap.

Nothing here knows ESPnet; shared weights are never zeroed in place.
"""
