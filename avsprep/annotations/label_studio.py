"""Label Studio tasks: our boxes out as pre-annotations, annotators' boxes back in.

Pure functions: boxes -> task dicts, labeling config and README text; a parsed JSON
document -> the human boxes of each frame, with findings. No file is opened here.

**Out** (:func:`frame_task`, :func:`clip_task`). One task per frame (or per clip, its frames
as an image list, ``valueList``), ``data.image`` a local-files URL
(``/data/local-files/?d=REL``, REL relative to the document root Label Studio serves).
A box is a ``rectanglelabels`` result in percent of ``original_width`` / ``original_height``
(``x = x0 / W * 100``, ``width = (x1 - x0) / W * 100``; our pixel edges, so no convention
shift), ``rotation`` 0, ``from_name`` ``label``, ``to_name`` ``image``, and an id that is
the same on every export of the same box. Boxes a person has verified go out as an
annotation, the rest as a prediction with its ``model_version`` (and a ``score`` per box
where the writer has one), which Label Studio shows as a pre-annotation.

**In** (:func:`parse_label_studio`). Label Studio's JSON export (tasks with
``annotations`` and ``predictions``) and JSON_MIN (one flat record per annotation).
Per task the human annotation is chosen by :class:`Choice`: cancelled (skipped)
annotations never count; with several annotations that disagree, ``--annotator`` or
``--latest`` decides, else the task is a conflict finding and is not imported;
predictions count only with ``--accept-predictions``. Rotated boxes become the
axis-aligned box around the rotated rectangle (a warning). Percent values stay
percent here: :func:`pixel_edges` converts them on the *real* frame size
(``zero-based`` edges, :mod:`avsprep.annotations.convention`), done by the importer.
The image URL of any storage (local files, ``/data/upload/N/{8 hex}-name``, ``s3://``,
``gs://``, ``azure-blob://``, ``https://``) gives the frame's file name (:func:`url_parts`).
Every problem is a finding naming the file and the task id.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import quoteattr

from avsprep.common.findings import Finding

FROM_NAME, TO_NAME = "label", "image"
LOCAL_FILES = "/data/local-files/?d="
RECT = "rectanglelabels"
# what Label Studio puts before an uploaded file's name: /data/upload/3/1a2b3c4d-name.jpg
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
# percent: float noise at the frame edge (100.00000000000001) and the 6 decimals of a YOLO file that
# Label Studio's YOLO import turned into percent (-5e-05); boxes within it are clamped to 0..100
EPS = 1e-3


# ----------------------------------------------------------------------------- out

@dataclass
class OutBox:
    """One box to write: pixel edges (0-based, exclusive) and the model's score if any."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    score: Optional[float] = None


@dataclass
class OutFrame:
    """One frame to write: its image path under the document root (posix), its real size, and its
    boxes; ``verified`` boxes go out as an annotation, the others as a prediction."""

    video: str
    frame: int
    image: str
    width: int
    height: int
    boxes: list[OutBox] = field(default_factory=list)
    verified: bool = False


def image_url(rel: str) -> str:
    """Label Studio's local-files URL of a path relative to its document root."""
    return LOCAL_FILES + quote(rel.replace("\\", "/"), safe="/")


def result_id(*parts) -> str:
    """A stable 10-character id (Label Studio's own ids are 10 characters too)."""
    return hashlib.sha1("/".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:10]


def percent(pixels: float, size: int) -> float:
    """``pixels`` as percent of ``size``. A whole number of pixels is nudged up by a few ulps where
    needed so that ``p / 100 * size`` is not just below it: Label Studio's VOC and COCO exports
    truncate that product with ``int()``, which would turn 116 into 115."""
    p = pixels / size * 100
    if float(pixels).is_integer():
        for _ in range(8):
            if p / 100 * size >= pixels:
                break
            p = math.nextafter(p, math.inf)
    return p


