"""Reading a running ffmpeg's output as a stream: frames in AVSBench order (with the clamp) and PCM audio."""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from pathlib import Path

import numpy as np

from pipeline.media.command import MediaError, _last_error_line, ffmpeg_exe, shown_path
from pipeline.media.frames import FramePlan


class _Pipe:
    """One running ffmpeg whose stdout is read as a stream; a thread drains stderr (last lines kept)."""

    def __init__(self, args: list[str], path: str | Path, what: str) -> None:
        self.path, self.what = path, what
        try:
            self.proc = subprocess.Popen(
                [ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise MediaError(f"{path}: cannot run ffmpeg for {what}: {exc}") from exc
        self._stderr: deque[bytes] = deque(maxlen=40)
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)

    def read_into(self, buffer: np.ndarray) -> int:
        """Fill the contiguous array ``buffer`` from stdout; returns the bytes read (fewer at end of stream)."""
        view = memoryview(buffer.reshape(-1)).cast("B")
        got = 0
        while got < len(view):
            count = self.proc.stdout.readinto(view[got:])
            if not count:
                break
            got += count
        return got

    def check_exit(self) -> None:
        """At end of stream: wait for ffmpeg and raise :class:`MediaError` if it failed."""
        code = self.proc.wait()
        self._drain.join()
        if code != 0:
            reason = _last_error_line(b"".join(self._stderr))
            raise MediaError(f"{shown_path(str(self.path))}: ffmpeg could not decode it ({self.what}: {reason})")

    def stop(self) -> None:
        """End ffmpeg now (it may still be writing what is no longer needed) and release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self._drain.join()
        self.proc.stderr.close()


class _FrameReader:
    """Gives the AVSBench frame of each second, in order, from a running ffmpeg that follows a :class:`FramePlan`."""

    def __init__(self, pipe: _Pipe, plan: FramePlan, size: tuple[int, int]) -> None:
        self.pipe, self.plan = pipe, plan
        self.frame_bytes = size[0] * size[1] * 3
        self.outputs = 0  # frames read so far
        self.last_index = -1  # decoded index of the last whole frame read
        self.last = np.zeros((*size, 3), np.uint8)  # that frame, for the clamp
        self._scratch = np.zeros_like(self.last)
        self.ended = False

    def _read(self, target: np.ndarray) -> bool:
        if self.pipe.read_into(target) < self.frame_bytes:
            self.ended = True
            self.pipe.check_exit()
            return False
        self.outputs += 1
        return True

    def fill(self, second: int, slot: np.ndarray) -> int:
        """Write the frame of ``second`` into ``slot`` [H,W,3]; returns the decoded index taken."""
        wanted = self.plan.wanted(second)
        while not self.ended and self.last_index < wanted:
            index = self.plan.output_index(self.outputs)
            if index == wanted:
                if self._read(slot):
                    self.last[...] = slot
                    self.last_index = index
            elif self._read(self._scratch):  # a tail frame: only kept as "the last frame so far"
                self.last, self._scratch = self._scratch, self.last
                self.last_index = index
        if self.last_index == wanted:
            return wanted
        return self._clamp(wanted, slot)

    def _clamp(self, wanted: int, slot: np.ndarray) -> int:
        path, plan = shown_path(str(self.pipe.path)), self.plan
        if self.outputs == 0:
            raise MediaError(f"{path}: no decodable video frames")
        if plan.estimated is not None and wanted < plan.estimated - plan.rfps:
            # The header promises frames that do not decode: a cut or damaged file, not a short clip.
            raise MediaError(
                f"{path}: truncated or corrupt: frames stop at index {self.last_index} but the "
                f"header says about {plan.estimated} frames"
            )
        slot[...] = self.last
        return self.last_index


class _AudioReader:
    """16 kHz mono int16 from a running ffmpeg (None: no audio stream, silence)."""

    def __init__(self, pipe: _Pipe | None) -> None:
        self.pipe = pipe
        self.ended = pipe is None

    def fill(self, out: np.ndarray) -> int:
        """Fill int16 ``out`` (already zeros); returns the samples of real audio written."""
        if self.ended:
            return 0
        got = self.pipe.read_into(out) // 2
        if got < out.size:
            self.ended = True
            self.pipe.check_exit()
        return got
