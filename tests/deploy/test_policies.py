"""The RAM policies template.yml renders: the function's role (one per store) and the operator's
identity (``ramPolicy.operator.<store>``), each exactly what the code and the commands need.

Expected grants are written out here, not derived from template_check: the check and the
template could drift together otherwise.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Set, Tuple

import pytest

from tests.deploy import template_check as tc

TEMPLATE = tc.REPO / "template.yml"
BUCKET, PREFIX, INSTANCE, TABLE = "media-records", "prod/ice", "media-prod", "ice_jobs"
FAILURE_QUEUE = "acs:mns:cn-shanghai:1234567890123456:/queues/ice-upload-sync-failed/messages"
BUS = "acs:eventbridge:cn-shanghai:*:eventbus/media-events"
STORES = {
    "oss": {"RECORD_BUCKET": BUCKET, "RECORD_PREFIX": PREFIX},
    "tablestore": {"RECORD_STORE": f"tablestore://{INSTANCE}/{TABLE}", "TABLESTORE_INSTANCE": INSTANCE,
                   "TABLESTORE_TABLE": TABLE},
}
ICE_LOOKUP = {("ice:GetUrlUploadInfos", "*")}
STORE_GRANTS = {
    "oss": {(action, f"acs:oss:*:*:{BUCKET}/{PREFIX}/*") for action in ("oss:GetObject", "oss:PutObject",
                                                                       "oss:DeleteObject")}
    | {("oss:ListObjects", f"acs:oss:*:*:{BUCKET}")},
    "tablestore": {(action, f"acs:ots:cn-shanghai:*:instance/{INSTANCE}/table/{table}")
                   for action in ("ots:GetRow", "ots:BatchGetRow", "ots:PutRow", "ots:DeleteRow", "ots:BatchWriteRow",
                                  "ots:GetRange")
                   for table in (TABLE, f"{TABLE}_pending")},
}
# what the command line needs beyond the function's own grants (and it never sends to the failure queue)
OPERATOR_ONLY = {("ice:GetEventCallback", "*"), ("ice:SetEventCallback", "*"), ("ice:UploadMediaByURL", "*"),
                 ("fc:InvokeFunction", "acs:fc:cn-shanghai:*:functions/ice-upload-sync")}
FUNCTION_LISTINGS = [f"{PREFIX}/pending/*", f"{PREFIX}/jobs/*", f"{PREFIX}/outbox/*", f"{PREFIX}/locks/*"]
ACTION = re.compile(r"^[a-z]+:[A-Z][A-Za-z]+$")


def rendered(store: str, **env: str) -> Dict[str, Any]:
    return tc.render_in_python(TEMPLATE, {**tc.EXAMPLE_ENV, **STORES[store], **env})


def grants(policy: Dict[str, Any]) -> Set[Tuple[str, str]]:
    return {(action, resource) for statement in policy["Statement"] for action in statement["Action"]
            for resource in statement["Resource"]}


def listing_prefixes(policy: Dict[str, Any]) -> list:
    (statement,) = [s for s in policy["Statement"] if "oss:ListObjects" in s["Action"]]
    return statement["Condition"]["StringLike"]["oss:Prefix"]


@pytest.mark.parametrize("store", sorted(STORES))
def test_the_operators_policy_grants_what_the_commands_need_and_no_more(store):
    """get / list / stats read the store; check / replay / sweep run the handler (the function's grants,
    less the failure queue FC sends to); ice-callback reads and writes ICE's callback setting; smoke
    starts an upload and invokes the function with `s invoke`."""
    document = rendered(store)
    operator = document["vars"]["ramPolicy"]["operator"][store]
    assert grants(operator) == ICE_LOOKUP | STORE_GRANTS[store] | OPERATOR_ONLY
    assert not any(action.startswith("mns:") for action, _ in grants(operator))
    if store == "oss":  # the read commands first list <prefix>/ (max 1 key) to tell a typo from an empty store
        assert listing_prefixes(operator) == [f"{PREFIX}/", *FUNCTION_LISTINGS]
    assert tc.check(document, tc.REPO, None) == []


@pytest.mark.parametrize("store", sorted(STORES))
def test_the_functions_policy_grants_the_lookup_its_store_and_the_failure_queue(store):
    function = rendered(store)["vars"]["ramPolicy"][store]
    assert grants(function) == ICE_LOOKUP | STORE_GRANTS[store] | {("mns:SendMessage", FAILURE_QUEUE)}
    if store == "oss":
        assert listing_prefixes(function) == FUNCTION_LISTINGS


@pytest.mark.parametrize("store", sorted(STORES))
@pytest.mark.parametrize("bus", ["", "media-events"], ids=["no bus", "a bus"])
def test_every_policy_is_a_ram_policy_document(store, bus):
    document = rendered(store, NOTIFY_EVENTBRIDGE=bus)
    policies = {"ramTrustPolicy": document["vars"]["ramTrustPolicy"],
                **{name: policy for name, policy in tc._all_policies(document).items()}}
    assert set(policies) == {"ramTrustPolicy", "ramPolicy.oss", "ramPolicy.tablestore", "ramPolicy.operator.oss",
                             "ramPolicy.operator.tablestore"}
    for name, policy in policies.items():
        assert json.loads(json.dumps(policy)) == policy, name  # what `--print` writes is the document itself
        assert set(policy) == {"Version", "Statement"} and policy["Version"] == "1", name
        assert isinstance(policy["Statement"], list) and policy["Statement"], name
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow", name
            assert set(statement) <= {"Effect", "Action", "Resource", "Condition", "Principal"}, name
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            assert actions and all(ACTION.match(action) for action in actions), (name, actions)
            if name != "ramTrustPolicy":
                assert statement["Resource"] and all(statement["Resource"]), (name, statement)
    assert tc.policy_problems(document) == []


@pytest.mark.parametrize("store", sorted(STORES))
def test_put_events_is_granted_only_when_a_bus_is_set(store):
    """README: eventbridge:PutEvents on the NOTIFY_EVENTBRIDGE bus, if set. Unset, no statement names
    `eventbus/` (no bus at all), in any policy."""
    for bus, expected in (("", set()), ("media-events", {("eventbridge:PutEvents", BUS)})):
        document = rendered(store, NOTIFY_EVENTBRIDGE=bus)
        for name, policy in tc._all_policies(document).items():
            assert {g for g in grants(policy) if g[0].startswith("eventbridge:")} == expected, (bus, name)
        assert tc.check(document, tc.REPO, None) == []
    unset = rendered(store)
    assert "eventbridge" not in json.dumps(unset["vars"]["ramPolicy"])


def test_s_grants_put_events_only_when_a_bus_is_set_too(s_binary):
    for bus in ("", "media-events"):
        document = tc.render_with_s(TEMPLATE, {**tc.EXAMPLE_ENV, "NOTIFY_EVENTBRIDGE": bus}, s_binary)
        for name, policy in tc._all_policies(document).items():
            assert ("eventbridge:PutEvents" in json.dumps(policy)) == bool(bus), (bus, name)


def test_a_policy_granting_put_events_without_a_bus_is_reported(tmp_path):
    condition = "env('NOTIFY_EVENTBRIDGE', '') ? vars.ramStatements.putEvents : []"
    text = TEMPLATE.read_text()
    assert condition in text
    path = tmp_path / "template.yml"
    path.write_text(text.replace(condition, "vars.ramStatements.putEvents", 1))
    problems = tc.check(tc.render_in_python(path, tc.EXAMPLE_ENV), tc.REPO, None)
    assert problems[0] == ("vars.ramPolicy.oss grants eventbridge:PutEvents on "
                           "['acs:eventbridge:cn-shanghai:*:eventbus/'] but resources.ice_upload_sync.props."
                           "environmentVariables.NOTIFY_EVENTBRIDGE is unset: no event is put anywhere")
    assert len(problems) == 2 and "vars.ramPolicy.operator.oss lacks eventbridge:PutEvents" in problems[1]


# (what is broken, text in template.yml, its replacement, what the check must say)
OPERATOR_DEFECTS = [
    ("a command's ICE action missing", "          - ice:SetEventCallback\n", "",
     "vars.ramPolicy.operator.oss lacks ice:SetEventCallback on *, which ice-callback set needs"),
    ("the failure queue granted to the operator", "vars.ramStatements.invokeFunction)}",
     "vars.ramStatements.invokeFunction, vars.ramStatements.failureQueue)}",
     "vars.ramPolicy.operator.oss allows mns:SendMessage on acs:mns:"),
    ("no store-exists listing", '              - "${vars.recordPrefix}/"\n', "",
     "vars.ramPolicy.operator.oss lacks oss:ListObjects on acs:oss:*:*:example-ice-records (oss:Prefix "
     "['ice-upload-sync/', 'ice-upload-sync/jobs/*'"),
    ("invoke on every function", "functions/${vars.functionName}", "functions/*",
     "allows fc:InvokeFunction on acs:fc:cn-shanghai:*:functions/*, which no command needs"),
]


@pytest.mark.parametrize("defect", OPERATOR_DEFECTS, ids=[d[0] for d in OPERATOR_DEFECTS])
def test_the_check_reports_an_operator_policy_that_grants_more_or_less(defect, tmp_path):
    _, old, new, said = defect
    text = TEMPLATE.read_text()
    assert old in text, f"template.yml no longer contains {old!r}; update OPERATOR_DEFECTS"
    path = tmp_path / "template.yml"
    path.write_text(text.replace(old, new, 1))
    problems = tc.check(tc.render_in_python(path, tc.EXAMPLE_ENV), tc.REPO, None)
    assert any(said in problem for problem in problems), problems


@pytest.mark.parametrize("var", ["ramPolicy.operator.oss", "ramPolicy.operator.tablestore"])
def test_the_operators_policy_prints_for_each_store(var, monkeypatch, capsys):
    for name, value in {**tc.EXAMPLE_ENV, **STORES["oss"], **STORES["tablestore"]}.items():
        monkeypatch.setenv(name, value)
    assert tc.main(["--python-renderer", "--print", var]) == 0
    captured = capsys.readouterr()
    store = var.rsplit(".", 1)[-1]
    assert grants(json.loads(captured.out)) == ICE_LOOKUP | STORE_GRANTS[store] | OPERATOR_ONLY
    assert captured.err == ""


# ---------------------------------------------------------------- what to export when the policy names another store


@pytest.mark.parametrize("env, export", [
    ({"RECORD_STORE": "tablestore://media-prod/ice_jobs"},  # neither set: instance//table/ice_upload_jobs
     "export TABLESTORE_INSTANCE=media-prod TABLESTORE_TABLE=ice_jobs (the policy is made from TABLESTORE_INSTANCE "
     "and TABLESTORE_TABLE)"),
    ({"RECORD_STORE": "tablestore://media-prod/ice_jobs", "TABLESTORE_INSTANCE": "media-prod"},
     "export TABLESTORE_TABLE=ice_jobs (the policy"),
    ({"RECORD_STORE": "oss://another-bucket/ice"},
     "export RECORD_BUCKET=another-bucket RECORD_PREFIX=ice (the policy is made from RECORD_BUCKET and "
     "RECORD_PREFIX), or unset RECORD_STORE (it defaults to oss://$RECORD_BUCKET/$RECORD_PREFIX)"),
    ({"RECORD_STORE": "oss://example-ice-records/other/prefix"}, "export RECORD_PREFIX=other/prefix (the policy"),
])
def test_a_policy_for_another_store_names_the_variables_to_export(env, export):
    problems = tc.check(tc.render_in_python(TEMPLATE, {**tc.EXAMPLE_ENV, **env}), tc.REPO, None)
    (problem,) = [p for p in problems if "but RECORD_STORE" in p]
    assert export in problem, problem
    followed = dict(part.split("=", 1) for part in export.split(" (")[0].split()[1:])
    assert tc.check(tc.render_in_python(TEMPLATE, {**tc.EXAMPLE_ENV, **env, **followed}), tc.REPO, None) == []


# ---------------------------------------------------------------- the renderer's conditions


def test_a_condition_on_a_var_is_refused_because_s_sees_its_unrendered_text(tmp_path):
    path = tmp_path / "template.yml"
    path.write_text("vars:\n  bus: \"${env('BUS', '')}\"\n  on: \"${vars.bus ? 'set' : ('un' + 'set')}\"\n")
    with pytest.raises(tc.RenderError, match=r"a condition on vars.bus sees its unrendered text in s; "
                                             r"test env\('X', ''\) instead"):
        tc.render_in_python(path, {})


def test_s_does_see_a_vars_unrendered_text_in_a_condition(s_binary, tmp_path):
    """Why the renderer refuses it: with BUS empty, s calls `vars.bus` true (its text is ${env(...)})."""
    path = tmp_path / "template.yml"
    path.write_text(
        "edition: 3.0.0\nname: t\naccess: default\n"
        "vars:\n  bus: \"${env('BUS', '')}\"\n"
        "  by_var: \"${vars.bus ? 'set' : ('un' + 'set')}\"\n"
        "  by_env: \"${env('BUS', '') ? 'set' : 'unset'}\"\n"
        "resources:\n  f:\n    component: fc3\n    props:\n      region: cn-shanghai\n      functionName: f\n")
    document = tc.render_with_s(Path(path), {"BUS": ""}, s_binary)
    assert (document["vars"]["by_var"], document["vars"]["by_env"]) == ("set", "unset")
