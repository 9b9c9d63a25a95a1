"""Feature: AVSBench model parity (parameters, shapes), decoder quirk, backbones and weight files."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avsprep.common.errors import DataError
from avstrain.models import BACKBONES, AVSModelConfig, build_avs_model
from avstrain.models.audio import AudioEncoder
from avstrain.models.backbones import ResNet50Backbone, TinyBackbone, _pvt_class, resnet50_backbone
from avstrain.models.crop_head import CropHead
from avstrain.models.decoder import ClassifierModule, Decoder, FeatureFusionBlock, ResidualConvUnit
from avstrain.models.weights import load_strict, read_state_dict, remap_pvt_keys, remap_resnet_keys


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def meta_resnet_model():
    """The full ResNet-50 model on the meta device: exact shapes and counts, no memory or compute."""
    with torch.device("meta"):
        return build_avs_model("resnet50").eval()


@pytest.fixture(scope="module")
def resnet_model():
    torch.manual_seed(0)
    return build_avs_model("resnet50")


# --------------------------------------------------------------------------- parity with the reference


def test_resnet_model_parameter_counts(meta_resnet_model):
    m = meta_resnet_model
    assert _count(m) == 69_337_857  # reference 91,400,961 minus the unused 22,063,104 ResNet branch
    assert _count(m.backbone) == 45_571_136 - 22_063_104
    assert [_count(getattr(m, f"conv{i}")) for i in range(1, 5)] == [2_360_320, 4_719_616, 9_438_208, 18_875_392]
    for name in ("path1", "path2", "path3", "path4"):
        assert _count(getattr(m.decoder, name)) == 2_360_320
    for i in range(1, 5):
        assert _count(getattr(m, f"tpavi_b{i}")) == 165_760
    assert _count(m.decoder.output_conv) == 331_969


def test_resnet_model_shapes_at_224(meta_resnet_model):
    with torch.device("meta"):
        logits, maps, audio = meta_resnet_model(torch.empty(10, 3, 224, 224), torch.empty(10, 128))
    assert logits.shape == (10, 1, 224, 224)
    assert [tuple(m.shape) for m in maps] == [(10, 256, s, s) for s in (56, 28, 14, 7)]
    assert [tuple(a.shape) for a in audio] == [(2, 5, 256)] * 4


@pytest.fixture(scope="module")
def meta_pvt_model():
    with torch.device("meta"):
        return build_avs_model("pvt_v2_b5").eval()


def test_pvt_model_parameter_count_and_shapes(meta_pvt_model):
    m = meta_pvt_model
    captured = []
    hook = m.backbone.register_forward_hook(lambda mod, inp, out: captured.extend(out))
    with torch.device("meta"):
        logits, maps, _ = m(torch.empty(5, 3, 224, 224), torch.empty(5, 128))
    hook.remove()
    feats = captured
    assert _count(m) == 101_320_577
    assert _count(m.backbone) == 81_443_008
    assert [tuple(f.shape) for f in feats] == [(5, 64, 56, 56), (5, 128, 28, 28), (5, 320, 14, 14), (5, 512, 7, 7)]
    assert logits.shape == (5, 1, 224, 224) and maps[0].shape == (5, 256, 56, 56)
    dpr = [blk.drop_path1.drop_prob for st in m.backbone.stages for blk in st.blocks if hasattr(blk.drop_path1, "drop_prob")]
    assert max(dpr) == pytest.approx(0.1)


def test_resnet_forward_small(resnet_model):
    m = resnet_model.eval()
    frames, audio = torch.randn(5, 3, 64, 64), torch.randn(5, 128)
    with torch.no_grad():
        logits, maps, afeats = m(frames, audio)
    assert logits.shape == (5, 1, 64, 64) and bool(torch.isfinite(logits).all())
    assert [tuple(f.shape) for f in maps] == [(5, 256, s, s) for s in (16, 8, 4, 2)]
    assert all(bool((f >= 0).all()) for f in maps)  # post-ReLU maps (in-place quirk)
    assert [tuple(a.shape) for a in afeats] == [(1, 5, 256)] * 4


def test_tiny_model_trains():
    torch.manual_seed(0)
    m = build_avs_model("tiny", channel=16).train()
    logits, maps, afeats = m(torch.randn(10, 3, 64, 64), torch.randn(10, 128))
    assert logits.shape == (10, 1, 64, 64) and afeats[0].shape == (2, 5, 16)
    (logits.mean() + sum(a.mean() for a in afeats)).backward()
    assert m.tpavi_b1.W_z[1].weight.grad.abs().sum() > 0  # BN starts at 0 but learns
    assert m.tpavi_b1.align_channel.weight.grad.abs().sum() > 0
    assert m.backbone.stem[0][0].weight.grad.abs().sum() > 0


def test_tpavi_stages_and_flags():
    m = build_avs_model("tiny", tpavi_stages=(), channel=16)
    assert not any(n.startswith("tpavi") for n, _ in m.named_children())
    _, _, afeats = m(torch.randn(10, 3, 32, 32))  # no audio needed without TPAVI
    assert afeats == [None] * 4
    m = build_avs_model("tiny", tpavi_stages=(1, 3), channel=16)
    _, _, afeats = m(torch.randn(5, 3, 32, 32), torch.randn(5, 128))
    assert afeats[0] is None and afeats[2] is None and afeats[1].shape == (1, 5, 16)
    with pytest.raises(ValueError, match="needs audio"):
        m(torch.randn(5, 3, 32, 32))
    with pytest.raises(ValueError, match="multiple of T=5"):
        m(torch.randn(4, 3, 32, 32), torch.randn(4, 128))
    with pytest.raises(ValueError, match="both tpavi_va and tpavi_vv are off"):
        AVSModelConfig(tpavi_va=False)
    with pytest.raises(ValueError, match="tpavi_stages"):
        AVSModelConfig(tpavi_stages=(4,))


def _reshape_clip(x, t=5):
    return x.reshape(-1, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)  # [B*T,C,H,W] -> [B,C,T,H,W]


def test_model_wiring_vv_and_va_averaged_rows_clip_major():
    """Stage 3 by hand: rows b*T+t grouped per clip, vv and va outputs averaged, then the decoder."""
    torch.manual_seed(0)
    m = build_avs_model("tiny", tpavi_stages=(3,), tpavi_vv=True, tpavi_va=True, channel=16).eval()
    with torch.no_grad():
        m.tpavi_b4.W_z[1].weight.normal_()
        m.tpavi_b4.W_z[1].bias.normal_()
        frames, audio = torch.randn(10, 3, 32, 32), torch.randn(10, 128)
        logits, maps, afeats = m(frames, audio)
        f = m.backbone(frames)
        neck = [m.conv1(f[0]), m.conv2(f[1]), m.conv3(f[2]), m.conv4(f[3])]
        x = _reshape_clip(neck[3])
        z_vv, _ = m.tpavi_b4(x, naive=True)
        z_va, a_fea = m.tpavi_b4(x, audio.reshape(2, 5, 128), naive=True)
        z = ((z_vv + z_va) / 2).permute(0, 2, 1, 3, 4).reshape(10, 16, 1, 1)
        expected, exp_maps = m.decoder([neck[0], neck[1], neck[2], z])
    assert torch.allclose(logits, expected, atol=1e-5)
    assert torch.allclose(maps[3], exp_maps[3], atol=1e-5)
    assert torch.equal(afeats[3], a_fea)
    # clip 1's audio must not influence clip 0's frames
    audio2 = audio.clone()
    audio2[5:] = torch.randn(5, 128)
    with torch.no_grad():
        logits2, _, _ = m(frames, audio2)
    assert torch.allclose(logits2[:5], logits[:5], atol=1e-6) and not torch.allclose(logits2[5:], logits[5:])


def test_unknown_backbone_lists_keys():
    with pytest.raises(ValueError, match="resnet50, pvt_v2_b5, tiny"):
        build_avs_model("vgg16")
    assert set(BACKBONES) == {"resnet50", "pvt_v2_b5", "tiny"}


# --------------------------------------------------------------------------- neck / decoder


def test_classifier_module_dilations_and_sum():
    torch.manual_seed(0)
    neck = ClassifierModule(8, 4)
    convs = neck.conv2d_list
    assert [(c.dilation[0], c.padding[0]) for c in convs] == [(3, 3), (6, 6), (12, 12), (18, 18)]
    assert all(c.bias is not None for c in convs)
    assert abs(float(convs[0].weight.detach().std()) - 0.01) < 0.003
    x = torch.randn(2, 8, 20, 20)
    assert torch.allclose(neck(x), sum(c(x) for c in convs), atol=1e-6)


class _RefRCU(nn.Module):
    """The reference residual unit, with its in-place ReLU."""

    def __init__(self, rcu: ResidualConvUnit):
        super().__init__()
        self.conv1, self.conv2, self.relu = rcu.conv1, rcu.conv2, nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(x)
        out = self.conv1(out)
        out = self.relu(out)
        out = self.conv2(out)
        return out + x


def _ref_ffb(block: FeatureFusionBlock, *xs):
    output = xs[0]
    if len(xs) == 2:
        output += _RefRCU(block.resConfUnit1)(xs[1])
    output = _RefRCU(block.resConfUnit2)(output)
    return F.interpolate(output, scale_factor=2, mode="bilinear", align_corners=True)


def test_inplace_relu_quirk_formula():
    torch.manual_seed(0)
    rcu = ResidualConvUnit(4)
    x = torch.randn(2, 4, 6, 6)
    expected = F.relu(x) + rcu.conv2(F.relu(rcu.conv1(F.relu(x))))
    assert torch.allclose(rcu(x), expected)
    assert torch.allclose(rcu(x), _RefRCU(rcu)(x.clone()))
    rcu.inplace_relu_quirk = False
    assert torch.allclose(rcu(x), x + rcu.conv2(F.relu(rcu.conv1(F.relu(x)))))
    assert not torch.allclose(rcu(x), expected)


def test_decoder_equals_reference_inplace_and_returns_post_relu_maps():
    torch.manual_seed(0)
    dec = Decoder(8).eval()
    maps = [torch.randn(2, 8, s, s) for s in (16, 8, 4, 2)]
    with torch.no_grad():
        logits, out_maps = dec([m.clone() for m in maps])
        ref = [m.clone() for m in maps]  # the reference mutates these in place
        d4 = _ref_ffb(dec.path4, ref[3])
        d3 = _ref_ffb(dec.path3, d4, ref[2])
        d2 = _ref_ffb(dec.path2, d3, ref[1])
        d1 = _ref_ffb(dec.path1, d2, ref[0])
        ref_logits = dec.output_conv(d1)
    assert logits.shape == (2, 1, 64, 64)
    assert torch.allclose(logits, ref_logits, atol=1e-6)
    for ours, theirs, orig in zip(out_maps, ref, maps):
        assert torch.equal(ours, theirs) and torch.equal(ours, F.relu(orig))
    clean = Decoder(8, inplace_relu_quirk=False).eval()
    clean.load_state_dict(dec.state_dict())
    with torch.no_grad():
        clean_logits, clean_maps = clean([m.clone() for m in maps])
    assert torch.equal(clean_maps[0], maps[0]) and not torch.allclose(clean_logits, logits)


# --------------------------------------------------------------------------- ResNet weights files


def test_resnet_pretrained_roundtrip(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(1)
    sd = resnet50(weights=None).state_dict()  # torchvision layout, with fc
    # old torchvision files (resnet50-19c8e357.pth) have no num_batches_tracked buffers
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet50-19c8e357.pth"
    torch.save(sd, path)
    net = resnet50_backbone(pretrained=path)
    own = net.state_dict()
    for k, v in sd.items():
        if not k.startswith("fc."):
            assert torch.equal(own[k], v), k


def test_resnet_remap_avsbench_names():
    ours = ResNet50Backbone().state_dict()
    src = {}
    for k, v in ours.items():
        k2 = re.sub(r"^layer([34])\.", r"layer\g<1>_1.", k)
        src["module.resnet." + k2] = v
        if k2 != k:
            src["module.resnet." + k2.replace("_1.", "_2.", 1)] = v  # unused AVSBench branch
    src["module.resnet.fc.weight"] = torch.zeros(1000, 2048)
    src["module.conv1.conv2d_list.0.weight"] = torch.zeros(1)  # neck of a full official checkpoint
    out = remap_resnet_keys(src)
    assert set(out) == set(ours)
    assert "layer3.0.conv1.weight" in out and "layer4.2.bn3.running_var" in out


def test_resnet_wrong_files_name_the_file(tmp_path):
    bad = tmp_path / "not_resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises(DataError, match=r"not_resnet\.pth.*not ResNet-50 weights.*missing keys"):
        resnet50_backbone(pretrained=bad)
    text = tmp_path / "garbage.pth"
    text.write_text("hello")
    with pytest.raises(DataError, match=r"garbage\.pth: not a readable PyTorch weights file"):
        read_state_dict(text)
    with pytest.raises(DataError, match=r"absent\.pth: weights file not found"):
        read_state_dict(tmp_path / "absent.pth")
    tiny = TinyBackbone()
    sd = tiny.state_dict()
    sd["stem.0.0.weight"] = torch.zeros(16, 3, 5, 5)
    with pytest.raises(DataError, match=r"shape\.pth.*shape mismatches.*stem\.0\.0\.weight"):
        load_strict(tiny, sd, tmp_path / "shape.pth", "tiny")


def test_tiny_backbone_refuses_weights(tmp_path):
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_avs_model("tiny", pretrained=tmp_path / "x.pth")


# --------------------------------------------------------------------------- PVT weights


def _original_pvt_key(timm_key: str) -> str:
    """timm PVT-v2 name -> original whai362/PVT name (inverse of the remap, written independently)."""
    k = timm_key.replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
    k = k.replace("patch_embed.", "patch_embed1.")
    k = re.sub(r"^stages\.(\d)\.downsample\.", lambda m: f"patch_embed{int(m.group(1)) + 1}.", k)
    k = re.sub(r"^stages\.(\d)\.blocks\.(\d+)\.", lambda m: f"block{int(m.group(1)) + 1}.{m.group(2)}.", k)
    k = re.sub(r"^stages\.(\d)\.norm\.", lambda m: f"norm{int(m.group(1)) + 1}.", k)
    return k


def _original_layout(model: nn.Module, make=lambda shape: torch.randn(shape)) -> dict:
    sd = {_original_pvt_key(k): make(v.shape) for k, v in model.state_dict().items()}
    sd["head.weight"], sd["head.bias"] = make((1000, 512)), make((1000,))
    return sd


def test_pvt_remap_full_b5_key_layout(meta_pvt_model):
    model = meta_pvt_model.backbone
    orig = _original_layout(model, make=lambda shape: torch.empty(shape, device="meta"))
    for k in ("patch_embed1.proj.weight", "patch_embed4.norm.bias", "block1.0.attn.q.weight",
              "block1.0.attn.sr.weight", "block3.39.mlp.dwconv.dwconv.weight", "norm1.weight", "norm4.bias"):
        assert k in orig, k
    out = remap_pvt_keys(orig)
    own = model.state_dict()
    assert set(out) == set(own)
    assert all(tuple(out[k].shape) == tuple(own[k].shape) for k in own)


def test_pvt_load_original_layout_strict(tmp_path):
    """Strict load of an original-layout file into a small PVT-v2 of the same class (fast)."""
    torch.manual_seed(0)
    model = _pvt_class()(depths=(1, 2, 2, 1), embed_dims=(8, 16, 40, 64), num_heads=(1, 2, 5, 8),
                         mlp_ratios=(4, 4, 4, 4), num_classes=0)
    orig = _original_layout(model)
    orig["head.weight"], orig["head.bias"] = torch.randn(1000, 64), torch.randn(1000)
    path = tmp_path / "pvt_v2_tiny.pth"
    torch.save(orig, path)
    model.load_pretrained(path)
    sd = model.state_dict()
    assert torch.equal(sd["patch_embed.proj.weight"], orig["patch_embed1.proj.weight"])
    assert torch.equal(sd["stages.1.blocks.1.attn.q.weight"], orig["block2.1.attn.q.weight"])
    assert torch.equal(sd["stages.2.blocks.0.mlp.dwconv.weight"], orig["block3.0.mlp.dwconv.dwconv.weight"])
    assert torch.equal(sd["stages.3.downsample.proj.weight"], orig["patch_embed4.proj.weight"])
    assert torch.equal(sd["stages.0.norm.weight"], orig["norm1.weight"])
    feats = model(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 8, 16, 16), (1, 16, 8, 8), (1, 40, 4, 4), (1, 64, 2, 2)]
    del orig["block1.0.attn.q.weight"]
    torch.save(orig, path)
    with pytest.raises(DataError, match=r"pvt_v2_tiny\.pth.*missing keys.*stages\.0\.blocks\.0\.attn\.q\.weight"):
        model.load_pretrained(path)


# --------------------------------------------------------------------------- crop head, audio encoders


def test_crop_head_tiny_shapes_and_relu_flag():
    torch.manual_seed(0)
    head = CropHead(23, backbone="tiny")
    crops = torch.randn(4, 3, 64, 64)
    feat, logits = head(crops)
    assert feat.shape == (4, 512) and logits.shape == (4, 23)
    assert bool((logits >= 0).all())
    head.logits_relu = False
    feat2, raw = head(crops)
    assert torch.equal(feat2, feat) and bool((raw < 0).any())
    assert torch.equal(torch.relu(raw), logits)
    with pytest.raises(ValueError, match="resnet50, tiny"):
        CropHead(23, backbone="vgg")


def test_crop_head_resnet_structure_and_other_crop_sizes():
    head = CropHead(23, backbone="resnet50", logits_relu=False).eval()
    assert _count(head) == 23_508_032 + (2048 * 512 + 512) + (512 * 23 + 23)
    with torch.no_grad():
        feat, logits = head(torch.randn(2, 3, 96, 96))  # adaptive pool: not only 224 x 224
    assert feat.shape == (2, 512) and logits.shape == (2, 23)


def test_audio_encoders(tmp_path):
    enc = AudioEncoder("tiny")
    x = torch.randn(6, 1, 96, 64)
    out = enc(x)
    assert out.shape == (6, 128) and out.requires_grad
    assert torch.equal(enc(x[:, 0]), out)
    pre = AudioEncoder("precomputed")
    emb = torch.randn(6, 128)
    assert pre(emb) is emb or torch.equal(pre(emb), emb)
    with pytest.raises(ValueError, match=r"\[n, 128\]"):
        pre(torch.randn(6, 64))
    with pytest.raises(ValueError, match="weights file"):
        AudioEncoder("vggish")
    with pytest.raises(ValueError, match="vggish, tiny, precomputed"):
        AudioEncoder("wav2vec")


def test_vggish_encoder_frozen(tmp_path):
    vggish = pytest.importorskip("avsprep.audio.vggish")
    torch.manual_seed(0)
    path = tmp_path / "vggish.pth"
    with torch.device("meta"):
        shapes = vggish.VGGish().state_dict()
    torch.save({k: torch.full(v.shape, 0.01, dtype=torch.float16) for k, v in shapes.items()}, path)
    enc = AudioEncoder("vggish", weights=path).train()
    assert not enc.net.training  # stays in eval mode when the parent trains
    assert not any(p.requires_grad for p in enc.parameters())
    out = enc(torch.rand(3, 1, 96, 64))
    assert out.shape == (3, 128) and not out.requires_grad and bool((out > 0).all())


@pytest.mark.slow
def test_real_models_at_224_and_full_pvt_b5_load(tmp_path, resnet_model):
    """Real compute at the reference resolution, and a strict load of a full-size original PVT-v2-b5 file."""
    with torch.no_grad():
        logits, maps, _ = resnet_model.eval()(torch.randn(5, 3, 224, 224), torch.randn(5, 128))
    assert logits.shape == (5, 1, 224, 224) and bool(torch.isfinite(logits).all())
    assert [m.shape[-1] for m in maps] == [56, 28, 14, 7]
    pvt = build_avs_model("pvt_v2_b5").backbone
    orig = _original_layout(pvt)
    path = tmp_path / "pvt_v2_b5.pth"
    torch.save(orig, path)
    fresh = build_avs_model("pvt_v2_b5", pretrained=path).backbone
    assert torch.equal(fresh.state_dict()["stages.2.blocks.39.attn.q.weight"], orig["block3.39.attn.q.weight"])
