"""File-only inputs: ffmpeg reads local regular files and nothing else (URLs, protocols, playlists)."""

from __future__ import annotations

import http.server
import os
import shutil
import threading

import numpy as np
import pytest

from pipeline import media
from pipeline.manifest import ManifestRow, write_manifest
from stages.cli import main
from tests.conftest import decode_index, index_frames, tone


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server serving a real video; ``requests`` lists every path anyone asked for."""
    served = tmp_path / "served"
    served.mkdir()
    media.encode_video(served / "remote.mp4", index_frames(130), 25, tone(5.2))
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self):  # noqa: N802 - http.server's name
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def _one_line(message: str) -> None:
    assert "\n" not in message and len(message) <= 200, message


def test_check_local_media_path_refuses_what_is_not_a_local_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.mp4").mkdir()
    os.mkfifo(tmp_path / "fifo.mp4")
    cases = {
        "http://127.0.0.1:9/x.mp4": "is a URL",
        "rtsp://camera/stream": "is a URL",
        "pipe:0": "protocol prefix (pipe:)",
        "concat:a.mp4|b.mp4": "protocol prefix (concat:)",
        "file:x.mp4": "protocol prefix (file:)",
        "missing.mp4": "no such file",
        "folder.mp4": "not a regular file",
        "fifo.mp4": "not a regular file",
        "": "not a file name",
    }
    for given, reason in cases.items():
        with pytest.raises(media.NotLocalFileError, match=reason.replace("(", r"\(").replace(")", r"\)")) as err:
            media.check_local_media_path(given)
        _one_line(str(err.value))
    long_url = "http://example.invalid/" + "x" * 500
    with pytest.raises(media.NotLocalFileError) as err:
        media.check_local_media_path(long_url)
    _one_line(str(err.value))


@pytest.mark.parametrize(
    "odd_name", ["concat:a.mp4|b.mp4", "pipe:x.mp4", "-x.mp4", "-i", "file:y.mp4", "sub dir/%d.mp4"]
)
def test_odd_file_names_are_plain_files(tmp_path, make_video, monkeypatch, odd_name):
    original = make_video("original.mp4", fps=25)
    # Decoys: were the name read as a protocol or an option, these (or nothing) would be read instead.
    make_video("a.mp4", seconds=2.2, fps=30, folder=tmp_path)
    make_video("b.mp4", seconds=2.2, fps=30, folder=tmp_path)
    make_video("x.mp4", seconds=2.2, fps=30, folder=tmp_path)
    odd = tmp_path / odd_name
    odd.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(original, odd)
    monkeypatch.chdir(tmp_path)
    for given in (odd, odd_name):  # absolute and relative to the working folder
        assert media.check_local_media_path(given) == odd
        info = media.probe(given)
        assert info.fps == 25 and info.duration == pytest.approx(5.2, abs=0.06)
        clip = media.extract_clip(given, 5, size=(64, 128))
        assert [decode_index(f) for f in clip.frames] == [23, 48, 73, 98, 123]
        np.testing.assert_array_equal(media.read_audio(given, 5), media.read_audio(original, 5))


def test_encode_to_an_odd_name(tmp_path):
    out = tmp_path / "pipe:out.mp4"
    media.encode_video(out, index_frames(30), 25, tone(1.2))
    assert out.is_file() and media.probe(out).fps == 25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe:out.mp4"]  # no temporaries left


def test_urls_are_never_fetched(tmp_path, http_server):
    base, requests = http_server
    url = f"{base}/remote.mp4"
    for call in (
        media.probe,
        lambda p: media.extract_clip(p, 5),
        lambda p: media.read_audio(p, 5),
        media.decode_all_frames,
        lambda p: list(media.iter_clip_windows(p, 5)),
    ):
        with pytest.raises(media.NotLocalFileError, match="is a URL"):
            call(url)
    # A local playlist pointing at the server: ffmpeg may only open local files, and no playlist demuxer.
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:5.2,\n{url}\n#EXT-X-ENDLIST\n")
    with pytest.raises(media.MediaError, match="playlist or script") as err:
        media.probe(playlist)
    _one_line(str(err.value))
    with pytest.raises(media.MediaError):
        media.extract_clip(playlist, 5, info=media.MediaInfo(5.2, 25.0, 128, 64, 16_000, 1))
    assert requests == []


def test_concat_script_does_not_read_another_file(tmp_path, make_video):
    make_video("secret.mp4", folder=tmp_path)
    script = tmp_path / "innocent.mp4"
    script.write_text("ffconcat version 1.0\nfile secret.mp4\n")
    with pytest.raises(media.MediaError, match="playlist or script"):
        media.probe(script)
    with pytest.raises(media.MediaError):  # even with the probe skipped (info from an old manifest)
        media.extract_clip(script, 5, info=media.MediaInfo(5.2, 25.0, 128, 64, 16_000, 1))


def test_extract_stage_rejects_url_rows_when_reading_the_manifest(tmp_path, http_server, capsys):
    base, requests = http_server
    rows = [
        ManifestRow(
            video_id=f"v{i}.mp4",
            split="test",
            task="raw",
            source_video=f"{base}/remote.mp4",
            duration="5.200",
            fps="25",
            audio_channels="1",
            audio_rate="16000",
            num_seconds=5,
        )
        for i in range(3)
    ]
    manifest, out = tmp_path / "rows.csv", tmp_path / "out" / "shard-0.h5"
    write_manifest(rows, manifest)
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  root: {tmp_path / 'data'}\ndask:\n  n_workers: 0\n")
    code = main(["extract", "--params", str(params), "--manifest", str(manifest), "--out", str(out), "--no-progress"])
    assert code == 2  # the manifest itself is refused: its rows are validated when read
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rows.csv:2.source_video" in err[0] and "is a URL; only local files are read" in err[0]
    assert not out.exists() and requests == []
