"""BiLevelRoutingAttention (rayleizhu/BiFormer nchwBRA): math against the restated reference, sizes, argument checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from yolo_attn.modules import BiLevelRoutingAttention, BlockArgumentError
from yolo_attn.modules.random_weights import randomize_

ATOL = 1e-5


def _grid2seq(x: torch.Tensor, region_size: tuple[int, int], num_heads: int):
    """rrsda.py ``_grid2seq``: (B, C, H, W) -> (B, heads, regions, region tokens, head_dim)."""
    B, C, H, W = x.size()
    region_h, region_w = H // region_size[0], W // region_size[1]
    x = x.view(B, num_heads, C // num_heads, region_h, region_size[0], region_w, region_size[1])
    x = torch.einsum("bmdhpwq->bmhwpqd", x).flatten(2, 3).flatten(-3, -2)
    return x, region_h, region_w


def _seq2grid(x: torch.Tensor, region_h: int, region_w: int, region_size: tuple[int, int]) -> torch.Tensor:
    """rrsda.py ``_seq2grid``: the inverse of ``_grid2seq``."""
    bs, nhead, _, _, head_dim = x.size()
    x = x.view(bs, nhead, region_h, region_w, region_size[0], region_size[1], head_dim)
    return torch.einsum("bmhwpqd->bmdhpwq", x).reshape(
        bs, nhead * head_dim, region_h * region_size[0], region_w * region_size[1]
    )


def regional_routing_attention_torch(query, key, value, scale, region_graph, region_size, kv_region_size=None):
    """rayleizhu/BiFormer ``ops/torch/rrsda.py`` (commit 5b15121), restated; auto_pad=True (its default)."""
    kv_region_size = kv_region_size or region_size
    bs, nhead, q_nregion, topk = region_graph.size()
    _, _, Hq, Wq = query.size()
    q_pad_b = (region_size[0] - Hq % region_size[0]) % region_size[0]
    q_pad_r = (region_size[1] - Wq % region_size[1]) % region_size[1]
    if q_pad_b > 0 or q_pad_r > 0:
        query = F.pad(query, (0, q_pad_r, 0, q_pad_b))
    _, _, Hk, Wk = key.size()
    kv_pad_b = (kv_region_size[0] - Hk % kv_region_size[0]) % kv_region_size[0]
    kv_pad_r = (kv_region_size[1] - Wk % kv_region_size[1]) % kv_region_size[1]
    if kv_pad_r > 0 or kv_pad_b > 0:
        key = F.pad(key, (0, kv_pad_r, 0, kv_pad_b))
        value = F.pad(value, (0, kv_pad_r, 0, kv_pad_b))
    query, q_region_h, q_region_w = _grid2seq(query, region_size=region_size, num_heads=nhead)
    key, _, _ = _grid2seq(key, region_size=kv_region_size, num_heads=nhead)
    value, _, _ = _grid2seq(value, region_size=kv_region_size, num_heads=nhead)
    bs, nhead, kv_nregion, kv_region_size, head_dim = key.size()
    graph = region_graph.view(bs, nhead, q_nregion, topk, 1, 1).expand(-1, -1, -1, -1, kv_region_size, head_dim)
    key_g = torch.gather(
        key.view(bs, nhead, 1, kv_nregion, kv_region_size, head_dim).expand(-1, -1, query.size(2), -1, -1, -1),
        dim=3,
        index=graph,
    )
    value_g = torch.gather(
        value.view(bs, nhead, 1, kv_nregion, kv_region_size, head_dim).expand(-1, -1, query.size(2), -1, -1, -1),
        dim=3,
        index=graph,
    )
    attn = (query * scale) @ key_g.flatten(-3, -2).transpose(-1, -2)
    attn = torch.softmax(attn, dim=-1)
    output = attn @ value_g.flatten(-3, -2)
    output = _seq2grid(output, region_h=q_region_h, region_w=q_region_w, region_size=region_size)
    if q_pad_b > 0 or q_pad_r > 0:
        output = output[:, :, :Hq, :Wq]
    return output, attn


class nchwBRA(nn.Module):
    """rayleizhu/BiFormer ``ops/bra_nchw.py`` ``nchwBRA`` (commit b0ccf7a), restated with the torch backend."""

    def __init__(self, dim, num_heads=8, n_win=7, qk_scale=None, topk=4, side_dwconv=3, auto_pad=False):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        assert self.dim % num_heads == 0
        self.head_dim = self.dim // self.num_heads
        self.scale = qk_scale or self.dim**-0.5
        self.lepe = (
            nn.Conv2d(dim, dim, kernel_size=side_dwconv, stride=1, padding=side_dwconv // 2, groups=dim)
            if side_dwconv > 0
            else lambda x: torch.zeros_like(x)
        )
        self.topk = topk
        self.n_win = n_win
        self.qkv_linear = nn.Conv2d(self.dim, 3 * self.dim, kernel_size=1)
        self.output_linear = nn.Conv2d(self.dim, self.dim, kernel_size=1)

    def forward(self, x):
        _, _, H, W = x.size()
        region_size = (H // self.n_win, W // self.n_win)
        qkv = self.qkv_linear.forward(x)
        q, k, v = qkv.chunk(3, dim=1)
        q_r = F.avg_pool2d(q.detach(), kernel_size=region_size, ceil_mode=True, count_include_pad=False)
        k_r = F.avg_pool2d(k.detach(), kernel_size=region_size, ceil_mode=True, count_include_pad=False)
        q_r = q_r.permute(0, 2, 3, 1).flatten(1, 2)
        k_r = k_r.flatten(2, 3)
        a_r = q_r @ k_r
        _, idx_r = torch.topk(a_r, k=self.topk, dim=-1)
        idx_r = idx_r.unsqueeze_(1).expand(-1, self.num_heads, -1, -1)
        output, _ = regional_routing_attention_torch(
            query=q, key=k, value=v, scale=self.scale, region_graph=idx_r, region_size=region_size
        )
        output = output + self.lepe(v)
        return self.output_linear(output)


ARGS = [  # (C, num_heads, n_win, qk_scale, topk, side_dwconv)
    (32, 8, 7, None, 4, 3),
    (48, 4, 3, 0.3, 2, 5),
    (16, 2, 2, None, 3, 0),
]


@pytest.mark.parametrize("args", ARGS)
@pytest.mark.parametrize("shape", [(2, 14, 14), (1, 15, 20), (1, 20, 9)])
def test_matches_the_reference_and_loads_its_state_dict_both_ways(args, shape):
    c, *rest = args
    reference = randomize_(nchwBRA(c, *rest), 1).eval()
    ours = BiLevelRoutingAttention(c, *rest).eval()
    assert ours.load_state_dict(reference.state_dict(), strict=True) is not None
    x = torch.randn(shape[0], c, *shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=ATOL, rtol=0)
    fresh = nchwBRA(c, *rest)
    assert fresh.load_state_dict(randomize_(BiLevelRoutingAttention(c, *rest), 2).state_dict(), strict=True)


def _attend_all(block: BiLevelRoutingAttention, x: torch.Tensor) -> torch.Tensor:
    """The block where every region sees every region: the reference with topk = number of regions."""
    h, w = x.shape[2:]
    rh, rw = max(h // block.n_win, 1), max(w // block.n_win, 1)
    regions = -(-h // rh) * -(-w // rw)
    reference = nchwBRA(block.dim, block.num_heads, block.n_win, block.scale, regions, 3)
    reference.load_state_dict(block.state_dict())
    return _forward_with_region(reference, x, (rh, rw))


def _forward_with_region(ref: nchwBRA, x: torch.Tensor, region_size: tuple[int, int]) -> torch.Tensor:
    """``nchwBRA.forward`` with a given region size (for maps the reference's ``H // n_win`` makes 0)."""
    q, k, v = ref.qkv_linear(x).chunk(3, dim=1)
    q_r = F.avg_pool2d(q, kernel_size=region_size, ceil_mode=True, count_include_pad=False).permute(0, 2, 3, 1)
    k_r = F.avg_pool2d(k, kernel_size=region_size, ceil_mode=True, count_include_pad=False).flatten(2, 3)
    _, idx_r = torch.topk(q_r.flatten(1, 2) @ k_r, k=ref.topk, dim=-1)
    idx_r = idx_r.unsqueeze(1).expand(-1, ref.num_heads, -1, -1)
    out, _ = regional_routing_attention_torch(q, k, v, ref.scale, idx_r, region_size)
    return ref.output_linear(out + ref.lepe(v))


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (6, 9)])
def test_small_maps_run_and_attend_to_every_region_when_there_are_fewer_than_topk(size):
    block = randomize_(BiLevelRoutingAttention(16, 2, 7, None, 64), 0).eval()  # topk above any region count here
    x = torch.randn(2, 16, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = block(x)
        assert y.shape == x.shape and bool(torch.isfinite(y).all())
        torch.testing.assert_close(y, _attend_all(block, x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (2, 3), (4, 4), (7, 7), (8, 6), (15, 20), (20, 15)])
def test_runs_at_every_size_with_the_defaults(size):
    block = randomize_(BiLevelRoutingAttention(32), 0)
    x = torch.randn(1, 32, *size, requires_grad=True)
    y = block.train()(x)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())
    y.square().mean().backward()
    assert bool(torch.isfinite(x.grad).all())


