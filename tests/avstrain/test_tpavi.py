"""Feature: TPAVI 'dot' attention, factorised O(N*T) form equal to the reference N x N form."""

from __future__ import annotations

import pytest
import torch

from avstrain.models.tpavi import TPAVIModule


def _module(c=16, seed=0, nonzero_wz=True, train=False):
    torch.manual_seed(seed)
    m = TPAVIModule(c)
    if nonzero_wz:
        bn = m.W_z[1]
        with torch.no_grad():
            bn.weight.normal_()
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    return m.train(train)


def _inputs(b=2, c=16, t=5, h=6, w=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, t, h, w, generator=g), torch.randn(b, t, 128, generator=g)


def test_initial_block_is_layernorm_of_x():
    m = TPAVIModule(16).eval()
    x, a = _inputs()
    z, a_fea = m(x, a)
    expected = m.norm_layer(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
    assert torch.equal(z, expected)  # BN weight/bias start at 0
    assert torch.allclose(a_fea, m.align_channel(a))
    assert a_fea.shape == (2, 5, 16)


@pytest.mark.parametrize("train", [False, True])
def test_factorised_equals_naive_va(train):
    m = _module(train=train)
    x, a = _inputs()
    a_map = m.align_channel(a).permute(0, 2, 1)[..., None, None]
    y_fast = m._factorised_va(x, a_map)
    y_naive = m._naive(x, a_map.expand(-1, -1, -1, 6, 7))
    assert y_fast.abs().max() > 0.05  # the attention term is not negligible
    assert torch.allclose(y_fast, y_naive, atol=1e-5, rtol=1e-5)
    z_fast, a1 = m(x, a)
    z_naive, a2 = m(x, a, naive=True)
    assert not torch.allclose(z_fast, m.norm_layer(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3), atol=1e-3)
    assert torch.allclose(z_fast, z_naive, atol=1e-5)
    assert torch.equal(a1, a2)


def test_factorised_gradients_equal_naive():
    m = _module()
    x, a = _inputs(b=1, h=4, w=5)
    x.requires_grad_(True)
    grads = []
    for naive in (False, True):
        m.zero_grad()
        x.grad = None
        z, a_fea = m(x, a, naive=naive)
        (z.square().sum() + a_fea.sum()).backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in m.parameters()])
    for g_fast, g_naive in zip(*grads):
        assert torch.allclose(g_fast, g_naive, atol=1e-4, rtol=1e-4)


def test_naive_form_matches_explicit_sum():
    """The naive path itself against y_i = 1/N sum_j (theta_i . phi_j) g_j, looped."""
    m = _module(c=4)
    x, a = _inputs(b=1, c=4, t=2, h=2, w=3)
    a_rep = m.align_channel(a).permute(0, 2, 1)[..., None, None].expand(1, 4, 2, 2, 3)
    theta = m.theta(x).reshape(2, -1)  # [C', N]
    phi = m.phi(a_rep).reshape(2, -1)
    g = m.g(x).reshape(2, -1)
    n = theta.shape[1]
    y = torch.zeros(2, n)
    for i in range(n):
        for j in range(n):
            y[:, i] += (theta[:, i] @ phi[:, j]) * g[:, j] / n
    assert torch.allclose(m._naive(x, a_rep).reshape(2, -1), y, atol=1e-6)


def test_visual_self_attention_associative_equals_naive():
    m = _module()
    x, _ = _inputs()
    z_fast, a_none = m(x)
    z_naive, _ = m(x, naive=True)
    assert a_none is None
    assert torch.allclose(z_fast, z_naive, atol=1e-5)


def test_only_dot_mode():
    with pytest.raises(ValueError, match="dot"):
        TPAVIModule(16, mode="gaussian")


def test_parameter_count_reference():
    assert sum(p.numel() for p in TPAVIModule(256).parameters()) == 165_760
