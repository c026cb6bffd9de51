"""deploy.env.example names every variable template.yml reads, and nothing else; sourced with its
placeholders filled in, it renders a template that passes the check.

A new ``${env('X')}`` in the template without a line for X here fails this suite.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import yaml

from tests.deploy import template_check as tc

TEMPLATE = tc.REPO / "template.yml"
EXAMPLE = tc.REPO / "deploy.env.example"
# what a deployer puts in place of each placeholder of the example's live lines (plausible, not real)
FILLED_IN = {"<account-id>": "1234567890123456", "<auth-key>": "ExampleAuthKey2026", "<bucket>": "my-ice-records"}
# env('X'), env('X', 'literal') or env('X', <an expression>): the literal only when the default is one
_ENV_CALL = re.compile(r"""env\(\s*'(?P<name>[A-Z][A-Z0-9_]*)'\s*"""
                       r"""(?:(?P<default>,)\s*(?:'(?P<literal>[^']*)'\s*\))?)?""")
_EXPORT = re.compile(r"^(?P<commented>#\s*)?export (?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


@dataclass(frozen=True)
class TemplateRead:
    name: str
    has_default: bool
    literal_default: Optional[str]  # None: no default, or one that is an expression


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def template_reads() -> Dict[str, TemplateRead]:
    """Every ``env('X'[, default])`` of the template's values, its commented-out blocks switched on
    (comments themselves, such as the header's ``${env('X')}``, are not read)."""
    document = yaml.safe_load(tc.uncomment_block(TEMPLATE.read_text(), "eventbridge-trigger"))
    reads: Dict[str, TemplateRead] = {}
    for text in _strings(document):
        for match in _ENV_CALL.finditer(text):
            read = TemplateRead(match["name"], bool(match["default"]), match["literal"])
            known = reads.get(read.name)
            if known is not None and known != read:  # two defaults for one variable: say which
                read = TemplateRead(read.name, known.has_default and read.has_default, None)
            reads[read.name] = read
    return reads


@dataclass(frozen=True)
class ExampleLine:
    name: str
    exported: bool  # False: "# export X=...", an optional variable left at its default
    value: str
    comment: str  # the comment block just above it


def example_lines() -> List[ExampleLine]:
    lines, comment = [], []
    for line in EXAMPLE.read_text().splitlines():
        match = _EXPORT.match(line)
        if match:
            lines.append(ExampleLine(match["name"], not match["commented"], _unquoted(match["value"]),
                                     " ".join(comment)))
            comment = []
        elif line.startswith("#"):
            comment.append(line.lstrip("# "))
        else:
            comment = []
    return lines


def _unquoted(value: str) -> str:
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else value


def sourced(text: str, tmp_path: Path) -> Dict[str, str]:
    """What ``source deploy.env`` exports, by a bash with nothing else in its environment (``set -u``:
    the file may use only what it sets itself)."""
    if shutil.which("bash") is None:
        pytest.skip("no bash to source the example with")
    path = tmp_path / "deploy.env"
    path.write_text(text)
    result = subprocess.run(["bash", "--noprofile", "--norc", "-c", 'set -eu; source "$1"; env -0', "bash", str(path)],
                            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    exported = dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)
    return {line.name: exported[line.name] for line in example_lines() if line.name in exported}


def filled_in(text: str) -> str:
    for placeholder, value in FILLED_IN.items():
        text = text.replace(placeholder, value)
    return text


def test_the_example_names_every_variable_the_template_reads_and_no_other():
    reads = template_reads()
    assert {"FUNCTION_ROLE_ARN", "NOTIFY_EVENTBRIDGE", "SWEEP_CRON", "ICE_ENDPOINT"} <= set(reads)  # the parser works
    named = [line.name for line in example_lines()]
    missing = sorted(set(reads) - set(named))
    assert not missing, f"template.yml reads {missing}: give each a commented line in deploy.env.example"
    unknown = sorted(set(named) - set(reads))
    assert not unknown, f"deploy.env.example names {unknown}, which template.yml does not read"
    assert len(named) == len(set(named)), "a variable appears twice in deploy.env.example"


def test_each_variable_says_what_it_is_whether_it_is_required_and_its_default():
    reads = template_reads()
    for line in example_lines():
        read = reads[line.name]
        assert line.comment.startswith(f"{line.name} ("), f"{line.name}: no comment above it naming it"
        kind = line.comment[len(line.name) + 2:].split(")")[0]
        assert kind.startswith(("required", "optional")), (line.name, kind)
        assert len(line.comment.split("):", 1)[-1].split()) >= 3, f"{line.name}: say what it is"
        if not read.has_default:  # s stops without it: the example sets it
            assert kind == "required" and line.exported, line
        if not line.exported and read.literal_default:  # the value shown is the one the template defaults to
            assert line.value == read.literal_default and f"default {read.literal_default}" in kind, line


def test_the_example_sourced_as_it_is_names_its_placeholders_in_the_check(tmp_path):
    """Sourced before it is filled in, nothing breaks quietly: the check names each placeholder left."""
    env = sourced(EXAMPLE.read_text(), tmp_path)
    assert env["FUNCTION_ROLE_ARN"] == "acs:ram::<account-id>:role/ice-upload-sync"
    problems = tc.check(tc.render_in_python(TEMPLATE, env), tc.REPO, None)
    for placeholder in FILLED_IN:
        assert any(placeholder in problem for problem in problems), (placeholder, problems)
    assert any("role must be the function's RAM role ARN" in problem for problem in problems)


def test_the_example_filled_in_renders_a_template_that_passes_the_check(schema, tmp_path):
    live = [line for line in EXAMPLE.read_text().splitlines() if not line.startswith("#")]
    placeholders = set(tc.PLACEHOLDER.findall("\n".join(live)))
    assert placeholders == set(FILLED_IN), "a new placeholder in deploy.env.example: give it a value in FILLED_IN"
    env = sourced(filled_in(EXAMPLE.read_text()), tmp_path)
    assert env["FAILURE_DESTINATION_ARN"] == \
        "acs:mns:cn-shanghai:1234567890123456:/queues/ice-upload-sync-failed/messages"
    assert env["RECORD_STORE"] == "oss://my-ice-records/ice-upload-sync"
    assert tc.check(tc.render_in_python(TEMPLATE, env), tc.REPO, schema) == []


def test_the_example_filled_in_renders_with_s_too(s_binary, schema, tmp_path):
    env = sourced(filled_in(EXAMPLE.read_text()), tmp_path)
    assert tc.check(tc.render_with_s(TEMPLATE, env, s_binary), tc.REPO, schema) == []


def test_every_optional_line_switched_on_still_passes(tmp_path):
    """Each "# export X=..." as shown is a value the template and the code accept (defaults, examples),
    bar the Tablestore pair, which changes the store (and so needs RECORD_STORE to follow)."""
    store_switch = {"TABLESTORE_INSTANCE", "TABLESTORE_TABLE"}
    text = "\n".join(line[2:] if _EXPORT.match(line) and line.startswith("# export ")
                     and _EXPORT.match(line)["name"] not in store_switch else line
                     for line in EXAMPLE.read_text().splitlines())
    text = filled_in(text).replace("<", "").replace(">", "")  # the examples' own placeholders, as plain names
    env = sourced(text, tmp_path)
    assert {"ICE_MAX_QPS", "NOTIFY_STATES", "SWEEP_CRON", "NOTIFY_EVENTBRIDGE"} <= set(env)
    env["NOTIFY_URL"] = ""  # a webhook needs a real whsec_ secret: docs/receiving-events.md covers it
    env["NOTIFY_SECRET"] = ""
    problems = tc.check(tc.render_in_python(TEMPLATE, env), tc.REPO, None)
    assert problems == []
