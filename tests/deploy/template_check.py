"""The offline check of ``template.yml``: render it, validate it, report every problem found.

Rendering uses the real Serverless Devs CLI (``s preview -t template.yml -o json``, pinned, installed
from npm into ``.cache/deploy/npm``), which resolves ``vars`` and ``${env()}`` without the
internet. Where ``npm`` is missing, a small renderer here does the same for the expressions this
template uses (``${vars.a.b}``, ``${env('X')}``, ``${env('X', default)}``, ``+``, and for the
policies ``[...]``, ``list.concat(...)`` and ``env('X', '') ? a : b``) and says so.
``--python-renderer`` forces it: the way out offline, where npm is there but cannot install ``s``
(the check then stops, shows npm's own message and says how). Before ``s`` runs, every required
variable (``${env('X')}`` without a default) that is unset is named, all at once: ``s`` stops at
the first. Then:

- the fc3 function ``props`` against fc3's own JSON Schema (``../shared/reference/fc3-schema.json``),
  plus: no property the schema does not know (the schema itself allows any);
- ``handler`` and the initializer name real functions of the code in ``code:``;
- every environment variable the code reads is set in the template, has a default in the code,
  or is one FC sets itself; every variable the template sets is read by the code;
- the RAM policies in ``vars.ramPolicy`` (the function's, by store, and ``operator``'s) are RAM
  policy documents with no wildcard action; the role is an ARN;
- ``RECORD_STORE`` names a store FC can keep records in (not ``file://``), and the policy for
  that store names exactly its bucket and prefix (OSS) or its instance and table (Tablestore),
  or the problem says what to export;
- ``eventbridge:PutEvents`` is granted on exactly the ``NOTIFY_EVENTBRIDGE`` bus, and only with one;
- the operator's policy grants exactly what the command line needs (``operator_grants_needed``);
- timer crons have FC's six fields; the HTTP trigger takes POST only, and an anonymous one
  needs ``CALLBACK_AUTH_KEY``; async invocations have bounded retries and a failure destination
  in the function's region;
- no value holds a ``<placeholder>`` of ``deploy.env.example``.

    python -m tests.deploy.template_check [--template template.yml] [--example-env] [--python-renderer]
    python -m tests.deploy.template_check --print ramPolicy.oss     # a rendered var, as JSON
    python -m tests.deploy.template_check --print ramPolicy.operator.oss [--allow-placeholders]
"""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import yaml

from tests.deploy.package import PYTHON_VERSION as PACKAGED_PYTHON

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO.parent / "shared" / "reference" / "fc3-schema.json"
CACHE = REPO / ".cache" / "deploy"
S_PACKAGE = "@serverless-devs/s"
S_VERSION = "3.1.10"
NPM_TIMEOUT_S = 300
NPM_LINES_SHOWN = 20  # npm's error ends with the path of its full log

# What a deployer must set (the template has no default for these); placeholders for checks.
EXAMPLE_ENV = {
    "FUNCTION_ROLE_ARN": "acs:ram::1234567890123456:role/ice-upload-sync",
    "FAILURE_DESTINATION_ARN": "acs:mns:cn-shanghai:1234567890123456:/queues/ice-upload-sync-failed/messages",
    "CALLBACK_AUTH_KEY": "ExampleAuthKey2026",
    "RECORD_BUCKET": "example-ice-records",
}
# Set by FC itself (FC_*; ALIBABA_CLOUD_* on python3.12, where the context has no credentials).
PROVIDED_BY_FC = re.compile(r"^(FC_[A-Z0-9_]+|ALIBABA_CLOUD_ACCESS_KEY_ID|ALIBABA_CLOUD_ACCESS_KEY_SECRET"
                            r"|ALIBABA_CLOUD_SECURITY_TOKEN)$")
# Read by the Python runtime, not by our code.
RUNTIME_VARIABLES = {"PYTHONPATH", "MALLOC_ARENA_MAX"}  # read by the runtime: Python, glibc
ROLE_ARN = re.compile(r"^acs:ram::\d+:role/[\w.@+=-]+$")
# env lookups in our code: env.get("X"), os.environ["X"], os.getenv("X"), and config.py's helpers.
_ENV_READ = re.compile(r"""(?:environ|env|getenv)\s*(?:\.get\(|\[|\()\s*["']([A-Z][A-Z0-9_]+)["']"""
                       r"""|\b(?:text|_number)\(\s*(?:env,\s*)?["']([A-Z][A-Z0-9_]+)["']""")


class RenderError(Exception):
    """The template does not render (a required variable unset, a bad expression)."""


class MissingVariables(RenderError):
    """Required variables (``${env('X')}`` without a default) that are not set: every one of them."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        super().__init__(
            f"{len(self.names)} required variable(s) not set: {', '.join(self.names)}\n(the template reads each "
            f"as ${{env('X')}}, without a default): export them (README \"Deploy\": Variables) and run the check "
            f"again;\n--example-env fills the unset ones with placeholders, for a trial")


class SUnavailable(RenderError):
    """npm is there but could not install the Serverless Devs CLI (offline, a registry it cannot reach)."""


def python_renderer_hint(options: Sequence[str] = ()) -> str:
    """How to run the same check without ``s``, keeping the caller's other options."""
    wanted = [*[o for o in options if o != "--python-renderer"], "--python-renderer"]
    return ("Render in Python instead (the same expressions; the suite checks it agrees with s):\n"
            f"  make template-check ARGS={shlex.quote(' '.join(wanted))}\n"
            f"  .venv/bin/python -m tests.deploy.template_check {' '.join(map(shlex.quote, wanted))}   (the same)")


