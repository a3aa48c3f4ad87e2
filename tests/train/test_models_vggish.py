"""VGGish: the released port's state-dict layout loads with strict=True; output shape and range."""

from __future__ import annotations

import pytest
import torch

from train.models.vggish import VGGish, load_vggish

# Key -> shape of the released PyTorch port (vggish-10086976.pth), written out independently.
OFFICIAL_LAYOUT = {
    "features.0.weight": (64, 1, 3, 3),
    "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3),
    "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3),
    "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3),
    "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3),
    "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3),
    "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288),
    "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096),
    "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096),
    "embeddings.4.bias": (128,),
}


def test_official_layout_loads_strict(tmp_path) -> None:
    torch.manual_seed(0)
    state = {key: torch.randn(shape) * 0.01 for key, shape in OFFICIAL_LAYOUT.items()}
    path = tmp_path / "vggish-10086976.pth"
    torch.save(state, path)
    model = load_vggish(path)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == OFFICIAL_LAYOUT
    assert torch.equal(model.embeddings[4].bias, state["embeddings.4.bias"])
    with torch.no_grad():
        embedding = model(torch.randn(3, 96, 64))
    assert embedding.shape == (3, 128) and (embedding >= 0).all()  # last ReLU kept


def test_vggish_bad_files(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="missing.pth"):
        load_vggish(tmp_path / "missing.pth")
    state = VGGish().state_dict()
    state.pop("embeddings.4.bias")
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(RuntimeError, match="broken.pth"):
        load_vggish(path)
    with pytest.raises(ValueError, match=r"\[B,1,96,64\]"):
        VGGish()(torch.randn(2, 64, 96))
