"""The ``avstrain`` command line: train, evaluate, predict, segment, convert, report.

Thin commands: parse options, call ``avstrain.engine`` (train), ``avstrain.evaluation``,
``avstrain.prediction`` and ``avstrain.report``, format the result. Domain errors become ``Error: ...`` with exit 1.
The torch side is imported inside each command (measured: ``import avstrain.cli`` takes 0.3 s
without it; torch alone takes 2.5 s on the 2-core CI machine), so ``--help`` and ``presets`` stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import click

from avsprep import __version__
from avsprep.common.atomic import write_text
from avsprep.common.clikit import (check_output_dir, echo_json, handle_errors, json_option, overwrite_option,
                                   quiet_option, setup_logging)
from avsprep.common.outputs import check_new_file, guarded_writes, writing
from avstrain.config import PRESETS_DIR, coerce_key, parse_set, preset_names, resolve_config, resume_changes
from avstrain.per_clip import rows_to_csv
from avstrain.rundir import saved_config

PRESETS = preset_names()  # read from avstrain/presets/ at import time (cheap), listed in --help
ABLATIONS = ("none", "shuffle", "zero")
RESUMABLE = ("epochs", "device", "workers")  # config keys --resume may change
# what a failed training keeps, stated in its error (checkpoints are written whole or not at all)
TRAIN_RESUME_RULE = "rerun with --resume (RUN/last.pt is kept; without one, start over with --overwrite)"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="avstrain")
def cli():
    """Train and evaluate the AVSBench TPAVI model (with crop losses) from avsprep shards."""


# ----------------------------------------------------------------------------- presets

def preset_text(name: str) -> str:
    return (PRESETS_DIR / f"{name}.yaml").read_text(encoding="utf-8")


def preset_summary(name: str) -> str:
    """The first sentence of a preset's header comment (what it reproduces)."""
    words = []
    for line in preset_text(name).splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#") or not text:
            break
        words.append(text)
    text = " ".join(words).removeprefix(f"{name}:").strip()
    return text.split(". ")[0].split(": ")[0].rstrip(".:,")


def _show_preset_in_help(ctx, param, value):
    """Eager: ``train --preset NAME --help`` prints the preset's full contents after the options."""
    if value:
        ctx.command.epilog = "\b\nPreset " + value + ":\n" + preset_text(value)
        ctx.call_on_close(lambda: setattr(ctx.command, "epilog", None))  # not for the next invocation
    return value