# ---------------------------------------------------------------- rendering


def s_binary(cache: Optional[Path] = None) -> Optional[Path]:
    """The pinned ``s``, installed from npm into ``cache/npm`` once; None when npm is missing.

    Raises ``SUnavailable`` with npm's own message when npm cannot install it."""
    prefix = (cache or CACHE) / "npm"
    binary = prefix / "node_modules" / ".bin" / "s"
    manifest = prefix / "node_modules" / "@serverless-devs" / "s" / "package.json"
    if binary.exists() and manifest.exists() and json.loads(manifest.read_text()).get("version") == S_VERSION:
        return binary
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return None
    if prefix in _NPM_FAILED:  # once per process: an npm that hangs offline would cost minutes each time
        raise _NPM_FAILED[prefix]
    try:
        return _npm_install(npm, prefix, binary)
    except SUnavailable as exc:
        _NPM_FAILED[prefix] = exc
        raise


_NPM_FAILED: Dict[Path, SUnavailable] = {}


def _npm_install(npm: str, prefix: Path, binary: Path) -> Path:
    prefix.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
               f"{S_PACKAGE}@{S_VERSION}"]
    what = f"`npm install {S_PACKAGE}@{S_VERSION}` (into {prefix})"
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SUnavailable(f"cannot install the Serverless Devs CLI: {what} did not finish in {NPM_TIMEOUT_S} s "
                           "(offline?)") from None
    except OSError as exc:
        raise SUnavailable(f"cannot install the Serverless Devs CLI: {what} did not start: {exc}") from None
    said = [line.rstrip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    if result.returncode != 0 or not binary.exists():
        told = "\n".join("  " + line for line in said[-NPM_LINES_SHOWN:]) or "  (npm printed nothing)"
        raise SUnavailable(f"cannot install the Serverless Devs CLI: {what} failed (exit {result.returncode}); "
                           f"npm said:\n{told}")
    return binary


def render_with_s(template: Path, env: Mapping[str, str], binary: Path,
                  cache: Optional[Path] = None) -> Dict[str, Any]:
    home = (cache or CACHE) / "s-home"  # s keeps its config and logs in ~/.s; never the user's real one here
    home.mkdir(parents=True, exist_ok=True)
    run_env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR", "SYSTEMROOT")}
    run_env.update(env)
    run_env["HOME"] = str(home)
    result = subprocess.run([str(binary), "preview", "-t", template.name, "-o", "json", "--silent"],
                            cwd=template.parent, env=run_env, capture_output=True, text=True, timeout=120)
    output = result.stdout
    start = output.find("{")  # as root, s prints a warning line before the document
    if result.returncode != 0 or start < 0:
        message = "\n".join(line for line in (result.stdout + result.stderr).splitlines()
                            if line.strip() and not line.startswith(("[", "A complete log", "Env:", "Logs:",
                                                                       "Feedback:")))
        raise RenderError(f"s preview failed: {message.strip()}")
    document, _ = json.JSONDecoder().raw_decode(output[start:])
    return document


_EXPRESSION = re.compile(r"\$\{(.*?)\}(?!')")
_TOKENS = re.compile(r"""\s*(?:(?P<str>'[^']*'|"[^"]*")|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][\w.-]*)"""
                     r"""|(?P<op>[()+,?:\[\]]))""")


def render_in_python(template: Path, env: Mapping[str, str]) -> Dict[str, Any]:
    """What ``s preview`` does with this template's expressions, for machines without npm.

    Raises ``MissingVariables`` naming every required variable that is unset, not only the first."""
    document = yaml.safe_load(template.read_text())
    missing: List[str] = []
    try:
        variables: Dict[str, Any] = {}
        for name, value in (document.get("vars") or {}).items():  # in order: a var may use earlier ones
            variables[name] = _render_value(value, variables, env, missing)
        document["vars"] = variables
        document["resources"] = _render_value(document.get("resources") or {}, variables, env, missing)
    except RenderError:
        if missing:  # most likely the placeholder of an unset variable went where it could not
            raise MissingVariables(missing) from None
        raise
    if missing:
        raise MissingVariables(missing)
    return document


def _render_value(value: Any, variables: Mapping[str, Any], env: Mapping[str, str], missing: List[str]) -> Any:
    if isinstance(value, dict):
        return {key: _render_value(item, variables, env, missing) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_value(item, variables, env, missing) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _EXPRESSION.fullmatch(value.strip())
    if whole:  # the value is one expression: keep its type (s does, for defaults and vars)
        return _evaluate(whole.group(1), variables, env, missing)
    return _EXPRESSION.sub(lambda m: str(_evaluate(m.group(1), variables, env, missing)), value)


def _evaluate(expression: str, variables: Mapping[str, Any], env: Mapping[str, str], missing: List[str]) -> Any:
    """The part of s's expressions (JavaScript) this template uses::

        expr := sum ['?' expr ':' expr]       (a condition on env() only, see below)
        sum  := term ('+' term)*
        term := 'str' | number | true | false | '(' expr ')' | '[' [expr (',' expr)*] ']'
              | env('X' [, expr]) | vars.a.b | vars.a.b.concat(expr, ...)

    ``env('X', d)`` gives ``d`` when X is unset or empty, as s does (s: ``if (value) return value``).
    A condition naming ``vars`` is refused: s evaluates it on the var's unrendered text
    (``${env(...)}``, never empty), so it would not mean what it says.
    """
    tokens, position = [], 0
    while position < len(expression.rstrip()):
        match = _TOKENS.match(expression, position)
        if not match or match.end() == position:
            raise RenderError(f"cannot render ${{{expression}}}")
        tokens.append(match)
        position = match.end()
    cursor = [0]
    vars_named: List[str] = []

    def peek(kind: str, text: Optional[str] = None) -> bool:
        if cursor[0] >= len(tokens) or tokens[cursor[0]].group(kind) is None:
            return False
        return text is None or tokens[cursor[0]].group(kind) == text

    def take(kind: str, text: Optional[str] = None) -> str:
        if not peek(kind, text):
            raise RenderError(f"cannot render ${{{expression}}}")
        cursor[0] += 1
        return tokens[cursor[0] - 1].group(kind)

    def arguments(closing: str) -> List[Any]:
        values: List[Any] = []
        while not peek("op", closing):
            values.append(expr())
            if not peek("op", closing):
                take("op", ",")
        take("op", closing)
        return values

    def term() -> Any:
        if peek("str"):
            return take("str")[1:-1]
        if peek("num"):
            return ast.literal_eval(take("num"))
        if peek("op", "("):
            take("op", "(")
            value = expr()
            take("op", ")")
            return value
        if peek("op", "["):
            take("op", "[")
            return arguments("]")
        name = take("name")
        if name in ("true", "false"):
            return name == "true"
        if name == "env":
            take("op", "(")
            variable = take("str")[1:-1]
            default: Any = _MISSING
            if peek("op", ","):
                take("op", ",")
                default = expr()
            take("op", ")")
            if env.get(variable):
                return env[variable]
            if default is _MISSING:  # noted, and rendering goes on to find the others
                if variable not in missing:
                    missing.append(variable)
                return ""
            return default
        if name.startswith("vars."):
            vars_named.append(name)
            path = name.split(".")[1:]
            concat = path[-1] == "concat" and peek("op", "(")
            current: Any = variables
            for key in path[:-1] if concat else path:
                if not isinstance(current, dict) or key not in current:
                    raise RenderError(f"{name} is not defined")
                current = current[key]
            if concat:
                if not isinstance(current, list):
                    raise RenderError(f"cannot render ${{{expression}}}: {name[:-len('.concat')]} is not a list")
                take("op", "(")
                joined = list(current)
                for value in arguments(")"):  # JavaScript's concat: a list's items, anything else itself
                    joined.extend(value if isinstance(value, list) else [value])
                return joined
            return current
        raise RenderError(f"cannot render ${{{expression}}}: unknown {name!r}")

    def total() -> Any:
        terms = [term()]
        while peek("op", "+"):
            take("op", "+")
            terms.append(term())
        return terms[0] if len(terms) == 1 else "".join(str(t) for t in terms)

    def expr() -> Any:
        named = len(vars_named)
        value = total()
        if not peek("op", "?"):
            return value
        if len(vars_named) > named:
            raise RenderError(f"cannot render ${{{expression}}}: a condition on {vars_named[named]} sees its "
                              "unrendered text in s; test env('X', '') instead")
        take("op", "?")
        chosen = expr()
        take("op", ":")
        other = expr()
        return chosen if value not in ("", 0, False, None) else other  # JavaScript's falsy values

    value = expr()
    if cursor[0] != len(tokens):
        raise RenderError(f"cannot render ${{{expression}}}")
    return value


_MISSING = object()


@dataclass
class Rendered:
    document: Dict[str, Any]
    renderer: str  # "s preview" or "python"


def render(template: Path, env: Mapping[str, str], use_s: Optional[bool] = None,
           cache: Optional[Path] = None) -> Rendered:
    """With ``s`` when it can be had (or when ``use_s``), else in Python.

    Every required variable that is unset is named first, at once (``s`` names one per run)."""
    if use_s is False:
        return Rendered(render_in_python(template, env), "python")
    try:
        render_in_python(template, env)
    except MissingVariables:
        raise
    except RenderError:
        pass  # an expression this renderer does not know: s says what it makes of it
    binary = s_binary(cache)
    if binary is not None:
        return Rendered(render_with_s(template, env, binary, cache), "s preview")
    if use_s:
        raise RenderError("npm is not installed: cannot install the Serverless Devs CLI")
    return Rendered(render_in_python(template, env), "python")


def uncomment_block(text: str, name: str) -> str:
    """``template.yml`` with its commented ``# BEGIN name`` ... ``# END name`` block switched on."""
    lines = text.splitlines(keepends=True)
    begin = next(i for i, line in enumerate(lines) if line.strip() == f"# BEGIN {name}")
    end = next(i for i, line in enumerate(lines) if line.strip() == f"# END {name}")
    for i in range(begin + 1, end):
        lines[i] = re.sub(r"^(\s*)# ?", r"\1", lines[i], count=1)
    return "".join(lines)


# ---------------------------------------------------------------- checking


def fc3_resources(document: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {name: resource.get("props") or {} for name, resource in (document.get("resources") or {}).items()
            if isinstance(resource, dict) and resource.get("component") == "fc3"}


def check(document: Mapping[str, Any], template_dir: Path, schema: Optional[Mapping[str, Any]]) -> List[str]:
    """Every problem found in a rendered template, as readable sentences; empty means fine."""
    problems: List[str] = []
    functions = fc3_resources(document)
    if not functions:
        return ["no resource uses the fc3 component"]
    for name, props in functions.items():
        where = f"resources.{name}.props"
        if schema is not None:
            problems += schema_problems(props, schema, where)
        problems += entry_point_problems(props, template_dir, where)
        problems += environment_problems(props, template_dir, where)
        problems += trigger_problems(props, where)
        problems += async_problems(props, where)
        runtime = str(props.get("runtime", ""))
        if runtime.startswith("python") and runtime != f"python{PACKAGED_PYTHON}":
            problems.append(f"{where}.runtime is {runtime} but make package vendors for python{PACKAGED_PYTHON} "
                            f"(tests/deploy/package.py PYTHON_VERSION): native modules would not load")
        role = props.get("role")
        if not isinstance(role, str) or not ROLE_ARN.match(role):
            problems.append(f"{where}.role must be the function's RAM role ARN (acs:ram::<account>:role/<name>), "
                            f"got {role!r}")
    problems += policy_problems(document)
    for name, props in functions.items():
        problems += record_store_problems(document, props, f"resources.{name}.props")
        problems += event_bus_problems(document, props, f"resources.{name}.props")
        problems += operator_policy_problems(document, props)
    problems += placeholder_problems(document)
    code = next(iter(functions.values())).get("code")
    if isinstance(code, str) and (template_dir / code / "ice_upload_sync").is_dir():
        problems += store_policy_problems(document, (template_dir / code).resolve())
    return problems


def schema_problems(props: Mapping[str, Any], schema: Mapping[str, Any], where: str) -> List[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(props), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path)
        problems.append(f"{where}{'.' + path if path else ''}: {error.message} (fc3 schema)")
    known = set(schema.get("properties", {}))
    problems += [f"{where}.{key} is not an fc3 property" for key in props if key not in known]
    return problems


def entry_point_problems(props: Mapping[str, Any], template_dir: Path, where: str) -> List[str]:
    code = props.get("code")
    if not isinstance(code, str):
        return [f"{where}.code must name the code folder, got {code!r}"]
    code_dir = (template_dir / code).resolve()
    if not code_dir.is_dir():
        return [f"{where}.code {code!r} is not a folder next to the template"]
    problems = []
    hooks = {"handler": props.get("handler"),
             "instanceLifecycleConfig.initializer.handler":
                 ((props.get("instanceLifecycleConfig") or {}).get("initializer") or {}).get("handler")}
    for field, handler in hooks.items():
        if handler is None:
            problems.append(f"{where}.{field} is missing")
            continue
        problem = _resolve_handler(str(handler), code_dir)
        if problem:
            problems.append(f"{where}.{field} {handler!r}: {problem}")
    return problems


def _resolve_handler(handler: str, code_dir: Path) -> Optional[str]:
    module_name, _, function_name = handler.rpartition(".")
    if not module_name or not function_name:
        return "must be <module>.<function>"
    if not (code_dir / (module_name.replace(".", "/") + ".py")).exists():
        return f"no module {module_name} in {code_dir.name}/"
    added = str(code_dir) not in sys.path
    if added:
        sys.path.insert(0, str(code_dir))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the import itself is what is being checked
        return f"importing {module_name} fails: {exc!r}"
    finally:
        if added:
            sys.path.remove(str(code_dir))
    if not callable(getattr(module, function_name, None)):
        return f"{module_name} has no function {function_name}"
    return None


def code_env_reads(code_dir: Path, skip: Iterable[str] = ("python",)) -> Dict[str, Set[str]]:
    """Environment variables our code reads -> the files reading them (vendored packages skipped)."""
    reads: Dict[str, Set[str]] = {}
    for path in sorted(code_dir.rglob("*.py")):
        relative = path.relative_to(code_dir)
        if relative.parts[0] in skip:
            continue
        for match in _ENV_READ.finditer(path.read_text(encoding="utf-8")):
            reads.setdefault(match.group(1) or match.group(2), set()).add(relative.as_posix())
    return reads


class _RecordingEnv(dict):
    def __init__(self, values: Mapping[str, str]):
        super().__init__(values)
        self.read: Set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


def _settings_reads(code_dir: Path, environ: Mapping[str, str]) -> tuple:
    """(names Settings.from_env reads, whether it accepts ``environ``, and its error if not)."""
    added = str(code_dir) not in sys.path
    if added:
        sys.path.insert(0, str(code_dir))
    try:
        from ice_upload_sync.config import Settings
    finally:
        if added:
            sys.path.remove(str(code_dir))
    recording = _RecordingEnv(environ)
    try:
        Settings.from_env(recording)
    except Exception as exc:  # ConfigError: the template's value does not parse
        return recording.read, str(exc)
    return recording.read, None


def environment_problems(props: Mapping[str, Any], template_dir: Path, where: str) -> List[str]:
    variables = props.get("environmentVariables") or {}
    code_dir = (template_dir / str(props.get("code", ""))).resolve()
    if not (code_dir / "ice_upload_sync").is_dir():
        return []  # entry_point_problems already says what is wrong with code
    problems = []
    reads = code_env_reads(code_dir)
    defaulted, _ = _settings_reads(code_dir, {})  # every one of these has a default in Settings
    _, error = _settings_reads(code_dir, {k: str(v) for k, v in variables.items()})
    if error:
        problems.append(f"{where}.environmentVariables: the code refuses them: {error}")
    for name in sorted(set(reads) | defaulted):
        if name in variables or name in defaulted or PROVIDED_BY_FC.match(name):
            continue
        problems.append(f"{where}.environmentVariables: {name} is read by the code "
                        f"({', '.join(sorted(reads.get(name, ())))}) but neither set here nor defaulted")
    for name in sorted(variables):
        if name not in reads and name not in defaulted and name not in RUNTIME_VARIABLES:
            problems.append(f"{where}.environmentVariables.{name} is not read by the code (a typo?)")
    if "/code/python" not in str(variables.get("PYTHONPATH", "")).split(":"):
        problems.append(f"{where}.environmentVariables.PYTHONPATH must include /code/python "
                        f"(the vendored dependencies)")
    return problems


def trigger_problems(props: Mapping[str, Any], where: str) -> List[str]:
    problems = []
    variables = props.get("environmentVariables") or {}
    for index, trigger in enumerate(props.get("triggers") or []):
        config = trigger.get("triggerConfig") or {}
        at = f"{where}.triggers[{index}] ({trigger.get('triggerName')})"
        if trigger.get("triggerType") == "timer":
            cron = str(config.get("cronExpression", ""))
            expression = re.sub(r"^CRON_TZ=\S+\s+", "", cron.strip())
            if not expression.startswith("@every ") and len(expression.split()) != 6:
                problems.append(f"{at}: cronExpression {cron!r} must have six fields (seconds first), "
                                f"or be @every <duration>")
        if trigger.get("triggerType") == "http":
            if config.get("methods") != ["POST"]:
                problems.append(f"{at}: ICE callbacks are POST; methods must be [POST], got {config.get('methods')}")
            keys = [k.strip() for k in str(variables.get("CALLBACK_AUTH_KEY", "")).split(",") if k.strip()]
            if config.get("authType") == "anonymous" and not keys:
                problems.append(f"{at}: an anonymous HTTP trigger needs CALLBACK_AUTH_KEY (ICE signs its callbacks)")
            for number, key in enumerate(keys, 1):  # ICE's rule for an AuthKey (SetEventCallback)
                if len(key) > 32 or not all(re.search(chars, key) for chars in ("[a-z]", "[A-Z]", "[0-9]")):
                    problems.append(f"{at}: CALLBACK_AUTH_KEY key #{number} is not one ICE accepts: at most 32 "
                                    f"characters with upper- and lower-case letters and digits")
    return problems


_ARN = re.compile(r"^acs:(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):(?P<account>[^:]*):(?P<resource>.+)$")
# a value a deployer still has to fill in (deploy.env.example writes them so: <account-id>, <bucket>)
PLACEHOLDER = re.compile(r"<[a-z][a-z0-9-]*>")


def async_problems(props: Mapping[str, Any], where: str) -> List[str]:
    config = props.get("asyncInvokeConfig")
    if not isinstance(config, dict):
        return [f"{where}.asyncInvokeConfig is missing: failed async invocations would be dropped"]
    problems = []
    if not isinstance(config.get("maxAsyncRetryAttempts"), int):
        problems.append(f"{where}.asyncInvokeConfig.maxAsyncRetryAttempts must be set (0-8)")
    destination = ((config.get("destinationConfig") or {}).get("onFailure") or {}).get("destination")
    at = f"{where}.asyncInvokeConfig.destinationConfig.onFailure.destination"
    if not isinstance(destination, str) or not destination.startswith("acs:"):
        return problems + [f"{at} must be an ARN, got {destination!r}"]
    arn = _ARN.match(destination)
    if arn is None:
        return problems + [f"{at} {destination!r} is not an ARN (acs:mns:<region>:<account-id>:/queues/<queue>/"
                           "messages): check FAILURE_DESTINATION_ARN"]
    region, function_region = arn.group("region"), str(props.get("region") or "")
    if region and function_region and region != function_region:
        problems.append(f"{at} {destination!r} is in {region} but the function runs in {function_region} "
                        f"(ICE_REGION): the failure queue must be in the function's region; create it in "
                        f"{function_region} and export FAILURE_DESTINATION_ARN=acs:{arn.group('service')}:"
                        f"{function_region}:..., or export ICE_REGION={region}")
    if not arn.group("account").isdigit():
        problems.append(f"{at} {destination!r} names account {arn.group('account')!r}, not an account ID "
                        "(aliyun sts GetCallerIdentity shows yours): export FAILURE_DESTINATION_ARN")
    return problems


def function_policies(document: Mapping[str, Any]) -> Dict[str, Any]:
    """The function role's policies, by store: ``vars.ramPolicy`` less ``operator``."""
    policies = (document.get("vars") or {}).get("ramPolicy") or {}
    return {store: policy for store, policy in policies.items() if store != "operator"}


def operator_policies(document: Mapping[str, Any]) -> Dict[str, Any]:
    """The operator's policies, by store: ``vars.ramPolicy.operator``."""
    return ((document.get("vars") or {}).get("ramPolicy") or {}).get("operator") or {}


def _all_policies(document: Mapping[str, Any]) -> Dict[str, Any]:
    """Every policy by the name ``--print`` takes: ``ramPolicy.oss``, ``ramPolicy.operator.oss``, ..."""
    named = {f"ramPolicy.{store}": policy for store, policy in function_policies(document).items()}
    named.update({f"ramPolicy.operator.{store}": policy for store, policy in operator_policies(document).items()})
    return named


def policy_problems(document: Mapping[str, Any]) -> List[str]:
    """Each policy is a RAM policy document (Version "1", a list of statements with an Effect, actions and
    resources), allows ICE's lookup, and has no wildcard action, NotAction or empty resource."""
    if not function_policies(document):
        return ["vars.ramPolicy is missing: the function's least-privilege RAM policies live there"]
    problems = []
    for name, policy in _all_policies(document).items():
        if not isinstance(policy, dict):
            problems.append(f"vars.{name} is not a policy document, got {type(policy).__name__}")
            continue
        if policy.get("Version") != "1":
            problems.append(f"vars.{name}.Version must be \"1\" (RAM's only policy version), got "
                            f"{policy.get('Version')!r}")
        statements = policy.get("Statement")
        if not isinstance(statements, list) or not statements or not all(isinstance(s, dict) for s in statements):
            problems.append(f"vars.{name}.Statement must be a non-empty list of statements, got {statements!r}")
            continue
        actions = [a for s in statements for a in _as_list(s.get("Action"))]
        if "ice:GetUrlUploadInfos" not in actions:
            problems.append(f"vars.{name} does not allow ice:GetUrlUploadInfos")
        for number, statement in enumerate(statements):
            at = f"vars.{name}.Statement[{number}]"
            if statement.get("Effect") not in ("Allow", "Deny"):
                problems.append(f"{at}.Effect must be Allow or Deny, got {statement.get('Effect')!r}")
            if not _as_list(statement.get("Action")) and "NotAction" not in statement:
                problems.append(f"{at} has no Action")
            if statement.get("Effect") != "Allow":
                continue
            if "NotAction" in statement:
                problems.append(f"{at} uses NotAction (allows everything else)")
            for action in _as_list(statement.get("Action")):
                if "*" in action:
                    problems.append(f"{at} allows the wildcard action {action!r}")
            resources = _as_list(statement.get("Resource"))
            if not resources or any(not r for r in resources):
                problems.append(f"{at} has an empty resource")
            if resources == ["*"] and any(not a.startswith("ice:") for a in _as_list(statement.get("Action"))):
                problems.append(f"{at} grants {statement.get('Action')} on every resource")
    return problems


def store_ram_actions(code_dir: Path) -> Dict[str, Set[str]]:
    """``RAM_ACTIONS`` of each store module that declares them (read from the source, not imported)."""
    declared: Dict[str, Set[str]] = {}
    for path in sorted((code_dir / "ice_upload_sync" / "stores").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "RAM_ACTIONS" for t in node.targets):
                declared[path.stem] = set(ast.literal_eval(node.value))
    return declared


def store_policy_problems(document: Mapping[str, Any], code_dir: Path) -> List[str]:
    """Each store's policy allows exactly the store actions its module says it needs."""
    policies = function_policies(document)
    problems = []
    for store, needed in store_ram_actions(code_dir).items():
        if store not in policies:
            problems.append(f"vars.ramPolicy.{store} is missing (stores/{store}.py needs {sorted(needed)})")
            continue
        services = {action.split(":")[0] for action in needed}
        allowed = {a for s in (policies[store] or {}).get("Statement") or [] for a in _as_list(s.get("Action"))
                   if a.split(":")[0] in services}
        if needed - allowed:
            problems.append(f"vars.ramPolicy.{store} lacks {sorted(needed - allowed)} (stores/{store}.py RAM_ACTIONS)")
        if allowed - needed:
            problems.append(f"vars.ramPolicy.{store} allows {sorted(allowed - needed)}, which stores/{store}.py "
                            f"does not need (least privilege)")
    return problems


# The variables (and the template's vars) each store's policy is made from: what to export to change it.
STORE_POLICY_VARIABLES = {
    "oss": (("RECORD_BUCKET", "recordBucket"), ("RECORD_PREFIX", "recordPrefix")),
    "tablestore": (("TABLESTORE_INSTANCE", "tablestoreInstance"), ("TABLESTORE_TABLE", "tablestoreTable")),
}


def record_store_problems(document: Mapping[str, Any], props: Mapping[str, Any], where: str) -> List[str]:
    """The store ``RECORD_STORE`` names is one FC can keep, and its policy names that very store.

    A policy for another bucket or instance (or none: ``instance//table/...`` when
    ``TABLESTORE_INSTANCE`` is unset) deploys fine and then fails every write with AccessDenied.
    """
    url = str((props.get("environmentVariables") or {}).get("RECORD_STORE") or "")
    scheme, _, rest = url.partition("://")
    location, _, leaf = rest.partition("/")
    at = f"{where}.environmentVariables.RECORD_STORE"
    if scheme == "file":
        return [f"{at} is {url!r}: FC's /code is read-only and /tmp dies with the instance; use oss:// or "
                "tablestore://"]
    if scheme not in ("oss", "tablestore") or not location or not leaf.strip("/"):
        return [f"{at} is {url!r}: it must name oss://<bucket>/<prefix> or tablestore://<instance>/<table> "
                "(is RECORD_BUCKET or RECORD_STORE unset?)"]
    policy = function_policies(document).get(scheme) or {}
    resources = [r for statement in policy.get("Statement") or [] for r in _as_list(statement.get("Resource"))
                 if r.startswith(f"acs:{'oss' if scheme == 'oss' else 'ots'}:")]
    if scheme == "oss":
        leaf = leaf.strip("/")
        expected = {f"acs:oss:*:*:{location}/{leaf}/*", f"acs:oss:*:*:{location}"}
    else:
        expected = {f"instance/{location}/table/{leaf}", f"instance/{location}/table/{leaf}_pending"}
        resources = [r.split(":", 4)[-1] for r in resources]  # acs:ots:<region>:*:instance/...
    if set(resources) != expected:
        return [f"vars.ramPolicy.{scheme} grants {sorted(resources)} but RECORD_STORE {url!r} needs exactly "
                f"{sorted(expected)}: {_store_export_hint(document, scheme, (location, leaf))}"]
    return []


def _store_export_hint(document: Mapping[str, Any], scheme: str, wanted: Sequence[str]) -> str:
    """What to export so that the policy names the store ``RECORD_STORE`` names."""
    variables = document.get("vars") or {}
    pairs = list(zip(STORE_POLICY_VARIABLES[scheme], wanted))
    differing = [(name, value) for (name, var), value in pairs if str(variables.get(var, "")) != value]
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in differing or
                       [(name, value) for (name, _), value in pairs])
    hint = f"export {exports} (the policy is made from {' and '.join(name for (name, _), _ in pairs)})"
    if scheme == "oss":
        hint += ", or unset RECORD_STORE (it defaults to oss://$RECORD_BUCKET/$RECORD_PREFIX)"
    return hint


def event_bus_problems(document: Mapping[str, Any], props: Mapping[str, Any], where: str) -> List[str]:
    """A ``NOTIFY_EVENTBRIDGE`` bus the role may put events on: every policy allows
    ``eventbridge:PutEvents`` on exactly that bus in the function's region, or each event
    would be refused (AccessDenied) and given up after three tries. Without a bus, no policy
    grants it (a statement naming ``eventbus/`` allows nothing, and RAM refuses one naming none)."""
    variables = props.get("environmentVariables") or {}
    bus = str(variables.get("NOTIFY_EVENTBRIDGE") or "").strip()
    region = str(variables.get("ICE_REGION") or props.get("region") or "")
    expected = f"acs:eventbridge:{region}:*:eventbus/{bus}"
    problems = []
    for name, policy in _all_policies(document).items():
        granted = [r for statement in (policy or {}).get("Statement") or []
                   if "eventbridge:PutEvents" in _as_list(statement.get("Action"))
                   for r in _as_list(statement.get("Resource"))]
        if bus and granted != [expected]:
            problems.append(f"vars.{name} grants eventbridge:PutEvents on {granted} but "
                            f"{where}.environmentVariables.NOTIFY_EVENTBRIDGE {bus!r} needs exactly [{expected!r}]")
        if not bus and granted:
            problems.append(f"vars.{name} grants eventbridge:PutEvents on {granted} but "
                            f"{where}.environmentVariables.NOTIFY_EVENTBRIDGE is unset: no event is put anywhere")
    return problems


# What the operator's command line needs beyond what the function does, and which commands need it.
OPERATOR_GRANTS = {
    "ice:GetEventCallback": "ice-callback show and set need (set merges into what ICE holds)",
    "ice:SetEventCallback": "ice-callback set needs",
    "ice:UploadMediaByURL": "smoke needs (the upload job it watches)",
    "fc:InvokeFunction": "smoke needs (`s invoke` of the deployed function)",
}
_Grant = Tuple[str, str, Tuple[str, ...]]  # (action, resource, the oss:Prefix values it is limited to)


def _grants(policy: Any) -> Set[_Grant]:
    grants: Set[_Grant] = set()
    for statement in (policy or {}).get("Statement") or []:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        prefixes = tuple(sorted(_as_list(((statement.get("Condition") or {}).get("StringLike") or {})
                                         .get("oss:Prefix"))))
        grants.update((action, resource, prefixes) for action in _as_list(statement.get("Action"))
                      for resource in _as_list(statement.get("Resource")))
    return grants


def operator_grants_needed(document: Mapping[str, Any], props: Mapping[str, Any]) -> Dict[str, Dict[_Grant, str]]:
    """Per store: what the operator's policy must grant (exactly), each with the commands that need it.

    ``check``, ``replay`` and ``sweep`` run the handler in the operator's process: the function's
    grants, less the failure destination (FC sends to it, not the code); ``get``, ``list`` and
    ``stats`` read through the same grants, and first check that the store exists (an OSS listing
    of ``<prefix>/``); ``ice-callback`` and ``smoke`` need ``OPERATOR_GRANTS``.
    """
    variables = document.get("vars") or {}
    destination = (((props.get("asyncInvokeConfig") or {}).get("destinationConfig") or {}).get("onFailure")
                   or {}).get("destination")
    function_arn = f"acs:fc:{props.get('region')}:*:functions/{props.get('functionName')}"
    needed: Dict[str, Dict[_Grant, str]] = {}
    for store, policy in function_policies(document).items():
        grants: Dict[_Grant, str] = {}
        for action, resource, prefixes in sorted(_grants(policy)):
            if resource == destination:
                continue
            why = "check, replay and sweep need (they run the handler), and get, list and stats read with"
            if action == "oss:ListObjects" and prefixes:  # and <prefix>/ itself: does the store exist?
                prefixes = tuple(sorted({*prefixes, f"{variables.get('recordPrefix')}/"}))
                why = "get, list and stats need (<prefix>/: does the store exist?), and check, replay and sweep"
            grants[(action, resource, prefixes)] = why
        for action, why in OPERATOR_GRANTS.items():
            grants[(action, function_arn if action.startswith("fc:") else "*", ())] = why
        needed[store] = grants
    return needed


def operator_policy_problems(document: Mapping[str, Any], props: Mapping[str, Any]) -> List[str]:
    """Each store's operator policy grants exactly what ``operator_grants_needed`` says, no more."""
    operators = operator_policies(document)
    if not operators:
        return ["vars.ramPolicy.operator is missing: the operator's policy for each store lives there"]
    problems = []
    for store, needed in operator_grants_needed(document, props).items():
        if store not in operators:
            problems.append(f"vars.ramPolicy.operator.{store} is missing (vars.ramPolicy.{store} has one)")
            continue
        granted = _grants(operators[store])
        for action, resource, prefixes in sorted(set(needed) - granted):
            limit = f" (oss:Prefix {list(prefixes)})" if prefixes else ""
            problems.append(f"vars.ramPolicy.operator.{store} lacks {action} on {resource}{limit}, which "
                            f"{needed[(action, resource, prefixes)]}")
        for action, resource, prefixes in sorted(granted - set(needed)):
            limit = f" (oss:Prefix {list(prefixes)})" if prefixes else ""
            problems.append(f"vars.ramPolicy.operator.{store} allows {action} on {resource}{limit}, which no "
                            "command needs (least privilege)")
    return problems


def placeholder_problems(document: Mapping[str, Any]) -> List[str]:
    """A ``<placeholder>`` of deploy.env.example left in a value the deployment would use: one problem
    per placeholder, naming where it is (never the value: it may be a key)."""
    found: Dict[str, List[str]] = {}

    def visit(value: Any, at: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{at}.{key}")
        elif isinstance(value, list):
            for number, item in enumerate(value):
                visit(item, f"{at}[{number}]")
        elif isinstance(value, str):
            for placeholder in dict.fromkeys(PLACEHOLDER.findall(value)):
                found.setdefault(placeholder, []).append(at)

    for name, props in fc3_resources(document).items():
        for field in ("role", "environmentVariables", "asyncInvokeConfig"):
            visit(props.get(field), f"resources.{name}.props.{field}")
    for name, policy in _all_policies(document).items():
        visit(policy, f"vars.{name}")
    problems = []
    for placeholder, places in found.items():
        more = f" and {len(places) - 3} more" if len(places) > 3 else ""
        problems.append(f"{', '.join(places[:3])}{more} hold(s) the placeholder {placeholder} of "
                        "deploy.env.example: replace it in deploy.env (or in what you exported) and source it again")
    return problems


def _as_list(value: Any) -> List[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def load_schema(path: Path = SCHEMA_PATH) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------- command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=REPO / "template.yml")
    parser.add_argument("--example-env", action="store_true",
                        help="fill the required variables with placeholders (" + ", ".join(EXAMPLE_ENV) + ")")
    parser.add_argument("--python-renderer", action="store_true", help="do not use s, render in Python")
    parser.add_argument("--print", dest="print_var", metavar="VAR",
                        help="print a rendered var as JSON (e.g. ramPolicy.oss, ramPolicy.operator.oss, "
                             "ramTrustPolicy) and exit; refused while it holds a placeholder")
    parser.add_argument("--allow-placeholders", action="store_true",
                        help="--print a var even when it holds placeholders (to read it, not to create it)")
    options = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(options)
    env = dict(os.environ)
    placeholders = [name for name in EXAMPLE_ENV if not env.get(name)] if args.example_env else []
    if args.example_env:
        env = {**env, **{name: EXAMPLE_ENV[name] for name in placeholders}}
    template = args.template.resolve()
    try:
        rendered = render(template, env, use_s=False if args.python_renderer else None)
    except SUnavailable as exc:
        print(f"{template.name} not checked: {exc}\n{python_renderer_hint(options)}", file=sys.stderr)
        return 1
    except RenderError as exc:
        print(f"{template.name} does not render: {exc}", file=sys.stderr)
        return 1
    if args.print_var:
        return print_var(rendered.document, args.print_var, template, placeholders, args.allow_placeholders)
    if placeholders:  # a check of placeholders passes: say so where it cannot be missed
        print(f"--example-env: these are placeholders, not your values: "
              f"{', '.join(f'{name}={EXAMPLE_ENV[name]}' for name in placeholders)}\n"
              f"This checks the template, not your deployment: export them (deploy.env.example) and check again.",
              file=sys.stderr)
    schema = load_schema()
    problems = check(rendered.document, template.parent, schema)
    notes = [f"rendered with {rendered.renderer}"]
    if placeholders:
        notes.append(f"--example-env placeholders for {', '.join(placeholders)}")
    if schema is None:
        notes.append(f"fc3 schema not found at {SCHEMA_PATH}: schema validation skipped")
    for problem in problems:
        print(f"problem: {problem}")
    print(f"{template.name}: {len(problems)} problem(s); " + "; ".join(notes))
    return 1 if problems else 0


def print_var(document: Mapping[str, Any], path: str, template: Path, placeholders: Sequence[str],
              allow_placeholders: bool) -> int:
    """``--print``: the var as JSON on stdout. A var holding a placeholder (``--example-env``'s, or a
    ``<...>`` of deploy.env.example) is refused (exit 1, nothing on stdout) unless ``allow_placeholders``:
    a policy created from it would name someone else's bucket or queue, or none."""
    value: Any = document.get("vars") or {}
    for depth, key in enumerate(path.split(".")):
        if not isinstance(value, dict) or key not in value:
            known = ", ".join(sorted(value)) if isinstance(value, dict) else "none (not a mapping)"
            print(f"--print {path}: vars.{'.'.join(path.split('.')[:depth + 1])} is not in {template.name}; "
                  f"there: {known}", file=sys.stderr)
            return 2
        value = value[key]
    text = json.dumps(value, indent=2)
    held = [f"{name} ({EXAMPLE_ENV[name]}, the --example-env placeholder: unset)" for name in placeholders
            if EXAMPLE_ENV[name] in text]
    held += sorted(set(PLACEHOLDER.findall(text)))
    if held and not allow_placeholders:
        print(f"--print {path}: refused: vars.{path} holds {', '.join(held)}. A policy made from it would name "
              f"someone else's resources, or none: export your values (deploy.env.example) and print it again, "
              f"or add --allow-placeholders to print it anyway", file=sys.stderr)
        return 1
    if held:
        print(f"note: vars.{path} holds {', '.join(held)}: printed for reading (--allow-placeholders), "
              "not for creating a policy", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
