"""The ``avsprep`` command line: a thin Click layer over the library modules.

Each command parses options, calls the module that owns the job, and formats
the result. Domain errors become one-line messages (exit 1); usage errors exit 2.
No torch import at module level (``--help`` runs with runtime deps only); each command
imports the module that owns its job when it runs, so ``avsprep --help`` loads none of them.
"""

from __future__ import annotations

from pathlib import Path

import click

from avsprep import __version__
from avsprep.datasets.base import SPLITS as DATASET_SPLITS
from avsprep.common.clikit import (
    check_output_dir, echo_json, echo_result, handle_errors, json_option,
    overwrite_option, quiet_option, setup_logging, strict_option,
)
from avsprep.common.outputs import check_new_file, guarded_writes, writing

SETTINGS = click.Choice(["s4", "ms3", "avss"])
SPLITS = click.Choice(list(DATASET_SPLITS))
ROOT_HELP = ("AVSBench root: the folder holding s4_meta_data.csv (or ms3_meta_data.csv), "
             "or the AVSBench-semantic release (metadata.csv + label2idx.json).")
SUBSET_HELP = ("AVSS only: subsets to use, comma-separated, any of v1s,v1m,v2 "
               "(v1s = S4 clips, v1m = MS3 clips, v2 = 10-s clips). Default: all.")



def root_option(f):
    """``--root/-r``: the release root, required (import, validate, propose, build)."""
    return click.option("--root", "-r", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                        help=ROOT_HELP)(f)


def subset_option(f):
    """``--subset``: the AVSS subsets to use (import, validate, build)."""
    return click.option("--subset", default=None, help=SUBSET_HELP)(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="avsprep")
def cli():
    """Turn labelImg boxes on AVSBench clips into validated, training-ready HDF5 shards.

    \b
    Typical run:
      avsprep demo ./demo-data
      avsprep import --root ./demo-data -o boxes.csv
      avsprep validate boxes.csv --root ./demo-data
      avsprep build boxes.csv --root ./demo-data -o ./shards

    \b
    Annotating: avsprep propose (box proposals from masks to check in
    labelImg), avsprep export (the table back as labelImg VOC or YOLO files).

    Clip ids that start with '-' work as values; put '--' before a positional
    argument that starts with '-'.
    """


# ----------------------------------------------------------------------------- import

@cli.command("import")
@root_option
@click.option("--setting", type=SETTINGS, default=None,
              help="s4, ms3 or avss; inferred from the metadata file when omitted.")
@subset_option
@click.option("--annotations", "-a", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder searched (recursively) for annotation files. "
                                 "Default: the frames folder under ROOT (AVSS: ROOT itself).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Box table to write (CSV).")
@click.option("--format", "fmt", type=click.Choice(["auto", "voc", "yolo", "createml", "label-studio"]),
              default="auto", show_default=True,
              help="Which files to read: auto (by extension, then content), or only Pascal-VOC .xml, "
                   "YOLO .txt (+ classes.txt / obj.names / data.yaml beside or above), CreateML .json "
                   "or Label Studio JSON / JSON_MIN exports (.json). Files of the other formats are listed "
                   "as skipped.")
@click.option("--box-convention", type=click.Choice(["auto", "labelimg", "zero-based"]), default="auto",
              show_default=True,
              help="How VOC coordinates are read, once for the whole import: labelimg = 1-based integers "
                   "(xmin-1, ymin-1, xmax, ymax), zero-based = edges as written; auto = labelimg only when "
                   "every coordinate of every VOC file is an integer and none is 0 at the left/top edge.")
@click.option("--annotator", default=None,
              help="Label Studio: count only this annotator's annotations (the export's completed_by: "
                   "user id, or e-mail in JSON_MIN).")
@click.option("--latest", is_flag=True,
              help="Label Studio: where a task has several annotations that disagree, take the latest "
                   "(default: the task is a conflict finding and is not imported).")
