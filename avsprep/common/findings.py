"""Findings: what readers and checks report instead of raising.

A finding has a stable ``code``, a ``severity`` (error/warning/info), the file,
clip and frame it is about, and a one-line message. Callers decide whether
findings fail the run (``--strict`` turns warnings into failures).

:data:`CODES` is the one registry of finding codes (readers, import, validate,
the AVSS release checks, shards): code -> (default severity, one-line meaning).
A :class:`Finding` with a code that is not registered here is refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Optional

SEVERITIES = ("error", "warning", "info")

# code -> (default severity, meaning). Datumaro's name is given where a check overlaps.
CODES: dict[str, tuple[str, str]] = {
    # reader (avsprep.annotations.voc / yolo / createml) and import
    "xml-unreadable": ("error", "not well-formed XML, not decodable, or not a file (AppleDouble ._*)"),
    "xml-too-large": ("error", "over the size limit for one frame's XML (1 MiB)"),
    "xml-entity": ("error", "DOCTYPE/ENTITY declaration: possible XXE or entity bomb, refused"),
    "xml-not-annotation": ("error", "root element is not <annotation>"),
    "xml-labelme": ("error", "a MIT LabelMe polygon XML, not Pascal VOC"),
    "xml-rotated-box": ("error", "a roLabelImg file with rotated boxes only"),
    "xml-cvat-task": ("error", "a CVAT for images/video task file, not one VOC file per frame"),
    "xml-dlib": ("error", "a dlib imglab dataset XML"),
    "xml-encoding": ("error", "bytes cannot be decoded; the likely encoding is named"),
    "encoding-mismatch": ("warning", "UTF-8 bytes under another encoding declaration; read as UTF-8"),
    "yolo-unreadable": ("error", "a .txt that is not YOLO labels (e.g. an image list)"),
    "yolo-bad-row": ("error", "a YOLO row that is not 'class cx cy w h'; row skipped"),
    "yolo-polygon": ("warning", "a YOLOv8-seg polygon row, read as its bounding box"),
    "yolo-not-normalised": ("warning", "YOLO values outside 0..1"),
    "yolo-no-class-file": ("error", "YOLO boxes with no classes.txt / obj.names / data.yaml"),
    "yolo-class-file-bad": ("error", "a class file with no readable class names"),
    "yolo-class-unknown": ("error", "YOLO class index outside the class file; box skipped"),
    "yolo-classes-differ": ("warning", "class files of one import list different classes"),
    "yolo-classes-changed": ("warning", "a class file differs from the earlier import of the folder"),
    "yolo-no-frame": ("error", "YOLO boxes but the frame image (its size) cannot be read"),
    "json-unreadable": ("error", "not valid JSON"),
    "json-too-deep": ("error", "JSON nested deeper than 100 levels or over the size limit (a JSON bomb); not read"),
    "json-not-createml": ("error", "JSON of another tool (COCO, labelme, Label Studio, VoTT)"),
    "json-bad-box": ("error", "a CreateML box without x/y/width/height; box skipped"),
    "file-too-large": ("error", "an annotation file over the size limit"),
    # Label Studio JSON (avsprep.annotations.label_studio); each names the file and the task id
    "ls-bad-task": ("error", "Label Studio: a task that is not an object, or with no image URL; skipped"),
    "ls-bad-box": ("error", "Label Studio: a box whose x/y/width/height/rotation is not a finite number; skipped"),
    "ls-bad-label": ("error", "Label Studio: a box without exactly one label; skipped"),
    "ls-not-rectangle": ("error", "Label Studio: a polygon, ellipse, keypoint or brush region; skipped"),
    "ls-result-ignored": ("info", "Label Studio: a result that is no region (choices, text); ignored"),
    "ls-box-out-of-range": ("error", "Label Studio: percent values negative, over 100 or a size <= 0; skipped"),
    "ls-no-original-size": ("warning", "Label Studio: no original_width/height; converted on the real frame size"),
    "ls-size-mismatch": ("warning", "Label Studio: original_width/height differ from the real frame; percent "
                                    "converted on the real frame"),
    "ls-rotated-box": ("warning", "Label Studio: a rotated box, kept as the axis-aligned box around it"),
    "ls-label-unknown": ("warning", "Label Studio: a label that is no class of the setting (validate judges)"),
    "ls-skipped-task": ("info", "Label Studio: a task the annotators skipped (cancelled); not imported"),
    "ls-other-annotator": ("info", "Label Studio: no annotation by --annotator; not imported"),
    "ls-annotation-conflict": ("error", "Label Studio: annotations of one task disagree; not imported unless "
                                        "--annotator or --latest (then a warning)"),
    "ls-predictions-only": ("info", "Label Studio: only predictions (unchecked pre-annotations); not imported "
                                    "unless --accept-predictions"),
    "ls-no-annotation": ("info", "Label Studio: a task with no annotation yet; not imported"),
    "ls-no-frame": ("error", "Label Studio: boxes on a frame whose image (its size) cannot be read"),
    "file-unreadable": ("error", "an annotation file that cannot be opened or is not UTF-8"),
    "file-not-annotation": ("info", "a file under the annotation folder that is no annotation nor frame"),
    "file-skipped": ("info", "an annotation file of another format than --format"),
    "propose-size-mismatch": ("warning", "propose: a GT mask of another size than its frame; the box was scaled to the frame"),
    "frame-unchecked-proposal": ("info", "box proposals (avsprep propose / predict --labelimg) not yet checked "
                                         "in labelImg; a warning under --strict"),
    "xml-bad-name": ("warning", "file stem is not a frame name ({name}_{k} / {id}.mp4_{k})"),
    "xml-no-clip": ("warning", "the video is not listed in the metadata CSV"),
    "xml-duplicate-frame": ("error", "two XML files for the same frame"),
    "filename-mismatch": ("warning", "<filename> names another image than the XML's own stem"),
    "size-missing": ("info", "no <size> element"),
    "size-zero": ("warning", "<size> is 0x0 (labelImg could not decode the image)"),
    "size-bad-value": ("warning", "<size> value is not a pixel count"),
    "difficult-empty": ("warning", "empty <difficult/>, read as 0"),
    "difficult-bad-value": ("warning", "<difficult> is not 0/1, read as 0"),
    "object-part-ignored": ("info", "<part> boxes inside an object are not read"),
    "box-missing-coord": ("error", "<bndbox> lacks a coordinate; box skipped"),
    "box-rotated": ("error", "a roLabelImg rotated box (<robndbox>) among normal boxes; not read"),
    "box-polygon": ("error", "a polygon object among boxes; not read"),
    "box-bad-coord": ("error", "a coordinate is not a number; box skipped"),
    # validate: boxes, labels, coverage (avsprep.validate)
    "box-not-finite": ("error", "NaN or infinite coordinate (Datumaro: InvalidValue)"),
    "box-inverted": ("error", "xmin > xmax or ymin > ymax"),
    "box-degenerate": ("error", "width or height under 1 pixel (Datumaro: NegativeLength)"),
    "box-outside": ("error", "box (almost) entirely outside the frame"),
    "box-partly-outside": ("warning", "box crosses the frame edge; clamping keeps a valid box"),
    "box-duplicate": ("warning", "the same box twice on one frame"),
    "size-mismatch": ("warning", "<size> differs from the real frame; rescaled (error with --size-policy reject)"),
    "label-empty": ("error", "empty or whitespace-only label"),
    "label-whitespace": ("warning", "label differs from a class only by spaces/TABs (labelImg double-space bug)"),
    "label-case-drift": ("warning", "label differs from a class by case, or spaces where the class has '_'"),
    "label-unknown": ("error", "label is not a class of this setting (Datumaro: UndefinedLabel)"),
    "label-category-mismatch": ("error", "label is another class than the clip's category (S4)"),
    "frame-missing": ("warning", "frame k of a clip has no annotation file (coverage gap)"),
    "frame-no-box": ("info", "frame annotated with no box (Datumaro: MissingAnnotation, here info: the sounding "
                             "object may be off-screen)"),
    "frame-bad-index": ("error", "frame number in the table is not 1..5"),
    "frame-image-missing": ("error", "the frame PNG for an annotated frame is not in the root"),
    "frame-image-unreadable": ("error", "the frame PNG cannot be opened"),
    "clip-not-annotated": ("warning", "clip in the metadata with no annotation at all"),
    "table-clip-mismatch": ("warning", "split/category in the table differ from the metadata"),
    "findings-sidecar-unreadable": ("warning", "TABLE.findings.json exists but cannot be read"),
    "label-not-in-a-obj": ("error", "AVSS: box label is a class that the clip's a_obj does not list"),
    # validate: the AVSS release itself (avsprep.validate.avss_release)
    "a-obj-typo": ("warning", "a_obj token is a misspelt class (h orse); read as that class"),
    "a-obj-background": ("warning", "a_obj names 'background' as the sounding object (5 v1m rows)"),
    "a-obj-off-screen": ("info", "a_obj is 'off-the-screen': the sound source is not visible"),
    "a-obj-unknown": ("error", "a_obj token is not one of the 70 classes"),
    "clip-dir-missing": ("error", "the clip's folder {subset}/{uid} is missing"),
    "frame-file-missing": ("error", "frames/{i}.jpg missing"),
    "frame-extra": ("warning", "a frame beyond the clip's 5 (v1) / 10 (v2)"),
    "frames-extra-file": ("warning", "an entry in frames/ that is not a frame: the official loader counts every "
                                     "entry and then fails to open {n}.jpg"),
    "frames-annotation-file": ("info", "an annotation file in frames/: import reads it, the official loader "
                                       "would count it as a frame - move it out before running that code"),
    "frame-unreadable": ("error", "a frame JPEG cannot be opened"),
    "mask-missing": ("error", "labels_rgb/{i}.png missing for a frame that must have a mask"),
    "mask-unreadable": ("error", "a mask PNG cannot be opened"),
    "mask-size-mismatch": ("warning", "mask and frame differ in size (both are resized to 224 anyway)"),
    "mask-off-palette": ("warning", "mask pixels whose colour is in no palette entry: the official loader makes "
                                    "them background silently"),
    "mask-class-not-in-a-obj": ("info", "mask shows a class that a_obj does not list"),
    "audio-missing": ("error", "audio.wav missing"),
    "audio-unreadable": ("error", "audio.wav cannot be read"),
    "audio-too-long": ("error", "audio of 10.575 s or more: 11 VGGish examples, the official loader fails"),
    "audio-short": ("warning", "fewer VGGish examples than frames: zero log-mel examples fill the rest"),
    # shards (avsprep.shards: check_shard_file, verify_shards)
    "shard-unreadable": ("error", "a shard file cannot be opened as HDF5"),
    "shard-attrs": ("error", "a shard lacks required attributes"),
    "shard-schema-version": ("error", "a shard of another schema version; rebuild"),
    "shard-split": ("error", "a shard's split attribute differs from the split it is listed under"),
    "shard-dataset-missing": ("error", "a dataset of the schema is missing from a shard"),
    "shard-shape": ("error", "a shard dataset has another shape than the schema"),
    "shard-dtype": ("error", "a shard dataset has another dtype than the schema"),
    "shard-chunks": ("error", "a shard dataset is not chunked one clip per chunk"),
    "shard-dataset-extra": ("error", "a shard holds datasets that are not in the schema"),
    "shard-clips": ("error", "a shard holds other clips (or another order) than the manifest lists"),
    "shard-label": ("error", "a class index in a shard (label, crop_label, a box's class) outside the manifest's classes"),
    "shard-boxes": ("error", "a shard's boxes: clip_row out of range or not sorted, a box outside the frame or on a missing step"),
    "shard-mask-values": ("error", "a shard's masks hold values its mask decoding cannot give (S4 0/1, AVSS class indices)"),
    "shard-audio-values": ("error", "a shard's log-mel or VGGish embeddings hold NaN/inf"),
    "shard-missing": ("error", "a shard listed in the manifest is missing"),
    "shard-size": ("error", "a shard's size differs from the manifest (truncated or replaced)"),
    "shard-sha256": ("error", "a shard's sha256 differs from the manifest (corrupt)"),
    "shard-unlisted": ("warning", "a shard file in the folder that the manifest does not list"),
    "input-changed": ("error", "a release file a shard was built from changed since the build (verify --inputs)"),
    "input-record-missing": ("error", "a shard has no input record, so verify --inputs cannot check it"),
    "manifest-missing": ("error", "the shard folder has no readable manifest.json"),
    "manifest-invalid": ("error", "manifest.json fails its integrity check"),
    "manifest-count": ("error", "a manifest entry's clip list and count disagree"),
    "manifest-index": ("error", "the manifest index disagrees with the shards' clip rows"),
    # avsprep extract (avsprep.extract)
    "video-missing": ("error", "a metadata CSV row whose video is not under the sources"),
    "video-undecodable": ("error", "a video file ffmpeg (PyAV) cannot open or decode"),
    "video-no-audio": ("error", "a video without an audio track"),
    "video-too-short": ("error", "a video shorter than the clip it must give (5 s, or 10 - start for S4)"),
    "audio-silent": ("error", "a video whose audio is all zeros"),
    "video-variable-rate": ("warning", "variable frame rate: frames may differ from the official reader's "
                                       "constant-rate ones; the clip is written"),
}

# Reader codes that mean "this annotation file could not be read at all": import exits 1 on any.
UNREADABLE_CODES = frozenset({"xml-unreadable", "xml-too-large", "xml-entity", "xml-not-annotation",
                              "xml-labelme", "xml-rotated-box", "xml-cvat-task", "xml-dlib", "xml-encoding",
                              "yolo-unreadable", "yolo-no-class-file", "yolo-class-file-bad", "yolo-no-frame",
                              "json-unreadable", "json-too-deep", "json-not-createml", "file-unreadable", "file-too-large",
                              "ls-no-frame"})


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str
    file: Optional[str] = None
    clip: Optional[str] = None
    frame: Optional[int] = None

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.code not in CODES:
            raise ValueError(f"finding code {self.code!r} is not registered in avsprep.common.findings.CODES")

    @classmethod
    def of(cls, code: str, message: str, file: Optional[str] = None, clip: Optional[str] = None,
           frame: Optional[int] = None, severity: Optional[str] = None) -> "Finding":
        """A finding with the code's registered severity unless ``severity`` is given."""
        return cls(code, severity or CODES[code][0], message, file, clip, frame)

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        """One line: ``severity CODE file clip frame: message``."""
        where = " ".join(
            p for p in (
                self.file or "",
                f"clip={self.clip}" if self.clip else "",
                f"frame={self.frame}" if self.frame is not None else "",
            ) if p
        )
        return f"{self.severity:<7} {self.code} {where}: {self.message}".replace("  ", " ")


def exit_code(findings: Iterable[Finding], strict: bool = False) -> int:
    """0 when clean, 1 on any error (or any warning under ``strict``)."""
    sev = {f.severity for f in findings}
    if "error" in sev or (strict and "warning" in sev):
        return 1
    return 0

