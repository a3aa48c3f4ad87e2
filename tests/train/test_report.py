"""The evaluation report: files `avs evaluate` writes for it, the page, `avs report --compare`, and the
page in a real browser (headless Chromium over the DevTools protocol)."""

from __future__ import annotations

import csv
import json
import wave
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages.cli import main
from tests.chromium_devtools import Browser, find_chromium
from tests.toy_shards import ToyClip, write_clip_shards
from train.evaluate import EvalParams, evaluate, pick_strip_videos
from train.loop import TrainParams, train
from train.overlay import HEADER_PX

SIZE, T, RATE = 32, 3, 16000


def write_shards(root: Path, dataset: str = "toy", videos: int = 8, dim: int = 16) -> None:
    """Two squares; the sounding one (announced by the audio embedding) is the ground truth; the
    waveform is a tone whose pitch says which square sounds (so the page has audio to play)."""
    rng = np.random.default_rng(0)
    clips = []
    for v in range(videos):
        frames = np.full((T, SIZE, SIZE, 3), 40, np.uint8)
        frames[:, 8:20, 2:14] = (230, 230, 230)  # a pale object: a white tint would vanish on it
        frames[:, 8:20, 18:30] = (30, 30, 200)
        masks = np.zeros((T, SIZE, SIZE), np.uint8)
        emb = rng.normal(0, 0.1, (T, dim)).astype(np.float32)
        tone = np.zeros(T * RATE, np.int16)
        for t in range(T):
            left = (v + t) % 2 == 0
            masks[t, 8:20, 2:14] = left
            masks[t, 8:20, 18:30] = not left
            emb[t, 0 if left else 1] = 1.0
            seconds = np.arange(RATE) / RATE
            tone[t * RATE : (t + 1) * RATE] = (8000 * np.sin(2 * np.pi * (440 if left else 880) * seconds)).astype(
                np.int16
            )
        labelled = np.array([True] * (T - 1) + [False])
        split = "test" if v >= videos - 4 else "train"
        clips.append(
            ToyClip(
                f"v{v}", frames, masks, emb, split, waveform=tone, labelled=labelled, maskige=frames[..., ::-1].copy()
            )
        )
    attrs = {"extract": {"extract_params": {"frame_size": [SIZE, SIZE]}}, "audio": {"audio_params": {"encoder": "toy"}}}
    write_clip_shards(root, dataset, clips, attrs)


def train_params(**over) -> TrainParams:
    base = dict(
        model="combo_tiny",
        datasets=["toy"],
        size=[SIZE, SIZE],
        batch_size=2,
        max_steps=3,
        num_workers=0,
        checkpoint_every=10,
        grad_clip=1.0,
        seed=3,
        threads=1,
    )
    return TrainParams(**{**base, **over})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, single_thread_module) -> Path:
    """A toy run trained for 3 steps and evaluated: the evaluation folder."""
    root = tmp_path_factory.mktemp("report")
    write_shards(root)
    result = train(train_params(), str(root), [0], root / "run", progress=False)
    evaluate(
        result["final"],
        EvalParams(datasets=["toy"], overlays=3),
        str(root),
        [0],
        root / "eval",
        train_log=root / "run" / "log",
        progress=False,
    )
    return root / "eval"


@pytest.fixture(scope="module")
def single_thread_module():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_is_logged_with_dvclive(evaluated):
    log = evaluated.parent / "run" / "log"
    with open(log / "plots" / "metrics" / "train" / "loss_total.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and all(np.isfinite(float(r["loss_total"])) for r in rows)
    assert (log / "plots" / "metrics" / "train" / "lr.tsv").is_file()
    summary = json.loads((log / "metrics.json").read_text())
    assert summary["step"] == 3 and "loss_total" in summary["train"]


def test_resumed_run_log_has_each_step_once(tmp_path):
    write_shards(tmp_path)
    train(
        train_params(max_steps=4, checkpoint_every=2),
        str(tmp_path),
        [0],
        tmp_path / "run",
        progress=False,
        stop_after=3,
    )  # checkpoint at step 2, log up to step 3, then "interrupted"
    train(
        train_params(max_steps=4, checkpoint_every=2),
        str(tmp_path),
        [0],
        tmp_path / "run",
        progress=False,
        resume=tmp_path / "run" / "checkpoints" / "step-0000002.pt",
    )
    with open(tmp_path / "run" / "log" / "plots" / "metrics" / "train" / "loss_total.tsv", newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh, delimiter="\t")] == [1, 2, 3, 4]