@click.option("--accept-predictions", is_flag=True,
              help="Label Studio: a task nobody submitted counts with its predictions (pre-annotations), "
                   "as unverified boxes. Default: predictions never count as human boxes.")
@overwrite_option
@json_option
@quiet_option
@handle_errors
def import_cmd(root, setting, subset, annotations, output, fmt, box_convention, annotator, latest,
               accept_predictions, overwrite, as_json, quiet):
    """Read every annotation file (labelImg VOC XML, YOLO, CreateML, Label Studio) and write the box table.

    Each file (each image of a CreateML file) is matched to (split, category,
    video, frame) by its own file stem ({name}_{k} for S4, {id}.mp4_{k} for
    MS3); paths inside the files are never opened. YOLO boxes are converted
    on the real frame size. Nothing is silently ignored: every file is read,
    counted as a frame image or class file, or named in a finding. Findings
    are printed and saved beside the table as OUTPUT.findings.json (with the
    box-convention decision) so `validate` reports them too. AVSS release:
    files are matched by their place, {subset}/{uid}/frames/{i}.xml, .txt
    (YOLO, classes.txt beside or above) or .json (CreateML; each image entry
    {i}.jpg of the clip the JSON lies in), 0-based i next to {i}.jpg; the
    release's masks and wavs are not walked.

    Label Studio JSON / JSON_MIN exports: each task's image is matched by its
    file name (local files, uploads, S3/GCS/HTTP URLs); percent boxes are
    converted on the real frame size; cancelled annotations and predictions
    do not count (see --annotator, --latest, --accept-predictions); rotated
    boxes become the axis-aligned box around them (a warning).

    Exit 1 when a file cannot be read at all (not XML, DOCTYPE/ENTITY, over
    1 MiB, another tool's format such as LabelMe/CVAT/dlib, undecodable
    bytes); box and label problems are left to `validate`.

    \b
    Example:
      avsprep import --root ./demo-data -o boxes.csv
      avsprep import --root R -a ./yolo-export --format yolo -o boxes.csv
      avsprep import --root R -a ./ls-export --format label-studio --latest -o boxes.csv
    """
    from avsprep.annotations.label_studio import Choice
    from avsprep.annotations.table import sidecar_path
    from avsprep.importer import run_import

    setup_logging(quiet or as_json)
    check_new_file(output, overwrite=overwrite, what="OUTPUT (-o)")
    with guarded_writes([output, sidecar_path(output)], what="OUTPUT (-o)"):
        summary = run_import(root, output, setting=setting, annotations=annotations, quiet=quiet or as_json,
                             fmt=fmt, box_convention=box_convention, subsets=subset,
                             choice=Choice(annotator, latest, accept_predictions))
    echo_result(summary, as_json)
    raise SystemExit(summary["exit_code"])


# ----------------------------------------------------------------------------- validate

@cli.command()
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@root_option
@click.option("--split", type=SPLITS, multiple=True, help="Split(s) to check (repeatable). Default: all.")
@subset_option
@click.option("--size-policy", type=click.Choice(["rescale", "reject"]), default="rescale", show_default=True,
              help="When <size> disagrees with the real frame: rescale boxes (warning) or reject them (error).")
@click.option("--max-findings", type=int, default=50, show_default=True,
              help="Findings listed in the text report (JSON lists all).")
