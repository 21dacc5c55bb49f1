"""espnet_pruning.corpora: Kaldi-style data preparation.

* :mod:`~espnet_pruning.corpora.synthetic`: the embedded spoken 7-task corpus (espeak-ng),
  ``python -m espnet_pruning.corpora.synthetic --out_dir data --wav_dir wavs``;
* :mod:`~espnet_pruning.corpora.templates`: its texts and labels (YAML templates);
* :mod:`~espnet_pruning.corpora.speakers`: its voices, noise sources and emotional prosody;
* :mod:`~espnet_pruning.corpora.tts`: the espeak-ng wrapper;
* :mod:`~espnet_pruning.corpora.audio`: WAV checks (:func:`check_wav`), writing, noise;
* :mod:`~espnet_pruning.corpora.kaldi`: writing and validating data directories
  (:func:`validate_data_dir`, ``python -m espnet_pruning.corpora.kaldi DIR...``).
"""
