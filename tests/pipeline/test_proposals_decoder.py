"""SharedImageDecoder against the released MaskDecoder: same outputs for the same prompts."""

from __future__ import annotations

import pytest
import torch

from pipeline.proposals.decoder import SharedImageDecoder


def _released_sam_parts(package: str, seed: int = 0):
    """A randomly initialised prompt encoder + mask decoder of the released architecture."""
    modeling = pytest.importorskip(f"{package}.modeling")
    torch.manual_seed(seed)
    side = 16  # image embedding 16x16 (a 256 input): the same code paths as 64x64, in milliseconds
    prompt_encoder = modeling.PromptEncoder(
        embed_dim=256, image_embedding_size=(side, side), input_image_size=(side * 16, side * 16), mask_in_chans=16
    )
    decoder = modeling.MaskDecoder(
        num_multimask_outputs=3,
        transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    # Non-trivial LayerNorm affine parameters and embeddings so that nothing cancels by accident.
    with torch.no_grad():
        for module in decoder.modules():
            if isinstance(module, torch.nn.LayerNorm) or type(module).__name__ == "LayerNorm2d":
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        prompt_encoder.no_mask_embed.weight.normal_()
    return prompt_encoder.eval(), decoder.eval(), side


@pytest.mark.parametrize("package", ["mobile_sam", "segment_anything"])
def test_shared_decoder_matches_the_released_mask_decoder(package):
    prompt_encoder, decoder, side = _released_sam_parts(package)
    embedding = torch.randn(1, 256, side, side)
    points = torch.rand(5, 1, 2) * side * 16
    with torch.inference_mode():
        sparse, dense = prompt_encoder(points=(points, torch.ones(5, 1)), boxes=None, masks=None)
        pe = prompt_encoder.get_dense_pe()
        want_masks, want_iou = decoder(embedding, pe, sparse, dense, multimask_output=True)
        fast = SharedImageDecoder(decoder, embedding, pe, dense[:1])
        tokens, image = fast.transformer(sparse)
        got_iou = fast.iou(tokens)[:, 1:]
        got_masks = fast.masks(tokens, image, which=(1, 2, 3))
        # and a subset of prompts / tokens, as the generator asks for them
        some = fast.masks(tokens[[0, 3]], image[[0, 3]], which=(2,))
    assert got_masks.shape == want_masks.shape == (5, 3, side * 4, side * 4)
    torch.testing.assert_close(got_iou, want_iou, rtol=1e-4, atol=1e-4)
    scale = want_masks.abs().max()
    torch.testing.assert_close(got_masks / scale, want_masks / scale, rtol=0, atol=1e-4)
    torch.testing.assert_close(some[:, 0] / scale, want_masks[[0, 3], 1] / scale, rtol=0, atol=1e-4)


def test_shared_decoder_rejects_a_transformer_without_skipped_first_pe():
    prompt_encoder, decoder, side = _released_sam_parts("mobile_sam")
    decoder.transformer.layers[0].skip_first_layer_pe = False
    with pytest.raises(ValueError, match="skips the PE"):
        SharedImageDecoder(
            decoder, torch.zeros(1, 256, side, side), prompt_encoder.get_dense_pe(), torch.zeros(1, 256, side, side)
        )