@strict_option
@json_option
@quiet_option
@handle_errors
def validate(table, root, split, subset, size_policy, max_findings, strict, as_json, quiet):
    """Check box coverage per clip and every box against the clips in ROOT's metadata.

    Reports clips fully / partly / not covered (per split and per class) and a
    list of findings, each with a stable code, severity, file, clip and frame.
    Exit 1 on any error finding (or warning with --strict).

    For an AVSS release it also checks the release itself: metadata.csv
    anomalies (h orse, background, off-the-screen), missing or extra frames,
    files in frames/ that break the official loader's count, mask colours
    outside the palette (pixel count and where), wavs too long for the
    official loader; a box label must be one of the clip's a_obj classes.

    \b
    Example:
      avsprep validate boxes.csv --root ./demo-data --split test --json
    """
    from avsprep.validate import run_validate

    setup_logging(quiet or as_json)
    report = run_validate(table, root, splits=list(split) or None, size_policy=size_policy, strict=strict,
                          subsets=subset, quiet=quiet or as_json)
    code = report.exit_code(strict=strict)
    if as_json:
        echo_json(report.to_dict(strict=strict))
    else:
        click.echo(report.format_text(max_findings=max_findings))
    raise SystemExit(code)


# ----------------------------------------------------------------------------- propose

@cli.command()
@root_option
@click.option("--from", "source", type=click.Choice(["masks"]), default="masks", show_default=True,
              help="Where boxes come from: masks = the bounding box of each GT mask (S4: frame 1 of train "
                   "clips and every val/test frame; MS3: every frame). Boxes from a trained model: "
                   "`avstrain predict CKPT SHARDS --labelimg DIR`.")
@click.option("--annotations", "-a", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Annotation folder to write into (mirroring the frame folders); frames with an "
                   "annotation file of any format anywhere under it are skipped. Default: next to the frames.")
@click.option("--setting", type=SETTINGS, default=None, help="s4 or ms3; inferred when omitted.")
@click.option("--split", type=SPLITS, multiple=True, help="Split(s) to propose for (repeatable). Default: all.")
@click.option("--all-blobs", is_flag=True,
              help="One box per connected blob of the mask (default: the largest blob only).")
@click.option("--dry-run", is_flag=True, help="List the files that would be written; write nothing.")
@click.option("--format", "fmt", type=click.Choice(["labelimg", "label-studio"]), default="labelimg",
              show_default=True,
              help="labelimg: one XML per frame in the annotation folder; label-studio: one task per frame "
                   "(boxes as predictions) in OUT/tasks.json, with the labeling config and a README.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="label-studio: the folder for tasks.json, labeling_config.xml and README.md (must be "
                   "empty or new).")
@click.option("--document-root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="label-studio: the folder Label Studio serves local files from; image URLs are relative "
                   "to it. Default: ROOT.")
@json_option
@quiet_option
@handle_errors
def propose(root, source, annotations, setting, split, all_blobs, dry_run, fmt, out, document_root, as_json,
            quiet):
    """Write labelImg XML box proposals for frames that have no annotation file yet.

    Files are in labelImg's exact format with `verified` unset, so an annotator
    opens the folder in labelImg, corrects each box and saves (Space marks it
    verified). An existing annotation file of any format (XML, YOLO .txt,
    CreateML .json) is never overwritten or touched; a second run writes
    nothing. `validate` counts the frames whose proposals are still unchecked.

    With --format label-studio the same frames become Label Studio tasks with
    the boxes as predictions (pre-annotations) in OUT/tasks.json; frames with
    an annotation file are skipped all the same.

    \b
    Example:
      avsprep propose --root ./demo-data --from masks --dry-run
      avsprep propose --root ./demo-data --format label-studio --out ./ls-tasks
    """
    from avsprep.annotations.propose import run_propose

    setup_logging(quiet or as_json)
    if fmt == "label-studio":
        if out is None:
            raise click.UsageError("--format label-studio needs --out OUT (the folder for tasks.json)")
        if not dry_run:
            check_output_dir(out, overwrite=False, what="OUT")
    summary = run_propose(root, source=source, annotations=annotations, setting=setting, all_blobs=all_blobs,
                          dry_run=dry_run, splits=list(split) or None, quiet=quiet or as_json, fmt=fmt, out=out,
                          document_root=document_root)
    echo_result(summary, as_json)


# ----------------------------------------------------------------------------- export

@cli.command()
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--to", "to", type=click.Choice(["voc", "yolo", "label-studio"]), default="voc", show_default=True,
              help="voc: labelImg Pascal-VOC XML (byte-identical to labelImg's own files); "
                   "yolo: labelImg YOLO .txt files plus one classes.txt at the top of OUT; "
                   "label-studio: OUT/tasks.json (verified frames as annotations, the rest as predictions), "
                   "labeling_config.xml and README.md (needs --root).")
