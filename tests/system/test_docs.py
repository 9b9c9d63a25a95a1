"""Feature: the documentation matches the code (sqlite-utils' test_docs, for both CLIs).

- every command of ``avsprep`` and ``avstrain`` has ``--help`` with an ``Example:`` block;
- ``docs/cli.md`` is exactly what ``tools/gen_cli_docs.py`` generates from that help now;
- every ``avsprep X`` / ``avstrain X`` named in a code span or block of README.md, docs/ and
  tools/README.md exists, and so does every option written after it on the same (continued) line;
- every command is named in docs/cli.md and in the README's command table;
- relative links resolve to files (and to headings, for ``#anchors`` into Markdown files);
- docstring citations ``reference/NAME.md N.N`` find a heading ``N.N`` in docs/reference/NAME.md.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", REPO / "tools" / "gen_cli_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _load_generator()
GROUPS = dict(GEN.load_groups())  # {"avsprep": click.Group, "avstrain": click.Group}
COMMANDS = GEN.all_commands()  # [(prog, name), ...]


def doc_files() -> list[Path]:
    """The hand-written pages the command checks read (docs/cli.md is generated, checked by drift)."""
    files = [README, REPO / "tools" / "README.md", REPO / "annotations" / "GUIDELINES.md"]
    files += sorted(p for p in (REPO / "docs").rglob("*.md") if p.name != "cli.md")
    return [p for p in files if p.exists()]


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("prog", sorted(GROUPS))
def test_group_help(prog):
    res = CliRunner().invoke(GROUPS[prog], ["--help"], prog_name=prog)
    assert res.exit_code == 0, res.output
    assert f"Usage: {prog}" in res.output


@pytest.mark.parametrize("prog,name", COMMANDS, ids=[f"{p}-{n}" for p, n in COMMANDS])
def test_every_command_has_help_with_example(prog, name):
    res = CliRunner().invoke(GROUPS[prog], [*name.split(), "--help"], prog_name=prog)
    assert res.exit_code == 0, res.output
    assert "Example:" in res.output, f"`{prog} {name} --help` has no 'Example:' block"
    example = res.output.split("Example:", 1)[1]
    assert f"{prog} {name}" in example, f"the Example: of `{prog} {name}` does not run `{prog} {name}`"


# ----------------------------------------------------------------------------- docs/cli.md


def test_cli_md_is_up_to_date():
    """docs/cli.md is generated; after changing a command's help run `make docs`."""
    on_disk = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert on_disk == GEN.render(), "docs/cli.md is out of date: run `make docs` (tools/gen_cli_docs.py)"


def test_generator_is_deterministic(monkeypatch):
    first = GEN.render()
    monkeypatch.setenv("COLUMNS", "37")
    assert GEN.render() == first


