"""Pretrained backbone files in the formats their users hold: detectron2 / Caffe2 pickles (R-50.pkl,
d2_pvt_v2_b5.pkl), torchvision and timm state dicts; the array-only unpickler refuses code."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
import torch
import torchvision

from train.models.backbones import build_backbone, load_backbone_weights
from train.models.backbones.weights import ArrayUnpickler, caffe2_to_detectron2_name, read_weights_file

pytestmark = pytest.mark.usefixtures("single_thread")  # tests/train/conftest.py


def random_state(module: torch.nn.Module, seed: int = 0) -> dict[str, np.ndarray]:
    """The module's state dict with random float values (real names and shapes)."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: (torch.rand(v.shape, generator=g) + 0.5).numpy() if v.is_floating_point() else v.numpy()
        for k, v in module.state_dict().items()
    }


def torchvision_to_detectron2(name: str) -> str:
    """detectron2's ``convert-torchvision-to-d2.py`` renaming, written out for the test."""
    if "layer" not in name:
        name = "stem." + name
    for t in (1, 2, 3, 4):
        name = name.replace(f"layer{t}", f"res{t + 1}")
    for t in (1, 2, 3):
        name = name.replace(f"bn{t}", f"conv{t}.norm")
    return name.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def torchvision_to_caffe2(name: str) -> str | None:
    """The Caffe2 (MSRA ImageNet) name of a torchvision ResNet tensor; None for running statistics and fc."""
    if name.startswith("fc.") or name.endswith(("running_mean", "running_var", "num_batches_tracked")):
        return None
    suffix = {"weight": "w", "bias": "b"}
    if name == "conv1.weight":
        return "conv1_w"
    if name.startswith("bn1."):
        return "res_conv1_bn_" + {"weight": "s", "bias": "b"}[name.split(".")[-1]]
    match = re.match(r"layer(\d)\.(\d+)\.(conv|bn|downsample\.)(\d)\.(weight|bias)$", name)
    stage, block, kind, index, param = match.groups()
    prefix = f"res{int(stage) + 1}_{block}_"
    if kind == "downsample.":
        branch = "branch1"
        kind = "conv" if index == "0" else "bn"
    else:
        branch = "branch2" + "abc"[int(index) - 1]
    if kind == "conv":
        return f"{prefix}{branch}_{suffix[param]}"
    return f"{prefix}{branch}_bn_" + {"weight": "s", "bias": "b"}[param]


def write_pickle(path, obj) -> None:
    with path.open("wb") as handle:
        pickle.dump(obj, handle)


def assert_state_equal(module: torch.nn.Module, expected: dict[str, np.ndarray]) -> None:
    state = module.state_dict()
    for key, value in expected.items():
        assert torch.equal(state[key], torch.from_numpy(value)), key


def test_detectron2_r50_pkl_loads_every_key(tmp_path) -> None:
    """COMBO's R-50.pkl: torchvision ResNet-50 renamed by detectron2's converter, numpy arrays."""
    source = random_state(torchvision.models.resnet50())
    d2 = {torchvision_to_detectron2(k): v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    assert "stem.conv1.norm.running_var" in d2 and "res5.0.shortcut.norm.weight" in d2
    path = tmp_path / "R-50.pkl"
    write_pickle(path, {"model": d2, "__author__": "torchvision", "matching_heuristics": True})
    backbone = build_backbone("resnet50", pretrained=str(path))
    own = backbone.state_dict()
    assert_state_equal(backbone, {k: v for k, v in source.items() if k in own})
    assert set(own) <= set(source)  # every backbone tensor came from the file (fc.* was the only extra)


def test_caffe2_resnet_pkl_gets_the_exact_norm_scale(tmp_path) -> None:
    """A Caffe2 MSRA pickle: names converted, BN as scale and bias (mean 0, variance 1 - eps)."""
    backbone = build_backbone("resnet50")
    source = random_state(torchvision.models.resnet50(), seed=1)
    c2 = {torchvision_to_caffe2(k): v for k, v in source.items() if torchvision_to_caffe2(k)}
    c2 |= {"fc1000_w": np.zeros((1000, 2048), np.float32), "fc1000_b": np.zeros(1000, np.float32)}
    c2 |= {"res2_0_branch2a_w_momentum": np.zeros((64, 64, 1, 1), np.float32)}  # training leftovers are dropped
    path = tmp_path / "R-50-c2.pkl"
    write_pickle(path, c2)
    load_backbone_weights(backbone, path)
    assert torch.equal(backbone.layer3[5].conv2.weight, torch.from_numpy(source["layer3.5.conv2.weight"]))
    norm = backbone.layer2[0].downsample[1]
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    assert torch.allclose(scale, torch.from_numpy(source["layer2.0.downsample.1.weight"]), rtol=1e-6)
    assert torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))


