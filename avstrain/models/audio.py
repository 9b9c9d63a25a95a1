"""Audio encoders: log-mel [n,1,96,64] (or stored embeddings) -> [n,128].

* ``vggish``: ``avsprep.audio.VGGish`` with official weights, frozen (eval mode,
  no gradients, stays in eval when the parent model is put in train mode), as
  AVSBench does. ``weights_from_checkpoint=True`` builds the same frozen
  architecture without a file, for a checkpoint's state dict to be loaded next.
* ``tiny``: a small trainable CNN, for when no VGGish weights are available.
* ``precomputed``: the input already is the [n,128] embedding (shards built with
  ``--vggish-weights``); passed through unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from avsprep.audio import VGGish, load_vggish

KINDS = ("vggish", "tiny", "precomputed")


class TinyAudioNet(nn.Module):
    """Three strided conv-BN-ReLU layers, global average pool, Linear -> 128."""

    def __init__(self, out_dim: int = 128, width: int = 16):
        super().__init__()
        layers, cin = [], 1
        for cout in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # [n, 1, 96, 64] -> [n, 64, 12, 8]
        return self.fc(x.mean(dim=(2, 3)))  # [n, 64] -> [n, 128]


class AudioEncoder(nn.Module):
    """``AudioEncoder(kind, weights=None)``; ``forward(x) -> [n, 128]``.

    ``x``: log-mel ``[n,1,96,64]`` or ``[n,96,64]`` for vggish/tiny; ``[n,128]`` for precomputed.
    ``weights``: the VGGish weight file (vggish only; loaded with ``avsprep.audio.load_vggish``).
    ``weights_from_checkpoint``: build the architecture only (vggish: a frozen, randomly
    initialised ``VGGish``); the caller loads a checkpoint's state dict into it next.
    """

    def __init__(self, kind: str = "tiny", weights: str | Path | None = None, relu: bool = True, *,
                 weights_from_checkpoint: bool = False):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown audio encoder {kind!r}; choose one of: {', '.join(KINDS)}")
        if weights is not None and (kind != "vggish" or weights_from_checkpoint):
            raise ValueError(f"the {kind!r} audio encoder takes no weights file here"
                             + ("; its weights come from the checkpoint" if weights_from_checkpoint
                                else "; leave weights unset"))
        self.kind = kind
        self.out_dim = 128
        self.net: nn.Module | None = None
        if kind == "vggish":
            if weights_from_checkpoint:
                self.net = VGGish(relu=relu)
            elif weights is None:
                raise ValueError("the 'vggish' audio encoder needs its weights file (vggish-10086976.pth), "
                                 "or weights_from_checkpoint=True to load a checkpoint's state dict")
            else:
                self.net = load_vggish(weights, relu=relu)
            self.net.requires_grad_(False).eval()
        elif kind == "tiny":
            self.net = TinyAudioNet()

    @property
    def frozen(self) -> bool:
        return self.kind != "tiny"

    def train(self, mode: bool = True) -> "AudioEncoder":
        super().train(mode)
        if self.kind == "vggish":
            self.net.eval()  # frozen feature extractor: always in eval mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "precomputed":
            if x.shape[-1] != self.out_dim:
                raise ValueError(f"precomputed audio embeddings must be [n, 128], got {tuple(x.shape)}")
            return x.reshape(-1, self.out_dim)
        if x.dim() == 3:
            x = x.unsqueeze(1)  # [n, 96, 64] -> [n, 1, 96, 64]
        if self.kind == "vggish":
            with torch.no_grad():
                return self.net(x)
        return self.net(x)
