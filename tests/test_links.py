"""Every relative link in the tracked Markdown files resolves: the file or folder exists, and a
``#anchor`` names a heading of the target as GitHub slugs it."""
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from helpers import REPO_ROOT

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+\1")
# An inline link or image, ``[text](target "title")``, and a reference definition, ``[name]: target``.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto: …


def markdown_files() -> list[Path]:
    """The Markdown files git tracks (untracked ones, such as results written by the scripts, aside)."""
    try:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z", "*.md"], capture_output=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is None or done.returncode != 0:
        pytest.skip("not a git checkout: the tracked Markdown files are unknown")
    return [REPO_ROOT / name for name in done.stdout.decode().split("\0") if name]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The numbered lines outside fenced code blocks, code spans removed."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, CODE_SPAN.sub("", line)))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text as rendered, lower-cased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)      # a link's text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")            # HTML tags, code marks
    text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)             # emphasis marks
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file: its headings' slugs (repeats numbered -1, -2 …) and HTML anchors."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    text = path.read_text(encoding="utf-8")
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            found.add(f"{base}-{counts[base]}" if counts.get(base) else base)
            counts[base] = counts.get(base, 0) + 1
    found |= set(HTML_ANCHOR.findall(text))
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """The numbered link targets of a Markdown file, outside code."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        found += [(number, target) for target in INLINE_LINK.findall(line)]
        reference = REFERENCE.match(line)
        if reference:
            found.append((number, reference.group(1)))
    return found


def broken_links(path: Path) -> list[str]:
    """Each relative link of ``path`` whose file, folder or heading is missing, as ``file:line: target (why)``."""
    broken = []
    for number, target in links(path):
        if not target or EXTERNAL.match(target):
            continue
        file_part, _, anchor = unquote(target).partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(REPO_ROOT)}:{number}: {target}"
        if not destination.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{where} (no heading #{anchor} in {destination.name})")
    return broken


def test_slugs_follow_github() -> None:
    assert slug("A first training run, in a minute") == "a-first-training-run-in-a-minute"
    assert slug("`test.py` and the `--smooth` flag") == "testpy-and-the---smooth-flag"
    assert slug("Ablation at the same budget: LCT+WCE against SCT+CCPL") == \
        "ablation-at-the-same-budget-lctwce-against-sctccpl"
    assert slug("[The API](docs/x.md) *in short*, 2 × faster ↑") == "the-api-in-short-2--faster-"
    assert slug("rate_limit and __init__") == "rate_limit-and-init"   # __init__ renders as bold


def test_broken_links_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Results\n\n## Results\n\ntext\n")
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[ok](other.md#results-1) [ok](#top) ![img](other.md) [web](https://x.org/#no)\n"
                    "`[code](missing.md)`\n```\n[fenced](missing.md)\n```\n"
                    "[gone](missing.md) [bad](other.md#summary) [self](#bottom)\n\n[ref]: missing/\n")
    assert broken_links(page) == ["page.md:8: missing.md (no such file)",
                                  "page.md:8: other.md#summary (no heading #summary in other.md)",
                                  "page.md:8: #bottom (no heading #bottom in page.md)",
                                  "page.md:10: missing/ (no such file)"]


def test_every_relative_link_in_the_markdown_files_resolves() -> None:
    files = markdown_files()
    assert REPO_ROOT / "README.md" in files
    broken = [problem for path in files for problem in broken_links(path)]
    assert not broken, "broken links:\n" + "\n".join(broken)