def test_caffe2_names_follow_detectron2() -> None:
    assert caffe2_to_detectron2_name("conv1_w") == "stem.conv1.weight"
    assert caffe2_to_detectron2_name("res_conv1_bn_s") == "stem.conv1.norm.weight"
    assert caffe2_to_detectron2_name("res_conv1_bn_b") == "stem.conv1.norm.bias"
    assert caffe2_to_detectron2_name("res4_12_branch2c_bn_b") == "res4.12.conv3.norm.bias"
    assert caffe2_to_detectron2_name("res2_0_branch1_w") == "res2.0.shortcut.weight"


def test_blobs_wrapper_is_read(tmp_path) -> None:
    path = tmp_path / "detector.pkl"
    write_pickle(path, {"blobs": {"conv1_w": np.ones((2, 3), np.float32)}, "cfg": "text"})
    state, layout = read_weights_file(path)
    assert layout == "caffe2" and list(state) == ["conv1_w"] and state["conv1_w"].dtype == torch.float32


def test_d2_pvt_pkl_loads_every_key(tmp_path) -> None:
    """COMBO's convert_pvt_model_to_d2.py: the official PVT-v2 names (head included) as numpy arrays.
    The B0 layout (same names, fewer blocks) keeps the file small."""
    source_module = build_backbone("pvt_v2_b0")
    source = random_state(source_module)
    model = dict(source) | {"head.weight": np.zeros((1000, 256), np.float32), "head.bias": np.zeros(1000, np.float32)}
    path = tmp_path / "d2_pvt_v2_b0.pkl"
    write_pickle(path, {"model": model, "__author__": "PVT_V2_B5", "matching_heuristics": True})
    backbone = build_backbone("pvt_v2_b0", pretrained=str(path))
    assert_state_equal(backbone, source)


class _Payload:
    """Unpickling this would create a folder: the proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_code_executing_pickle_is_refused_and_runs_nothing(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "R-50.pkl"
    write_pickle(path, {"model": {"stem.conv1.weight": _Payload(str(marker))}, "__author__": "x"})
    with pytest.raises(ValueError, match=r"R-50\.pkl is not a pickle of numpy arrays \(refused global .*mkdir"):
        build_backbone("resnet50", pretrained=str(path))
    assert not marker.exists()
    with path.open("rb") as handle, pytest.raises(pickle.UnpicklingError):
        ArrayUnpickler(handle).load()
    assert not marker.exists()


def test_pickle_of_other_things_names_the_file(tmp_path) -> None:
    path = tmp_path / "list.pkl"
    write_pickle(path, [1, 2])
    with pytest.raises(ValueError, match="list.pkl holds a list"):
        read_weights_file(path)
    path = tmp_path / "strings.pkl"
    write_pickle(path, {"model": {"stem.conv1.weight": "text"}, "__author__": "x"})
    with pytest.raises(ValueError, match="strings.pkl: entry 'stem.conv1.weight' is not a named tensor"):
        read_weights_file(path)


def test_torchvision_resnet101_state_dict(tmp_path) -> None:
    torch.manual_seed(2)
    state = torchvision.models.resnet101().state_dict()  # num_batches_tracked and fc included
    path = tmp_path / "resnet101.pth"
    torch.save(state, path)
    backbone = build_backbone("resnet101", pretrained=str(path))
    assert all(torch.equal(v, state[k]) for k, v in backbone.state_dict().items())
    assert [len(getattr(backbone, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]


def test_timm_swin_state_dict_loads_into_the_trunk(tmp_path) -> None:
    from timm.models.swin_transformer import SwinTransformer

    source = SwinTransformer(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), window_size=4, img_size=64)
    state = {k: torch.from_numpy(v) for k, v in random_state(source, seed=3).items()}  # head and norm included
    path = tmp_path / "swin.pth"
    torch.save({"state_dict": state}, path)
    backbone = build_backbone("swin_tiny_test", pretrained=str(path))
    trunk = backbone.body.state_dict()
    assert trunk and all(torch.equal(trunk[k], state[k]) for k in trunk)
    features = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in features.values()] == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (128, 2, 2)]


def test_swin_b_matches_timm_swin_base() -> None:
    import timm

    with torch.device("meta"):
        ours = build_backbone("swin_b")
        reference = timm.create_model("swin_base_patch4_window7_224", pretrained=False, num_classes=0)
    assert set(ours.body.state_dict()) == set(reference.state_dict()) - {"norm.weight", "norm.bias"}
    assert ours.out_channels == {"res2": 128, "res3": 256, "res4": 512, "res5": 1024}