@click.option("--root", "-r", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="AVSBench root: frame sizes are read from it for rows that carry none (YOLO/CreateML "
                   "imports, <size> 0x0); with --to label-studio, the frames' paths and sizes.")
@click.option("--document-root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="label-studio: the folder Label Studio serves local files from "
                   "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); image URLs are relative to it. Default: --root.")
@click.option("--per-clip", is_flag=True,
              help="label-studio: one task per clip holding all its frames (default: one task per frame).")
@click.option("--classes", "classes_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="YOLO class order (classes.txt, obj.names or data.yaml), e.g. "
                                 "annotations/predefined_classes.txt. Default: labels in table order.")
@overwrite_option
@json_option
@handle_errors
def export(table, out, to, root, classes_file, document_root, per_clip, overwrite, as_json):
    """Write the box table back as labelImg files, one per annotated frame, or as Label Studio tasks.

    Files go where the table's xml column says (relative to OUT), so a table
    can be fixed, converted and re-imported. A file written by labelImg,
    imported and exported, comes back byte-identical: each VOC file is written
    in the style of the labelImg version that wrote it (the table's xml_writer
    column; the 2017 v1.3 writers' 2-space ASCII layout included), and files
    of other tools, YOLO/CreateML imports and proposals as labelImg 1.8.6
    writes them.

    With --to label-studio, OUT gets tasks.json (boxes in percent of each
    frame, images as local-files URLs under --document-root), the labeling
    config with the setting's classes and a README of the import clicks.

    \b
    Example:
      avsprep export boxes.csv --to yolo ./yolo-labels --classes annotations/predefined_classes.txt
      avsprep export boxes.csv --to label-studio ./ls-tasks --root ./demo-data
    """
    from avsprep.annotations.export import run_export

    setup_logging(as_json)
    with writing(out, what="OUT"):
        check_output_dir(out, overwrite=overwrite, what="OUT")
        summary = run_export(table, out, to=to, root=root, classes_file=classes_file, document_root=document_root,
                             per_clip=per_clip)
    echo_result(summary, as_json)


# ----------------------------------------------------------------------------- build

@cli.command()
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@root_option
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Shard folder to write (SHARDS/{split}/shard-NNNNN.h5 + manifest.json).")
@click.option("--split", type=SPLITS, multiple=True, help="Split(s) to build (repeatable). Default: all.")
@subset_option
@click.option("--clips-per-shard", type=click.IntRange(1), default=64, show_default=True)
@click.option("--workers", "-j", type=click.IntRange(1), default=1, show_default=True,
              help="Worker processes. The output bytes do not depend on this.")
@click.option("--crop-size", type=click.IntRange(8), default=224, show_default=True,
              help="Side of the resized box crops.")
@click.option("--crop-policy", type=click.Choice(["largest", "union", "first"]), default="largest",
              show_default=True, help="Which box to crop when a frame has several.")