def rect_result(box: OutBox, width: int, height: int, rid: str, item_index: Optional[int] = None) -> dict:
    """A ``rectanglelabels`` result in percent of the frame size."""
    out = {"id": rid, "type": RECT, "from_name": FROM_NAME, "to_name": TO_NAME,
           "original_width": int(width), "original_height": int(height), "image_rotation": 0,
           "value": {"x": percent(box.x0, width), "y": percent(box.y0, height),
                     "width": percent(box.x1 - box.x0, width), "height": percent(box.y1 - box.y0, height),
                     "rotation": 0, "rectanglelabels": [box.label]}}
    if box.score is not None:
        out["score"] = float(box.score)
    if item_index is not None:
        out["item_index"] = item_index
    return out


def _results(frames: list[OutFrame], kind: str, per_clip: bool) -> list[dict]:
    out = []
    for i, f in enumerate(frames):
        for n, b in enumerate(f.boxes):
            out.append(rect_result(b, f.width, f.height, result_id(f.video, f.frame, kind, n),
                                   i if per_clip else None))
    return out


def _wrap(frames: list[OutFrame], data: dict, model_version: str, per_clip: bool) -> dict:
    """The task: an annotation when every frame is verified, else a prediction."""
    task: dict = {"data": data}
    if all(f.verified for f in frames):
        task["annotations"] = [{"result": _results(frames, "annotation", per_clip), "ground_truth": False}]
    else:
        result = _results(frames, "prediction", per_clip)
        scores = [r["score"] for r in result if "score" in r]
        pred: dict = {"model_version": model_version, "result": result}
        if scores:
            pred["score"] = sum(scores) / len(scores)
        task["predictions"] = [pred]
    return task


def frame_task(frame: OutFrame, model_version: str) -> dict:
    """One frame's task."""
    data = {"image": image_url(frame.image), "avs_video": frame.video, "avs_frame": frame.frame}
    return _wrap([frame], data, model_version, per_clip=False)


def clip_task(frames: list[OutFrame], model_version: str) -> dict:
    """One clip's task, its frames as an image list (``item_index`` on each box). It is an annotation
    only when every frame is verified: Label Studio submits a task as a whole."""
    data = {"images": [image_url(f.image) for f in frames], "avs_video": frames[0].video,
            "avs_frames": [f.frame for f in frames]}
    return _wrap(frames, data, model_version, per_clip=True)


def labeling_config(classes: list[str], per_clip: bool = False) -> str:
    """The labeling interface: an image (or the clip's image list) and one RectangleLabels with the
    setting's classes."""
    image = (f'<Image name="{TO_NAME}" valueList="$images"/>' if per_clip
             else f'<Image name="{TO_NAME}" value="$image" zoom="true"/>')
    labels = "".join(f"    <Label value={quoteattr(c)}/>\n" for c in classes)
    return (f"<View>\n  {image}\n  <RectangleLabels name=\"{FROM_NAME}\" toName=\"{TO_NAME}\">\n"
            f"{labels}  </RectangleLabels>\n</View>\n")


def readme_text(document_root: str, tasks_file: str, config_file: str, n_tasks: int) -> str:
    """What to click in Label Studio to load the tasks, and how the boxes come back."""
    return f"""# Label Studio tasks written by avsprep

{n_tasks} task(s) in `{tasks_file}`; the labeling interface is `{config_file}`.
Images are local-files URLs relative to `{document_root}`.

1. Start Label Studio so it serves that folder:

       LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \\
       LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={document_root} label-studio start

   and in the project's Settings -> Cloud Storage add a "Local files" source storage
   with the absolute path of the frames folder (under the document root); do not sync it.
2. Create a project; Settings -> Labeling Interface -> Code: paste `{config_file}`.
3. Import -> upload `{tasks_file}`. Our boxes show as predictions (pre-annotations);
   boxes someone already verified are annotations.

Back: Export -> JSON (or JSON_MIN), then

    avsprep import --root ROOT -a FOLDER_WITH_THE_EXPORT -o boxes.csv

Predictions nobody submitted are not imported (`--accept-predictions` takes them).
"""


# ----------------------------------------------------------------------------- in

@dataclass
class Choice:
    """Which annotation of a task counts (the import's ``--annotator``, ``--latest``,
    ``--accept-predictions``)."""

    annotator: Optional[str] = None
    latest: bool = False
    accept_predictions: bool = False


