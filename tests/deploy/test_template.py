"""template.yml renders offline (the real `s preview`) and passes the check; broken templates do not.

The Serverless Devs CLI is installed from npm once into ``.cache/deploy/npm`` (pinned); where npm
is missing, the tests that need it skip and the rest render the template in Python.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict

import pytest

from tests.deploy import template_check as tc

TEMPLATE = tc.REPO / "template.yml"
CONTRACT_VARIABLES = {  # contract section 3, less the credentials FC provides itself
    "ICE_REGION", "ICE_ENDPOINT", "RECORD_STORE", "OSS_ENDPOINT", "TABLESTORE_ENDPOINT", "CALLBACK_AUTH_KEY",
    "CALLBACK_URL", "CALLBACK_MAX_SKEW_S", "MAX_TRACK_AGE_HOURS", "ICE_MAX_QPS", "ICE_CONCURRENCY",
    "NOTIFY_URL", "NOTIFY_SECRET", "NOTIFY_STATES", "NOTIFY_EVENTBRIDGE",
}


SCHEMA_MISSING = f"fc3 schema not found at {tc.SCHEMA_PATH} (CI has the shared folder beside the clone)"


def test_the_fc3_schema_is_there_to_validate_against(schema):
    if schema is None:
        pytest.skip(SCHEMA_MISSING)
    assert "python3.10" in schema["definitions"]["IRuntime"]["enum"]


def render(path: Path, env: Dict[str, str]) -> Dict:
    """Rendered by s preview, or in Python where npm is missing or cannot install s (offline)."""
    try:
        return tc.render(path, env).document
    except tc.SUnavailable:
        return tc.render_in_python(path, env)


@pytest.fixture(scope="module")
def rendered() -> Dict:
    return render(TEMPLATE, tc.EXAMPLE_ENV)


def function_props(document) -> Dict:
    (props,) = tc.fc3_resources(document).values()
    return props


def write_variant(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.yml"
    path.write_text(text)
    return path


def test_s_preview_renders_the_template_and_the_check_passes(s_binary, schema):
    assert tc.check(tc.render_with_s(TEMPLATE, tc.EXAMPLE_ENV, s_binary), tc.REPO, schema) == []


def test_the_rendered_function_is_the_contracts(rendered):
    props = function_props(rendered)
    assert (props["runtime"], props["code"], props["handler"]) == ("python3.10", "./function", "index.handler")
    assert props["instanceLifecycleConfig"]["initializer"]["handler"] == "index.initialize"
    assert props["logConfig"] == "auto"
    assert props["role"] == tc.EXAMPLE_ENV["FUNCTION_ROLE_ARN"]
    variables = props["environmentVariables"]
    assert CONTRACT_VARIABLES <= set(variables)
    assert variables["RECORD_STORE"] == f"oss://{tc.EXAMPLE_ENV['RECORD_BUCKET']}/ice-upload-sync"
    assert variables["CALLBACK_AUTH_KEY"] == tc.EXAMPLE_ENV["CALLBACK_AUTH_KEY"]
    assert all(isinstance(value, str) for value in variables.values())
    kinds = {t["triggerType"]: t["triggerConfig"] for t in props["triggers"]}
    assert kinds["timer"]["cronExpression"] == "0 */5 * * * *" and kinds["timer"]["payload"] == ""
    assert kinds["http"] == {"authType": "anonymous", "disableURLInternet": False, "methods": ["POST"]}
    assert props["asyncInvokeConfig"]["destinationConfig"]["onFailure"]["destination"] == \
        tc.EXAMPLE_ENV["FAILURE_DESTINATION_ARN"]
    assert rendered["resources"]["ice_upload_sync"]["actions"]["pre-deploy"] == [{"run": "make package", "path": "./"}]


def test_the_python_renderer_agrees_with_s(s_binary, tmp_path):
    variants = {"template": TEMPLATE.read_text(),
                "with eventbridge": tc.uncomment_block(TEMPLATE.read_text(), "eventbridge-trigger")}
    env = {**tc.EXAMPLE_ENV, "RECORD_STORE": "tablestore://records/ice_upload_jobs", "ICE_REGION": "cn-beijing"}
    envs = {"no bus": env, "a bus": {**env, "NOTIFY_EVENTBRIDGE": "media-events"},
            "empty values": {**env, "NOTIFY_EVENTBRIDGE": "", "RECORD_PREFIX": "", "SWEEP_CRON": ""}}
    for name, text in variants.items():
        path = write_variant(tmp_path, text)
        for which, values in envs.items():
            by_s = tc.render_with_s(path, values, s_binary)
            in_python = tc.render_in_python(path, values)
            assert (in_python["vars"], in_python["resources"]) == (by_s["vars"], by_s["resources"]), (name, which)


def test_the_template_passes_the_check_rendered_in_python(schema):
    # what runs where npm is missing
    assert tc.check(tc.render_in_python(TEMPLATE, tc.EXAMPLE_ENV), tc.REPO, schema) == []


def test_the_commented_eventbridge_trigger_is_valid_when_switched_on(schema, tmp_path):
    path = write_variant(tmp_path, tc.uncomment_block(TEMPLATE.read_text(), "eventbridge-trigger"))
    rendered = render(path, tc.EXAMPLE_ENV)
    assert tc.check(rendered, tc.REPO, schema) == []
    (trigger,) = [t for t in function_props(rendered)["triggers"] if t["triggerType"] == "eventbridge"]
    source = trigger["triggerConfig"]["eventSourceConfig"]
    assert source["eventSourceType"] == "MNS"
    assert source["eventSourceParameters"]["sourceMNSParameters"]["QueueName"].startswith("ice-callback-")


@pytest.mark.parametrize("variable", ["FUNCTION_ROLE_ARN", "FAILURE_DESTINATION_ARN", "CALLBACK_AUTH_KEY"])
def test_what_only_the_deployer_knows_is_required(s_binary, variable):
    env = {k: v for k, v in tc.EXAMPLE_ENV.items() if k != variable}
    with pytest.raises(tc.RenderError, match=variable):
        tc.render_with_s(TEMPLATE, env, s_binary)
    with pytest.raises(tc.RenderError, match=variable):
        tc.render_in_python(TEMPLATE, env)


REQUIRED = ["FUNCTION_ROLE_ARN", "FAILURE_DESTINATION_ARN", "CALLBACK_AUTH_KEY"]  # in the template's order


def fake_npm(folder: Path, script: str) -> str:
    """A PATH whose ``npm`` runs ``script`` (with a ``node``, so that npm counts as there), then the system's."""
    folder.mkdir()
    for name, body in (("npm", script), ("node", "exit 0")):
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return os.pathsep.join([str(folder), os.defpath])


