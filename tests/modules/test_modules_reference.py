"""Each block computes what its paper's reference code computes.

Every ``reference_*`` function below restates the authors' forward pass in their own tensor layout and operators
(adaptive/kernel-sized pooling, Linear layers on flattened vectors, cat + split + permute, the [B, C, P, N] patch
layout of ml-cvnets), reading the weights of our block. Our blocks use other, export-friendly operators; the outputs
must still agree, in training mode (BatchNorm on batch statistics) and in eval mode.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules import (
    CBAM,
    ECA,
    MHSA,
    SAM,
    SE,
    ChannelAttention,
    CoordAtt,
    SeparableSelfAttention,
    SpatialAttention,
    eca_kernel_size,
)
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


def batch_norm(bn: nn.Module, y: torch.Tensor, training: bool) -> torch.Tensor:
    """Apply ``bn`` functionally on copies of its running statistics (the block's own forward updates the originals)."""
    if isinstance(bn, nn.Identity):
        return y
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    return F.batch_norm(y, mean, var, bn.weight, bn.bias, training, 0.0, bn.eps)


def reference_se(block: SE, x: torch.Tensor) -> torch.Tensor:
    """SENet: global average pool, FC -> ReLU -> FC -> sigmoid, channel-wise scale."""
    z = F.adaptive_avg_pool2d(x, 1).flatten(1)
    s = F.relu(F.linear(z, block.fc1.weight.flatten(1), block.fc1.bias))
    s = torch.sigmoid(F.linear(s, block.fc2.weight.flatten(1), block.fc2.bias))
    return x * s[:, :, None, None]


def reference_channel_gate(block: ChannelAttention, x: torch.Tensor) -> torch.Tensor:
    """Jongchan/attention-module ChannelGate: kernel-sized avg and max pooling, Flatten + Linear MLP, sum, sigmoid."""
    first, last = block.mlp[0], block.mlp[2]

    def mlp(v: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(F.linear(v.flatten(1), first.weight.flatten(1), first.bias))
        return F.linear(hidden, last.weight.flatten(1), last.bias)

    size = (x.size(2), x.size(3))
    raw = mlp(F.avg_pool2d(x, size, stride=size)) + mlp(F.max_pool2d(x, size, stride=size))
    return x * torch.sigmoid(raw).unsqueeze(2).unsqueeze(3).expand_as(x)


def reference_spatial_gate(block: SpatialAttention, x: torch.Tensor, training: bool) -> torch.Tensor:
    """Jongchan/attention-module SpatialGate: ChannelPool [max, mean] -> conv (-> BN) -> sigmoid, broadcast scale."""
    mean = torch.mean(x, 1).unsqueeze(1)
    compressed = torch.cat((torch.max(x, 1)[0].unsqueeze(1), mean), dim=1) if block.pool == "max_mean" else mean
    kh, kw = block.conv.kernel_size
    out = F.conv2d(compressed, block.conv.weight, block.conv.bias, padding=((kh - 1) // 2, (kw - 1) // 2))
    return x * torch.sigmoid(batch_norm(block.bn, out, training))


def reference_eca(block: ECA, x: torch.Tensor) -> torch.Tensor:
    """BangguWu/ECANet eca_layer: AdaptiveAvgPool2d(1), Conv1d over channels (no bias), sigmoid, scale."""
    y = F.adaptive_avg_pool2d(x, 1)
    k = block.conv.kernel_size[0]
    y = F.conv1d(y.squeeze(-1).transpose(-1, -2), block.conv.weight, padding=(k - 1) // 2)
    return x * torch.sigmoid(y.transpose(-1, -2).unsqueeze(-1)).expand_as(x)


def reference_sam(block: SAM, x: torch.Tensor, training: bool) -> torch.Tensor:
    """Darknet: [convolutional] size=1 batch_normalize=1 activation=logistic, then [sam] from=-2 (element product)."""
    logistic = torch.sigmoid(batch_norm(block.bn, F.conv2d(x, block.conv.weight), training))
    return x * logistic


def reference_coord_att(block: CoordAtt, x: torch.Tensor, training: bool) -> torch.Tensor:
    """houqb/CoordAttention CoordAtt: directional adaptive pooling, cat, conv1-bn1-h_swish, split, permute, gates."""
    identity = x
    _, _, h, w = x.size()
    x_h = F.adaptive_avg_pool2d(x, (h, 1))
    x_w = F.adaptive_avg_pool2d(x, (1, w)).permute(0, 1, 3, 2)
    y = torch.cat([x_h, x_w], dim=2)
    y = batch_norm(block.bn1, F.conv2d(y, block.conv1.weight, block.conv1.bias), training)
    y = y * F.relu6(y + 3) / 6  # h_swish
    x_h, x_w = torch.split(y, [h, w], dim=2)
    x_w = x_w.permute(0, 1, 3, 2)
    a_h = F.conv2d(x_h, block.conv_h.weight, block.conv_h.bias).sigmoid()
    a_w = F.conv2d(x_w, block.conv_w.weight, block.conv_w.bias).sigmoid()
    return identity * a_w * a_h


def reference_separable(block: SeparableSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """ml-cvnets LinearAttnFFN's attention half: x + LinearSelfAttention(GroupNorm(1)(x)) on [B, C, P, N], P = 1."""
    b, c, h, w = x.shape
    normed = F.group_norm(x, 1, block.norm.weight, block.norm.bias, block.norm.eps)
    patches = normed.reshape(b, c, 1, h * w)  # [B, C, P, N] with one pixel per patch
    qkv = F.conv2d(patches, block.qkv.weight, block.qkv.bias)
    query, key, value = torch.split(qkv, split_size_or_sections=[1, c, c], dim=1)
    context_scores = F.softmax(query, dim=-1)
    context_vector = torch.sum(key * context_scores, dim=-1, keepdim=True)
    out = F.relu(value) * context_vector.expand_as(value)
    out = F.conv2d(out, block.proj.weight, block.proj.bias)
    return x + out.reshape(b, c, h, w)


@pytest.fixture(params=[True, False], ids=["train", "eval"])
def training(request: pytest.FixtureRequest) -> bool:
    return request.param


def run(block: nn.Module, x: torch.Tensor, training: bool) -> torch.Tensor:
    block.train(training)
    with torch.no_grad():
        return block(x)


X = torch.randn(3, 32, 9, 13, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("r", [1, 4, 16, 32])
def test_se_matches_senet(r, training):
    block = randomize_(SE(32, r))
    assert block.fc1.out_channels == 32 // r
    torch.testing.assert_close(run(block, X, training), reference_se(block, X), atol=ATOL, rtol=0)


@pytest.mark.parametrize("r", [1, 8, 16])
def test_channel_attention_matches_cbam_channel_gate(r, training):
    block = randomize_(ChannelAttention(32, r))
    torch.testing.assert_close(run(block, X, training), reference_channel_gate(block, X), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("k", "pool", "bn"),
    [(7, "max_mean", False), (7, "max_mean", True), ((3, 1), "mean", False), ((1, 5), "mean", True)],
)
def test_spatial_attention_matches_cbam_spatial_gate(k, pool, bn, training):
    block = randomize_(SpatialAttention(32, k, pool, bn))
    expected = reference_spatial_gate(block, X, training)
    torch.testing.assert_close(run(block, X, training), expected, atol=ATOL, rtol=0)


def test_cbam_is_channel_gate_then_spatial_gate_with_batchnorm(training):
    block = randomize_(CBAM(32, 8, 3))
    assert isinstance(block.spatial_attention.bn, nn.BatchNorm2d) and block.spatial_attention.conv.bias is None
    assert block.spatial_attention.conv.kernel_size == (3, 3) and block.spatial_attention.pool == "max_mean"
    refined = reference_channel_gate(block.channel_attention, X)
    expected = reference_spatial_gate(block.spatial_attention, refined, training)
    torch.testing.assert_close(run(block, X, training), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("k", [None, 1, 3, 5, 9])
def test_eca_matches_ecanet(k, training):
    block = randomize_(ECA(32, k))
    assert block.conv.bias is None
    torch.testing.assert_close(run(block, X, training), reference_eca(block, X), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("channels", "k"), [(1, 1), (16, 3), (32, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)]
)
def test_eca_adaptive_kernel_follows_the_paper_formula(channels, k):
    # k = |log2(C)/2 + 1/2| rounded to odd: e.g. C=256 -> 4.5 -> 5, C=2048 -> 6 -> 7, C=64 -> 3.5 -> 3
    assert eca_kernel_size(channels) == k
    assert ECA(channels).k == ECA(channels).conv.kernel_size[0] == k


def test_sam_matches_darknet_pointwise_attention(training):
    block = randomize_(SAM(32))
    assert block.conv.kernel_size == (1, 1) and block.conv.bias is None
    torch.testing.assert_close(run(block, X, training), reference_sam(block, X, training), atol=ATOL, rtol=0)


@pytest.mark.parametrize(("channels", "r", "mip"), [(32, 32, 8), (256, 32, 8), (512, 32, 16), (64, 4, 16)])
def test_coord_att_hidden_width_is_max_8_c_over_r(channels, r, mip):
    assert CoordAtt(channels, r).conv1.out_channels == mip


@pytest.mark.parametrize("shape", [(3, 32, 9, 13), (2, 32, 16, 16), (1, 32, 1, 7)])
def test_coord_att_matches_reference(shape, training):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    block = randomize_(CoordAtt(32))
    torch.testing.assert_close(run(block, x, training), reference_coord_att(block, x, training), atol=ATOL, rtol=0)


@pytest.mark.parametrize("heads", [1, 4, 8])
def test_mhsa_matches_torch_multihead_attention(heads):
    block = randomize_(MHSA(32, heads)).eval()
    mha = nn.MultiheadAttention(32, heads, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(block.qkv.weight.flatten(1))
        mha.in_proj_bias.copy_(block.qkv.bias)
        mha.out_proj.weight.copy_(block.proj.weight.flatten(1))
        mha.out_proj.bias.copy_(block.proj.bias)
        tokens = X.flatten(2).transpose(1, 2)  # (B, H*W, C)
        attended, weights = mha(tokens, tokens, tokens, need_weights=True, average_attn_weights=False)
        expected = X + attended.transpose(1, 2).reshape(X.shape)
        # matmul order differs from torch's fused kernel; a wrong head or channel layout would differ by O(1)
        torch.testing.assert_close(block(X), expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(block.attention_weights(X), weights, atol=ATOL, rtol=1e-4)


def test_separable_self_attention_matches_mobilevitv2(training):
    block = randomize_(SeparableSelfAttention(32))
    torch.testing.assert_close(run(block, X, training), reference_separable(block, X), atol=ATOL, rtol=0)
    scores = block.context_scores(X)
    assert scores.shape == (3, 1, 9, 13)
    torch.testing.assert_close(scores.sum((2, 3)), torch.ones(3, 1))
