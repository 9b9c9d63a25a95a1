"""An untrained checkpoint for the per-clip / report / overlay tests: written in a second
instead of trained, and its random head, centred, paints about half of each frame, so IoUs, gaps and
overlays are not all zero (a 1-epoch tiny run predicts all background)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.train import TINY_OVERRIDES, tiny_shards


def random_checkpoint(base: Path) -> tuple[Path, Path]:
    """(checkpoint, shards): the tiny shards and an untrained tiny-demo checkpoint, once per session."""
    import torch

    from avstrain.checkpoints import save_checkpoint
    from avstrain.config import resolve_config
    from avstrain.data import ShardDataset
    from avstrain.system import build_system

    shards = tiny_shards(base)
    path = base / "random-run" / "best.pt"
    if path.is_file():
        return path, shards
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = resolve_config("demo", None, {**TINY_OVERRIDES, "device": "cpu"})
    ds = ShardDataset(shards, "train")
    torch.manual_seed(0)
    model = build_system(cfg, num_classes=len(ds.classes), has_vggish=ds.has_vggish)
    with torch.no_grad():  # TPAVI's output BatchNorm starts at weight 0 (audio has no effect): wake it
        for name, p in model.named_parameters():
            if "W_z.1.weight" in name:
                p.fill_(0.5)
        # centre the logits so about half of each frame is predicted foreground
        from avstrain.data import collate, to_device

        model.eval()
        batch = to_device(collate([ds[0], ds[1]]), torch.device("cpu"), False, cfg.image_size)
        model.avs.decoder.output_conv[4].bias -= model(batch, crops=False)["logits"].median()
    history = [{"epoch": 1, "train_total": 1.5, "train_seg": 0.7, "val_miou": 0.2, "val_fscore": 0.3}]
    save_checkpoint(path, model, None, cfg, epoch=1, step=4, best=0.2, history=history, classes=ds.classes)
    return path, shards
