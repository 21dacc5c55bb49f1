import numpy as np
import pytest

from espnet_pruning.corpora.audio import rms
from espnet_pruning.corpora.speakers import (
    load_emotions,
    load_speakers,
    pool,
    utterance_prosody,
)
from espnet_pruning.corpora.tts import (
    Espeak,
    EspeakNotFoundError,
    Prosody,
    TTSError,
    find_espeak,
)

ENGINE = Espeak()


def test_missing_espeak_is_clear(monkeypatch):
    with pytest.raises(EspeakNotFoundError) as e:
        find_espeak("/nonexistent/bin/espeak-ng")
    assert isinstance(e.value, RuntimeError)
    assert "espeak-ng" in str(e.value) and "apt-get install espeak-ng" in str(e.value)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("ESPEAK_NG", raising=False)
    with pytest.raises(EspeakNotFoundError, match="Debian package 'espeak-ng'"):
        Espeak()


def test_render_16k_deterministic():
    p = Prosody("en-us+f3", speed=170, pitch=55, amplitude=100)
    a = ENGINE.render("turn on the lights", p)
    b = ENGINE.render("turn on the lights", p)
    assert a.dtype == np.int16 and 0.5 < len(a) / 16000 < 3.0
    assert np.array_equal(a, b)
    assert rms(a) > 0.02


def test_prosody_validation_and_tts_error(tmp_path):
    with pytest.raises(ValueError):
        Prosody("en-us+f3", speed=10)
    with pytest.raises(ValueError):
        Prosody("en-us; rm -rf /")
    with pytest.raises(ValueError):
        Prosody("en-us", range="huge")
    fake = tmp_path / "espeak-ng"
    fake.write_text("#!/bin/sh\necho 'eSpeak NG text-to-speech: 0.0'\n")
    fake.chmod(0o755)
    engine = Espeak(str(fake))  # "--version" works, synthesis writes nothing
    with pytest.raises(TTSError, match="espeak-ng failed"):
        engine.render("hello", Prosody("en-us"))


def test_all_voices_and_variants_exist():
    speakers, _ = load_speakers()
    assert {s.variant for s in speakers.values()} <= ENGINE.variants()
    assert {s.voice for s in speakers.values()} <= ENGINE.voices()


def _f0(x: np.ndarray, rate: int = 16000) -> float:
    """Median autocorrelation pitch (Hz) of the loud frames: a rough F0 proxy."""
    y = x.astype(np.float64) / 32768.0
    frame, hop, out = int(0.04 * rate), int(0.02 * rate), []
    lo, hi = rate // 400, rate // 60
    for s in range(0, len(y) - frame, hop):
        w = y[s : s + frame] - y[s : s + frame].mean()
        if np.sqrt(np.mean(w**2)) < 0.02:
            continue
        ac = np.correlate(w, w, "full")[frame - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            out.append(rate / lag)
    return float(np.median(out))


def test_emotions_differ_in_prosody():
    """Same sentences, same speaker: the four emotions differ in rate, loudness and pitch."""
    speakers, _ = load_speakers()
    emotions = load_emotions()
    assert set(emotions) == {"neu", "hap", "sad", "ang"}
    spk = pool(speakers, "train")[0]
    sentences = ["we took the train to the city", "the package arrived on tuesday"]
    stats = {}
    for name, emo in emotions.items():
        p = utterance_prosody(spk, np.random.default_rng(0), emotion=emo, jitter=False)
        audio = [ENGINE.render(s, p) for s in sentences]
        x = np.concatenate(audio)
        stats[name] = dict(seconds=len(x) / 16000, rms=rms(x), f0=_f0(x))
    s = stats
    # Speaking rate: sad slowest, happy and angry faster than neutral.
    assert s["sad"]["seconds"] > 1.2 * s["neu"]["seconds"]
    assert s["hap"]["seconds"] < 0.95 * s["neu"]["seconds"]
    assert s["ang"]["seconds"] < 0.95 * s["neu"]["seconds"]
    # Loudness: angry loudest, sad quietest.
    assert s["ang"]["rms"] > 1.15 * s["hap"]["rms"] > 1.15 * s["neu"]["rms"]
    assert s["sad"]["rms"] < 0.75 * s["neu"]["rms"]
    # Pitch: happy highest, sad lowest.
    assert s["hap"]["f0"] > 1.1 * s["neu"]["f0"] > 1.1 * s["sad"]["f0"]
