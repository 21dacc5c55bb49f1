"""Whisper components for ESPnet built on PyPI ``openai-whisper``, fully offline.

ESPnet's stock ``OpenAIWhisperEncoder``/``OpenAIWhisperTokenizer`` expect ESPnet's whisper
fork; these classes work with ``openai-whisper==20250625`` and keep the parameter names of
``OpenAIWhisperEncoder``/``OpenAIWhisperDecoder`` so stock ESPnet Whisper checkpoints (the
released UniverSLU model among them) load with ``--init_param`` unchanged.
"""
