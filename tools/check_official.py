"""Check avstrain against the official AVSBench code on the demo data (CPU, a few minutes).

Needs a checkout of OpenNLPLab/AVSBench (it is imported from there, never copied):

    python tools/check_official.py --official /path/to/AVSBench [--clips 40] [--work DIR]
    python tools/check_official.py --official /path/to/AVSBench --setting avss [--backbone resnet50 pvt_v2_b5]

What it does, with random weights (no weight files are needed):
1. writes a demo S4 root whose metadata CSV is shuffled (not in name order, like the real CSV);
2. builds the official ``Pred_endecoder`` (ResNet-50, TPAVI 0-3, va) and its VGGish, saves the
   state dict as the official ``train.py`` does, and runs the official test loop (``S4Dataset``,
   ``mask_iou``, ``Eval_Fmeasure``, batches of 4 videos in CSV order) on the test split;
3. ``avsprep build``, ``avstrain convert --vggish-weights``, ``avstrain evaluate --json``;
4. ``avstrain convert --to official``, a strict ``load_state_dict`` into a fresh official model,
   and the largest logit difference on one clip.

``--setting avss`` (no data needed): the AVSBench-semantic round trip instead, per backbone: the
official AVSS ``Pred_endecoder`` (``tools/official_avss.py``: 71 classes, random weights) saved as
its ``avss/train.py`` saves it, ``avstrain convert`` (setting told by the head), the largest logit
difference against avstrain's model on one 10-step clip whose last 5 steps are padding (the
official ``vid_temporal_mask_flag`` = our ``frame_valid``), then ``--to official``, a strict load
into a fresh official model, and the same difference again.

Prints one JSON line last. The official loader runs one video per call (its N x N TPAVI needs
about 1 GB per video at stage 0); the official batches of 4 are then formed from those logits,
which is the same computation as its test loop (no layer mixes videos in eval mode).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", *args], env=env, check=True, capture_output=True,
                          text=True).stdout


def check_avss(official: Path, backbones: list, w: Path) -> dict:
    """The AVSS round trip (module docstring); the figures per backbone."""
    sys.path.insert(0, str(REPO / "tools"))
    from official_avss import official_avss_model

    from avstrain.checkpoints import load_checkpoint, system_from_checkpoint

    torch.Tensor.cuda = lambda self, *a, **k: self  # the official forward calls .cuda(); stay on CPU
    out = {}
    for backbone in backbones:
        d = w / "avss" / backbone
        model = official_avss_model(official, backbone, d, seed=0)
        src = d / f"AVSS_{'resnet' if backbone == 'resnet50' else 'pvt'}_miou_best.pth"
        torch.save(model.state_dict(), src)  # avss/train.py: torch.save(model.module.state_dict(), ...)
        report = json.loads(_run("avstrain", "convert", str(src), "-o", str(d / "ours.pt"), "--overwrite", "--json"))
        ours, cfg = system_from_checkpoint(load_checkpoint(d / "ours.pt"), d / "ours.pt")
        g = torch.Generator().manual_seed(1)
        frames = torch.randn(10, 3, 224, 224, generator=g)
        audio = torch.randn(10, 128, generator=g)
        valid = torch.tensor([1.0] * 5 + [0.0] * 5)  # a v1 clip: 5 real steps, 5 padded
        with torch.no_grad():
            ref = model(frames, audio, valid)[0]
            got = ours.avs.eval()(frames, audio, frame_valid=valid)[0]
            tpavi = [m for m in ours.avs.modules() if hasattr(m, "naive")]
            for m in tpavi:  # the reference N x N form: isolates the factorised TPAVI's summation order
                m.naive = True
            got_naive = ours.avs(frames, audio, frame_valid=valid)[0]
            for m in tpavi:
                m.naive = False
            # float64: what is left is the mapping, not float32 summation order (our TPAVI is factorised)
            ref64 = model.double()(frames.double(), audio.double(), valid.double())[0]
            got64 = ours.avs.double()(frames.double(), audio.double(), frame_valid=valid.double())[0]
            model.float()
        _run("avstrain", "convert", str(d / "ours.pt"), "-o", str(d / "back.pth"), "--to", "official", "--overwrite")
        back = official_avss_model(official, backbone, d, seed=2)
        back.load_state_dict(torch.load(d / "back.pth", weights_only=True), strict=True)
        with torch.no_grad():
            again = back.eval()(frames, audio, valid)[0]
        out[backbone] = {"setting_told": report["setting"], "loaded": report["loaded"],
                         "logits_shape": list(ref.shape), "logits_absmax": float(ref.abs().max()),
                         "official_vs_avstrain_maxabs": float((ref - got).abs().max()),
                         "official_vs_avstrain_naive_tpavi_maxabs": float((ref - got_naive).abs().max()),
                         "official_vs_avstrain_maxabs_float64": float((ref64 - got64).abs().max()),
                         "padded_steps_zero": bool((got[5:] == 0).all()),
                         "to_official_strict_load": True,
                         "to_official_logits_maxabs": float((ref - again).abs().max())}
        print(f"{backbone}: {out[backbone]}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path, help="OpenNLPLab/AVSBench checkout")
    ap.add_argument("--clips", type=int, default=40, help="demo clips (test split gets ~1/7)")
    ap.add_argument("--work", type=Path, default=Path("check-official"), help="scratch folder")
    ap.add_argument("--setting", choices=["s4", "avss"], default="s4",
                    help="s4: the test-loop check; avss: the AVSBench-semantic convert round trip")
    ap.add_argument("--backbone", nargs="+", choices=["resnet50", "pvt_v2_b5"], default=["resnet50", "pvt_v2_b5"],
                    help="--setting avss: the official models to check")
    args = ap.parse_args()
    w = args.work.resolve()
    if args.setting == "avss":
        res = check_avss(args.official.resolve(), args.backbone, w)
        worst = max(max(r["official_vs_avstrain_maxabs_float64"], r["to_official_logits_maxabs"])
                    for r in res.values())
        worst32 = max(r["official_vs_avstrain_maxabs"] for r in res.values())
        print(json.dumps({"metric": "official_avss_vs_avstrain_logits", "unit": "max abs difference",
                          "worst_float64": worst, "within_1e-5": worst <= 1e-5, "worst_float32": worst32,
                          "backbones": res}))
        return
    w.mkdir(parents=True, exist_ok=True)
    root = w / "root"
    if not (root / "s4_meta_data.csv").is_file():
        from avsprep.demo import write_demo

        write_demo(root, clips=args.clips, seed=5, quiet=True)
        meta = root / "s4_meta_data.csv"
        df = pd.read_csv(meta, dtype=str, keep_default_na=False)
        df.iloc[np.random.default_rng(1).permutation(len(df))].to_csv(meta, index=False)

    sys.path.insert(0, str(REPO / "tools"))
    from official_avss import easydict_shim

    easydict_shim()
    sys.path.insert(0, str(args.official / "avs_scripts" / "avs_s4"))
    torch.Tensor.cuda = lambda self, *a, **k: self  # the official metric calls .cuda(); stay on CPU
    from config import cfg  # official

    cfg.DATA.ANNO_CSV = str(root / "s4_meta_data.csv")
    cfg.DATA.DIR_IMG = str(root / "s4_data" / "visual_frames")
    cfg.DATA.DIR_AUDIO_LOG_MEL = str(root / "s4_data" / "audio_log_mel")
    cfg.DATA.DIR_MASK = str(root / "s4_data" / "gt_masks")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), w / "r50.pth")
    from avsprep.audio import VGGish

    torch.save(VGGish().state_dict(), w / "vggish_random.pth")
    cfg.TRAIN.PRETRAINED_RESNET50_PATH = str(w / "r50.pth")
    cfg.TRAIN.PRETRAINED_VGGISH_MODEL_PATH = str(w / "vggish_random.pth")
    from dataloader import S4Dataset  # official
    from model import ResNet_AVSModel  # official
    from torchvggish import vggish  # official
    from utils.utility import Eval_Fmeasure, mask_iou  # official

    def official_model():
        return ResNet_AVSModel.Pred_endecoder(channel=256, config=cfg, tpavi_stages=[0, 1, 2, 3],
                                              tpavi_va_flag=True)

    model = official_model()
    with torch.no_grad():
        for p in model.parameters():  # W_z's BN starts at 0 (TPAVI = LayerNorm): perturb so audio matters
            p.add_(0.02 * torch.randn_like(p))
    model.eval()
    torch.save(model.state_dict(), w / "S4_best.pth")
    audio_net = vggish.VGGish(cfg, torch.device("cpu")).eval()
    ds = S4Dataset("test")
    ds.df_split.columns = range(ds.df_split.shape[1])  # its row[0] is positional only on old pandas
    loader = torch.utils.data.DataLoader(ds, batch_size=1, shuffle=False)
    outs, masks, names = [], [], []
    with torch.no_grad():
        for imgs, audio, mask, _cat, video in loader:
            b, t, c, h, wd = imgs.shape
            out = model(imgs.view(b * t, c, h, wd), audio_net(audio.view(-1, *audio.shape[2:])))[0]
            outs.append(out.squeeze(1))
            masks.append(mask.view(b * t, h, wd))
            names += list(video)
    (w / "fm").mkdir(exist_ok=True)
    mi, fs = [], []
    for s in range(0, len(outs), 4):  # test.sh: --test_batch_size 4, in CSV order
        o, g = torch.cat(outs[s:s + 4]), torch.cat(masks[s:s + 4])
        mi.append(float(mask_iou(o, g)))
        fs.append(float(Eval_Fmeasure(o, g, str(w / "fm"))))

    if not (w / "shards" / "manifest.json").is_file():
        _run("avsprep", "import", "--root", str(root), "-o", str(w / "boxes.csv"))
        _run("avsprep", "build", str(w / "boxes.csv"), "--root", str(root), "-o", str(w / "shards"), "--quiet")
    _run("avstrain", "convert", str(w / "S4_best.pth"), "-o", str(w / "ours.pt"), "--vggish-weights",
         str(w / "vggish_random.pth"), "--overwrite")
    ours = json.loads(_run("avstrain", "evaluate", str(w / "ours.pt"), str(w / "shards"), "--split", "test",
                           "--json", "--device", "cpu"))
    _run("avstrain", "convert", str(w / "ours.pt"), "-o", str(w / "back.pth"), "--to", "official", "--overwrite")
    back = official_model()
    back.load_state_dict(torch.load(w / "back.pth", weights_only=True), strict=True)
    back.eval()
    imgs, audio, *_ = next(iter(loader))
    with torch.no_grad():
        a = audio_net(audio.view(-1, *audio.shape[2:]))
        diff = (model(imgs.view(-1, 3, 224, 224), a)[0] - back(imgs.view(-1, 3, 224, 224), a)[0]).abs().max()
    off = {"miou": float(np.mean(mi)), "fscore": float(np.mean(fs))}
    print(json.dumps({"metric": "official_test_loop_vs_avstrain_evaluate", "clips": len(names),
                      "csv_is_name_order": names == sorted(names),
                      "miou_official": off["miou"], "miou_ours": ours["miou"],
                      "fscore_official": off["fscore"], "fscore_ours": ours["fscore"],
                      "miou_absdiff": abs(off["miou"] - ours["miou"]),
                      "fscore_absdiff": abs(off["fscore"] - ours["fscore"]),
                      "to_official_strict_load": True, "to_official_logits_maxabs": float(diff)}))


if __name__ == "__main__":
    main()
