"""What playbooks/awx_configure.yml would send to AWX, computed offline.

No AWX server can run here. This module renders the configure playbook's
awx.awx tasks with Ansible's own templating (the playbook's vars files, the
caller's overrides as extra variables, each loop item in turn), so that the
tests can check the arguments against the awx.awx modules' argument specs,
the surveys against AWX's survey rules, and run every job template the way
AWX runs it (tests/cluster/test_awx_job_templates.py).

It also holds AWX's survey rules (``survey_errors``) and the argument specs
of the installed awx.awx modules (``module_argument_spec``), read from the
modules' own source.
"""

from __future__ import annotations

import importlib
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO_ROOT / "playbooks/awx_configure.yml"

# AWX's survey question types (awx/main/models/mixins.py, SurveyJobTemplateMixin).
SURVEY_TYPES = ("text", "textarea", "password", "multiplechoice", "multiselect", "integer", "float")
CHOICE_TYPES = ("multiplechoice", "multiselect")
TEXT_TYPES = ("text", "textarea", "password")
BEARER_TOKEN_TYPE = "OpenShift or Kubernetes API Bearer Token"


@dataclass
class AwxTask:
    """One awx.awx module call (one loop item) with its rendered arguments."""

    module: str  # short name, e.g. job_template
    name: str
    args: dict
    no_log: bool


def _init_loader() -> None:
    """Ansible's plugin and collection loader, once per process."""
    from ansible.plugins.loader import init_plugin_loader
    from ansible.utils.collection_loader import AnsibleCollectionConfig

    if not AnsibleCollectionConfig.collection_finder:
        init_plugin_loader([])


def render(overrides: dict | None = None) -> list[AwxTask]:
    """Every awx.awx call of the configure playbook, rendered with its vars
    files and ``overrides`` (extra variables: they win over the vars files)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    # Tagged containers and strings as plain Python values, as the collection's filters make them.
    from ansible_collections.servicemesh.istio.plugins.plugin_utils._data import plain

    _init_loader()
    loader = DataLoader()
    loader.set_basedir(str(PLAYBOOK.parent))
    play = loader.load_from_file(str(PLAYBOOK), trusted_as_template=True)[0]
    variables: dict = {}
    for name in play.get("vars_files", []):
        variables.update(loader.load_from_file(str(PLAYBOOK.parent / name), trusted_as_template=True))
    for key, value in (overrides or {}).items():
        variables[key] = trust_as_template(value) if isinstance(value, str) else value
    templar = Templar(loader=loader, variables=variables)
    out = []
    for task in play["tasks"]:
        module = next((k for k in task if k.startswith("awx.awx.")), None)
        if module is None:
            continue
        no_log = bool(templar.template(task.get("no_log", False)))
        items = templar.template(task["loop"]) if "loop" in task else [None]
        for item in items:
            scoped = Templar(loader=loader, variables={**variables, "item": item}) if item is not None else templar
            args = plain(scoped.template(task[module]))
            out.append(AwxTask(module.split(".")[-1], task["name"], args, no_log))
    return out


def module_defaults() -> dict:
    """The play's module_defaults for the awx.awx controller group, unrendered."""
    play = yaml.safe_load(PLAYBOOK.read_text())[0]
    return play["module_defaults"]["group/awx.awx.controller"]


def by_module(tasks: list[AwxTask], module: str) -> list[dict]:
    return [t.args for t in tasks if t.module == module]


# --- the installed awx.awx modules' argument specs --------------------------------

class _Captured(Exception):
    pass


def module_argument_spec(module: str) -> tuple[dict, dict]:
    """(argument_spec, other AnsibleModule keyword arguments) of an awx.awx
    module, taken from its source: main() is run with ControllerAPIModule
    replaced by a stand-in that records what it is given and stops. The
    controller connection options (ControllerModule.AUTH_ARGSPEC) are added,
    as ControllerAPIModule does."""
    _init_loader()
    mod = importlib.import_module(f"ansible_collections.awx.awx.plugins.modules.{module}")
    api = importlib.import_module("ansible_collections.awx.awx.plugins.module_utils.controller_api")
    captured: dict = {}

    def stand_in(argument_spec=None, **kwargs):
        captured["spec"], captured["kwargs"] = argument_spec, kwargs
        raise _Captured

    real = mod.ControllerAPIModule
    mod.ControllerAPIModule = stand_in
    try:
        mod.main()
    except _Captured:
        pass
    finally:
        mod.ControllerAPIModule = real
    assert "spec" in captured, f"awx.awx.{module}: main() did not build its module"
    spec = dict(captured["spec"])
    spec.update(api.ControllerModule.AUTH_ARGSPEC)
    return spec, captured["kwargs"]


