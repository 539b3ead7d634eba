"""Every relative link and #anchor in README.md and docs/*.md leads somewhere.

A newcomer follows the README's links into docs/ and from there to sections of other
pages; a renamed heading silently breaks a `file.md#section` link, because GitHub still
opens the page, just at the top. Anchors are computed the way GitHub computes them
(github-slugger): the heading's rendered text, lower-cased, every character that is not
a letter, mark, digit, connector, space or hyphen removed, spaces turned into hyphens,
and `-1`, `-2`, ... appended to repeated headings. Run it alone as a script to list
every broken link: `.venv/bin/python tests/test_doc_links.py`.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
KEPT_CATEGORIES = ("L", "M", "N", "Pc")


@dataclass(frozen=True)
class Link:
    """One link found in a page: where it is and what it points at."""

    page: Path
    line: int
    target: str


def documentation_pages() -> list[Path]:
    """README.md and every page in docs/, the pages a newcomer reads."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks, numbered from 1: a `#` or `[x](y)` inside a
    code block is shell or YAML, not a heading or a link."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def _rendered_heading_text(raw: str) -> str:
    """The text GitHub renders for a heading's markdown: code spans keep their content,
    links keep their text, emphasis markers and HTML tags disappear."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    code_spans: list[str] = []

    def hold(match: re.Match[str]) -> str:
        code_spans.append(match.group(2).strip())
        return f"\x00{len(code_spans) - 1}\x00"

    text = INLINE_CODE.sub(hold, text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"(\*\*|__|\*|(?<!\w)_|_(?!\w))", "", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: code_spans[int(m.group(1))], text)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading with this markdown (before de-duplication)."""
    text = _rendered_heading_text(heading).lower()
    kept = "".join(
        ch for ch in text
        if ch in " -" or unicodedata.category(ch).startswith(KEPT_CATEGORIES)
    )
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor a link may name in this page: headings (repeats numbered as GitHub
    numbers them) and explicit `<a id="...">` / `<a name="...">`."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in _prose_lines(page.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[Link]:
    """The relative links and same-page anchors in a page, outside code."""
    found = []
    for number, line in _prose_lines(page.read_text(encoding="utf-8")):
        prose = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)
        for match in LINK.finditer(prose):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # http:, https:, mailto: are not ours to check offline
            found.append(Link(page, number, target))
    return found


def problem(link: Link) -> str | None:
    """Why this link leads nowhere, or None when it resolves."""
    path_part, _, anchor = link.target.partition("#")
    destination = (link.page.parent / unquote(path_part)).resolve() if path_part else link.page
    page = link.page.relative_to(ROOT) if link.page.is_relative_to(ROOT) else link.page
    where = f"{page}:{link.line}: link '{link.target}'"
    if not destination.exists():
        return f"{where}: no file {destination}"
    if anchor and destination.suffix == ".md":
        known = anchors(destination)
        if unquote(anchor) not in known:
            near = sorted(a for a in known if anchor.split("-")[0] in a)[:5]
            return (
                f"{where}: no heading with anchor '#{anchor}' in {destination.name}"
                f" (near: {near})"
            )
    return None


def all_links() -> list[Link]:
    return [link for page in documentation_pages() for link in links(page)]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Limits", "limits"),
        ("Checking as you type in an editor", "checking-as-you-type-in-an-editor"),
        ("Checking the station file against the displays: `edge-agent poll`",
         "checking-the-station-file-against-the-displays-edge-agent-poll"),
        ("Try it: `scripts/demo --hj212`", "try-it-scriptsdemo---hj212"),
        ("Several uplinks (`uplinks:`)", "several-uplinks-uplinks"),
        ("HJ 212-2025 / SM4, and **RF=1**", "hj-212-2025--sm4-and-rf1"),
        ("试一试：`scripts/demo --hj212`", "试一试scriptsdemo---hj212"),
        ("The [payload](payload.md) v1", "the-payload-v1"),
        ("snake_case names", "snake_case-names"),
    ],
)
def test_slug_matches_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_repeated_headings_get_numbered_anchors(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Try it\n\n```sh\n# not a heading\n```\n## Try it\n## Try it\n")
    assert anchors(page) == {"try-it", "try-it-1", "try-it-2"}


def test_links_in_code_are_not_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[a](x.md) `[b](y.md)`\n```\n[c](z.md)\n```\n[d](https://e.org)\n")
    assert [link.target for link in links(page)] == ["x.md"]


def test_a_broken_anchor_is_reported_with_page_and_line(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Real heading\n")
    page = tmp_path / "page.md"
    page.write_text("intro\nsee [there](other.md#missing) and [ok](other.md#real-heading)\n")
    found = [problem(link) for link in links(page)]
    assert found[1] is None
    assert found[0] is not None
    assert ":2: link 'other.md#missing': no heading with anchor '#missing' in other.md" in found[0]


def test_the_docs_have_links_to_check() -> None:
    """Guards the checker itself: if the link pattern broke, every page would pass."""
    targets = {link.target for link in all_links()}
    assert "docs/configuration.md#limits" in targets
    assert len(targets) > 100


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = [p for p in map(problem, all_links()) if p]
    assert not broken, "broken links:\n" + "\n".join(broken)


if __name__ == "__main__":
    report = [p for p in map(problem, all_links()) if p]
    print("\n".join(report) or f"all {len(all_links())} links resolve")
    sys.exit(1 if report else 0)
