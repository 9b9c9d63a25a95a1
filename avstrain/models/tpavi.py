"""TPAVI: temporal pixel-wise audio-visual interaction (AVSBench, docs/reference/avsbench.md section 3.3).

Mode ``dot`` only (the one the published model uses): with N = T*H*W positions,
``f = theta(x)^T phi(a) / N`` (no softmax) and ``y = f g(x)``, then
``z = LayerNorm_C(W_z(y) + x)``.

The N x N matrix is never needed. ``dot`` attention without softmax is linear,
and the audio map is constant over H x W, so for position i = (t_i, h, w)

    y_i = 1/N * sum_j (theta_i . phi_{t_j}) g_j
        = 1/N * sum_t (theta_i . phi_t) * sum_{hw} g_{t,hw}
        = 1/T * sum_t (theta_i . phi_t) * mean_hw(g(x))_t          (O(N*T))

and mean_hw(g(x)) = g(mean_hw(x)) since g is affine. For visual self-attention
(``vv``: x in place of audio) the key map varies over H x W, but the product is
still associative: y = theta^T (phi g^T) / N, O(N*C'^2). ``naive=True`` builds
the full N x N matrix exactly as the reference does; tests use it to check both.
"""

from __future__ import annotations

import torch
from torch import nn


class TPAVIModule(nn.Module):
    """One TPAVI block on ``x [B, C, T, H, W]`` with audio ``[B, T, audio_dim]`` (or None for vv).

    Parameters (C = in_channels, C' = C // 2), names as in the reference:
    ``align_channel`` Linear(audio_dim, C); ``g``, ``theta``, ``phi`` Conv3d 1x1x1 C -> C';
    ``W_z`` = Conv3d C' -> C + BatchNorm3d(C) with weight and bias 0 (the block
    starts as LayerNorm(x)); ``norm_layer`` LayerNorm(C) over channels.
    """

    def __init__(self, in_channels: int = 256, mode: str = "dot", audio_dim: int = 128, naive: bool = False,
                 audio_bias: bool = True):
        super().__init__()
        if mode != "dot":
            raise ValueError(f"TPAVI mode {mode!r} is not supported; only 'dot' (the published model)")
        self.mode = mode
        self.in_channels = in_channels
        self.inter_channels = max(in_channels // 2, 1)
        self.naive = naive  # True: full N x N attention matrix (reference form, memory-hungry)
        c, ci = in_channels, self.inter_channels
        self.align_channel = nn.Linear(audio_dim, c, bias=audio_bias)  # AVSS: no bias (zero audio stays zero)
        self.g = nn.Conv3d(c, ci, kernel_size=1)
        self.theta = nn.Conv3d(c, ci, kernel_size=1)
        self.phi = nn.Conv3d(c, ci, kernel_size=1)
        self.W_z = nn.Sequential(nn.Conv3d(ci, c, kernel_size=1), nn.BatchNorm3d(c))
        nn.init.constant_(self.W_z[1].weight, 0)
        nn.init.constant_(self.W_z[1].bias, 0)
        self.norm_layer = nn.LayerNorm(c)

    def forward(
        self, x: torch.Tensor, audio: torch.Tensor | None = None, naive: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(z [B,C,T,H,W], a_fea [B,T,C] or None)``; audio None = visual self-attention."""
        naive = self.naive if naive is None else naive
        b, c, t, h, w = x.shape
        a_fea = None
        if audio is not None:
            a_fea = self.align_channel(audio)  # [B, T, 128] -> [B, T, C]
            a_map = a_fea.permute(0, 2, 1)[..., None, None]  # [B, T, C] -> [B, C, T, 1, 1]
        if naive:
            y = self._naive(x, None if audio is None else a_map.expand(b, c, t, h, w))
        elif audio is not None:
            y = self._factorised_va(x, a_map)
        else:
            y = self._associative_vv(x)
        z = self.W_z(y) + x  # [B, C', T, H, W] -> [B, C, T, H, W]
        z = self.norm_layer(z.permute(0, 2, 3, 4, 1))  # [B, C, T, H, W] -> [B, T, H, W, C], LN over C
        return z.permute(0, 4, 1, 2, 3), a_fea  # [B, T, H, W, C] -> [B, C, T, H, W]

    def _naive(self, x: torch.Tensor, key_map: torch.Tensor | None) -> torch.Tensor:
        """Reference form: f = theta^T phi [B,N,N], y = (f/N) g. key_map None -> x (vv)."""
        b, c, t, h, w = x.shape
        ci = self.inter_channels
        key_map = x if key_map is None else key_map
        g_x = self.g(x).reshape(b, ci, -1).permute(0, 2, 1)  # [B, C', T, H, W] -> [B, N, C']
        theta_x = self.theta(x).reshape(b, ci, -1).permute(0, 2, 1)  # [B, C', T, H, W] -> [B, N, C']
        phi_a = self.phi(key_map).reshape(b, ci, -1)  # [B, C', T, H, W] -> [B, C', N]
        f = torch.matmul(theta_x, phi_a)  # [B, N, N]
        y = torch.matmul(f / f.size(-1), g_x)  # [B, N, C']
        return y.permute(0, 2, 1).reshape(b, ci, t, h, w)  # [B, N, C'] -> [B, C', T, H, W]

    def _factorised_va(self, x: torch.Tensor, a_map: torch.Tensor) -> torch.Tensor:
        """Exact O(N*T) form for audio keys constant over H x W (see module docstring)."""
        b, c, t, h, w = x.shape
        theta_x = self.theta(x)  # [B, C', T, H, W]
        phi_a = self.phi(a_map).flatten(2)  # [B, C', T, 1, 1] -> [B, C', T]
        g_mean = self.g(x.mean(dim=(3, 4), keepdim=True)).flatten(2)  # [B, C', T, 1, 1] -> [B, C', T] (= mean_hw g(x))
        s = torch.einsum("bcthw,bcs->bsthw", theta_x, phi_a)  # theta_i . phi_s: [B, T(s), T, H, W]
        return torch.einsum("bsthw,bcs->bcthw", s, g_mean) / t  # [B, C', T, H, W]

    def _associative_vv(self, x: torch.Tensor) -> torch.Tensor:
        """Visual self-attention without the N x N matrix: y = theta^T (phi g^T) / N."""
        b, c, t, h, w = x.shape
        n = t * h * w
        theta_x = self.theta(x).flatten(2)  # [B, C', T, H, W] -> [B, C', N]
        phi_x = self.phi(x).flatten(2)  # [B, C', N]
        g_x = self.g(x).flatten(2)  # [B, C', N]
        m = torch.einsum("bkn,bcn->bkc", phi_x, g_x) / n  # [B, C'(key), C'(value)]
        y = torch.einsum("bkn,bkc->bcn", theta_x, m)  # [B, C', N]
        return y.reshape(b, self.inter_channels, t, h, w)  # [B, C', N] -> [B, C', T, H, W]