@click.option("--vggish-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="torchvggish weight file (vggish-10086976.pth); adds audio_vggish embeddings.")
@click.option("--on-bad-input", type=click.Choice(["stop", "skip"]), default="stop", show_default=True,
              help="A clip with an unreadable frame, mask or audio file: stop the build, or skip "
                   "the clip (listed in the manifest under 'skipped').")
@overwrite_option
@click.option("--resume", is_flag=True, help="Keep finished shards whose hash, options and input files (size, "
                                           "mtime, else sha256) are as recorded; rebuild the rest, one line each "
                                           "saying why.")
@json_option
@quiet_option
@handle_errors
def build(table, root, output, split, subset, clips_per_shard, workers, crop_size, crop_policy,
          vggish_weights, on_bad_input, overwrite, resume, as_json, quiet):
    """Write HDF5 shards: frames, masks, box crops, boxes and audio per 5-frame clip.

    Clips are sorted by name and cut into shards of --clips-per-shard, so the
    same inputs give byte-identical shards whatever --workers is. Every shard
    and the manifest are written to a temporary name and renamed when complete.
    Beside each shard, shard-NNNNN.h5.inputs.json records what it was built
    from (each clip's frame, mask and audio files with size, mtime and sha256,
    its box rows, the options), for --resume and avsprep verify --inputs.

    AVSS release: 10 steps per clip with the official geometry (train: short
    edge 224 + centre crop; val/test: resize), class-index masks through the
    palette, frame-valid and GT flags, v1 clips padded from 5 steps.

    \b
    Example:
      avsprep build boxes.csv --root ./demo-data -o ./shards --workers 2
    """
    from avsprep.build import BUILD_RESUME_RULE, BuildOptions, build_shards

    if overwrite and resume:
        raise click.UsageError("--overwrite and --resume exclude each other")
    setup_logging(quiet or as_json)
    opts = BuildOptions(splits=list(split) or None, clips_per_shard=clips_per_shard, workers=workers,
                        crop_size=crop_size, crop_policy=crop_policy, vggish_weights=vggish_weights,
                        on_bad_input=on_bad_input, overwrite=overwrite, resume=resume, subsets=subset)
    with writing(output, what="SHARDS folder", keep=BUILD_RESUME_RULE, noun="shards"):
        summary = build_shards(table, root, output, opts, quiet=quiet or as_json)
    echo_result(summary, as_json)


# ----------------------------------------------------------------------------- verify

@cli.command()
@click.argument("shards", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--inputs", "inputs_root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Also check the shards against the release at this root: each clip whose frame, "
                                 "mask or audio file changed since the build is one line (size, or sha256 when "
                                 "the mtime moved).")
@json_option
@quiet_option
@handle_errors
def verify(shards, inputs_root, as_json, quiet):
    """Check every shard against the manifest: sha256, byte size, clip counts, schema.

    Beyond the hashes, the values the schema promises: mask values per the setting's
    decoding (S4 0/1, MS3 0..255, AVSS class indices), class indices within the
    manifest's classes, boxes inside the 224x224 frame, datasets' dtypes and shapes,
    finite audio. With --inputs ROOT, also check them against the release they were
    built from (the input record beside each shard): a clip whose input files changed
    is listed; rebuild those shards with avsprep build --resume. Exit 1 with one line
    per problem naming the shard, clip and dataset.

    \b
    Example:
      avsprep verify ./shards
      avsprep verify ./shards --inputs ./demo-data
    """
    from avsprep.shards import verify_shards

    setup_logging(quiet or as_json)
    findings = verify_shards(shards, quiet=quiet or as_json, record=True)
    if inputs_root is not None:
        from avsprep.build.provenance import check_inputs

        findings += check_inputs(shards, inputs_root)
    errors = [f for f in findings if f.severity == "error"]
    if as_json:
        echo_json({"ok": not errors, "findings": [f.to_dict() for f in findings]})
    else:
        for f in findings:
            click.echo(f.format())
        what = "the manifest and the release's files" if inputs_root is not None else "the manifest"
        click.echo(f"OK: every shard matches {what}." if not errors
                   else f"FAILED: {len(errors)} problem(s).")
    raise SystemExit(1 if errors else 0)


# ----------------------------------------------------------------------------- inspect

@cli.command()
@click.argument("shards", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--clip", default=None, help="Clip name to show (default: the first clip).")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a contact sheet of the clip: frames with boxes, crops, masks, log-mel "
                   "(its folder is made if missing; an existing file needs --overwrite).")
@overwrite_option
@json_option
@handle_errors
def inspect(shards, clip, png, overwrite, as_json):
    """Summarise a shard folder; optionally draw one clip as a PNG contact sheet.

    \b
    Example:
      avsprep inspect ./shards --clip=-_wznbUu3DY --png sheet.png
    """
    from avsprep.shards.summary import inspect_shards

    setup_logging(as_json)
    if png is not None:  # checked before the shards are read
        check_new_file(png, inputs=[shards], overwrite=overwrite, what="--png file")
    with guarded_writes([png] if png is not None else [], what="--png file"):
        summary = inspect_shards(shards, clip=clip, png=png)
    echo_result(summary, as_json)


# ----------------------------------------------------------------------------- demo

@cli.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--clips", type=click.IntRange(3), default=None,
              help="Total clips, split 4:1:1 into train/val/test (default 192); "
                   "with --setting avss: clips per subset (default 6).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--setting", type=click.Choice(["s4", "avss"]), default="s4", show_default=True,
              help="s4: AVSBench layout (S4, or MS3 with --like); avss: an AVSBench-semantic release "
                   "(v1s, v1m, v2 subsets, non-224 JPEG frames, palette masks, 48 kHz stereo wavs).")
