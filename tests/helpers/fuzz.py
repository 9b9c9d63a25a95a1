"""The VOC fuzz engine: seed documents, hostile pieces, mutation operators (``make_case``), and
the guarded parse with the invariants every result must hold (``guarded_read``, ``check_result``).

Shared by tests/system/test_fuzz_voc.py and tools/robustness.py (which runs thousands of cases).
"""

from __future__ import annotations

import codecs
import contextlib
import math
import random
import re
import signal
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

from tests.conftest import FIXTURES

HANG_LIMIT_S = 10.0  # a hang guard, not a speed test: 5,000 boxes (1 MiB) parse in ~0.1-0.4 s, most cases < 5 ms
CANARY = "CANARY-7f3a9c-SECRET"  # written to a file the XXE documents point at

# ----------------------------------------------------------------------------- seeds

# A minimal labelImg-shaped document, used alongside the fixtures (and alone
# when the shared fixtures are absent).
BUILTIN_SEED = (
    b"<annotation>\n\t<folder>frames</folder>\n\t<filename>clip_1.png</filename>\n"
    b"\t<size>\n\t\t<width>224</width>\n\t\t<height>224</height>\n\t\t<depth>3</depth>\n\t</size>\n"
    b"\t<segmented>0</segmented>\n\t<object>\n\t\t<name>guitar</name>\n\t\t<pose>Unspecified</pose>\n"
    b"\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n"
    b"\t\t\t<xmin>10</xmin>\n\t\t\t<ymin>20</ymin>\n\t\t\t<xmax>100</xmax>\n\t\t\t<ymax>200</ymax>\n"
    b"\t\t</bndbox>\n\t</object>\n</annotation>\n"
)


def seed_documents() -> list[tuple[str, bytes]]:
    """(name, bytes) of every labelImg fixture and real VOC file, read in place."""
    seeds = [("builtin.xml", BUILTIN_SEED)]
    for sub in ("labelimg", "voc_real"):
        folder = FIXTURES / sub
        if folder.is_dir():
            for p in sorted(folder.rglob("*.xml")):
                seeds.append((p.name, p.read_bytes()))
    return seeds


SEEDS = seed_documents()

# ----------------------------------------------------------------------------- hostile pieces

HOSTILE_NUMBERS = [
    "1e308", "-1e308", "1e309", "-1e309", "1.7976931348623157e308", str(10 ** 400), "-" + str(10 ** 400),
    "0" * 5000 + "1", "1" + "0" * 5000, "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-0", "-0.0",
    "+0", "0x1F", "1_000", "\u0661\u0662\u0663", "\uff11\uff12", " 12 ", "", "   ", "12.5.3", "1e", "e5",
    ".5", "5.", "1e-400", "4.9e-324", str(2 ** 63), str(-2 ** 63 - 1), "12<!-- c -->3", "&#49;&#50;",
    "\u00a012", "<![CDATA[7]]>", "1 2", "0.0000001", "-5", "99999999999999999999",
]
HOSTILE_NAMES = [
    "-_wznbUu3DY", "--help", "-", "..", "../../etc/passwd", "/etc/passwd", "a/b\\c", "C:\\x\\y.png",
    "a\x00b", "&#0;", "&#x1F;", "\U0001F3B8 guitar", "\uae30\ud0c0", "e\u0301", "\u202eRTL",
    "\t\tman  ", "x" * 70000, "<![CDATA[<b>&]]>", "&amp;&lt;", "a.b..c.png", "\ufeffbom",
    "\ud800", "&unknown;", "]]>", "<name>nested</name>",
]
BOMS = [codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, b"\xef\xbb"]
CODECS = ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252", "shift_jis", "utf-8-sig",
          "ascii", "utf-8"]
DECLARED = ["utf-8", "UTF-16", "latin-1", "ISO-8859-1", "us-ascii", "shift_jis", "EBCDIC-US", "bogus-enc",
            "utf-32", ""]


def canary_file() -> Path:
    """A file whose content must never show up in a parse result (XXE target)."""
    path = Path(tempfile.gettempdir()) / "avs-fuzz-canary.txt"
    if not path.exists():
        path.write_text(CANARY + "\n")
    return path


def doctypes() -> list[bytes]:
    c = canary_file().as_uri().encode()
    lol = b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1)) * 10) for i in range(1, 10))
    return [
        b'<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "' + c + b'">]>',
        b'<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">]>',
        b'<!DOCTYPE annotation [<!ENTITY lol0 "lol">' + lol + b'<!ENTITY xxe "&lol9;">]>',
        b'<!DOCTYPE annotation [<!ENTITY % p SYSTEM "' + c + b'"> %p; <!ENTITY xxe "x">]>',
        b'<!DOCTYPE annotation SYSTEM "' + c + b'">',
        b'<!DOCTYPE annotation PUBLIC "-//x//y" "http://127.0.0.1:9/x.dtd">',
        b'<!doctype annotation [<!entity xxe "y">]>',
        b"<!DOCTYPE annotation>",
        b'<!DOCTYPE annotation [<!ENTITY a "&b;"><!ENTITY b "&a;"><!ENTITY xxe "&a;">]>',
    ]