@dataclass
class LsBox:
    """A box as Label Studio wrote it: percent of the image, rotation in degrees about (x, y)."""

    label: str
    x: float
    y: float
    width: float
    height: float
    rotation: float = 0.0
    original: Optional[tuple[int, int]] = None  # original_width, original_height when given


@dataclass
class LsImage:
    """The counted boxes of one image of one task."""

    task: str
    url: str
    boxes: list[LsBox] = field(default_factory=list)
    verified: bool = True  # False: a prediction taken under --accept-predictions


@dataclass
class LsResult:
    images: list[LsImage] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    readable: bool = True


@dataclass
class _Ann:
    source: str  # "annotation" or "prediction"
    results: list
    who: str = ""
    when: str = ""
    order: int = 0
    cancelled: bool = False


def _is_task(item) -> bool:
    """A task object: ``data`` (CreateML images never have one) with the task's fields."""
    return isinstance(item, dict) and "data" in item and (isinstance(item["data"], dict)
                                                          or "annotations" in item or "predictions" in item)


def _is_min_record(item) -> bool:
    """JSON_MIN: the data fields at the top, each control's results under its name. A CreateML
    image (``annotations`` / ``annotation`` with ``coordinates``) is not one."""
    if not isinstance(item, dict) or "annotations" in item or "annotation" in item:
        return False
    if "annotation_id" in item:
        return True
    return any(isinstance(v, list) and v and all(isinstance(r, dict) for r in v)
               and any(k.endswith("labels") or k in ("x", "points") for k in v[0]) for v in item.values())


def is_label_studio(doc) -> bool:
    """True for a Label Studio JSON export (JSON, JSON_MIN) or task file; one task object too."""
    if isinstance(doc, dict):
        return _is_task(doc)
    return isinstance(doc, list) and bool(doc) and (_is_task(doc[0]) or _is_min_record(doc[0]))


def url_parts(url: str) -> tuple[str, ...]:
    """The path parts of an image URL of any Label Studio storage; the last part is the file name
    (an uploaded file's 8-hex-digit prefix removed). ``()`` when the URL names no file."""
    if not isinstance(url, str) or not url.strip() or url.startswith("data:"):
        return ()
    s = urlsplit(url.strip())
    path = s.path
    if path.rstrip("/").endswith("/data/local-files") or path.rstrip("/") == "/data/local-files":
        path = (parse_qs(s.query).get("d") or [""])[0]  # parse_qs unquotes
    else:
        path = unquote(path)
        if s.scheme in ("s3", "gs", "azure-blob", "gcs") and s.netloc:
            path = f"{s.netloc}/{path}"
    parts = tuple(p for p in path.replace("\\", "/").split("/") if p and p != ".")
    if not parts:
        return ()
    if s.path.startswith("/data/upload/"):
        parts = parts[:-1] + (UPLOAD_PREFIX.sub("", parts[-1], count=1),)
    return parts