def test_generator_check_mode_reports_drift(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "cli.md"
    stale.write_text("# stale\n", encoding="utf-8")
    monkeypatch.setattr(GEN, "OUT", stale)
    monkeypatch.setattr(GEN, "REPO", tmp_path)
    assert GEN.main(["--check"]) == 1
    assert stale.read_text(encoding="utf-8") == "# stale\n"  # --check writes nothing
    assert GEN.main([]) == 0 and GEN.main(["--check"]) == 0


@pytest.mark.parametrize("prog,name", COMMANDS, ids=[f"{p}-{n}" for p, n in COMMANDS])
def test_every_command_is_in_cli_md(prog, name):
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert f"\n### {prog} {name}\n" in text
    assert f"Usage: {prog} {name} " in text


# ----------------------------------------------------------------------------- README command table


def readme_command_table() -> str:
    """The README section that lists the commands (a heading containing 'Commands')."""
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## [^\n]*Commands[^\n]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, "README.md has no '## ...Commands...' section"
    return m.group(1)


@pytest.mark.parametrize("prog,name", COMMANDS, ids=[f"{p}-{n}" for p, n in COMMANDS])
def test_every_command_is_in_readme_table(prog, name):
    rows = [line for line in readme_command_table().splitlines() if line.startswith("|")]
    name = name.split()[0]  # a nested group's row stands for its commands
    assert any(f"`{prog} {name}`" in row for row in rows), f"README command table lacks `{prog} {name}`"


def test_readme_is_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 220


# ----------------------------------------------------------------------------- commands named in the docs

CODE_BLOCK = re.compile(r"^( *)(```|~~~)[^\n]*\n(.*?)^\1\2\s*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
# A command: the program name as a word (python -m, torchrun -m and plain use all look like this).
COMMAND = re.compile(r"(?<![\w./-])(avsprep|avstrain)\s+([A-Za-z][\w-]*)")
# What ends one command's arguments on a line: a shell separator or another program.
SEGMENT_END = re.compile(r"&&|\|\||;|\s\|\s|\$\(|(?<![\w./-])(?:avsprep|avstrain|python3?|torchrun|pytest|make|pip)\s")
LONG_OPT = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*)")
SHORT_OPT = re.compile(r"(?<![\w=-])(-[A-Za-z])(?=[\s\]]|$)")


def code_texts(text: str) -> list[str]:
    """Fenced blocks as logical lines (backslash continuations joined), then inline code spans."""
    out = []
    for m in CODE_BLOCK.finditer(text):
        out += re.sub(r"\s*\\\n\s*", " ", m.group(3)).splitlines()
    rest = CODE_BLOCK.sub("", text)
    out += [m.group(2).strip() for m in CODE_SPAN.finditer(rest)]
    return out


def named_commands(line: str) -> list[tuple[str, str, list[str]]]:
    """(program, command, options written after it) for each avsprep/avstrain command on a line."""
    found = []
    for m in COMMAND.finditer(line):
        tail = line[m.end():]
        end = SEGMENT_END.search(tail)
        args = tail[: end.start()] if end else tail
        name = m.group(2)
        sub = re.match(r"\s+([A-Za-z][\w-]*)", args)
        if sub and isinstance(GROUPS[m.group(1)].commands.get(name), click.Group):  # avstrain weights fetch
            name = f"{name} {sub.group(1)}"
        found.append((m.group(1), name, LONG_OPT.findall(args) + SHORT_OPT.findall(args)))
    return found


def resolve(group: click.Group, name: str):
    """The command ``name`` (``"weights fetch"``: a nested group's command) of ``group``, or None."""
    cmd = group
    for part in name.split():
        cmd = cmd.commands.get(part) if isinstance(cmd, click.Group) else None
    return cmd


def command_options(cmd: click.Command) -> set[str]:
    opts = {"--help", "-h"}
    for p in cmd.params:
        opts.update(o for o in (*p.opts, *p.secondary_opts) if o.startswith("-"))
    return opts


def test_named_commands_parser():
    line = ("torchrun --nproc_per_node 4 -m avstrain train shards -o runs/x --preset demo $W  # --resume too "
            "&& avsprep export t.csv --to voc|yolo DIR [--root R] && pytest -x --lf")
    assert named_commands(line) == [("avstrain", "train", ["--preset", "--resume", "-o"]),
                                    ("avsprep", "export", ["--to", "--root"])]
    assert named_commands("avsprep inspect shards --clip=-_wznbUu3DY --png sheet.png") == [
        ("avsprep", "inspect", ["--clip", "--png"])]
    assert named_commands("avstrain weights fetch vggish --to w/") == [("avstrain", "weights fetch", ["--to"])]
    assert code_texts("a `avsprep verify S` b\n```bash\navstrain train S \\\n  --epochs 2\n```\n") == [
        "avstrain train S --epochs 2", "avsprep verify S"]


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_commands_and_options_named_in_docs_exist(path):
    problems = []
    for line in code_texts(path.read_text(encoding="utf-8")):
        for prog, name, opts in named_commands(line):
            cmd = resolve(GROUPS[prog], name)
            if cmd is None:
                problems.append(f"`{prog} {name}`: no such command (in: {line.strip()[:100]})")
                continue
            known = command_options(cmd)
            problems += [f"`{prog} {name} {o}`: no such option (in: {line.strip()[:100]})"
                         for o in opts if o not in known]
    assert not problems, "\n".join(problems)


def test_docs_name_every_command_somewhere_outside_cli_md():
    """Each command is used in at least one hand-written page (not only in the generated reference)."""
    named = {(p, n) for f in doc_files() for line in code_texts(f.read_text(encoding="utf-8"))
             for p, n, _ in named_commands(line)}
    assert not [c for c in COMMANDS if c not in named]


# ----------------------------------------------------------------------------- links

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`|\*\*|\*", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = CODE_BLOCK.sub("", md.read_text(encoding="utf-8"))
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M)}


def link_pages() -> list[Path]:
    return [p for p in [README, REPO / "tools" / "README.md", *sorted((REPO / "docs").rglob("*.md"))] if p.exists()]


@pytest.mark.parametrize("path", link_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    text = CODE_BLOCK.sub("", path.read_text(encoding="utf-8"))
    bad = []
    for m in LINK.finditer(text):
        target = m.group(1) or m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, frag = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            bad.append(f"{target}: no heading with anchor #{frag} in {dest.relative_to(REPO)}")
    assert not bad, "\n".join(bad)


def test_readme_links_into_docs():
    targets = {m.group(1) or m.group(2) for m in LINK.finditer(README.read_text(encoding="utf-8"))}
    for page in ("architecture", "cli", "formats", "avss", "reproducing", "diagnostics", "benchmarks",
                 "RELIABILITY"):
        assert any(t.split("#")[0] == f"docs/{page}.md" for t in targets), f"README does not link docs/{page}.md"


def test_tools_readme_names_every_tool():
    text = (REPO / "tools" / "README.md").read_text(encoding="utf-8")
    tools = sorted(p.name for p in (REPO / "tools").iterdir() if p.suffix in (".py", ".sh"))
    assert tools and not [t for t in tools if f"`{t}`" not in text]


# ----------------------------------------------------------------------------- reference citations

CITATION = re.compile(r"reference/(\w+)\.md[`'\"]*,?\s+(?:sections?\s+)?"
                      r"(\d+(?:\.\d+)*(?:\s*(?:,|-|and)\s*\d+(?:\.\d+)*)*)")


