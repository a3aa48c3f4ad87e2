"""The ``evaluate`` section of params.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.params import DatasetName, NonNegativeInt, PositiveInt, Size2, Split


@dataclass
class EvalParams:
    """``evaluate`` section of params.yaml."""

    datasets: list[DatasetName] = field(default_factory=lambda: ["demo_s4"])  # each scored separately
    split: Split = "test"
    videos_per_batch: PositiveInt = 1  # 1: COMBO protocol; 4: AVSBench test.sh
    shuffle_audio: bool = True  # also score with audio shuffled across videos (audio-dependence check)
    # Negative audio (docs/report.md): the clip with audio in which its sounding object makes no sound;
    # the measures are how often and how much the model still predicts sounding pixels.
    silence_audio: bool = True  # the features of digital silence
    noise_audio: bool = True  # the features of seeded white noise
    offscreen_audio: bool = True  # the audio of another test video of a different category
    overlays: NonNegativeInt = 6  # videos per dataset drawn as strips: the worst half and the best half (by J or mIoU)
    # Model input size [H, W]; null = the checkpoint's train.inference_size (else its training size). Training on crops of rescaled frames (scale
    # augmentation) teaches the model objects over a range of sizes, so a model trained on 112 crops
    # can be scored on the cached 224 frames: masks come out on a 56x56 grid instead of 28x28.
    size: Size2 | None = None
    seed: NonNegativeInt = 0
    num_workers: NonNegativeInt = 0
    threads: PositiveInt | None = None

    def negative_conditions(self) -> list[str]:
        """The negative-audio conditions switched on, in report order."""
        switches = {"silence": self.silence_audio, "noise": self.noise_audio, "offscreen": self.offscreen_audio}
        return [name for name, on in switches.items() if on]