# ----------------------------------------------------------------------------- mutation engine

_TEXT_NODE = re.compile(rb">([^<>]*)</")
_COORD = re.compile(rb"<(xmin|ymin|xmax|ymax|width|height|depth|difficult)>([^<]*)<", re.I)
_LABEL = re.compile(rb"<(name|filename|folder|path)>([^<]*)<")


def _pos(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


def _enc(text: str, rng: random.Random) -> bytes:
    """Hostile text as bytes: escaped or raw, UTF-8 (lone surrogates passed through)."""
    if rng.random() < 0.5 and "&" not in text:
        text = escape(text)
    return text.encode("utf-8", "surrogatepass")


def _sub_one(pattern: re.Pattern, data: bytes, rng: random.Random, new: bytes) -> bytes:
    hits = list(pattern.finditer(data))
    if not hits:
        return data + new
    m = rng.choice(hits)
    g = m.lastindex  # the text group
    return data[:m.start(g)] + new + data[m.end(g):]


def op_truncate(data, rng):
    return data[:_pos(rng, data)]


def op_flip(data, rng):
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def op_insert(data, rng):
    i = _pos(rng, data)
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return data[:i] + junk + data[i:]


def op_delete(data, rng):
    i = _pos(rng, data)
    return data[:i] + data[i + rng.randint(1, 64):]


def op_duplicate(data, rng):
    i = _pos(rng, data)
    j = min(len(data), i + rng.randint(1, 256))
    return data[:j] + data[i:j] * rng.randint(1, 4) + data[j:]


def op_number(data, rng):
    return _sub_one(_COORD, data, rng, rng.choice(HOSTILE_NUMBERS).encode("utf-8"))


def op_name(data, rng):
    return _sub_one(_LABEL, data, rng, _enc(rng.choice(HOSTILE_NAMES), rng))


def op_unicode(data, rng):
    chars = "".join(chr(rng.choice([rng.randrange(0x20, 0x80), rng.randrange(0x80, 0x800),
                                    rng.randrange(0x800, 0x10000), rng.randrange(0x10000, 0x110000)]))
                    for _ in range(rng.randint(1, 12)))
    return _sub_one(_TEXT_NODE, data, rng, _enc(chars, rng))


def op_reencode(data, rng):
    text = data.decode("utf-8", "replace")
    codec = rng.choice(CODECS)
    if rng.random() < 0.6:
        text = re.sub(r"^\ufeff?\s*<\?xml[^>]*\?>", "", text)
        declared = rng.choice(DECLARED)
        decl = f'<?xml version="1.0" encoding="{declared}"?>\n' if declared else '<?xml version="1.0"?>\n'
        text = decl + text
    return text.encode(codec, "xmlcharrefreplace" if codec != "utf-8-sig" else "replace")


def op_bom(data, rng):
    return rng.choice(BOMS) + data


def op_doctype(data, rng):
    dt = rng.choice(doctypes())
    data = _sub_one(_LABEL, data, rng, b"&xxe;")
    m = re.search(rb"<annotation", data)
    at = m.start() if m else 0
    out = data[:at] + dt + b"\n" + data[at:]
    if rng.random() < 0.3:  # the same, in an encoding a byte regex will not see
        out = b'<?xml version="1.0" encoding="UTF-16"?>'.decode() .encode("utf-16") + \
            out.decode("utf-8", "replace").encode("utf-16")[2:]
    return out


def op_deep(data, rng):
    n = rng.choice([100, 255, 257, 1000, 10_000, 50_000])
    tag = rng.choice([b"a", b"object", b"bndbox", b"annotation"])
    closed = rng.random() < 0.7
    nest = b"<%s>" % tag * n + (b"</%s>" % tag * n if closed else b"")
    m = re.search(rb"</annotation>", data)
    at = m.start() if m else len(data)
    return data[:at] + nest + data[at:]


def op_many_objects(data, rng):
    m = re.search(rb"<object>.*?</object>", data, re.S)
    obj = m.group(0) if m else b"<object><name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin>" \
                                  b"<xmax>2</xmax><ymax>2</ymax></bndbox></object>"
    k = rng.choice([10, 1000, 5000, 20_000])
    at = data.rfind(b"</annotation>")
    at = len(data) if at < 0 else at
    return data[:at] + obj * k + data[at:]


def op_tags(data, rng):
    choice = rng.randrange(5)
    if choice == 0:  # change the case of a tag
        return re.sub(rb"<(/?)(difficult|bndbox|object|annotation|name)>",
                      lambda m: b"<" + m.group(1) + m.group(2).upper() + b">", data, count=rng.randint(1, 3))
    if choice == 1:  # drop a closing tag
        hits = list(re.finditer(rb"</[a-z]+>", data))
        if hits:
            m = rng.choice(hits)
            return data[:m.start()] + data[m.end():]
        return data
    if choice == 2:  # rename the root
        return data.replace(b"annotation", rng.choice([b"Annotation", b"html", b"ann:annotation", b"x"]))
    if choice == 3:  # a namespace and attributes everywhere
        return data.replace(b"<annotation", b'<annotation xmlns="urn:x" verified="yes" a="\x01"', 1)
    return data.replace(b"<bndbox>", b"<bndbox><bndbox>", 1)  # nested box


def op_replace(data, rng):
    """Throw the document away: non-XML or degenerate bytes."""
    return rng.choice([
        b"", b"\x00" * rng.randint(1, 64), b" \n\t" * 10, b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        b"\x1f\x8b\x08\x00" + bytes(64), b"\x00\x05\x16\x07" + bytes(64), b"<annotation>",
        b"<html><body>not voc</body></html>", b"<?xml version='1.0'?>", b"<annotation/>",
        b"<a>" * 20_000, bytes(rng.randrange(256) for _ in range(rng.randint(1, 512))),
        b"x" * ((1 << 20) + 1), b"<annotation>" + b" " * ((1 << 20) + 10) + b"</annotation>",
    ])


MUTATIONS = {
    "truncate": op_truncate, "flip": op_flip, "insert": op_insert, "delete": op_delete,
    "duplicate": op_duplicate, "number": op_number, "name": op_name, "unicode": op_unicode,
    "reencode": op_reencode, "bom": op_bom, "doctype": op_doctype, "deep": op_deep,
    "many_objects": op_many_objects, "tags": op_tags, "replace": op_replace,
}
OPS = list(MUTATIONS)


def make_case(i: int, seeds: list[tuple[str, bytes]] = SEEDS) -> tuple[str, bytes, list[str]]:
    """Case ``i``: (seed name, mutated bytes, ops applied); deterministic in ``i``."""
    rng = random.Random(i)
    name, data = seeds[rng.randrange(len(seeds))]
    ops = [rng.choice(OPS) for _ in range(rng.choice([1, 1, 2, 3]))]
    for op in ops:
        data = MUTATIONS[op](data, rng)
    return name, data, ops


# ----------------------------------------------------------------------------- the guarded parse

class Hang(Exception):
    """A parse outlived the hang guard."""


@contextlib.contextmanager
def hang_guard(seconds: float = HANG_LIMIT_S):
    """Raise ``Hang`` if the body runs longer than ``seconds`` (main thread, POSIX)."""
    if not hasattr(signal, "setitimer"):  # pragma: no cover
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def guarded_read(data: bytes, file: str):
    """``read_voc`` under the hang guard; returns (result, seconds)."""
    from avsprep.annotations.voc import read_voc

    t0 = time.monotonic()
    with hang_guard():
        res = read_voc(data, file)
    dt = time.monotonic() - t0
    if dt > HANG_LIMIT_S:  # a C-level stall the alarm could not interrupt
        raise Hang(f"took {dt:.1f} s")
    return res, dt


def check_result(res, file: str) -> None:
    """Invariants every result must hold, whatever the input."""
    from avsprep.common.findings import SEVERITIES, Finding
    from avsprep.annotations.voc import LABELIMG_1BASED, ZERO_BASED, VocBox, VocResult

    assert isinstance(res, VocResult)
    assert isinstance(res.findings, list) and isinstance(res.boxes, list)
    for f in res.findings:
        assert isinstance(f, Finding)
        assert f.severity in SEVERITIES
        assert f.code and re.fullmatch(r"[a-z0-9-]+", f.code), f.code
        assert f.file == file, "a finding must name the file it is about"
        assert f.message and "\n" not in f.message and "\r" not in f.message, repr(f.message)
    if not res.readable:
        assert any(f.severity == "error" for f in res.findings), "unreadable without an error finding"
        assert res.boxes == []
    assert res.convention in (LABELIMG_1BASED, ZERO_BASED)
    for b in res.boxes:
        assert isinstance(b, VocBox) and isinstance(b.label, str)
        coords = (b.xmin, b.ymin, b.xmax, b.ymax)
        assert all(isinstance(v, float) and math.isfinite(v) for v in coords), coords
        assert b.difficult in (0, 1)
    for dim in (res.width, res.height, res.depth):
        assert dim is None or (isinstance(dim, int) and dim >= 0)
    assert CANARY not in repr(res), "XXE: the content of a local file leaked into the result"