def cited_sections() -> list[tuple[str, str, str]]:
    """(file:line, page, section) for every ``reference/PAGE.md N.N`` in code, presets and tests."""
    out = []
    for base in ("avsprep", "avstrain", "tests", "tools"):
        for f in sorted((REPO / base).rglob("*")):
            if f.suffix not in (".py", ".yaml", ".sh") or f.name == "test_docs.py":
                continue
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                for m in CITATION.finditer(line):
                    for sec in re.split(r"\s*(?:,|-|and)\s*", m.group(2)):
                        out.append((f"{f.relative_to(REPO)}:{i}", m.group(1), sec))
    return out


def test_citation_parser():
    assert CITATION.search("(reference/avss.md 1.4, 2), as arrays").group(2) == "1.4, 2"
    assert CITATION.search("Reference: ``reference/avsbench.md`` section 5; checked").group(2) == "5"


@pytest.mark.parametrize("where,page,section", cited_sections(), ids=lambda x: str(x))
def test_reference_citations_resolve(where, page, section):
    doc = REPO / "docs" / "reference" / f"{page}.md"
    assert doc.exists(), f"{where} cites reference/{page}.md; docs/reference/{page}.md is missing"
    headings = re.findall(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", doc.read_text(encoding="utf-8"), re.M)
    assert section in headings, f"{where} cites reference/{page}.md {section}; no heading '{section}' there"
