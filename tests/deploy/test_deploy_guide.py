"""docs/deploy.md: every command block says what checks it, and what has a local stand-in is checked.

Each fenced ``sh`` block is preceded by a marker, an HTML comment:

    <!-- checked: cli-help, env -->             the stand-ins named check every command of the block
    <!-- unchecked: needs an Alibaba Cloud account -->   no stand-in can run it (aliyun, ossutil, s, ...)

The stand-ins: ``cli-help`` (each ``ice-upload-sync`` command exists, its ``--help`` works and every
option used is one its parser accepts), ``template-check`` (its options exist and each ``--print VAR``
renders offline), ``make`` (the targets exist), ``env`` (exported variables are read by template.yml
or the code; the files copied or sourced exist), ``local`` (the test runs it). A checked block
holds only commands a stand-in covers and names exactly the stand-ins it uses; an unchecked block
holds at least one command none covers. Commands a stand-in covers are checked in unchecked blocks
too. What colleagues are adding (issue 22) is checked once it exists and skipped, saying so, before.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import pytest

from tests.deploy import template_check as tc

REPO = tc.REPO
DOC = REPO / "docs" / "deploy.md"
MAKEFILE = REPO / "Makefile"
TEMPLATE = REPO / "template.yml"
KINDS = {"cli-help", "template-check", "make", "env", "local"}
# Being added by colleagues (issue 22): checked as soon as they exist, skipped (saying why) before.
PENDING_COMMANDS = {"ice-callback", "smoke"}
PENDING_PRINTS = {"ramPolicy.operator.oss", "ramPolicy.operator.tablestore"}
PENDING_FILES = {"deploy.env.example"}
# A deployer's values (the guide's step 3), none of them the check's --example-env placeholders,
# which --print refuses to render into a policy.
DEPLOY_ENV = {
    "ICE_REGION": "cn-shanghai",
    "FUNCTION_ROLE_ARN": "acs:ram::1111222233334444:role/ice-upload-sync",
    "FAILURE_DESTINATION_ARN": "acs:mns:cn-shanghai:1111222233334444:/queues/ice-upload-sync-failed/messages",
    "CALLBACK_AUTH_KEY": "GuideTestKey2026",
    "RECORD_BUCKET": "ice-records-1111222233334444",
    "TABLESTORE_INSTANCE": "ice-records",
    "TABLESTORE_TABLE": "ice_upload_jobs",
}
SOURCEABLE = {".venv/bin/activate", "deploy.env"}  # created by make local / cp in the guide itself
SEPARATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<", "2>", "2>&1"}
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
MARKER = re.compile(r"^<!--\s*(checked|unchecked):\s*(.*?)\s*-->$")


@dataclass
class Command:
    """One simple command of a block: its words, the variables assigned before it, where it is."""

    words: List[str]
    assigned: List[str]
    line: int
    text: str

    @property
    def kind(self) -> Optional[str]:
        words = self.words
        if not words:
            return "env"  # assignments alone
        program = words[0]
        if program in ("ice-upload-sync", ".venv/bin/ice-upload-sync"):
            return "cli-help"
        if program in ("python", "python3", ".venv/bin/python") and words[1:3] == ["-m", "tests.deploy.template_check"]:
            return "template-check"
        if program in ("python", "python3") and words[1:2] == ["-c"]:
            return "local"
        if program == "make":
            return "make"
        if program in ("export", "source", ".", "cp") and (program != "cp" or words[1:2] == ["deploy.env.example"]):
            return "env"
        return None  # no stand-in: aliyun, ossutil, s, npm, node, curl, ...


@dataclass
class Block:
    line: int  # of the opening fence
    marker: Optional[Tuple[str, str]]
    commands: List[Command] = field(default_factory=list)

    def __str__(self) -> str:
        return f"docs/deploy.md:{self.line}"


def split_commands(body: Sequence[Tuple[int, str]]) -> List[Command]:
    """Shell lines (continuations joined, comments and redirections dropped) -> simple commands."""
    logical: List[Tuple[int, str]] = []
    pending = ""
    start = 0
    for number, text in body:
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        logical.append((start, pending + text))
        pending = ""
    commands: List[Command] = []
    for number, text in logical:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        words: List[str] = []
        tokens = iter(list(lexer) + [";"])
        for token in tokens:
            if token in REDIRECTS:
                next(tokens, None)  # the file redirected to or from
            elif token in SEPARATORS:
                assigned = []
                while words and ASSIGNMENT.match(words[0]):
                    assigned.append(ASSIGNMENT.match(words.pop(0)).group(1))
                if words or assigned:
                    commands.append(Command(words, assigned, number, text.strip()))
                words = []
            else:
                words.append(token)
    return commands


def parse_doc(path: Path = DOC) -> List[Block]:
    lines = path.read_text().splitlines()
    blocks: List[Block] = []
    index = 0
    while index < len(lines):
        text = lines[index].strip()
        if text.startswith("```") and text[3:].strip() in ("sh", "bash", "shell"):
            previous = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            found = MARKER.match(previous)
            block = Block(index + 1, (found.group(1), found.group(2)) if found else None)
            body = []
            index += 1
            while index < len(lines) and not lines[index].strip().startswith("```"):
                body.append((index + 1, lines[index]))
                index += 1
            block.commands = split_commands(body)
            blocks.append(block)
        elif text.startswith("```"):  # another fence (text, json): skip its body
            index += 1
            while index < len(lines) and not lines[index].strip().startswith("```"):
                index += 1
        index += 1
    return blocks


BLOCKS = parse_doc() if DOC.exists() else []
COMMANDS = [(block, command) for block in BLOCKS for command in block.commands]


def commands_of(kind: str) -> List[Tuple[Block, Command]]:
    return [(block, command) for block, command in COMMANDS if command.kind == kind]


def ids(pairs: Sequence[Tuple[Block, Command]]) -> List[str]:
    return [f"line{command.line}:{' '.join(command.words[:3])}" for _, command in pairs]


# ---------------------------------------------------------------- the markers


def test_the_guide_has_command_blocks():
    assert DOC.exists(), "docs/deploy.md is missing"
    assert len(BLOCKS) >= 10 and any(b.marker and b.marker[0] == "checked" for b in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[str(b) for b in BLOCKS])
def test_every_block_says_what_checks_it(block):
    assert block.marker, (f"{block}: no marker before the block: put <!-- checked: KIND, ... --> or "
                          "<!-- unchecked: why --> on the line before the fence")
    status, detail = block.marker
    assert block.commands, f"{block}: the block holds no command"
    used = {command.kind for command in block.commands}
    uncovered = [command.text for command in block.commands if command.kind is None]
    if status == "checked":
        named = {kind.strip() for kind in detail.split(",") if kind.strip()}
        assert named <= KINDS, f"{block}: unknown stand-in(s) {sorted(named - KINDS)}; known: {sorted(KINDS)}"
        assert not uncovered, f"{block}: marked checked, but no stand-in covers: {uncovered}; mark it unchecked"
        assert named == used, f"{block}: marked checked by {sorted(named)}, its commands use {sorted(used)}"
    else:
        assert detail, f"{block}: say why the block is unchecked"
        assert uncovered, (f"{block}: marked unchecked, but stand-ins cover every command "
                           f"({sorted(k for k in used if k)}): mark it checked")


# ---------------------------------------------------------------- cli-help


def _subparsers(parser: argparse.ArgumentParser) -> Optional[argparse._SubParsersAction]:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _options(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def cli_parser() -> argparse.ArgumentParser:
    sys.path.insert(0, str(REPO / "function"))
    try:
        from ice_upload_sync.cli import build_parser
    finally:
        sys.path.remove(str(REPO / "function"))
    return build_parser()


def resolve_cli(words: Sequence[str]) -> Tuple[List[str], argparse.ArgumentParser, List[str], List[str]]:
    """ice-upload-sync WORDS -> (the command path, its parser, the options given to it, options no
    parser on the way accepts). Options before a command belong to the parser above it."""
    current = cli_parser()
    path: List[str] = []
    given: List[str] = []
    unknown: List[str] = []
    rest = list(words[1:])
    while rest:
        word = rest.pop(0)
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            action = _options(current).get(name)
            if action is None:
                unknown.append(name)
            else:
                given.append(name)
                if _takes_value(action) and "=" not in word and rest:
                    rest.pop(0)
            continue
        sub = _subparsers(current)
        if sub is None:
            continue  # a positional argument
        if word not in sub.choices:
            if (path + [word])[0] in PENDING_COMMANDS:
                pytest.skip(f"`ice-upload-sync {' '.join(path + [word])}` is not in build_parser yet (issue 22)")
            raise AssertionError(f"`ice-upload-sync {' '.join(path + [word])}`: no such command; "
                                 f"there: {', '.join(sorted(sub.choices))}")
        path.append(word)
        current = sub.choices[word]
        given = []
    return path, current, given, unknown


@pytest.mark.parametrize("block, command", commands_of("cli-help"), ids=ids(commands_of("cli-help")))
def test_each_ice_upload_sync_command_and_option_exists(block, command):
    where = f"line {command.line}: `{command.text}`"
    path, parser, given, unknown = resolve_cli(command.words)
    assert path, f"{where} names no command"
    assert not unknown, (f"{where}: `ice-upload-sync {' '.join(path)}` has no option {unknown}; it has "
                         f"{sorted(o for o in _options(parser) if o.startswith('--'))}")
    missing = [action.option_strings[-1] for action in parser._actions
               if action.required and action.option_strings and not set(given) & set(action.option_strings)]
    assert not missing, f"{where} lacks the required {missing}"
    for group in parser._mutually_exclusive_groups:
        options = {o for action in group._group_actions for o in action.option_strings}
        chosen = set(given) & options
        assert len(chosen) <= 1, f"{where}: {sorted(chosen)} exclude each other"
        assert chosen or not group.required, f"{where} needs one of {sorted(options)}"
    sub = _subparsers(parser)
    assert sub is None or not sub.required, f"{where} names no subcommand: {', '.join(sorted(sub.choices))}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        cli_parser().parse_args(path + ["--help"])
    assert exited.value.code == 0 and "usage:" in out.getvalue(), f"`ice-upload-sync {' '.join(path)} --help`"


# ---------------------------------------------------------------- template-check


def template_check_options() -> Dict[str, bool]:
    """The check's options (from its --help), and whether each takes a value."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        tc.main(["--help"])
    found = {}
    for option, value in re.findall(r"(--[a-z][a-z-]*)(?:[ =]([A-Z_]+))?", out.getvalue()):
        found[option] = found.get(option, False) or bool(value)
    return found


