# Corpus locations (docs/corpora.md says where to get each). Every path may also come from
# the environment. Relative paths are relative to this recipe directory.
IEMOCAP=${IEMOCAP:-downloads/IEMOCAP_full_release}           # Session1..5/
SLURP=${SLURP:-downloads/slurp}                               # dataset/slurp/*.jsonl, audio/slurp_{real,synth}/
LIBRISPEECH=${LIBRISPEECH:-downloads/LibriSpeech}             # train-clean-100/, train-clean-360/, dev-*/, test-other/
