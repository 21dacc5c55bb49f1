"""espnet_pruning: task-specific subnetworks in a multi-task Whisper SLU model (ESPnet plugin)."""

from setuptools import find_packages, setup

setup(
    name="espnet_pruning",
    version="0.1.0",
    description=(
        "ESPnet recipe plugin: per-task pruning masks, masked multi-task training and "
        "continual learning for a Whisper-based UniverSLU model"
    ),
    python_requires=">=3.12",
    packages=find_packages(include=["espnet_pruning", "espnet_pruning.*"]),
    package_data={"espnet_pruning": ["specifiers/*.yaml", "corpora/templates/*.yaml"]},
    install_requires=[
        "espnet==202611",
        "openai-whisper==20250625",
        "sentencepiece",
        "soundfile",
        "editdistance",
        "matplotlib",
        "tensorboard",
        "tqdm",
        "PyYAML",
        "typeguard",
        "safetensors",
    ],
    extras_require={
        "test": [
            "pytest",
            # transformers and ctranslate2 define the formats whisper_import reads; the
            # tests check our import against them.
            "transformers",
            "ctranslate2",
            # SLURP's official scorer (tests/scoring/test_slurp_official.py), at the
            # versions its requirements.txt pins (tabulate 0.8.7 fails on Python 3.12)
            "jiwer==2.0.0",
            "textdistance==4.1.5",
            "progress==1.5",
            "tabulate==0.9.0",
        ]
    },
)