def template_env_reads() -> Set[str]:
    return set(re.findall(r"""env\(\s*['"]([A-Z][A-Z0-9_]*)['"]""", TEMPLATE.read_text()))


def _deploy_env(monkeypatch) -> None:
    """The shell of a deployer who sourced deploy.env, whatever the test's own shell holds."""
    for name in template_env_reads():
        monkeypatch.delenv(name, raising=False)
    for name, value in DEPLOY_ENV.items():
        monkeypatch.setenv(name, value)


def _check_template_check_words(words: Sequence[str], where: str, monkeypatch, capsys) -> None:
    options = template_check_options()
    rest = list(words)
    prints = []
    while rest:
        word = rest.pop(0)
        if not word.startswith("-"):
            continue
        name, _, inline = word.partition("=")
        assert name in options, f"{where}: template_check has no option {name}; it has {sorted(options)}"
        if options[name]:
            value = inline or (rest.pop(0) if rest else "")
            if name == "--print":
                prints.append(value)
    for var in prints:
        _deploy_env(monkeypatch)
        code = tc.main(["--python-renderer", "--print", var])
        captured = capsys.readouterr()
        if code != 0 and var in PENDING_PRINTS and "is not in" in captured.err:
            pytest.skip(f"--print {var}: not in template.yml yet (issue 22)")
        assert code == 0, f"{where}: --print {var} exits {code}: {captured.err.strip()}"
        document = json.loads(captured.out)
        assert document.get("Version") == "1" and document.get("Statement"), f"{where}: --print {var} is no policy"