def test_progress_lines_without_a_bar(tmp_path, capsys):
    write_shards(tmp_path)
    train(train_params(), str(tmp_path), [0], tmp_path / "run", progress=False)
    evaluate(
        tmp_path / "run" / "model.pt",
        EvalParams(datasets=["toy"], overlays=0, shuffle_audio=False),
        str(tmp_path),
        [0],
        tmp_path / "eval",
        progress=False,
    )
    err = capsys.readouterr().err
    assert "train combo_tiny: 3/3 steps (100%) | loss" in err and "ETA" in err
    assert "evaluate toy: 4/4 videos (100%)" in err
    assert "\r" not in err  # no bar redraws in a log


def test_evaluate_writes_what_the_report_needs(evaluated):
    report = json.loads((evaluated / "report.json").read_text())
    assert report["model"] == "combo_tiny" and report["step"] == 3
    assert report["feature_params"]["toy"]["extract"] == {"frame_size": [SIZE, SIZE]}
    assert {"train/loss_total", "train/lr"} <= set(report["curves"])
    assert [s["rank"] for s in report["strips"]] == ["worst", "worst", "best"]
    strip = report["strips"][0]
    assert strip["columns"] == ["frame", "maskige", "ground truth", "prediction", "pred., audio shuffled"]
    with Image.open(evaluated / strip["image"]) as png:  # header + one row per second, one tile per column
        assert png.size == (5 * SIZE, HEADER_PX + T * SIZE)
    with wave.open(str(evaluated / strip["audio"])) as wav:
        assert wav.getframerate() == RATE and wav.getnframes() == T * RATE
    metrics = json.loads((evaluated / "metrics.json").read_text())  # dvclive's summary
    assert 0 <= metrics["toy"]["M_J"] <= 1 and "audio_dependence" in metrics["toy"]
    assert (evaluated / "per_class").is_dir() and not any((evaluated / "per_class").iterdir())  # binary: no chart


def test_negative_audio_is_measured_or_skipped_with_its_reason(evaluated):
    """These toy shards record no usable audio encoder ("toy"): silence and noise cannot be made as the
    shards' features were, and are skipped with the reason; off-screen audio needs no encoder."""
    negative = json.loads((evaluated / "metrics.json").read_text())["toy"]["negative_audio"]
    assert set(negative) == {"own", "shuffled", "silence", "noise", "offscreen"}
    for condition in ("silence", "noise"):
        assert (
            "audio record unusable" in negative[condition]["skipped"]
            and "audio_params" in negative[condition]["skipped"]
        )
    for condition in ("own", "shuffled", "offscreen"):
        m = negative[condition]
        assert m["frames"] == 4 * T and 0 <= m["pred_area_ratio"] <= m["pred_frame_fraction"] <= 1
    report = json.loads((evaluated / "report.json").read_text())
    (strip,) = report["negative_strips"]  # the worst video, under the one condition that ran
    assert strip["condition"] == "offscreen" and strip["video_id"] == report["strips"][0]["video_id"]
    assert strip["columns"] == ["frame", "maskige", "ground truth", "prediction", "pred., off-screen audio"]
    with Image.open(evaluated / strip["image"]) as png:
        assert png.size == (5 * SIZE, HEADER_PX + T * SIZE)
    with wave.open(str(evaluated / strip["audio"])) as wav:  # the donor video's audio
        assert wav.getnframes() == T * RATE
    rows = list(csv.DictReader((evaluated / "per_video.csv").read_text().splitlines()))
    assert all(0 <= float(r["area_offscreen"]) <= 1 for r in rows) and "area_silence" not in rows[0]
    text = (evaluated / "report.html").read_text()
    assert "Negative audio" in text and "skipped: audio record unusable" in text and "off-screen audio" in text