@click.option("--like", "like", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A real AVSBench metadata CSV (s4_meta_data.csv or ms3_meta_data.csv): the demo gets "
                   "its clip names, categories, splits and size (S4: 4,932 clips, 23 classes); "
                   "--clips is then ignored.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Processes writing clips in parallel; the output is byte-identical for any N.")
@click.option("--raw-videos", is_flag=True,
              help="Also write each clip as a raw video ({s4,ms3}_data/raw_videos/..., H.264 + AAC at "
                   "29.97 fps) for `avsprep extract`.")
@click.option("--distractor", is_flag=True,
              help="Also draw a big, bright, central object (a third demo class) in every frame: in a "
                   "share of the train/val clips (--distractor-sounds) it is the sounding object, in every "
                   "test clip it is silent (its visible pixels in distractor_masks/), so a model that "
                   "segments the salient object instead of listening lands on it "
                   "(`avstrain ablate --distractor-masks`).")
@click.option("--distractor-sounds", type=click.FloatRange(0, 1), default=0.75, show_default=True,
              help="With --distractor: the share of train/val clips in which the big object sounds.")
@overwrite_option
@quiet_option
@handle_errors
def demo(out, clips, seed, setting, like, workers, raw_videos, distractor, distractor_sounds, overwrite, quiet):
    """Write the synthetic demo dataset in exact AVSBench layout (S4, or MS3 with --like).

    Each frame shows two objects of different classes; only one makes the
    sound and only the audio says which. Includes the metadata CSV, frames,
    GT masks, 16 kHz wavs, log-mel pickles and one labelImg XML per frame
    boxing the sounding object. OUT becomes the AVSBench root.

    \b
    Example:
      avsprep demo ./demo-data --clips 192 --seed 0
      avsprep demo ./s4-like --like s4_meta_data.csv --workers 2
      avsprep demo ./avss-demo --setting avss
      avsprep demo ./demo-data --clips 12 --raw-videos
      avsprep demo ./distractor-demo --distractor
    """
    from avsprep.demo import write_demo

    setup_logging(quiet)
    # options of the S4/MS3 demo only, refused before anything is written
    s4_only = {"--like takes an S4/MS3 metadata CSV": like is not None,
               "--raw-videos writes S4/MS3 raw_videos": raw_videos,
               "--distractor is drawn in the S4/MS3 demo": distractor}
    if distractor and like is not None:
        raise click.UsageError("--distractor is drawn in the synthetic demo only; it does not combine with --like")
    for what in (w for w, given in s4_only.items() if given and setting == "avss"):
        raise click.UsageError(f"{what}; it does not combine with --setting avss")
    with writing(out, what="OUT"):
        check_output_dir(out, overwrite=overwrite, what="OUT")
        summary = write_demo(out, clips=clips, seed=seed, quiet=quiet, workers=workers, like=like,
                             setting=setting, distractor=distractor, distractor_sounds=distractor_sounds)
        if raw_videos:
            from avsprep.demo.raw_videos import write_raw_videos

            summary["text"] += f"\nWrote {write_raw_videos(out, quiet=quiet)} raw video(s) under {out}."
    click.echo(summary["text"])