@cli.command()
@click.argument("name", required=False, type=click.Choice(PRESETS))
@click.option("--explain", is_flag=True, help="Instead of the YAML, the loss reachability table of NAME: which "
              "loss terms reach which module groups (one backward per term on a random batch, with the "
              "preset's backbones swapped for the tiny ones; the wiring is the preset's), and the warning "
              "when a crop loss cannot change the masks. Training prints the same table on its first batch "
              "and saves it to RUN/reachability.json.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="With --explain: override a config key first, e.g. --set crop_encoder=segmentation.")
@json_option
@handle_errors
def presets(name, explain, sets, as_json):
    """List the shipped presets, or print one (a flat YAML config for --preset).

    \b
    Example:
      avstrain presets
      avstrain presets s4-resnet50-croplosses > my.yaml   # edit, then --config my.yaml
      avstrain presets s4-resnet50-croplosses --explain
      avstrain presets demo --explain --set w_mask_crop=1 --json
    """
    if (explain or sets or as_json) and not name:
        raise click.UsageError("--explain, --set and --json take a preset NAME")
    if sets and not explain:
        raise click.UsageError("--set applies to --explain")
    if explain:
        from avstrain.reachability import explain as explain_config, format_table, verdict

        doc = explain_config(resolve_config(name, None, parse_set(sets)))
        if as_json:
            echo_json(doc)
            return
        click.echo(f"{name} (backbones swapped for tiny ones; audio encoder: {doc['audio_encoder']})")
        click.echo(format_table(doc))
        click.echo(verdict(doc))
        return
    if as_json:
        raise click.UsageError("--json applies to --explain")
    if name:
        click.echo(preset_text(name), nl=False)
        return
    width = max(len(n) for n in PRESETS)
    for n in PRESETS:
        click.echo(f"{n:<{width}}  {preset_summary(n)}")


# ----------------------------------------------------------------------------- train

@cli.command(help=f"""Train on SHARDS/train, validate on SHARDS/val, write the run to RUN.

RUN gets config.json (the resolved config), metrics.csv, curves.png, last.pt
(every epoch) and best.pt (best val mIoU). Config layers: defaults, then
--preset or --config, then --set and the flags. SIGTERM saves last.pt and
exits 1; --resume continues exactly with the run's saved config (only --epochs,
--device and workers may change; repeating the original options is fine).
The paper presets refuse to start without their pretrained files unless
--set allow_random_init=true (then config.json and evaluate say so).

Presets: {", ".join(PRESETS)}.

\b
Example:
  avstrain train ./shards -o runs/demo --preset demo
  avstrain train ./shards -o runs/demo --resume --epochs 12
  torchrun --nproc_per_node 2 -m avstrain train ./shards -o runs/ddp --preset demo
""")
@click.argument("shards", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--output", "-o", "run", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory.")
@click.option("--preset", type=click.Choice(PRESETS), default=None, is_eager=True, callback=_show_preset_in_help,
              help="A named, complete config (`--preset NAME --help` shows it; `avstrain presets` lists them).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="A flat YAML/JSON file of config keys (instead of --preset).")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Total epochs (also extends a --resume).")
@click.option("--seed", type=int, default=None)
@click.option("--lr", type=float, default=None, help="Adam learning rate.")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Videos per step (per process).")
@click.option("--w-ce", type=float, default=None, help="Crop cross-entropy weight (0 = off).")
@click.option("--w-pairwise", type=float, default=None, help="Crop pairwise-distance weight (0 = off).")
@click.option("--w-audio", type=float, default=None, help="Audio-crop cosine weight (0 = off).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any config key, e.g. --set channel=64 --set tpavi_stages=0,1 (repeatable).")
@click.option("--init-from", "init_from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Start from these weights (an avstrain checkpoint, or an official AVSBench "
              ".pth converted on the fly) with a fresh optimiser at epoch 0; every tensor of the model must "
              "be in the file.")
@click.option("--resume", is_flag=True, help="Continue from RUN/last.pt. Options equal to the saved config "
              "may be repeated; a real change (other than --epochs, --device, workers) is refused.")
@overwrite_option
@quiet_option
@handle_errors
def train(shards, run, preset, config_file, epochs, seed, lr, batch_size, w_ce, w_pairwise, w_audio, device,
          sets, init_from, resume, overwrite, quiet):
    from avstrain import engine
    from avstrain.dist import env_info

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    setup_logging(quiet or not env_info().is_main)  # under torchrun only rank 0 logs progress
    flags = {"epochs": epochs, "seed": seed, "lr": lr, "batch_size": batch_size, "w_ce": w_ce,
             "w_pairwise": w_pairwise, "w_audio": w_audio, "device": device,
             "init_from": str(init_from) if init_from else None}
    overrides = merge_flags_and_sets(flags, parse_set(sets))
    if resume:  # the run's own config, with only what may change between sessions
        cfg = saved_config(run, {k: v for k, v in overrides.items() if k in RESUMABLE})
        given = resolve_config(preset, config_file, overrides) if (preset or config_file) else None
        changes = resume_changes(cfg, overrides, given, RESUMABLE)
        if changes:
            raise click.UsageError("--resume continues with the run's saved config; these differ from it: "
                                   + ", ".join(changes) + " (only --epochs, --device and --set workers=N "
                                   "may change; start a new RUN for the rest)")
    else:
        cfg = resolve_config(preset, config_file, overrides)
    # one writer per RUN: rank 0 holds the lock for all ranks of a torchrun
    with writing(run, what="RUN", keep=TRAIN_RESUME_RULE, lock=env_info().is_main):
        row = engine.train(cfg, shards, run, resume=resume, overwrite=overwrite, quiet=quiet)
    if row and not quiet and env_info().is_main:
        logging.getLogger("avstrain").info("done: %s (best.pt = best val mIoU)", run)


def merge_flags_and_sets(flags: dict, sets: dict) -> dict:
    """The command line's overrides: every ``--set`` key, plus each flag the user gave (None = not
    given, so a flag's absence never replaces a ``--set`` value). A flag and a ``--set`` of the
    same key with different values is a usage error: the command line would not say which wins."""
    out = dict(sets)
    for key, value in flags.items():
        if value is None:
            continue
        set_key = next((k for k in sets if k.replace("-", "_") == key), None)
        if set_key is not None and coerce_key(key, sets[set_key]) != coerce_key(key, value):
            raise click.UsageError(f"--{key.replace('_', '-')} {value} and --set {set_key}={sets[set_key]} "
                                   "disagree; give the value once")
        out.pop(set_key, None)
        out[key] = value
    return out


# ----------------------------------------------------------------------------- ablate

@cli.command()
@click.argument("shards", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--output", "-o", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the runs (DIR/NAME/seedS) and of ablation.json / ablation.md.")
@click.option("--config", "configs", multiple=True, required=True, metavar="NAME=PRESET[,KEY=VALUE...]",
              help="One configuration: a name, a preset and its config overrides (repeatable; the first is "
              "the baseline unless --baseline says otherwise).")
@click.option("--seeds", default="0,1,2", show_default=True, metavar="LIST",
              help="Comma-separated training seeds; every configuration runs on each.")
@click.option("--baseline", default=None, metavar="NAME", help="The --config the others are compared with.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="A config override for every configuration (before each --config's own).")
@click.option("--distractor-masks", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The demo's distractor_masks/test folder (avsprep demo with the distractor): adds the "
              "distractor rate, with real and with zeroed audio.")
@quiet_option
@handle_errors
def ablate(shards, out, configs, seeds, baseline, sets, distractor_masks, quiet):
    """Train every configuration on every seed, evaluate each on SHARDS/test with the audio
    ablations (shuffle, zero), and write DIR/ablation.md and DIR/ablation.json: per configuration
    the mean and 95% CI over seeds of mIoU, F, the listening gap (mIoU - mIoU with shuffled
    audio) and the distractor rate; per configuration the paired per-clip mIoU difference vs the
    baseline with a bootstrap CI over seeds and clips. Finished runs (DIR/NAME/seedS/eval.json)
    are skipped, interrupted ones resumed; each run's resolved config is checked against the one
    asked for.

    \b
    Example:
      avstrain ablate ./shards -o runs/ablation --seeds 0,1,2 \\
        --config baseline=demo,crop_head=false,w_ce=0,w_pairwise=0,w_audio=0 \\
        --config literal=demo --config shared=demo,crop_encoder=segmentation \\
        --distractor-masks ./demo-data/distractor_masks/test
      torchrun --nproc_per_node 4 -m avstrain ablate SHARDS -o runs/abl-s4 --seeds 0,1,2 \\
        --config literal=s4-resnet50-croplosses --config coupled=s4-resnet50-croplosses-coupled \\
        --baseline literal --set backbone_weights=r50.pth --set crop_backbone_weights=r50.pth \\
        --set vggish_weights=vggish.pth
    """
    from avstrain.ablation import format_markdown, parse_config, run_ablation

    setup_logging(quiet)
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"{seeds!r} is not a comma-separated list of integers", param_hint="--seeds")
    if not seed_list:
        raise click.BadParameter("give at least one seed", param_hint="--seeds")
    summary = run_ablation(shards, out, [parse_config(c) for c in configs], seed_list, parse_set(sets),
                           baseline=baseline, distractor_masks=distractor_masks, quiet=quiet)
    if summary:  # rank 0 (the other torchrun ranks only train)
        click.echo(format_markdown(summary), nl=False)
        click.echo(f"wrote {out / 'ablation.md'} and {out / 'ablation.json'}")


# ----------------------------------------------------------------------------- convert

@cli.command()
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--output", "-o", "dst", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The file to write.")
@click.option("--to", "direction", type=click.Choice(["avstrain", "official"]), default="avstrain",
              show_default=True, help="avstrain: official AVSBench state dict -> avstrain checkpoint; "
              "official: avstrain checkpoint -> state dict for the official Pred_endecoder (strict load).")
@click.option("--backbone", type=click.Choice(["resnet50", "pvt_v2_b5"]), default=None,
              help="Official model's backbone (default: told by its keys).")
@click.option("--setting", type=click.Choice(["s4", "ms3", "avss"]), default=None,
              help="What the official model was trained for. Default: avss when its head has 71 classes "
              "(AVSBench-semantic), else s4 (an S4 file cannot be told from an MS3 one). A setting the "
              "head contradicts is refused.")
@click.option("--vggish-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="torchvggish vggish-10086976.pth to put in the checkpoint as its frozen audio network "
              "(official files hold none). Without it, evaluate needs shards built with --vggish-weights.")
@click.option("--imagenet-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="--to official, ResNet-50: write the unused layer3_2/layer4_2 branch from this ImageNet "
              "file, as the official code initialises it (default: copies of layer3/layer4; logits are the same).")
@overwrite_option
@json_option
@handle_errors
def convert(src, dst, direction, backbone, setting, vggish_weights, imagenet_weights, overwrite, as_json):
    """Convert official AVSBench checkpoints to avstrain checkpoints, and back.

    S4, MS3 and AVSBench-semantic (AVSS, 71 classes) models, ResNet-50 or
    PVT-v2-b5 (docs/weights.md lists the published AVSS files). Reads SRC
    with weights_only=True. Prints a key report; exits 1 naming the tensors
    when one the model needs is missing, unexpected or of the wrong shape.

    \b
    Example:
      avstrain convert S4_best.pth -o s4-r50.pt --vggish-weights vggish-10086976.pth
      avstrain convert AVSS_pvt_miou_best.pth -o avss-pvt.pt --setting avss
      avstrain evaluate s4-r50.pt ./shards --json
      avstrain convert runs/s4-r50/best.pt -o ours_for_test_py.pth --to official
    """
    from avstrain import convert as conv

    check_new_file(dst, inputs=[p for p in (src, vggish_weights, imagenet_weights) if p], overwrite=overwrite,
                   what="--output file")
    with guarded_writes([dst], what="--output file"):
        if direction == "avstrain":
            report = conv.official_to_checkpoint(src, dst, backbone=backbone, setting=setting,
                                                 vggish_weights=vggish_weights)
        else:
            report = conv.checkpoint_to_official(src, dst, unused_branch_weights=imagenet_weights)
    if as_json:
        echo_json(report)
    else:
        click.echo(conv.report_text(report))



# ----------------------------------------------------------------------------- shared options
# evaluate, predict and report read a checkpoint on a split of shards, on a device.

def checkpoint_and_shards(f):
    f = click.argument("shards", type=click.Path(exists=True, file_okay=False, path_type=Path))(f)
    return click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))(f)