def test_strip_videos_are_the_worst_and_the_best():
    scores = {f"d/v{i}": {"J": j, "F": 0.5} for i, j in enumerate([0.5, 0.1, 0.9, 0.3, 0.7])}
    assert pick_strip_videos(scores, 4) == [("d/v1", "worst"), ("d/v3", "worst"), ("d/v2", "best"), ("d/v4", "best")]
    assert pick_strip_videos(scores, 1) == [("d/v1", "worst")]
    assert len(pick_strip_videos(scores, 10)) == 5  # each video once


class _Page(HTMLParser):
    """Counts elements and collects every URL-bearing attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.urls += [v for k, v in attrs if k in ("src", "href", "poster", "data") and v]


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def test_report_page_is_self_contained(evaluated):
    page = parse(evaluated / "report.html")
    # 3 strips with sound + the worst video with off-screen audio; the training curves
    assert page.tags["audio"] == 4 and page.tags["svg"] >= 1
    assert page.tags["img"] == 4 * T  # one image per second of each strip
    assert all(u.startswith("data:") for u in page.urls)
    text = (evaluated / "report.html").read_text()
    assert "http://" not in text.replace("http://www.w3.org/", "") and "https://" not in text
    assert "Per-class IoU" not in text  # binary dataset: no per-class chart
    size = json.loads((evaluated / "report.json").read_text())["input_size"]  # the size the model was scored at
    assert size == list(train_params().inference_size or train_params().size)
    assert f"evaluated at input size {size}" in text


def test_semantic_run_has_the_per_class_chart(tmp_path):
    write_shards(tmp_path, dataset="toy_sem")
    result = train(
        train_params(datasets=["toy_sem"], task="semantic", max_steps=1),
        str(tmp_path),
        [0],
        tmp_path / "run",
        progress=False,
    )
    evaluate(
        result["final"],
        EvalParams(datasets=["toy_sem"], overlays=1, shuffle_audio=False),
        str(tmp_path),
        [0],
        tmp_path / "eval",
        progress=False,
    )
    assert (tmp_path / "eval" / "per_class" / "per_class_iou.csv").is_file()
    assert "Per-class IoU" in (tmp_path / "eval" / "report.html").read_text()


def test_the_page_is_the_same_byte_for_byte_when_rendered_again(evaluated, tmp_path):
    """The report is a DVC output: rendering the same run twice gives the same bytes (matplotlib's SVG
    ids are derived from a fixed salt, not drawn at random)."""
    assert main(["report", str(evaluated), "--out", str(tmp_path / "again.html")]) == 0
    assert main(["report", str(evaluated), "--out", str(tmp_path / "again2.html")]) == 0
    assert (tmp_path / "again.html").read_bytes() == (tmp_path / "again2.html").read_bytes()
    assert "<svg" in (tmp_path / "again.html").read_text()


def test_compare_two_runs(evaluated, tmp_path, capsys):
    out = tmp_path / "compare.html"
    assert (
        main(
            ["report", "--compare", str(evaluated), str(evaluated), "--labels", "lr 1e-3", "lr 1e-4", "--out", str(out)]
        )
        == 0
    )
    page = parse(out)
    assert page.tags["audio"] == 8 and page.tags["img"] == 8 * T  # both runs' strips
    text = out.read_text()
    assert "J (lr 1e-3)" in text and "J (lr 1e-4)" in text  # per-video table: runs side by side
    assert main(["report", "--compare", str(evaluated), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]


# --- in a real browser (tests/chromium_devtools.py) ---------------------------------------------------

LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")


@pytest.fixture
def browser(tmp_path):
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "Chromium not found (Debian: apt-get install chromium; or set AVS_CHROMIUM): "
            "the report page is not checked in a browser"
        )
    b = Browser(executable, tmp_path / "profile")
    yield b
    b.close()


DOM_FACTS = """(async () => {
  const audio = [...document.querySelectorAll('audio')];
  const durations = await Promise.all(audio.map(a => new Promise(done => {
    a.addEventListener('loadedmetadata', () => done(a.duration), {once: true});
    a.addEventListener('error', () => done(-1), {once: true});
    a.preload = 'auto'; a.load();
  })));
  const imgs = [...document.querySelectorAll('#strips .strip img')];
  return {
    summaryRows: document.querySelectorAll('#summary table.summary tr').length,
    videoRows: document.querySelectorAll('#per-video tbody tr').length,
    strips: document.querySelectorAll('#strips .strip').length,
    negativeStrips: document.querySelectorAll('#negative-audio .strip').length,
    columnLabels: [...document.querySelectorAll('#strips .strip .cols')].map(c => [...c.children].map(s => s.textContent)),
    imagesDecoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    images: imgs.length,
    audioDurations: durations,
    charts: document.querySelectorAll('#curves svg').length,
  };
})()"""

SORT_BY_J = """(() => {
  const th = [...document.querySelectorAll('#per-video th')].find(h => h.textContent === 'J');
  th.click();
  return [...document.querySelectorAll('#per-video tbody tr')].map(r => parseFloat(r.cells[2].dataset.v));
})()"""


def test_report_in_chromium(evaluated, browser):
    browser.open((evaluated / "report.html").resolve().as_uri())
    facts = browser.evaluate(DOM_FACTS)
    assert facts["summaryRows"] == 2 and facts["videoRows"] == 4  # header + 1 dataset; 4 test videos
    assert facts["strips"] == 3 and facts["images"] == 3 * T and facts["imagesDecoded"] == facts["images"]
    assert facts["charts"] == 1
    assert facts["columnLabels"] == [["frame", "maskige", "ground truth", "prediction", "pred., audio shuffled"]] * 3
    assert facts["negativeStrips"] == 1
    assert facts["audioDurations"] == pytest.approx([T] * 4, abs=0.05)  # each clip's audio plays, all 3 s of it
    ascending = browser.evaluate(SORT_BY_J)
    assert ascending == sorted(ascending)  # the table sorts
    leaving = [u for u in browser.requests() if not u.startswith(LOCAL_SCHEMES)]
    assert leaving == [], f"the page made requests outside the file: {leaving}"


def test_the_browser_check_sees_a_request_that_leaves(tmp_path, browser):
    """The network check itself: a page with one remote image is caught."""
    page = tmp_path / "remote.html"
    page.write_text('<html><body><img src="http://127.0.0.1:9/pixel.png"></body></html>')
    browser.open(page.as_uri())
    assert "http://127.0.0.1:9/pixel.png" in browser.requests()


def test_masks_show_on_pale_and_dark_frames():
    """The old white tint vanished on pale objects: the outline (bright inside, dark outside) shows on
    any frame, and the tint changes every masked pixel."""
    from train.overlay import OUTLINE_BRIGHT, OUTLINE_DARK, draw_mask, outlines

    labels = np.zeros((224, 224), np.int64)
    labels[60:160, 60:160] = 1
    inner, outer = outlines(labels, 2)
    assert inner.sum() == 4 * 100 * 2 - 4 * 2 * 2 and inner[60, 100] and inner[61, 100] and not inner[62, 100]
    assert outer[59, 100] and outer[58, 100] and not outer[57, 100] and not (inner & outer).any()
    for grey in (250, 5):
        frame = np.full((224, 224, 3), grey, np.uint8)
        drawn = draw_mask(frame, labels, binary=True)
        assert (drawn[inner] == OUTLINE_BRIGHT).all() and (drawn[outer] == OUTLINE_DARK).all()
        interior = labels.astype(bool) & ~inner
        assert (np.abs(drawn[interior].astype(int) - grey).max(axis=-1) > 60).all()  # the tint is visible
        assert (drawn[labels == 0][~outer[labels == 0]] == grey).all()  # the rest of the frame untouched