# ----------------------------------------------------------------------------- extract

@cli.command()
@click.argument("src", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Release root to write (metadata CSV, {s4,ms3}_data/visual_frames, audio_wav).")
@click.option("--setting", type=click.Choice(["s4", "ms3", "avss"]), default="s4", show_default=True,
              help="avss: {label}/{uid}/frames/{i}.jpg at the source size, audio.wav 48 kHz, "
                   "metadata.csv and label2idx.json (no official script exists).")
@click.option("--csv", "csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Metadata CSV listing the clips (default: the one in SRC or two folders above it).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None,
              help="Split of videos not listed in a metadata CSV.")
@click.option("--category", default=None,
              help="S4 category of videos not listed in a metadata CSV; AVSS: the a_obj sounding "
                   "classes joined by '_'.")
@click.option("--label", "label", type=click.Choice(["v1s", "v1m", "v2"]), default=None,
              help="AVSS subset (the metadata 'label' column): v1s/v1m 5-s clips, v2 10-s clips.")
@click.option("--windows", is_flag=True,
              help="Cut each video into consecutive 5-s clips named {stem}_{start_ms}_{end_ms} "
                   "(a trailing part under 5 s is dropped).")
@click.option("--audio-resample", is_flag=True,
              help="Anti-aliased resampling to 16 kHz instead of moviepy 1.x's nearest-sample pick "
                   "(the official wavs; log-mel values then differ from the release's by up to ~4).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Processes decoding clips in parallel; the output is byte-identical for any N.")
@overwrite_option
@json_option
@quiet_option
@handle_errors
def extract(src, out, setting, csv, split, category, label, windows, audio_resample, workers, overwrite,
            as_json, quiet):
    """Cut videos into the AVSBench release layout exactly as the official preprocessing does.

    Per clip: the 5 frames the official scripts keep (decoded index int(l*r + 15/16*r) for
    second l, r = round(fps)), resized to 224x224 (OpenCV INTER_LINEAR) as PNG, and a 16 kHz
    16-bit stereo wav equal sample for sample to moviepy 1.x's. SRC is the official raw_videos
    tree with its metadata CSV, or video files / folders (then --split and --category). A video
    that cannot be decoded, has no audio, is too short or silent is reported and writes nothing.
    Reruns skip finished clips.

    \b
    Example:
      avsprep extract s4_root/s4_data/raw_videos -o ./s4_root
      avsprep extract my_videos/ -o ./mine --split train --category dog_barking --workers 4
      avsprep extract raw_videos/ -o ./ms3_root --setting ms3 --csv ms3_meta_data.csv
      avsprep extract long_recording.mp4 -o ./mine --windows --split train --category lawn_mowing
      avsprep extract my_videos/ -o ./avss --setting avss --label v2 --category dog --split test
    """
    from avsprep.extract import RESUME_RULE, run_extract

    setup_logging(quiet or as_json)
    with writing(out, what="OUT (-o)", keep=RESUME_RULE):
        summary = run_extract(list(src), out, setting=setting, split=split, category=category, csv=csv,
                              workers=workers, overwrite=overwrite, audio_resample=audio_resample,
                              quiet=quiet or as_json, windows=windows, subset=label)
    findings = summary.pop("_findings")
    if as_json:
        echo_json(summary)
    else:
        for f in findings:
            click.echo(f.format(), err=True)
        click.echo(summary["text"])
    raise SystemExit(summary["exit_code"])


if __name__ == "__main__":  # pragma: no cover
    cli()
