"""docs/contract.md is the project's own statement of its interface, and code and docs cite it as
"contract section N": every such citation must lead to a heading of that number there."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "contract.md"
CITATION = re.compile(r"contract sections? (\d+a?(?:(?:, | and )\d+a?)*)", re.IGNORECASE)
SOURCES = sorted([*ROOT.glob("function/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("docs/*.md"),
                  ROOT / "README.md", ROOT / "template.yml"])


def headings() -> set:
    """The section numbers docs/contract.md has a heading for: ``## 2.``, ``### 1a.``."""
    return set(re.findall(r"^#{2,3} (\d+a?)\.", CONTRACT.read_text(encoding="utf-8"), re.MULTILINE))


def citations():
    for path in SOURCES:
        if "__pycache__" in path.parts or path == CONTRACT:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in CITATION.finditer(line):
                for section in re.split(r", | and ", match.group(1)):
                    yield f"{path.relative_to(ROOT)}:{number}", section


def test_the_contract_is_in_the_repository_with_every_section():
    assert {"1", "1a", "2", "3", "4", "5", "6", "7", "8", "9", "10"} <= headings()


def test_every_citation_of_the_contract_resolves():
    found = list(citations())
    assert len(found) > 20  # the code does cite it: a pattern that matches nothing would pass anything
    sections = headings()
    unresolved = [f"{where}: section {section}" for where, section in found if section not in sections]
    assert not unresolved, "citations of docs/contract.md with no such section:\n" + "\n".join(unresolved)


@pytest.mark.parametrize("spelling", ["CONTRACT section 2", "CONTRACT 9"])
def test_citations_are_spelled_one_way(spelling):
    """So that the test above sees them all: "contract section N", not the shared document's old forms."""
    pattern = re.compile(re.escape(spelling).replace("2", r"\d").replace("9", r"\d") + r"\b")
    offenders = [str(path.relative_to(ROOT)) for path in SOURCES if "review" not in path.parts
                 and path != Path(__file__).resolve() and pattern.search(path.read_text(encoding="utf-8"))]
    assert not offenders, offenders
