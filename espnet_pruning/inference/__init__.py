"""espnet_pruning.inference: decoding a trained system, above the ESPnet task.

* :mod:`~espnet_pruning.inference.speech2text`: :class:`Speech2Text`, one task's prompt
  and subnetwork at a time (ESPnet's ``espnet2.bin.asr_inference.Speech2Text``);
* :mod:`~espnet_pruning.inference.packing`: a self-contained config and the packed
  archive of a system (``uslu_pack``, ``Speech2Text.from_pretrained``).
"""
