"""espnet_pruning.corpora: Kaldi-style data preparation.

The real corpora of the paper (docs/corpora.md), each
``python -m espnet_pruning.corpora.<name> --root <corpus> --out_dir data``:

* :mod:`~espnet_pruning.corpora.iemocap` (``er_iemocap``),
  :mod:`~espnet_pruning.corpora.slurp` (``ic_slurp``, ``ner_slurp``, continual-learning
  sets), :mod:`~espnet_pruning.corpora.librispeech` (``asr_librispeech``),
  :mod:`~espnet_pruning.corpora.fsc` (``ic_fsc``), :mod:`~espnet_pruning.corpora.snips`
  (``ic_snips``), :mod:`~espnet_pruning.corpora.speechcommands` (``scr_speechcommands``);
* :mod:`~espnet_pruning.corpora.prep`: what they share (ids, normalisation, audio checks,
  the command line);
* :mod:`~espnet_pruning.corpora.combine`: multi-task sets from per-task sets, with
  repetition (IEMOCAP ×10).

The embedded stand-in for all of them, and the shared helpers:

* :mod:`~espnet_pruning.corpora.synthetic`: the embedded spoken 7-task corpus (espeak-ng),
  ``python -m espnet_pruning.corpora.synthetic --out_dir data --wav_dir wavs``;
* :mod:`~espnet_pruning.corpora.templates`: its texts and labels (YAML templates);
* :mod:`~espnet_pruning.corpora.speakers`: its voices, noise sources and emotional prosody;
* :mod:`~espnet_pruning.corpora.tts`: the espeak-ng wrapper;
* :mod:`~espnet_pruning.corpora.audio`: audio checks (:func:`check_wav`, FLAC headers), writing,
  noise;
* :mod:`~espnet_pruning.corpora.kaldi`: writing and validating data directories
  (:func:`validate_data_dir`, :func:`read_data_dir`,
  ``python -m espnet_pruning.corpora.kaldi DIR...``).
"""