def split_option(f):
    return click.option("--split", default="test", show_default=True, help="Split of SHARDS to read.")(f)


def device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                        show_default=True, help="auto: cuda when available.")(f)


def batching_options(f):
    """--batch-videos, --device and --workers: how the evaluation is batched and where it runs."""
    f = click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
                     help="DataLoader worker processes.")(f)
    f = device_option(f)
    return click.option("--batch-videos", type=click.IntRange(1), default=4, show_default=True,
                        help="Videos per batch for the official per-batch metrics.")(f)


# ----------------------------------------------------------------------------- evaluate

PER_CLIP_HELP = """Also write one row per clip to FILE.csv: video, class, frames,
iou, fscore (real audio), iou_ABL/fscore_ABL per ablation, gap,
shuffle_audio_from and shuffle_audio_class (a partner of the clip's own class
makes the same kind of sound: a gap near 0 is then expected). iou = mean of the per-frame IoUs over the clip's frames with
a GT mask (frame-weighted, the column's mean is miou_dataset; with 5 GT frames
per clip the plain mean is); fscore = max over thresholds of the clip's mean F
curve; gap = iou - iou_shuffle (the listening gap: near 0 or below, the
prediction does not depend on the sound). Implies the shuffle ablation. With
--json, "clips" becomes this list of rows ("n_clips" is always the count)."""


