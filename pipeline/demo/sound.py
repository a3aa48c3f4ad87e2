"""Demo sounds: each class has its own pitch, timbre and rhythm; a second's audio is the mix of
the sounds of the objects sounding in that second."""

from __future__ import annotations

import io
import math
import wave
from collections.abc import Iterable

import numpy as np

from pipeline.demo.scene import CLASSES, SECONDS, DemoClass, Scene
from pipeline.media import AUDIO_RATE


def class_sound(
    cls: DemoClass,
    rng: np.random.Generator,
    pitch: float = 1.0,
    pulse_phase: float = 0.0,
    rate: int = AUDIO_RATE,
    seconds: int = SECONDS,
) -> np.ndarray:
    """float64 [seconds*rate], RMS 1 (before the rhythm envelope): the class's own sound."""
    n = seconds * rate
    t = np.arange(n) / rate
    f0 = cls.f0 * pitch
    if cls.noise_band > 0:
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / rate)
        spectrum[np.abs(freqs - f0) > cls.noise_band * f0] = 0
        tone = np.fft.irfft(spectrum, n)
    else:
        inst = f0 * (1 + cls.vibrato * np.sin(2 * math.pi * 5.0 * t))
        phase = 2 * math.pi * np.cumsum(inst) / rate
        tone = np.zeros(n)
        for mult, amp in cls.harmonics:
            if mult * f0 < 0.45 * rate:  # never alias
                tone += amp * np.sin(mult * phase + rng.uniform(0, 2 * math.pi))
    tone /= max(float(np.sqrt(np.mean(tone**2))), 1e-9)
    if cls.pulse_hz > 0:  # percussive pulses: fast attack, exponential decay, floor 0.15
        frac = np.mod(t * cls.pulse_hz + pulse_phase, 1.0)
        env = 0.15 + 0.85 * np.exp(-4.0 * frac) * (1 - np.exp(-frac * 150.0))
        tone *= env / np.sqrt(np.mean(env**2))
    return tone


def _gate(sounding: Iterable[bool], rate: int) -> np.ndarray:
    """Per-sample on/off from per-second flags with 10 ms raised-cosine ramps centred on the
    second boundaries (no clicks)."""
    flags = np.asarray(list(sounding), np.float64)
    ramp = 0.01
    knots_t, knots_v = [0.0], [flags[0]]
    for sec in range(1, flags.size):
        if flags[sec] != flags[sec - 1]:
            knots_t += [sec - ramp / 2, sec + ramp / 2]
            knots_v += [flags[sec - 1], flags[sec]]
    knots_t.append(float(flags.size))
    knots_v.append(flags[-1])
    linear = np.interp(np.arange(flags.size * rate) / rate, knots_t, knots_v)
    return 0.5 - 0.5 * np.cos(np.pi * linear)  # 0 and 1 stay exact; ramps become raised cosines


def synth_audio(scene: Scene, rate: int = AUDIO_RATE) -> np.ndarray:
    """int16 [SECONDS*rate]: the mix of the sounding objects' sounds, second by second, + light noise."""
    mix = np.zeros(SECONDS * rate)
    for k, obj in enumerate(scene.objects):
        if any(obj.sounding):
            rng = np.random.default_rng([scene.noise_seed, k + 1])
            sound = class_sound(CLASSES[obj.class_id], rng, obj.pitch, obj.pulse_phase, rate)
            mix += 0.12 * obj.gain * sound * _gate(obj.sounding, rate)
    mix += 0.004 * np.random.default_rng([scene.noise_seed, 0]).standard_normal(mix.size)
    peak = float(np.max(np.abs(mix)))
    if peak > 0.95:
        mix *= 0.95 / peak
    return np.round(mix * 32767).astype(np.int16)


def wav_bytes(audio: np.ndarray, rate: int = AUDIO_RATE) -> bytes:
    """A 16-bit PCM mono wav file of int16 [S] (written by the standard library: same bytes everywhere)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(audio, dtype="<i2").tobytes())
    return buffer.getvalue()
