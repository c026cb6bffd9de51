"""docs/packaging.md quotes the template's figures (memory, CPU, disk, timeout, retries, the cron,
the measured costs in its comment): each is the template's, so that a change to one fails here until
the page follows."""
from __future__ import annotations

import re
from typing import Dict, List

import pytest

from tests.deploy import template_check as tc

TEMPLATE = tc.REPO / "template.yml"
PAGE = tc.REPO / "docs" / "packaging.md"
_FIGURE = re.compile(r"(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))? ?(ms|s|vCPU|%)(?![\w-])")


def table_rows() -> Dict[str, str]:
    """The "What the template deploys" table: what -> its value and why."""
    section = PAGE.read_text().split("## What the template deploys", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and not set(cells[0]) <= {"-"} and cells[0] != "what":
            rows[cells[0]] = " | ".join(cells[1:])
    return rows


@pytest.fixture(scope="module")
def props() -> Dict:
    document = tc.render_in_python(TEMPLATE, tc.EXAMPLE_ENV)
    (function,) = tc.fc3_resources(document).values()
    return function


def template_comment_figures() -> List[str]:
    """The figures of the template's comment above memorySize ("Measured ...: 60 ms ..."), one by one
    ("380-560 ms" is 380 ms and 560 ms), and the sweep's share of the timeout ("90% of this")."""
    lines = TEMPLATE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("# Measured"))
    end = next(i for i, line in enumerate(lines) if line.strip().startswith("timeout:") and i > start)
    comment = " ".join(line.strip().lstrip("#") for line in lines[start:end] if line.strip().startswith("#"))
    figures = []
    for match in _FIGURE.finditer(comment):
        for number in filter(None, match.group(1, 2)):
            figures.append(f"{number}{match[3]}" if match[3] == "%" else f"{number} {match[3]}")
    return figures


def test_the_page_quotes_the_functions_size_and_timeout(props):
    rows = table_rows()
    assert rows["memory / CPU / disk / timeout"].startswith(
        f"{props['memorySize']} MB / {props['cpu']} vCPU / {props['diskSize']} MB / {props['timeout']} s |")
    initializer = props["instanceLifecycleConfig"]["initializer"]
    assert rows["handler / initializer"].startswith(
        f"`{props['handler']}` / `{initializer['handler']}` ({initializer['timeout']} s) |")
    assert rows["runtime"].startswith(f"`{props['runtime']}` |")
    assert f"`{props['code']}`" in rows["code"]
    assert f"`PYTHONPATH={props['environmentVariables']['PYTHONPATH']}`" in rows["code"]
    assert rows["logs"].startswith(f"`logConfig: {props['logConfig']}` |")


def test_the_page_quotes_the_async_retries_and_event_age(props):
    config = props["asyncInvokeConfig"]
    hours = config["maxAsyncEventAgeInSeconds"] / 3600
    assert hours == int(hours)
    assert table_rows()["async invocations (timer, EventBridge)"].startswith(
        f"{config['maxAsyncRetryAttempts']} retries, events kept {int(hours)} h, then `FAILURE_DESTINATION_ARN` |")


def test_the_page_quotes_the_triggers(props, tmp_path):
    row = table_rows()["triggers"]
    (timer,) = [t for t in props["triggers"] if t["triggerType"] == "timer"]
    (http,) = [t for t in props["triggers"] if t["triggerType"] == "http"]
    assert f"timer `{timer['triggerName']}` (`SWEEP_CRON`, default `{timer['triggerConfig']['cronExpression']}`" in row
    assert f"HTTP `{http['triggerName']}` (POST only, anonymous" in row
    assert (http["triggerConfig"]["methods"], http["triggerConfig"]["authType"]) == (["POST"], "anonymous")
    path = tmp_path / "template.yml"
    path.write_text(tc.uncomment_block(TEMPLATE.read_text(), "eventbridge-trigger"))
    switched_on = tc.render_in_python(path, tc.EXAMPLE_ENV)
    (function,) = tc.fc3_resources(switched_on).values()
    (bridge,) = [t for t in function["triggers"] if t["triggerType"] == "eventbridge"]
    assert f"EventBridge `{bridge['triggerName']}` (commented out" in row


def test_the_measured_figures_of_the_templates_comment_are_the_pages():
    figures = template_comment_figures()
    assert {"60 ms", "190 ms", "0.25 vCPU", "90%"} <= set(figures), figures  # the parser still reads the comment
    row = table_rows()["memory / CPU / disk / timeout"]
    missing = [figure for figure in figures if figure not in row]
    assert not missing, f"template.yml's comment says {missing}, docs/packaging.md's table does not"


def test_the_page_names_the_pinned_serverless_devs_cli():
    assert f"`{tc.S_PACKAGE}` {tc.S_VERSION}" in PAGE.read_text()