@cli.command()
@checkpoint_and_shards
@split_option
@click.option("--audio-ablation", default="none", show_default=True, metavar="LIST",
              help="Comma-separated: none, shuffle (audio of another clip), zero (zeroed audio features).")
@click.option("--per-class", is_flag=True, help="Add mIoU and F-score per class.")
@click.option("--per-clip", "per_clip_csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE.csv", help=PER_CLIP_HELP)
@batching_options
@click.option("--overwrite", is_flag=True, help="Replace an existing --per-clip FILE (never the checkpoint "
              "or a file under SHARDS).")
@json_option
@quiet_option
@handle_errors
def evaluate(checkpoint, shards, split, audio_ablation, per_class, per_clip_csv, batch_videos, device, workers,
             overwrite, as_json, quiet):
    """AVSBench mIoU and F-score of CHECKPOINT on SHARDS/SPLIT, with audio ablations.

    "miou"/"fscore" follow the official protocol (mean over batches of
    --batch-videos videos); "miou_dataset"/"fscore_dataset" pool all frames.
    "clips" and "n_clips" are the clip count ("clips" is the per-clip list
    under --per-clip).
    AVSS semantic shards: the official AVSS mIoU/F (mean over all 71 classes,
    0 for classes never seen, padded steps counted) and, labelled, the mean
    over the classes seen ("miou_seen"); --per-class adds the class table.

    \b
    Example:
      avstrain evaluate runs/demo/best.pt ./shards --audio-ablation shuffle,zero --json
      avstrain evaluate runs/demo/best.pt ./shards --per-clip clips.csv
    """
    from avstrain.evaluation import run_evaluate
    from avstrain.tasks import format_table

    ablations = [a.strip() for a in audio_ablation.split(",") if a.strip()]
    bad = [a for a in ablations if a not in ABLATIONS]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)}; choose from {', '.join(ABLATIONS)}",
                                 param_hint="--audio-ablation")
    if per_clip_csv is not None:  # checked before the evaluation runs
        check_new_file(per_clip_csv, inputs=[checkpoint, shards], overwrite=overwrite, what="--per-clip FILE")
        if "shuffle" not in ablations:
            ablations.append("shuffle")  # the listening gap needs it
    setup_logging(quiet or as_json)
    doc = run_evaluate(checkpoint, shards, split=split, ablations=ablations, per_class=per_class,
                       batch_videos=batch_videos, device=device, workers=workers, quiet=quiet or as_json,
                       per_clip=per_clip_csv is not None)
    if per_clip_csv is not None:
        with guarded_writes([per_clip_csv], what="--per-clip FILE"):
            write_text(per_clip_csv, rows_to_csv(doc["clips"]))
    if as_json:
        echo_json(doc)
    else:
        click.echo(format_table(doc))
        if per_clip_csv is not None:
            click.echo(f"per-clip rows ({doc['n_clips']} clips): {per_clip_csv}")