def test_routing_and_softmax_stay_fp32_under_autocast():
    block = randomize_(BiLevelRoutingAttention(32), 0).eval()
    x = torch.randn(1, 32, 15, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = block(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = block(x)
    assert got.dtype == torch.bfloat16
    assert float((got.float() - expected).abs().max()) < 0.05 * float(expected.abs().max())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"c1": 20, "num_heads": 8}, r"num_heads=8 must divide the 20 input channels .* e\.g\. num_heads=5"),
        ({"c1": 64, "num_heads": 0}, r"num_heads \(number of attention heads\) must be a positive integer"),
        ({"c1": 64, "n_win": 0}, r"n_win \(number of windows per side\) must be a positive integer"),
        ({"c1": 64, "topk": 2.5}, r"topk \(number of routed regions\) must be a positive integer"),
        ({"c1": 64, "qk_scale": "0.1"}, r"qk_scale \(logit scale\) must be null or a non-negative number"),
        ({"c1": 64, "side_dwconv": 4}, r"side_dwconv .* must be 0 \(none\) or an odd positive integer, got 4"),
        ({"c1": 64, "side_dwconv": -1}, r"side_dwconv .* got -1"),
    ],
)
def test_bad_arguments_are_refused_at_build_time(kwargs, match):
    with pytest.raises(BlockArgumentError, match=rf"BiLevelRoutingAttention: {match}"):
        BiLevelRoutingAttention(**kwargs)