def documented_suboptions(module: str, option: str) -> dict:
    """An option's documented suboptions (DOCUMENTATION), as an argument spec:
    awx.awx validates e.g. workflow_nodes only as a list of dicts in code, its
    DOCUMENTATION says what each node holds."""
    _init_loader()
    mod = importlib.import_module(f"ansible_collections.awx.awx.plugins.modules.{module}")
    doc = yaml.safe_load(mod.DOCUMENTATION)
    return _doc_to_spec(doc["options"][option]["suboptions"])


def _doc_to_spec(options: dict) -> dict:
    spec = {}
    for name, opt in options.items():
        entry = {"type": opt.get("type", "str")}
        for key in ("choices", "elements", "required", "aliases"):
            if key in opt:
                entry[key] = opt[key]
        if "suboptions" in opt:
            entry["options"] = _doc_to_spec(opt["suboptions"])
        spec[name] = entry
    return spec


def argument_errors(spec: dict, args: dict, **kwargs) -> list[str]:
    """What AnsibleModule would refuse in ``args`` (unknown options, wrong
    types, bad choices, missing required ones, mutually exclusive ones)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    validator = ArgumentSpecValidator(
        spec,
        mutually_exclusive=kwargs.get("mutually_exclusive"),
        required_together=kwargs.get("required_together"),
        required_one_of=kwargs.get("required_one_of"),
        required_if=kwargs.get("required_if"),
        required_by=kwargs.get("required_by"),
    )
    result = validator.validate(args)
    return [str(e) for e in result.errors]


# --- AWX's survey rules ------------------------------------------------------------

def survey_errors(survey: dict) -> list[str]:
    """The rules AWX applies to a survey_spec (awx/api/views:
    JobTemplateSurveySpec._validate_spec_data), as messages; [] if valid."""
    errors = []
    if not isinstance(survey, dict):
        return ["the survey_spec is not a dict"]
    for key in ("name", "description", "spec"):
        if key not in survey:
            errors.append(f"the survey_spec has no '{key}'")
    spec = survey.get("spec")
    if not isinstance(spec, list):
        return errors + ["'spec' is not a list"]
    seen = set()
    for n, question in enumerate(spec):
        where = f"question {n} ({question.get('variable') if isinstance(question, dict) else question!r})"
        if not isinstance(question, dict):
            errors.append(f"{where}: not a dict")
            continue
        for key in ("variable", "question_name", "type", "required"):
            if key not in question:
                errors.append(f"{where}: '{key}' missing")
        qtype = question.get("type")
        if qtype not in SURVEY_TYPES:
            errors.append(f"{where}: type {qtype!r} is not one of {', '.join(SURVEY_TYPES)}")
        if "required" in question and not isinstance(question["required"], bool):
            errors.append(f"{where}: 'required' must be a boolean")
        variable = question.get("variable")
        if variable in seen:
            errors.append(f"{where}: variable {variable!r} is used by another question")
        seen.add(variable)
        for bound in ("min", "max"):
            if bound in question and (not isinstance(question[bound], int) or isinstance(question[bound], bool)):
                errors.append(f"{where}: '{bound}' must be an integer, not {question[bound]!r}")
        choices = question.get("choices")
        if qtype in CHOICE_TYPES:
            if isinstance(choices, str):
                choices = [c for c in choices.split("\n") if c]
            if not choices or not isinstance(choices, list):
                errors.append(f"{where}: a {qtype} question needs choices")
                choices = []
        if "default" in question and question["default"] not in ("", None):
            errors += [f"{where}: {e}" for e in _default_errors(question, qtype, choices)]
    return errors


def _default_errors(question: dict, qtype, choices) -> list[str]:
    default = question["default"]
    lo, hi = question.get("min"), question.get("max")
    lo = lo if isinstance(lo, int) else None
    hi = hi if isinstance(hi, int) else None
    if qtype in TEXT_TYPES:
        if not isinstance(default, str):
            return [f"default {default!r} is not a string ({qtype})"]
        if (lo is not None and len(default) < lo) or (hi is not None and len(default) > hi):
            return [f"default {default!r} is not between {lo} and {hi} characters long"]
    elif qtype == "integer":
        if not isinstance(default, int) or isinstance(default, bool):
            return [f"default {default!r} is not an integer"]
        if (lo is not None and default < lo) or (hi is not None and default > hi):
            return [f"default {default} is not between {lo} and {hi}"]
    elif qtype == "float":
        if not isinstance(default, numbers.Real) or isinstance(default, bool):
            return [f"default {default!r} is not a number"]
        if (lo is not None and default < lo) or (hi is not None and default > hi):
            return [f"default {default} is not between {lo} and {hi}"]
    elif qtype == "multiplechoice":
        if default not in choices:
            return [f"default {default!r} is not one of the choices {choices}"]
    elif qtype == "multiselect":
        values = default.split("\n") if isinstance(default, str) else default
        if not isinstance(values, list) or any(v not in choices for v in values):
            return [f"default {default!r} is not a selection of the choices {choices}"]
    return []


def survey_defaults(survey: dict) -> dict:
    """The extra variables AWX passes when every question keeps its default."""
    out = {}
    for question in survey.get("spec", []):
        if "default" in question and question["default"] not in ("", None):
            out[question["variable"]] = question["default"]
    return out


# --- running a job template as AWX does ------------------------------------------------

@dataclass
class JobRun:
    """The outcome of one simulated AWX job (an ansible-runner run)."""

    status: str  # successful, failed, ...
    rc: int
    stats: dict
    events: list
    # Required survey questions left without an answer (AWX itself would
    # refuse to launch from its UI; the API with prompts, or a disabled
    # survey, still reaches the playbook, which must refuse on its own).
    missing_answers: list
    # What ansible-playbook printed (used with --list-tasks).
    stdout: str = ""

    def total(self, key: str) -> int:
        return sum((self.stats or {}).get(key, {}).values())

    @property
    def changed(self) -> int:
        return self.total("changed")

    def failure_messages(self) -> list[str]:
        return [str(e["event_data"].get("res", {}).get("msg", e["event_data"].get("res")))
                for e in self.events if e.get("event") == "runner_on_failed"]

    def changed_tasks(self) -> list[str]:
        return [e["event_data"].get("task") for e in self.events
                if e.get("event") == "runner_on_ok" and e["event_data"].get("res", {}).get("changed")]

    def task_names(self) -> list[str]:
        """Names of the tasks that started (tags select them), in order."""
        return [e["event_data"].get("task") for e in self.events if e.get("event") == "playbook_on_task_start"]

    def roles_run(self) -> set[str]:
        """Short names of the roles whose own tasks started ('' for play
        tasks). The argument spec validation Ansible adds to every role runs
        under every tag and is left out."""
        return {(e["event_data"].get("role") or "").split(".")[-1] for e in self.events
                if e.get("event") == "playbook_on_task_start"
                and not str(e["event_data"].get("task", "")).startswith("Validating arguments against arg spec")}

    def explain(self) -> str:
        return (f"status={self.status} rc={self.rc} stats={self.stats}\nfailures: {self.failure_messages()}\n"
                f"changed: {self.changed_tasks()}")


class Controller:
    """AWX's side of a job, from the objects the configure playbook makes:
    the job template (playbook, tags, limit, extra_vars, survey), the
    credentials attached to it and their types' injectors, the inventory
    imported from the project. ``launch`` runs the job with ansible-runner
    in a private data directory, with the project directory as AWX's
    checkout, the way AWX's RunJob task does (less the container: the
    development tool chain plays the execution environment)."""

    def __init__(self, tasks: list[AwxTask]):
        self.job_templates = {a["name"]: a for a in by_module(tasks, "job_template")}
        self.credential_types = {a["name"]: a for a in by_module(tasks, "credential_type")}
        self.credentials = {a["name"]: a for a in by_module(tasks, "credential")}
        (self.inventory_source,) = by_module(tasks, "inventory_source")

    def _inventory(self, private: Path) -> Path:
        """The inventory as AWX imports it from the project (ansible-inventory
        --list --export of the source path) and hands it to the job: an
        executable script in the private data directory that prints it."""
        import json
        import subprocess
        import sys

        source = REPO_ROOT / self.inventory_source["source_path"]
        listed = subprocess.run([str(REPO_ROOT / ".venv/bin/ansible-inventory"), "-i", str(source), "--list", "--export"],
                                cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=120)
        data = json.loads(listed.stdout)
        assert data.get("_meta", {}).get("hostvars"), f"no host imported from {source}"
        path = private / "inventory" / "hosts"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({json.dumps(json.dumps(data))})\n")
        path.chmod(0o700)
        return path

    def _inject(self, credential: dict, private: Path) -> tuple[dict, dict]:
        """(env, extra_vars) from a credential type's injectors, rendered with
        the credential's inputs as AWX does (sandboxed Jinja2; file templates
        written to private files, their paths as tower.filename)."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        if credential["credential_type"] == BEARER_TOKEN_TYPE:
            return self._inject_bearer_token(credential["inputs"], private), {}
        ctype = self.credential_types[credential["credential_type"]]
        inputs = {f["id"]: f.get("default", "") for f in ctype["inputs"]["fields"]}
        inputs.update({k: v for k, v in credential["inputs"].items() if v not in (None, "")})
        jinja = ImmutableSandboxedEnvironment()
        injectors = ctype["injectors"]
        filenames = {}
        for key, template in injectors.get("file", {}).items():
            path = private / "env" / f"cred_{key.replace('.', '_')}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(jinja.from_string(template).render(**inputs))
            path.chmod(0o600)
            filenames[key.split(".", 1)[1] if "." in key else None] = str(path)
        tower = {"filename": filenames.get(None) or {k: v for k, v in filenames.items() if k}}
        context = {**inputs, "tower": tower, "awx": tower}
        env = {k: jinja.from_string(v).render(**context) for k, v in injectors.get("env", {}).items()}
        extra = {k: jinja.from_string(v).render(**context) for k, v in injectors.get("extra_vars", {}).items()}
        return env, extra

    @staticmethod
    def _inject_bearer_token(inputs: dict, private: Path) -> dict:
        """AWX's built-in "OpenShift or Kubernetes API Bearer Token" type is
        injected by AWX's own code, not by a template: host and token as
        K8S_AUTH_HOST and K8S_AUTH_API_KEY; with verify_ssl and a CA
        certificate, the certificate in a private file (K8S_AUTH_SSL_CA_CERT)
        and K8S_AUTH_VERIFY_SSL=True, else K8S_AUTH_VERIFY_SSL=False."""
        env = {"K8S_AUTH_HOST": inputs.get("host", ""), "K8S_AUTH_API_KEY": inputs.get("bearer_token", "")}
        if inputs.get("verify_ssl") and inputs.get("ssl_ca_cert"):
            path = private / "env" / "cred_ssl_ca_cert"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(inputs["ssl_ca_cert"])
            path.chmod(0o600)
            env.update(K8S_AUTH_VERIFY_SSL="True", K8S_AUTH_SSL_CA_CERT=str(path))
        else:
            env["K8S_AUTH_VERIFY_SSL"] = "False"
        return env

    def launch(self, name: str, private: Path, answers: dict | None = None,
               credential_inputs: dict | None = None, cmdline: str | None = None) -> JobRun:
        """Launch job template ``name`` with the survey's defaults and
        ``answers``; ``credential_inputs`` replaces inputs of the attached
        credentials (by credential name), as editing the credential would;
        ``cmdline`` adds ansible-playbook options (``--list-tasks``)."""
        import ansible_runner

        jt = self.job_templates[name]
        extravars = dict(jt.get("extra_vars") or {})
        if jt.get("survey_enabled"):
            extravars.update(survey_defaults(jt["survey_spec"]))
            extravars.update(answers or {})
            missing = [q["variable"] for q in jt["survey_spec"]["spec"] if q["required"] and q["variable"] not in extravars]
        else:
            missing = []
        extravars.update({"awx_job_template_name": name, "tower_job_template_name": name})
        envvars = {"PATH": f"{REPO_ROOT / '.venv/bin'}:{os.environ.get('PATH', '')}",
                   "ANSIBLE_COLLECTIONS_PATH": str(REPO_ROOT / ".collections"),
                   "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg")}
        for cred_name in jt.get("credentials") or []:
            credential = dict(self.credentials[cred_name])
            if credential_inputs and cred_name in credential_inputs:
                credential["inputs"] = {**credential["inputs"], **credential_inputs[cred_name]}
            env, extra = self._inject(credential, private)
            envvars.update(env)
            extravars.update(extra)
        run = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(REPO_ROOT),
            playbook=jt["playbook"],
            inventory=str(self._inventory(private)),
            extravars=extravars,
            envvars=envvars,
            tags=jt.get("job_tags") or None,
            limit=jt.get("limit") or None,
            quiet=True,
            timeout=1200,
            cmdline=cmdline,
        )
        return JobRun(run.status, run.rc, run.stats or {}, list(run.events), missing, run.stdout.read())
