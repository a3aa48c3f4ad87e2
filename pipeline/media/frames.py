"""Which decoded frames AVSBench keeps for each second, as a plan ffmpeg's ``select`` can follow."""

from __future__ import annotations

from dataclasses import dataclass


def avsbench_frame_indices(num_seconds: int, fps: float) -> list[int]:
    """Frame index AVSBench keeps for each second l: ``int(l*fps + 15/16*fps)``, fps rounded.

    Clamping to the last frame happens at extraction time, when the real frame count is known.
    """
    rfps = max(1, int(round(fps)))
    return [int(sec * rfps + 15 / 16 * rfps) for sec in range(num_seconds)]


@dataclass(frozen=True)
class FramePlan:
    """Which decoded frames (index n from 0, in decoding order) one extraction keeps.

    With fps rounded to an integer R, AVSBench's ``int(l*R + 15/16*R)`` is ``l*R + (15*R)//16``
    (``l*R`` is an integer and ``15/16*R`` is exact in binary), so the kept frames are those with
    ``n mod R == offset`` and ``n < T*R``: a ``select`` expression of constant length, whatever T.
    When the header says the clip may end before the last wanted frame, every frame from
    ``tail_start`` on is kept too, so that missing seconds can take the true last frame (the clamp).

    Below 1 fps (a slide show, a time lapse: fewer frames than seconds) ``resample`` is set: ffmpeg's
    ``fps=1`` filter first repeats each frame for as long as it is shown, so second l takes the frame
    on screen at l s and indices count frames of that 1 fps stream.
    """

    num_seconds: int
    rfps: int
    tail_start: int | None  # None: the clip is long enough; ffmpeg stops after T frames
    estimated: int | None  # frames the stream should have (duration x its real rate); None when unknown
    resample: bool = False  # below 1 fps: decode through ffmpeg's fps=1 filter

    @classmethod
    def for_clip(cls, num_seconds: int, fps: float, duration: float | None) -> FramePlan:
        resample = 0 < fps < 1
        rfps = max(1, int(round(fps)))
        # The stream's own rate, not the rounded one: 8 s at 0.5 fps is 4 frames, not a truncated 8.
        estimated = int(duration * (1 if resample else fps) + 1e-6) if duration else None
        last_wanted = (num_seconds - 1) * rfps + (15 * rfps) // 16
        tail_start = None
        if estimated is None or last_wanted >= estimated - 1:
            tail_start = max(0, min(last_wanted, estimated if estimated is not None else last_wanted) - 2 * rfps)
        return cls(num_seconds, rfps, tail_start, estimated, resample)

    @property
    def offset(self) -> int:
        return (15 * self.rfps) // 16

    def wanted(self, second: int) -> int:
        """Decoded-frame index AVSBench takes for ``second`` (before clamping)."""
        return second * self.rfps + self.offset

    def select_expression(self) -> str:
        expr = f"eq(mod(n,{self.rfps}),{self.offset})*lt(n,{self.num_seconds * self.rfps})"
        return expr if self.tail_start is None else f"{expr}+gte(n,{self.tail_start})"

    def output_index(self, position: int) -> int:
        """Decoded index of the ``position``-th frame ffmpeg outputs (outputs come in decoding order)."""
        if self.tail_start is None:
            return self.wanted(position)
        before_tail = min(self.num_seconds, max(0, -(-(self.tail_start - self.offset) // self.rfps)))
        return self.wanted(position) if position < before_tail else self.tail_start + position - before_tail
