"""The README stays a user's first hour, and every link in it and in docs/ leads somewhere.

- README.md has at most 300 lines, a "Contents" section listing every section (each link
  naming a heading that exists) and a Troubleshooting section with a table;
- every relative link in README.md and docs/*.md names a file that exists, and its
  ``#anchor``, if any, a heading of that file (GitHub's anchors: lower case, punctuation
  dropped, spaces to hyphens, repeats numbered).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 300
MIN_TROUBLESHOOTING_ROWS = 12

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"`[^`]*`")
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def prose_lines(text: str) -> List[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def headings(text: str) -> List[Tuple[int, str]]:
    """(level, title) of every heading outside code blocks."""
    found = []
    for line in prose_lines(text):
        match = _HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2)))
    return found


def slug(title: str) -> str:
    """GitHub's anchor for a heading: code marks and punctuation dropped, spaces to hyphens."""
    text = title.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> Set[str]:
    seen: Dict[str, int] = {}
    result = set()
    for _, title in headings(text):
        base = slug(title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(text: str) -> List[str]:
    """Link targets in prose (not in code blocks or code spans)."""
    targets = []
    for line in prose_lines(text):
        targets += _LINK.findall(_CODE_SPAN.sub("", line))
    return targets


def section(text: str, title: str) -> List[str]:
    """The prose lines under the level-2 heading ``title``, up to the next level-2 heading."""
    lines, inside = [], False
    for line in prose_lines(text):
        match = _HEADING.match(line)
        if match and len(match.group(1)) <= 2:
            inside = match.group(2) == title
            continue
        if inside:
            lines.append(line)
    return lines


def test_readme_is_at_most_300_lines():
    count = len(README.read_text(encoding="utf-8").splitlines())
    assert count <= MAX_README_LINES, f"README.md has {count} lines; move depth to docs/"


def test_readme_contents_lists_every_section_and_each_link_names_a_heading():
    text = README.read_text(encoding="utf-8")
    contents = section(text, "Contents")
    targets = [target for line in contents for target in _LINK.findall(line)]
    assert targets, "README.md needs a '## Contents' section with links"
    existing = anchors(text)
    broken = [target for target in targets if not target.startswith("#") or target[1:] not in existing]
    assert not broken, f"Contents links to headings that do not exist: {broken}"
    sections = {slug(title) for level, title in headings(text) if level == 2 and title != "Contents"}
    missing = sorted(sections - {target[1:] for target in targets})
    assert not missing, f"sections missing from Contents: {missing}"


def test_readme_has_a_troubleshooting_table():
    rows = [line for line in section(README.read_text(encoding="utf-8"), "Troubleshooting")
            if line.startswith("|") and not re.match(r"^\|[\s|:-]+\|$", line)]
    assert len(rows) - 1 >= MIN_TROUBLESHOOTING_ROWS, (  # minus the header row
        f"the Troubleshooting table has {len(rows) - 1} rows; at least {MIN_TROUBLESHOOTING_ROWS} expected")


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_lead_to_files_and_headings_that_exist(page: Path):
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if _EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target} (no file {os.path.relpath(destination, ROOT)})")
            continue
        if anchor and destination.suffix == ".md" and anchor not in anchors(destination.read_text(encoding="utf-8")):
            broken.append(f"{target} (no heading #{anchor} in {os.path.relpath(destination, ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)} has broken links: {broken}"