NPM_OFFLINE = """echo "npm error code ENOTFOUND" >&2
echo "npm error network request to https://registry.npmjs.org/@serverless-devs%2fs failed, reason: getaddrinfo \
ENOTFOUND registry.npmjs.org" >&2
exit 1"""


@pytest.mark.parametrize("script, said", [
    (NPM_OFFLINE, "npm error network request to https://registry.npmjs.org/@serverless-devs%2fs failed"),
    ("exec sleep 30", "did not finish in 1 s"),
], ids=["npm fails", "npm hangs"])
def test_an_npm_that_cannot_install_s_says_so_and_shows_the_way_out(script, said, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", fake_npm(tmp_path / "bin", script))
    monkeypatch.setattr(tc, "CACHE", tmp_path / "cache")  # no s installed there yet
    monkeypatch.setattr(tc, "NPM_TIMEOUT_S", 1)
    assert tc.main(["--example-env"]) == 1  # returned, not raised: no traceback
    err = capsys.readouterr().err
    assert said in err
    assert "make template-check ARGS='--example-env --python-renderer'" in err and "Traceback" not in err
    monkeypatch.setenv("PATH", "")  # the way out works where npm does not
    assert tc.main(["--example-env", "--python-renderer"]) == 0
    assert "0 problem(s); rendered with python" in capsys.readouterr().out


def test_every_required_variable_that_is_unset_is_named_at_once_before_s_runs(tmp_path, monkeypatch, capsys):
    called = tmp_path / "npm-was-called"
    monkeypatch.setenv("PATH", fake_npm(tmp_path / "bin", f"touch {called}; exit 1"))
    monkeypatch.setattr(tc, "CACHE", tmp_path / "cache")
    for use_s in (None, True, False):
        with pytest.raises(tc.MissingVariables) as raised:
            tc.render(TEMPLATE, {"RECORD_BUCKET": "example-ice-records"}, use_s=use_s)
        assert raised.value.names == REQUIRED
    with pytest.raises(tc.MissingVariables) as raised:
        tc.render_in_python(TEMPLATE, {"CALLBACK_AUTH_KEY": "ExampleAuthKey2026"})
    assert raised.value.names == REQUIRED[:2]
    for name in REQUIRED:
        monkeypatch.delenv(name, raising=False)
    assert tc.main([]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if "FUNCTION_ROLE_ARN" in line]
    assert len(lines) == 1 and all(name in lines[0] for name in REQUIRED)  # one message names them all
    assert not called.exists()  # named before s (and npm) were asked


def test_a_printed_policy_that_holds_a_placeholder_is_refused_unless_allowed(monkeypatch, capsys):
    """README "Deploy" step 1 prints the policy to create with --example-env: a placeholder queue in it
    would make a policy for someone else's account. Piped into `aliyun ram CreatePolicy`, a warning
    would scroll by: the policy is not printed at all, unless asked for with --allow-placeholders."""
    monkeypatch.setenv("RECORD_BUCKET", "my-ice-records")
    for name in ("FAILURE_DESTINATION_ARN", "FUNCTION_ROLE_ARN", "CALLBACK_AUTH_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert tc.main(["--example-env", "--python-renderer", "--print", "ramPolicy.oss"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "refused: vars.ramPolicy.oss holds FAILURE_DESTINATION_ARN" in captured.err
    assert "--allow-placeholders" in captured.err
    assert "FUNCTION_ROLE_ARN" not in captured.err  # not in the policy: nothing to say
    assert tc.main(["--example-env", "--python-renderer", "--print", "ramPolicy.oss", "--allow-placeholders"]) == 0
    captured = capsys.readouterr()
    assert tc.EXAMPLE_ENV["FAILURE_DESTINATION_ARN"] in json.loads(captured.out)["Statement"][-1]["Resource"]
    assert "holds FAILURE_DESTINATION_ARN" in captured.err and "not for creating a policy" in captured.err
    monkeypatch.setenv("FAILURE_DESTINATION_ARN", "acs:mns:cn-shanghai:1234567890123456:/queues/mine/messages")
    assert tc.main(["--example-env", "--python-renderer", "--print", "ramPolicy.oss"]) == 0
    assert capsys.readouterr().err == ""
    assert tc.main(["--example-env", "--python-renderer"]) == 0
    assert "--example-env placeholders for FUNCTION_ROLE_ARN, CALLBACK_AUTH_KEY" in capsys.readouterr().out


@pytest.mark.parametrize("var, variable, value, placeholder", [
    ("ramPolicy.oss", "FAILURE_DESTINATION_ARN", "acs:mns:cn-shanghai:<account-id>:/queues/failed/messages",
     "<account-id>"),
    ("ramPolicy.operator.oss", "RECORD_BUCKET", "<bucket>", "<bucket>"),
])
def test_a_printed_policy_with_a_deploy_env_placeholder_left_in_is_refused(var, variable, value, placeholder,
                                                                           monkeypatch, capsys):
    """deploy.env.example's <account-id> or <bucket>, sourced before it was filled in, names nobody's resource."""
    monkeypatch.setenv("RECORD_BUCKET", "my-ice-records")
    monkeypatch.setenv("FAILURE_DESTINATION_ARN", "acs:mns:cn-shanghai:1234567890123456:/queues/failed/messages")
    monkeypatch.setenv(variable, value)
    assert tc.main(["--example-env", "--python-renderer", "--print", var]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and f"refused: vars.{var} holds {placeholder}" in captured.err


def test_example_env_says_on_stderr_which_values_are_placeholders(monkeypatch, capsys):
    for name in tc.EXAMPLE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALLBACK_AUTH_KEY", "")  # empty is unset, for s as for the check
    assert tc.main(["--example-env", "--python-renderer"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("--example-env: these are placeholders, not your values: ")
    for name, value in tc.EXAMPLE_ENV.items():
        assert f"{name}={value}" in err
    assert "This checks the template, not your deployment" in err
    monkeypatch.setenv("RECORD_BUCKET", "my-ice-records")
    assert tc.main(["--example-env", "--python-renderer"]) == 0
    assert "RECORD_BUCKET" not in capsys.readouterr().err


def test_printing_a_var_the_template_lacks_names_the_ones_it_has(capsys):
    assert tc.main(["--example-env", "--python-renderer", "--print", "ramPolicy.os"]) == 2
    assert "vars.ramPolicy.os is not in template.yml; there: operator, oss, tablestore" in capsys.readouterr().err


def test_the_policies_name_the_deployers_resources():
    env = {**tc.EXAMPLE_ENV, "RECORD_PREFIX": "prod/ice", "TABLESTORE_INSTANCE": "records", "ICE_REGION": "cn-beijing"}
    policies = tc.render_in_python(TEMPLATE, env)["vars"]["ramPolicy"]
    oss_resources = [r for s in policies["oss"]["Statement"] for r in s["Resource"]]
    assert "acs:oss:*:*:example-ice-records/prod/ice/*" in oss_resources
    assert "acs:oss:*:*:example-ice-records" in oss_resources
    ots_resources = [r for s in policies["tablestore"]["Statement"] for r in s["Resource"]]
    assert "acs:ots:cn-beijing:*:instance/records/table/ice_upload_jobs" in ots_resources
    assert "acs:ots:cn-beijing:*:instance/records/table/ice_upload_jobs_pending" in ots_resources
    for policy in tc.function_policies({"vars": {"ramPolicy": policies}}).values():
        assert tc.EXAMPLE_ENV["FAILURE_DESTINATION_ARN"] in [r for s in policy["Statement"] for r in s["Resource"]]


# ---------------------------------------------------------------- the check fails on broken templates

# (what is broken, text in template.yml, its broken replacement, what the check must say)
BROKEN = [
    ("bad runtime", "runtime: python3.10", "runtime: python3.7", "runtime: 'python3.7' is not one of"),
    ("runtime the package is not built for", "runtime: python3.10", "runtime: python3.12",
     "make package vendors for python3.10"),
    ("missing handler", "      handler: index.handler\n", "", "'handler' is a required property"),
    ("handler that does not exist", "handler: index.handler", "handler: index.handle",
     "index has no function handle"),
    ("initializer in a missing module", "handler: index.initialize", "handler: main.initialize",
     "no module main"),
    ("wildcard action", "          - oss:PutObject\n", "          - oss:*\n", "wildcard action 'oss:*'"),
    ("five-field cron", "'0 */5 * * * *'", "'*/5 * * * *'", "must have six fields"),
    ("misspelt variable", "ICE_MAX_QPS: ", "ICE_MAX_QSP: ", "ICE_MAX_QSP is not read by the code"),
    ("variable the code refuses", "'ICE_CONCURRENCY', '8'", "'ICE_CONCURRENCY', 'eight'",
     "the code refuses them: ICE_CONCURRENCY"),
    ("no vendored dependencies on the path", "PYTHONPATH: /code/python", "PYTHONPATH: /code/lib",
     "PYTHONPATH must include /code/python"),
    ("HTTP trigger taking GET", "              - POST\n", "              - POST\n              - GET\n",
     "methods must be [POST]"),
    ("callback key ICE refuses", "${env('CALLBACK_AUTH_KEY')}", "${env('CALLBACK_AUTH_KEY')},lowercaseonly",
     "key #2 is not one ICE accepts"),
    ("memory FC cannot give", "memorySize: 256", "memorySize: 250", "250 is not a multiple of 64"),
    ("property fc3 does not know", "diskSize: 512", "diskSize: 512\n      memorysize: 256",
     "memorysize is not an fc3 property"),
    ("no failure destination", "            destination: ${vars.failureDestination}\n", "",
     "onFailure.destination must be an ARN"),
    ("store action the store does not use", "          - ots:GetRange\n",
     "          - ots:GetRange\n          - ots:UpdateTable\n", "allows ['ots:UpdateTable']"),
    ("store action missing", "          - ots:BatchGetRow\n", "", "lacks ['ots:BatchGetRow']"),
]


def break_template(*defects) -> str:
    text = TEMPLATE.read_text()
    for _, old, new, _ in defects:
        assert old in text, f"template.yml no longer contains {old!r}; update BROKEN"
        text = text.replace(old, new, 1)
    return text


SCHEMA_DEFECTS = {"bad runtime", "missing handler", "memory FC cannot give", "property fc3 does not know"}


@pytest.mark.parametrize("defect", BROKEN, ids=[b[0] for b in BROKEN])
def test_the_check_reports_a_broken_template(defect, schema, tmp_path):
    if schema is None and defect[0] in SCHEMA_DEFECTS:
        pytest.skip(SCHEMA_MISSING)
    path = write_variant(tmp_path, break_template(defect))
    problems = tc.check(tc.render_in_python(path, tc.EXAMPLE_ENV), tc.REPO, schema)
    assert any(defect[3] in problem for problem in problems), problems


def test_s_preview_of_a_template_broken_every_way_reports_each_defect(s_binary, schema, tmp_path):
    # one at a time where two defects would hide each other (missing handler / unknown handler)
    defects = [d for d in BROKEN if d[0] not in ("handler that does not exist", "runtime the package is not built for")
               and (schema is not None or d[0] not in SCHEMA_DEFECTS)]
    path = write_variant(tmp_path, break_template(*defects))
    problems = tc.check(tc.render_with_s(path, tc.EXAMPLE_ENV, s_binary), tc.REPO, schema)
    for defect in defects:
        assert any(defect[3] in problem for problem in problems), (defect[0], problems)


def test_a_template_that_does_not_render_is_reported(s_binary, tmp_path):
    path = write_variant(tmp_path, TEMPLATE.read_text().replace("${vars.region}", "${vars.regoin}", 1))
    with pytest.raises(tc.RenderError):
        tc.render_with_s(path, tc.EXAMPLE_ENV, s_binary)
    with pytest.raises(tc.RenderError, match="vars.regoin"):
        tc.render_in_python(path, tc.EXAMPLE_ENV)


def test_the_command_line_check_exits_non_zero_on_problems(tmp_path, capsys):
    path = write_variant(tmp_path, break_template(*[d for d in BROKEN if d[0] == "five-field cron"]))
    assert tc.main(["--template", str(path), "--example-env", "--python-renderer"]) == 1
    assert "six fields" in capsys.readouterr().out
    assert tc.main(["--template", str(TEMPLATE), "--example-env", "--python-renderer"]) == 0


def test_every_timer_sample_is_named_like_a_timer_of_the_template():
    """The samples show what our own triggers deliver: their triggerName is one template.yml defines (or shows
    commented out, ready to switch on)."""
    import json
    import re

    names = set(re.findall(r"triggerName:\s*([\w-]+)", TEMPLATE.read_text()))
    timers = [json.loads(p.read_text()) for p in sorted((tc.REPO / "events").glob("*.json"))]
    timers = [event for event in timers if isinstance(event, dict) and "triggerTime" in event]
    assert len(timers) >= 3
    for event in timers:
        assert event["triggerName"] in names, (event["triggerName"], sorted(names))


@pytest.mark.parametrize("env, message", [
    ({"RECORD_STORE": "tablestore://media-prod/ice_jobs"},  # TABLESTORE_INSTANCE unset: instance//table/...
     "needs exactly ['instance/media-prod/table/ice_jobs', 'instance/media-prod/table/ice_jobs_pending']"),
    ({"RECORD_STORE": "tablestore://media-prod/ice_jobs", "TABLESTORE_INSTANCE": "media-test",
      "TABLESTORE_TABLE": "ice_jobs"}, "grants ['instance/media-test/table/ice_jobs'"),
    ({"RECORD_STORE": "oss://another-bucket/ice"}, "acs:oss:*:*:another-bucket/ice/*"),
    ({"RECORD_BUCKET": "", "RECORD_STORE": ""}, "must name oss://<bucket>/<prefix>"),
    ({"RECORD_STORE": "file:///tmp/records"}, "FC's /code is read-only"),
])
def test_the_policy_must_name_the_store_record_store_names(env, message):
    problems = tc.check(tc.render_in_python(TEMPLATE, {**tc.EXAMPLE_ENV, **env}), tc.REPO, None)
    assert any(message in problem for problem in problems), problems


def test_a_failure_queue_in_another_region_than_the_function_is_reported():
    env = {**tc.EXAMPLE_ENV, "FAILURE_DESTINATION_ARN": "acs:mns:cn-beijing:1234567890123456:/queues/failed/messages"}
    problems = tc.check(tc.render_in_python(TEMPLATE, env), tc.REPO, None)
    (problem,) = [p for p in problems if "onFailure.destination" in p]
    assert "is in cn-beijing but the function runs in cn-shanghai (ICE_REGION)" in problem, problem
    assert "export FAILURE_DESTINATION_ARN=acs:mns:cn-shanghai:..., or export ICE_REGION=cn-beijing" in problem
    assert tc.check(tc.render_in_python(TEMPLATE, {**env, "ICE_REGION": "cn-beijing"}), tc.REPO, None) == []


@pytest.mark.parametrize("arn, said", [
    ("acs:mns:cn-shanghai:<account-id>:/queues/failed/messages", "names account '<account-id>', not an account ID"),
    ("acs:mns-queue-failed", "is not an ARN (acs:mns:<region>:<account-id>:/queues/<queue>/messages)"),
])
def test_a_failure_destination_that_names_no_account_is_reported(arn, said):
    problems = tc.check(tc.render_in_python(TEMPLATE, {**tc.EXAMPLE_ENV, "FAILURE_DESTINATION_ARN": arn}), tc.REPO,
                        None)
    assert any(said in problem for problem in problems), problems


def test_a_tablestore_deploy_with_matching_variables_passes():
    env = {**tc.EXAMPLE_ENV, "RECORD_STORE": "tablestore://media-prod/ice_jobs", "TABLESTORE_INSTANCE": "media-prod",
           "TABLESTORE_TABLE": "ice_jobs"}
    assert tc.check(tc.render_in_python(TEMPLATE, env), tc.REPO, None) == []


def test_an_eventbridge_bus_is_the_one_the_policies_let_the_role_put_events_on():
    env = {**tc.EXAMPLE_ENV, "NOTIFY_EVENTBRIDGE": "media-events", "ICE_REGION": "cn-beijing",
           "FAILURE_DESTINATION_ARN": "acs:mns:cn-beijing:1234567890123456:/queues/ice-upload-sync-failed/messages"}
    rendered = tc.render_in_python(TEMPLATE, env)
    assert tc.check(rendered, tc.REPO, None) == []
    assert function_props(rendered)["environmentVariables"]["NOTIFY_EVENTBRIDGE"] == "media-events"
    assert set(tc.operator_policies(rendered)) == set(tc.function_policies(rendered)) == {"oss", "tablestore"}
    for policy in [*tc.function_policies(rendered).values(), *tc.operator_policies(rendered).values()]:
        (statement,) = [s for s in policy["Statement"] if "eventbridge:PutEvents" in s["Action"]]
        assert statement["Resource"] == ["acs:eventbridge:cn-beijing:*:eventbus/media-events"]


def test_a_policy_for_another_bus_is_reported(tmp_path):
    text = TEMPLATE.read_text().replace("eventbus/${vars.notifyEventBus}", "eventbus/other-bus")
    assert text != TEMPLATE.read_text()
    path = write_variant(tmp_path, text)
    problems = tc.check(tc.render_in_python(path, {**tc.EXAMPLE_ENV, "NOTIFY_EVENTBRIDGE": "media-events"}),
                        tc.REPO, None)
    assert any("needs exactly ['acs:eventbridge:cn-shanghai:*:eventbus/media-events']" in p for p in problems), problems


def test_without_a_bus_the_function_starts_with_events_off():
    variables = function_props(tc.render_in_python(TEMPLATE, tc.EXAMPLE_ENV))["environmentVariables"]
    assert (variables["NOTIFY_URL"], variables["NOTIFY_SECRET"], variables["NOTIFY_EVENTBRIDGE"]) == ("", "", "")
    from ice_upload_sync.config import Settings

    assert not Settings.from_env({k: str(v) for k, v in variables.items()}).notifies