def _number(v) -> Optional[float]:
    """A finite number (not a bool, not a numeric string), or None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _task_id(task: dict, n: int) -> str:
    tid = task.get("id")
    return str(tid) if isinstance(tid, (int, str)) and not isinstance(tid, bool) else f"#{n}"


def _who(a: dict) -> str:
    by = a.get("completed_by", a.get("annotator", ""))
    if isinstance(by, dict):
        by = by.get("email") or by.get("id") or ""
    return "" if by is None else str(by)


def _tasks(doc, file: str, findings: list) -> list[tuple[str, dict, list[_Ann]]]:
    """(task id, data, annotations) per task, JSON and JSON_MIN alike (JSON_MIN: one record per
    annotation, grouped by task id)."""
    items = doc if isinstance(doc, list) else [doc]
    out: dict[str, tuple[str, dict, list[_Ann]]] = {}
    for n, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            findings.append(Finding("ls-bad-task", "error", f"task #{n} is a {type(item).__name__}, not an "
                                    "object; skipped", file))
            continue
        tid = _task_id(item, n)
        if _is_task(item):
            data = item.get("data", {})
            if not isinstance(data, dict):
                findings.append(Finding("ls-bad-task", "error", f"task {tid}: 'data' is not an object; skipped",
                                        file))
                continue
            anns: list[_Ann] = []
            for source in ("annotations", "predictions"):
                got = item.get(source, [])
                if got is None:
                    got = []
                if not isinstance(got, list):
                    findings.append(Finding("ls-bad-task", "error", f"task {tid}: '{source}' is not a list; "
                                            "ignored", file))
                    continue
                for m, a in enumerate(got):
                    if source == "predictions" and isinstance(a, int) and not isinstance(a, bool):
                        anns.append(_Ann("prediction-id", [], order=m))  # a project export lists only their ids
                        continue
                    if not isinstance(a, dict) or not isinstance(a.get("result", []), list):
                        findings.append(Finding("ls-bad-task", "error", f"task {tid}: {source[:-1]} {m + 1} has "
                                                "no 'result' list; ignored", file))
                        continue
                    anns.append(_Ann(source[:-1], a.get("result") or [], _who(a),
                                     str(a.get("updated_at") or a.get("created_at") or ""), m,
                                     bool(a.get("was_cancelled"))))
            out[f"{tid}#{n}" if tid in out else tid] = (tid, data, anns)
        else:  # JSON_MIN
            results = []
            data = {}
            for k, v in item.items():
                if isinstance(v, list) and v and all(isinstance(r, dict) for r in v) and k not in ("images",):
                    results += [{"type": _min_type(r), "from_name": k, "value": r,
                                 "original_width": r.get("original_width"),
                                 "original_height": r.get("original_height")} for r in v]
                else:
                    data[k] = v
            key = tid
            prev = out.get(key)
            ann = _Ann("annotation", results, _who(item), str(item.get("updated_at") or item.get("created_at") or ""),
                       len(prev[2]) if prev else 0)
            if prev:
                prev[2].append(ann)
            else:
                out[key] = (tid, data, [ann])
    return list(out.values())


def _min_type(r: dict) -> str:
    for t in ("rectanglelabels", "polygonlabels", "keypointlabels", "brushlabels", "ellipselabels", "labels"):
        if t in r:
            return t
    return "rectangle" if {"x", "y", "width", "height"} <= set(r) else "unknown"


def _box(r, tid: str, urls: list, file: str, findings: list) -> Optional[tuple[int, LsBox]]:
    """One result item -> (image index, box), or None with a finding saying why it is not a box."""
    if not isinstance(r, dict):
        findings.append(Finding("ls-bad-box", "error", f"task {tid}: a result that is not an object; skipped", file))
        return None
    kind = r.get("type")
    rid = r.get("id", "?")
    where = f"task {tid} result {rid}"
    if kind not in (RECT, "rectangle"):
        if isinstance(kind, str) and kind.endswith("labels") or kind in ("polygon", "ellipse", "keypoint", "brush"):
            findings.append(Finding("ls-not-rectangle", "error", f"{where}: a {kind} region, not a rectangle; "
                                    "skipped (draw boxes with RectangleLabels)", file))
        else:
            findings.append(Finding("ls-result-ignored", "info", f"{where}: a {kind!r} result, not a box; ignored",
                                    file))
        return None
    v = r.get("value")
    if not isinstance(v, dict):
        findings.append(Finding("ls-bad-box", "error", f"{where}: no 'value' object; skipped", file))
        return None
    nums = {k: _number(v.get(k)) for k in ("x", "y", "width", "height")}
    bad = [k for k, x in nums.items() if x is None]
    if bad:
        shown = ", ".join(f"{k}={v.get(k)!r}" for k in bad)
        findings.append(Finding("ls-bad-box", "error", f"{where}: {shown} is not a finite number; skipped", file))
        return None
    x, y, w, h = nums["x"], nums["y"], nums["width"], nums["height"]
    rot = v.get("rotation", 0)
    rot = 0.0 if rot is None else _number(rot)
    if rot is None:
        findings.append(Finding("ls-bad-box", "error", f"{where}: rotation {v.get('rotation')!r} is not a "
                                "number; skipped", file))
        return None
    labels = v.get(RECT, v.get("labels"))
    if not (isinstance(labels, list) and len(labels) == 1 and isinstance(labels[0], str) and labels[0].strip()):
        findings.append(Finding("ls-bad-label", "error", f"{where}: rectanglelabels {labels!r} is not one label; "
                                "skipped", file))
        return None
    inside = -EPS <= x and -EPS <= y and w > 0 and h > 0 and (
        x + w <= 100 + EPS and y + h <= 100 + EPS if rot % 360 == 0 else x <= 100 + EPS and y <= 100 + EPS)
    if not inside:
        findings.append(Finding("ls-box-out-of-range", "error",
                                f"{where}: x={x:g} y={y:g} width={w:g} height={h:g} is not inside 0..100 percent "
                                "with a positive size; skipped", file))
        return None
    if rot % 360 == 0:  # clamp the float noise (within EPS) onto the frame edge
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, 100.0), min(y + h, 100.0)
        x, y, w, h = x0, y0, x1 - x0, y1 - y0
    ow, oh = r.get("original_width"), r.get("original_height")
    original = None
    if isinstance(ow, int) and isinstance(oh, int) and not isinstance(ow, bool) and not isinstance(oh, bool) \
            and ow > 0 and oh > 0:
        original = (ow, oh)
    else:
        findings.append(Finding("ls-no-original-size", "warning",
                                f"{where}: original_width/original_height {ow!r}x{oh!r} missing or not pixel "
                                "counts; converted on the real frame size", file))
    idx = r.get("item_index", 0)
    if len(urls) > 1 or "item_index" in r:
        if not (isinstance(idx, int) and not isinstance(idx, bool) and 0 <= idx < len(urls)):
            findings.append(Finding("ls-bad-box", "error", f"{where}: item_index {idx!r} names no image of the "
                                    f"task ({len(urls)} image(s)); skipped", file))
            return None
    if rot % 360 != 0:
        findings.append(Finding("ls-rotated-box", "warning",
                                f"{where}: rotated {rot:g} degrees; kept as the axis-aligned box around the rotated "
                                "rectangle (we store axis-aligned boxes only)", file))
    return idx, LsBox(labels[0], x, y, w, h, rot, original)


def _merge_label_pairs(results: list) -> list:
    """``<Rectangle>`` + ``<Labels>`` write a ``rectangle`` and a ``labels`` result with the same id:
    one labelled rectangle."""
    labels = {r.get("id"): r.get("value", {}).get("labels") for r in results
              if isinstance(r, dict) and r.get("type") == "labels" and isinstance(r.get("value"), dict)}
    out = []
    for r in results:
        if isinstance(r, dict) and r.get("type") == "labels" and r.get("id") in labels:
            continue
        if isinstance(r, dict) and r.get("type") == "rectangle" and isinstance(r.get("value"), dict) \
                and RECT not in r["value"] and r.get("id") in labels:
            r = {**r, "value": {**r["value"], RECT: labels[r.get("id")]}}
        out.append(r)
    return out


def _signature(results: list) -> list:
    """What an annotation says, to tell agreeing annotations from conflicting ones."""
    sig = []
    for r in results:
        if isinstance(r, dict) and isinstance(r.get("value"), dict):
            v = r["value"]
            sig.append((r.get("item_index", 0), str(v.get(RECT, v.get("labels"))),
                        *(round(_number(v.get(k)) or 0.0, 3) for k in ("x", "y", "width", "height", "rotation"))))
    return sorted(sig)


def _choose(tid: str, anns: list[_Ann], choice: Choice, file: str, findings: list) -> Optional[_Ann]:
    humans = [a for a in anns if a.source == "annotation"]
    cancelled = [a for a in humans if a.cancelled]
    humans = [a for a in humans if not a.cancelled]
    if cancelled and not humans:
        findings.append(Finding("ls-skipped-task", "info", f"task {tid}: skipped (cancelled) by "
                                f"{', '.join(sorted({a.who or '?' for a in cancelled}))}; not imported", file))
        return None
    if choice.annotator is not None and humans:
        mine = [a for a in humans if a.who == choice.annotator]
        if not mine:
            findings.append(Finding("ls-other-annotator", "info", f"task {tid}: no annotation by "
                                    f"{choice.annotator!r} (only {', '.join(sorted({a.who or '?' for a in humans}))}); "
                                    "not imported", file))
            return None
        humans = mine
    if len(humans) > 1:
        agree = all(_signature(a.results) == _signature(humans[0].results) for a in humans[1:])
        who = ", ".join(a.who or "?" for a in humans)
        if choice.latest:
            pick = max(humans, key=lambda a: (a.when, a.order))
            if not agree:
                findings.append(Finding("ls-annotation-conflict", "warning",
                                        f"task {tid}: {len(humans)} annotations ({who}) disagree; took the latest "
                                        f"({pick.who or '?'}, {pick.when or 'no date'}) under --latest", file))
            return pick
        if not agree:
            findings.append(Finding("ls-annotation-conflict", "error",
                                    f"task {tid}: {len(humans)} annotations ({who}) disagree; not imported - "
                                    "choose with --annotator WHO or --latest", file))
            return None
        return humans[0]
    if humans:
        return humans[0]
    preds = [a for a in anns if a.source == "prediction"]
    if preds and choice.accept_predictions:
        return preds[-1]
    if not preds and any(a.source == "prediction-id" for a in anns):
        findings.append(Finding("ls-predictions-only", "info",
                                f"task {tid}: only predictions, listed by id (a project export leaves their boxes "
                                "out); not imported - submit it in Label Studio", file))
    elif preds:
        findings.append(Finding("ls-predictions-only", "info",
                                f"task {tid}: only predictions (pre-annotations nobody submitted); not imported - "
                                "submit it in Label Studio, or pass --accept-predictions", file))
    else:
        findings.append(Finding("ls-no-annotation", "info", f"task {tid}: no annotation yet; not imported", file))
    return None


def _urls(tid: str, data: dict, file: str, findings: list) -> Optional[list[str]]:
    url = data.get("image", data.get("images"))
    if isinstance(url, str):
        return [url]
    if isinstance(url, list) and url and all(isinstance(u, str) for u in url):
        return list(url)
    findings.append(Finding("ls-bad-task", "error", f"task {tid}: data.image is {type(url).__name__}, not an image "
                            "URL (or data.images a list of them); skipped", file))
    return None


def parse_label_studio(doc, file: str = "<json>", choice: Optional[Choice] = None) -> LsResult:
    """A parsed Label Studio export -> per image, the boxes of the chosen annotation (pure)."""
    choice = choice or Choice()
    res = LsResult()
    findings = res.findings
    for tid, data, anns in _tasks(doc, file, findings):
        urls = _urls(tid, data, file, findings)
        if urls is None:
            continue
        ann = _choose(tid, anns, choice, file, findings)
        if ann is None:
            continue
        images = [LsImage(tid, u, verified=ann.source == "annotation") for u in urls]
        for r in _merge_label_pairs(ann.results):
            got = _box(r, tid, urls, file, findings)
            if got is not None:
                images[got[0]].boxes.append(got[1])
        res.images += images
    return res


def _rotated_aabb(x0: float, y0: float, w: float, h: float, degrees: float) -> tuple[float, float, float, float]:
    """Axis-aligned box around a rectangle rotated clockwise (y down) about its top-left corner."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    xs = [x0 + dx * c - dy * s for dx, dy in ((0, 0), (w, 0), (0, h), (w, h))]
    ys = [y0 + dx * s + dy * c for dx, dy in ((0, 0), (w, 0), (0, h), (w, h))]
    return min(xs), min(ys), max(xs), max(ys)


def pixel_edges(b: LsBox, width: int, height: int) -> tuple[float, float, float, float]:
    """Percent box -> pixel edges on a ``width`` x ``height`` frame (rotated: its axis-aligned box)."""
    x0, y0 = b.x / 100 * width, b.y / 100 * height
    w, h = b.width / 100 * width, b.height / 100 * height
    if b.rotation % 360 == 0:
        return x0, y0, x0 + w, y0 + h
    return _rotated_aabb(x0, y0, w, h, b.rotation)
