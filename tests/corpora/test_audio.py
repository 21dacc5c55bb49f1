import numpy as np
import pytest
import soundfile as sf

from espnet_pruning.corpora.audio import (
    WavError,
    background_noise,
    check_wav,
    pad_center,
    remove_stale_temporaries,
    resample,
    rms,
    write_wav,
)


def _tone(n=16000, rate=16000):
    t = np.arange(n) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)


def test_check_wav_ok(tmp_path):
    p = tmp_path / "a" / "ok.wav"
    write_wav(p, _tone(12345))
    assert check_wav(p) == 12345
    assert not list(p.parent.glob(".tmp-*"))


def test_check_wav_truncated(tmp_path):
    p = tmp_path / "trunc.wav"
    write_wav(p, _tone())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(WavError, match=r"trunc\.wav.*truncated"):
        check_wav(p)
    p.write_bytes(data[:30])
    with pytest.raises(WavError, match=r"trunc\.wav"):
        check_wav(p)


def test_check_wav_wrong_rate_channels_format(tmp_path):
    p = tmp_path / "rate.wav"
    sf.write(p, _tone(22050, 22050), 22050, subtype="PCM_16")
    with pytest.raises(WavError, match=r"rate\.wav.*22050 Hz, expected 16000"):
        check_wav(p)
    assert check_wav(p, expected_rate=22050) == 22050
    p = tmp_path / "stereo.wav"
    sf.write(p, np.stack([_tone(), _tone()], 1), 16000, subtype="PCM_16")
    with pytest.raises(WavError, match=r"stereo\.wav.*2 channels"):
        check_wav(p)
    p = tmp_path / "float.wav"
    sf.write(p, _tone() / 32768.0, 16000, subtype="FLOAT")
    with pytest.raises(WavError, match=r"float\.wav.*16-bit PCM"):
        check_wav(p)
    p = tmp_path / "junk.wav"
    p.write_bytes(b"hello world, not audio at all")
    with pytest.raises(WavError, match=r"junk\.wav.*RIFF"):
        check_wav(p)
    with pytest.raises(WavError, match=r"missing\.wav.*cannot read"):
        check_wav(tmp_path / "missing.wav")


def test_background_noise_levels():
    rng = np.random.default_rng(0)
    for colour in ("white", "pink", "brown"):
        x = background_noise(rng, 1.0, colour=colour, level_db=-50.0, hum_hz=50.0)
        assert x.dtype == np.int16 and len(x) == 16000
        assert abs(20 * np.log10(rms(x)) + 50.0) < 1.0
    a = background_noise(np.random.default_rng(1), 0.5, colour="pink")
    b = background_noise(np.random.default_rng(1), 0.5, colour="pink")
    assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        background_noise(rng, 1.0, colour="purple")


def test_resample_and_pad():
    x = np.sin(np.arange(22050) / 10.0)
    y = resample(x, 22050)
    assert len(y) == 16000
    assert np.array_equal(y, resample(x, 22050))
    z = pad_center(np.ones(10, np.int16), 16)
    assert len(z) == 16 and z[:3].sum() == 0 and z[3:13].sum() == 10


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / "spk01").mkdir()
    (tmp_path / "spk01" / ".tmp-abc.wav").write_bytes(b"x")
    (tmp_path / "spk01" / "keep.wav").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in (tmp_path / "spk01").iterdir()] == ["keep.wav"]