@pytest.mark.parametrize("block, command", commands_of("template-check"), ids=ids(commands_of("template-check")))
def test_each_template_check_option_exists_and_each_print_renders(block, command, monkeypatch, capsys):
    _check_template_check_words(command.words[3:], f"line {command.line}", monkeypatch, capsys)


# ---------------------------------------------------------------- make


def make_targets() -> Set[str]:
    return {t for t in re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", MAKEFILE.read_text(), re.M) if t[0] != "."}


@pytest.mark.parametrize("block, command", commands_of("make"), ids=ids(commands_of("make")))
def test_each_make_target_exists(block, command, monkeypatch, capsys):
    targets = [w for w in command.words[1:] if not w.startswith("-") and not ASSIGNMENT.match(w)]
    missing = [t for t in targets if t not in make_targets()]
    assert not missing, f"line {command.line}: the Makefile has no target {missing}; it has {sorted(make_targets())}"
    for word in command.words[1:]:
        assigned = ASSIGNMENT.match(word)
        if assigned and assigned.group(1) == "ARGS" and "template-check" in targets:
            _check_template_check_words(shlex.split(assigned.group(2)), f"line {command.line}", monkeypatch, capsys)


# ---------------------------------------------------------------- env


def known_variables() -> Set[str]:
    return template_env_reads() | set(tc.code_env_reads(REPO / "function"))


def exported_names(command: Command) -> List[str]:
    names = list(command.assigned)
    if command.words[:1] == ["export"]:
        for word in command.words[1:]:
            if not word.startswith("-"):
                names.append(word.split("=", 1)[0])
    return names


@pytest.mark.parametrize("block, command", commands_of("env"), ids=ids(commands_of("env")))
def test_each_exported_variable_is_read_and_each_file_exists(block, command):
    where = f"line {command.line}"
    unknown = [name for name in exported_names(command) if name not in known_variables()]
    assert not unknown, f"{where}: neither template.yml nor the code reads {unknown}"
    program = command.words[0] if command.words else ""
    if program in ("source", "."):
        assert command.words[1:] and command.words[1] in SOURCEABLE, f"{where}: sources {command.words[1:]}"
    if program == "cp":
        source = command.words[1]
        if not (REPO / source).exists():
            if source in PENDING_FILES:
                pytest.skip(f"{source} is not in the tree yet (issue 22)")
            raise AssertionError(f"{where}: {source} does not exist")


def test_the_guide_exports_what_deploy_env_example_holds():
    """Every template variable the guide sets in deploy.env is one the example file shows."""
    example = REPO / "deploy.env.example"
    if not example.exists():
        pytest.skip("deploy.env.example is not in the tree yet (issue 22)")
    shown = set(re.findall(r"^\s*#?\s*export\s+([A-Z][A-Z0-9_]*)=", example.read_text(), re.M))
    guide = {name for _, command in commands_of("env") for name in exported_names(command)}
    missing = sorted((guide & template_env_reads()) - shown)
    assert not missing, f"deploy.env.example does not show {missing}, which docs/deploy.md sets"


# ---------------------------------------------------------------- local


def ice_refuses(key: str) -> List[str]:
    """ICE's documented rule for an AuthKey (SetEventCallback): at most 32 characters, letters and
    digits, with upper case, lower case and a digit."""
    problems = []
    if not 0 < len(key) <= 32:
        problems.append(f"{len(key)} characters")
    if not key.isalnum() or not key.isascii():
        problems.append("not only letters and digits")
    problems += [f"no {what}" for what, pattern in (("lower case", "[a-z]"), ("upper case", "[A-Z]"),
                                                     ("digit", "[0-9]")) if not re.search(pattern, key)]
    return problems


@pytest.mark.parametrize("block, command", commands_of("local"), ids=ids(commands_of("local")))
def test_each_local_command_runs(block, command):
    done = subprocess.run([sys.executable, *command.words[1:]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"line {command.line}: `{command.text}` failed: {done.stderr}"
    if "secrets" in command.text:  # the AuthKey maker: what it prints must be a key ICE accepts, every time
        keys = {done.stdout.strip()} | {
            subprocess.run([sys.executable, *command.words[1:]], capture_output=True, text=True,
                           timeout=60).stdout.strip() for _ in range(5)}
        assert len(keys) == 6, "the AuthKey maker printed the same key twice"
        for key in keys:
            assert not ice_refuses(key), f"line {command.line}: ICE would refuse {key!r}: {ice_refuses(key)}"


# ---------------------------------------------------------------- everywhere


def test_files_the_guide_names_exist():
    named = {word for _, command in COMMANDS for word in command.words
             if re.fullmatch(r"(events/[\w.-]+\.json|template\.yml)", word)}
    assert named, "the guide names no repository file (template.yml, events/...)"
    missing = sorted(name for name in named if not (REPO / name).exists())
    assert not missing, f"docs/deploy.md names files that do not exist: {missing}"


def test_markers_are_parsed_as_the_guide_means(tmp_path):
    """The parser itself, on a small page: a marker binds to the next block, comments and
    continuations are understood, redirections dropped."""
    page = tmp_path / "guide.md"
    page.write_text("<!-- checked: cli-help, env -->\n```sh\nexport RECORD_STORE=x  # a comment\n"
                        "ice-upload-sync get \\\n  j1 --json > /tmp/out.json\n```\n\n```text\nok\n```\n"
                    "```sh\naliyun sts GetCallerIdentity\n```\n")
    first, second = parse_doc(page)
    assert first.marker == ("checked", "cli-help, env") and second.marker is None
    assert [c.words for c in first.commands] == [["export", "RECORD_STORE=x"],
                                                 ["ice-upload-sync", "get", "j1", "--json"]]
    assert [c.kind for c in first.commands] == ["env", "cli-help"] and second.commands[0].kind is None
