# Corpus locations (docs/corpora.md says where to get each). Every path may also come from
# the environment. Relative paths are relative to this recipe directory.
IEMOCAP=${IEMOCAP:-downloads/IEMOCAP_full_release}           # Session1..5/
SLURP=${SLURP:-downloads/slurp}                               # dataset/slurp/*.jsonl, audio/slurp_{real,synth}/
LIBRISPEECH=${LIBRISPEECH:-downloads/LibriSpeech}             # train-clean-100/, train-clean-360/, dev-*/, test-other/
FSC=${FSC:-downloads/fluent_speech_commands_dataset}          # data/*_data.csv, wavs/speakers/
SNIPS=${SNIPS:-downloads/snips_slu_data_v1.0/smart-lights-en-close-field}  # dataset.json, speech_corpus/
SPEECHCOMMANDS=${SPEECHCOMMANDS:-downloads/speech_commands_v0.02}          # <word>/, *_list.txt, _background_noise_/
SPEECHCOMMANDS_TEST=${SPEECHCOMMANDS_TEST-downloads/speech_commands_test_set_v0.02}  # 12-class test set ("" : testing_list.txt)