# ----------------------------------------------------------------------------- predict

@cli.command()
@checkpoint_and_shards
@click.option("--output", "-o", "masks", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the PNG masks (may be left out with --labelimg).")
@split_option
@device_option
@click.option("--labelimg", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write box proposals (bounding box of the largest predicted blob) as labelImg XML "
                   "for the frames without a GT mask (S4 train frames 2-5), in the frame-folder layout "
                   "(SPLIT/CATEGORY/VIDEO/VIDEO_K.xml); pass ROOT/s4_data/visual_frames to put them next "
                   "to the frames. Existing annotation files (XML, YOLO, CreateML) are never touched.")
@click.option("--label-studio", "label_studio", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the same proposals as Label Studio tasks instead: DIR/tasks.json (boxes as "
                   "predictions, a score per box = the mean predicted probability of its mask pixels, images "
                   "relative to the release root), labeling_config.xml and README.md. DIR must be empty or new.")
@click.option("--overlay", is_flag=True,
              help="Also write each frame with its predicted mask painted over it (cyan stripes) and the GT "
                   "outline (white on black) where the frame has a GT mask, under MASKS/overlays/ with the same "
                   "names (needs --output).")
@overwrite_option
@quiet_option
@handle_errors
def predict(checkpoint, shards, masks, split, device, labelimg, label_studio, overlay, overwrite, quiet):
    """Write predicted masks as single-channel 0/255 PNGs named like the GT masks.

    S4: MASKS/SPLIT/CATEGORY/VIDEO/VIDEO_K.png; MS3: MASKS/SPLIT/VIDEO/VIDEO_K.png
    (K = 1..5, as the GT files). AVSS semantic: palette RGB PNGs
    MASKS/SPLIT/UID/UID_T.png (T = 0..9, padded steps included), named as the
    official visualiser names them, at 224 px without its bicubic resize so
    every pixel decodes back to its class.

    \b
    Example:
      avstrain predict runs/demo/best.pt ./shards -o ./pred-masks --split test
      avstrain predict runs/demo/best.pt ./shards --split train --labelimg ./proposals
      avstrain predict runs/demo/best.pt ./shards --split train --label-studio ./ls-tasks
      avstrain predict runs/demo/best.pt ./shards -o ./pred-masks --overlay
    """
    from avstrain.prediction import run_predict

    setup_logging(quiet)
    if masks is None and labelimg is None and label_studio is None:
        raise click.UsageError("give --output MASKS, --labelimg DIR (or --label-studio DIR), or both")
    if labelimg is not None and label_studio is not None:
        raise click.UsageError("give --labelimg DIR or --label-studio DIR, not both")
    if label_studio is not None:
        check_output_dir(label_studio, overwrite=overwrite, what="--label-studio DIR")
    if overlay and masks is None:
        raise click.UsageError("--overlay writes under MASKS/overlays/: give --output MASKS")
    with contextlib.ExitStack() as outputs:  # each folder locked; a failure removes what this run wrote
        folders = {}  # one lock per folder, even when --labelimg is MASKS
        for folder, what in ((masks, "MASKS"), (labelimg, "--labelimg DIR"), (label_studio, "--label-studio DIR")):
            if folder is not None:
                folders.setdefault(folder.resolve(), (folder, what))
        for folder, what in folders.values():
            outputs.enter_context(writing(folder, what=what))
        if masks is not None:
            check_output_dir(masks, overwrite=overwrite, what="MASKS")
        summary = run_predict(checkpoint, shards, masks, split=split, device=device, quiet=quiet,
                              labelimg=labelimg, overlay=overlay, label_studio=label_studio)
    click.echo(summary["text"])


# ----------------------------------------------------------------------------- segment

@cli.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("videos", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--output", "-o", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for VIDEO.mp4, VIDEO/masks/, VIDEO.json and index.html.")
@click.option("--fps", type=click.IntRange(1, 240), default=None,
              help="Dense passes per second (a mask for every 1/N s). Default: the video's rate, at most 25.")
@click.option("--audio-ablation", type=click.Choice(["zero", "shuffle"]), default=None,
              help="Also run without the sound: zero (audio features zeroed; writes VIDEO_sound_vs_zero.mp4, "
                   "with the sound | without, side by side) or shuffle (each window gets another window's "
                   "sound); VIDEO.json gets the IoU of the two masks per second.")
@click.option("--allow-silent", is_flag=True,
              help="Run a video without an audio track with zeroed audio (refused otherwise); says so in the "
                   "output and the JSON.")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True,
              help="Passes (5 frames + the window's audio) per forward.")
@click.option("--vggish-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="For checkpoints trained on VGGish embeddings stored in the shards: the VGGish file.")
@device_option
@overwrite_option
@json_option
@quiet_option
@handle_errors
def segment(checkpoint, videos, out, fps, audio_ablation, allow_silent, batch_size, vggish_weights, device,
            overwrite, as_json, quiet):
    """Segment the sounding object in your own VIDEOS (files or folders, any container PyAV reads).

    Each video is cut into 5-s windows (the last one padded) with the audio
    prepared as the model was trained on it (the rules of `avsprep extract`).
    The model runs on the official frames (one per second) and, for a mask on
    every frame, on --fps dense passes: pass k takes the 5 frames at
    l + k/N s with the window's audio. Writes OUT/VIDEO.mp4 (the masks over
    the video, same rate and frame count, with its sound; H.264 + AAC),
    OUT/VIDEO/masks/FRAME.png (every frame: 0/255, or AVSS palette),
    OUT/VIDEO.json (per second at the official frame: mask area, confidence,
    and with --audio-ablation the IoU real vs ablated) and OUT/index.html
    (a static page playing every video). A video without an audio track is
    refused unless --allow-silent. The last line printed is index.html.

    \b
    Example:
      avstrain segment runs/demo/best.pt my_clip.mp4 -o seg
      avstrain segment runs/demo/best.pt videos/ -o seg --audio-ablation zero --fps 10
    """
    from avstrain.segment import SegmentOptions, run_segment

    setup_logging(quiet or as_json)
    opts = SegmentOptions(fps=fps, ablation=audio_ablation, allow_silent=allow_silent, batch_size=batch_size,
                          device=device, vggish_weights=vggish_weights)
    with writing(out, what="OUTPUT"):  # one writer; a failure (full disk...) removes what this run wrote
        check_output_dir(out, overwrite=overwrite, what="OUTPUT")
        res = run_segment(checkpoint, list(videos), out, opts, quiet=quiet or as_json)
    if as_json:
        echo_json({"videos": res["videos"], "index": res["index"]})
    else:
        click.echo(res["text"])


# ----------------------------------------------------------------------------- report

@cli.command()
@checkpoint_and_shards
@click.option("--output", "-o", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (index.html, PNGs, per_clip.csv, results.json).")
@split_option
@click.option("--per-gallery", type=click.IntRange(1), default=6, show_default=True,
              help="Clips in each gallery (worst IoU, smallest listening gap, best IoU).")
@batching_options
@overwrite_option
@quiet_option
@handle_errors
def report(checkpoint, shards, out_dir, split, per_gallery, batch_videos, device, workers, overwrite, quiet):
    """Write a static HTML report of CHECKPOINT on SHARDS/SPLIT to DIR/index.html.

    It evaluates with real, shuffled and zeroed audio and shows: the run
    (closest preset, resolved config, weight files with sha256, warnings,
    curves from RUN/metrics.csv), the metrics (official per-batch and
    per-dataset, per class, audio ablations), the per-clip listening gap
    (IoU real - IoU shuffled, as `evaluate --per-clip`; table in
    DIR/per_clip.csv) and three galleries: worst IoU, smallest listening gap,
    best IoU. No scripts or network: open index.html in any browser. The last
    line printed is the path of index.html.

    \b
    Example:
      avstrain report runs/demo/best.pt ./shards -o runs/demo/report
    """
    from avstrain.report import build_report

    setup_logging(quiet)
    with writing(out_dir, what="DIR"):
        check_output_dir(out_dir, overwrite=overwrite, what="DIR")
        res = build_report(checkpoint, shards, out_dir, split=split, per_gallery=per_gallery, device=device,
                           batch_videos=batch_videos, workers=workers, quiet=quiet)
    s = res["summary"]
    if not quiet:
        click.echo(f"{s['clips']} clips: mean listening gap {s['mean_gap']:.4f} (miou_dataset "
                   f"{res['miou_dataset']:.4f} - shuffled {res['shuffle_miou_dataset']:.4f}); "
                   f"per-clip table {res['per_clip_csv']}")
    click.echo(res["index"])


# ----------------------------------------------------------------------------- weights

@cli.group()
def weights():
    """The published weight files the presets need: list, fetch on request, verify.

    Nothing is ever downloaded by train, evaluate or predict: weight files
    are passed with --set KEY=FILE. `fetch` downloads one file when asked
    (torch.hub, checking the SHA-256 prefix its name carries); `verify` checks
    a file downloaded by hand. docs/weights.md has the table.

    \b
    Example:
      avstrain weights list
      avstrain weights fetch resnet50 --to weights/
      avstrain weights verify weights/resnet50-19c8e357.pth
    """


@weights.command("list")
@json_option
@handle_errors
def weights_list(as_json):
    """List every weight file: what it is, where it is published, the SHA-256
    prefix its name carries, and the presets that need it (and with which key).

    \b
    Example:
      avstrain weights list --json
    """
    from avstrain.weight_files import WEIGHTS, needed_by

    used = needed_by()
    rows = [{"name": w.name, "file": w.file, "what": w.what, "url": w.url, "page": w.page,
             "hash_prefix": w.hash_prefix, "direct_download": w.direct, "use": w.use.format(path="FILE"),
             "presets": used[w.name], "same_as": w.same_as} for w in WEIGHTS.values()]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']}: {r['file']} - {r['what']}")
        click.echo(f"  {'url' if r['direct_download'] else 'published in (by hand)'}: {r['url']}")
        click.echo(f"  sha256 prefix: {r['hash_prefix'] or 'none published'}; use: {r['use']}")
        either = f" (or {r['same_as']}: the same weights)" if r["same_as"] else ""
        click.echo(f"  needed by{either}: {', '.join(r['presets']) or '(no preset: an official model for convert)'}")


@weights.command("fetch")
@click.argument("name")
@click.option("--to", "dest", type=click.Path(file_okay=False, path_type=Path), default=Path("weights"),
              show_default=True, help="Folder to download into.")
@click.option("--url", default=None, help="Download from this address instead of the published one (a mirror, "
              "or a local server in tests); the hash prefix and the content check stay the table's.")
@overwrite_option
@json_option
@quiet_option
@handle_errors
def weights_fetch(name, dest, url, overwrite, as_json, quiet):
    """Download weight file NAME (see `avstrain weights list`) into --to, on
    request only. The SHA-256 must start with the prefix the file's published
    name carries, and the file must load strictly as what it is; otherwise
    nothing is kept (no partial file). Prints the --set line that uses it.

    \b
    Example:
      avstrain weights fetch vggish --to weights/
    """
    from avstrain.weight_files import fetch

    res = fetch(name, dest, url=url, progress=not quiet and not os.environ.get("AVS_NO_PROGRESS"),
                overwrite=overwrite)
    if as_json:
        echo_json(res)
        return
    check = f"sha256 {res['sha256'][:16]}... starts with {res['hash_prefix']}" if res["hash_prefix"] else \
        f"sha256 {res['sha256']} (no hash published for this file; its content was checked)"
    click.echo(f"{res['file']}: {check}; {res['content']}")
    click.echo(res["use"])


@weights.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="The table row FILE is (default: told by its file name).")
@json_option
@handle_errors
def weights_verify(file, name, as_json):
    """Check a weight file downloaded by hand: its SHA-256 against the prefix
    in its name (torch.hub `name-<prefix>.pth`) or in the table, then, for a
    file of the table, that it loads strictly as what it is. Exits 1 naming
    the file on a mismatch.

    \b
    Example:
      avstrain weights verify ~/Downloads/vggish-10086976.pth
    """
    from avstrain.weight_files import verify

    res = verify(file, name)
    if as_json:
        echo_json(res)
        return
    if res["hash_prefix"]:
        click.echo(f"{file}: sha256 {res['sha256'][:16]}... matches the prefix {res['hash_prefix']} "
                   f"from {res['hash_from']}")
    else:
        click.echo(f"{file}: sha256 {res['sha256']} (no hash published to compare with)")
    if res["content"]:
        click.echo(f"  {res['content']}")
        click.echo(res["use"])
    elif not res["hash_prefix"]:
        raise click.ClickException(f"{file}: nothing to check it against; name it as published or pass --name "
                                   "(avstrain weights list)")
