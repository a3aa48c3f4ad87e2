"""The MobileNetV2 backbone is built here (not imported from torchvision, whose import costs ~165 MB of
resident memory): it must be torchvision's network, weights, initialisation and random draws included."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from train.models.backbones import build_backbone

pytestmark = pytest.mark.usefixtures("single_thread")  # tests/train/conftest.py


def _torchvision_features() -> nn.Sequential:
    from torchvision.models.mobilenetv2 import MobileNetV2

    return nn.Sequential(*list(MobileNetV2().features.children())[:18])


def test_same_parameters_init_and_random_draws_as_torchvision() -> None:
    torch.manual_seed(3)
    ours = build_backbone("mobilenet_v2").features
    after_ours = torch.rand(4)
    torch.manual_seed(3)
    reference = _torchvision_features()
    after_reference = torch.rand(4)
    ours_state, reference_state = ours.state_dict(), reference.state_dict()
    assert list(ours_state) == list(reference_state)
    for name, tensor in reference_state.items():
        assert torch.equal(ours_state[name], tensor), name
    # A model built after the backbone draws the same numbers as before: the dropped head was drawn too.
    assert torch.equal(after_ours, after_reference)


def test_same_outputs_as_torchvision_with_the_same_weights() -> None:
    torch.manual_seed(0)
    reference = _torchvision_features().eval()
    backbone = build_backbone("mobilenet_v2").eval()
    for module in reference.modules():  # non-trivial running statistics, so BatchNorm is exercised
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    backbone.features.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = backbone(x)
        expected = x
        for index, module in enumerate(reference):
            expected = module(expected)
            if index + 1 in (4, 7, 14, 18):
                stage = {4: "res2", 7: "res3", 14: "res4", 18: "res5"}[index + 1]
                torch.testing.assert_close(out[stage], expected, rtol=1e-6, atol=1e-6)
