"""Issue 15: the AWX configuration as code, checked without an AWX server.

- every awx.awx call of playbooks/awx_configure.yml, rendered with its vars
  files, against the installed awx.awx module's argument spec (read from the
  module's source; workflow nodes against the module's documented suboptions);
- every survey against AWX's survey rules (tests/awx_config.py), and the rules
  themselves on bad surveys, so that they can fail;
- the job templates: one per tag of site.yml, the teardown and canary shift
  surveys, the workflow's order.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from awx_config import (
    REPO_ROOT,
    argument_errors,
    by_module,
    documented_suboptions,
    module_argument_spec,
    module_defaults,
    render,
    survey_defaults,
    survey_errors,
)

# What the configure playbook reads from the environment by default.
OVERRIDES = {
    "awx_configure_controller_host": "https://awx.example.org",
    "awx_configure_controller_oauthtoken": "token-for-the-test",
    "awx_configure_kubeconfig": "apiVersion: v1\nkind: Config\n",
}
SITE_TAGS = ["istio", "bookinfo", "ingress", "tls", "mtls", "observability", "canary"]


@pytest.fixture(scope="module")
def tasks():
    return render(OVERRIDES)


@pytest.fixture(scope="module")
def job_templates(tasks):
    return {jt["name"]: jt for jt in by_module(tasks, "job_template")}


def test_every_awx_call_matches_the_module_argument_spec(tasks):
    modules = sorted({t.module for t in tasks})
    assert modules == ["credential", "credential_type", "execution_environment", "inventory",
                       "inventory_source", "job_template", "project", "workflow_job_template"]
    errors = []
    for task in tasks:
        spec, kwargs = module_argument_spec(task.module)
        errors += [f"{task.name} ({task.args.get('name')}): {e}" for e in argument_errors(spec, task.args, **kwargs)]
    assert errors == []


def test_module_defaults_are_controller_options():
    spec = module_argument_spec("project")[0]
    names = set(module_defaults())
    assert names <= set(spec), names - set(spec)
    assert {"controller_host", "controller_oauthtoken", "controller_username", "controller_password"} <= names


def test_workflow_nodes_match_the_documented_node_options(tasks):
    (workflow,) = by_module(tasks, "workflow_job_template")
    node_spec = documented_suboptions("workflow_job_template", "workflow_nodes")
    errors = []
    for node in workflow["workflow_nodes"]:
        errors += [f"{node['identifier']}: {e}" for e in argument_errors(node_spec, node)]
    assert errors == []


def test_the_argument_check_catches_a_wrong_argument(tasks):
    """The spec check is not vacuous: a misspelt option, a wrong choice and a
    wrong type are each refused."""
    spec, kwargs = module_argument_spec("job_template")
    good = copy.deepcopy(by_module(tasks, "job_template")[0])
    assert argument_errors(spec, good, **kwargs) == []
    for change, expected in [({"job_tag": "istio"}, "job_tag"), ({"job_type": "apply"}, "job_type"),
                             ({"survey_spec": "not a dict"}, "survey_spec"), ({"verbosity": 9}, "verbosity")]:
        errors = argument_errors(spec, {**good, **change}, **kwargs)
        assert any(expected in e for e in errors), (change, errors)
    node_spec = documented_suboptions("workflow_job_template", "workflow_nodes")
    assert argument_errors(node_spec, {"unified_job_template": {"name": "x"}}), "identifier is required"


def test_every_survey_follows_awx_rules(tasks):
    surveys = [(jt["name"], jt["survey_spec"]) for jt in by_module(tasks, "job_template") if jt["survey_enabled"]]
    surveys += [(wf["name"], wf["survey_spec"]) for wf in by_module(tasks, "workflow_job_template")]
    assert len(surveys) >= 10
    for name, survey in surveys:
        assert survey_errors(survey) == [], name
        assert survey["spec"], f"{name}: survey enabled without a question"


def test_templates_without_a_survey_have_it_disabled(job_templates):
    for jt in job_templates.values():
        assert jt["survey_enabled"] == bool(jt["survey_spec"]["spec"]), jt["name"]


GOOD_QUESTION = {"question_name": "Q", "variable": "v", "type": "text", "required": True}


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ({**GOOD_QUESTION, "type": "string"}, "is not one of"),
        ({k: v for k, v in GOOD_QUESTION.items() if k != "required"}, "'required' missing"),
        ({k: v for k, v in GOOD_QUESTION.items() if k != "variable"}, "'variable' missing"),
        ({k: v for k, v in GOOD_QUESTION.items() if k != "question_name"}, "'question_name' missing"),
        ({**GOOD_QUESTION, "required": "yes"}, "must be a boolean"),
        ({**GOOD_QUESTION, "type": "integer", "default": "80"}, "is not an integer"),
        ({**GOOD_QUESTION, "type": "integer", "default": True}, "is not an integer"),
        ({**GOOD_QUESTION, "type": "integer", "min": 0, "max": 100, "default": 120}, "not between"),
        ({**GOOD_QUESTION, "type": "integer", "min": "0", "max": 100}, "'min' must be an integer"),
        ({**GOOD_QUESTION, "type": "float", "default": "0.5"}, "is not a number"),
        ({**GOOD_QUESTION, "type": "text", "default": 3}, "is not a string"),
        ({**GOOD_QUESTION, "type": "text", "max": 3, "default": "four"}, "characters long"),
        ({**GOOD_QUESTION, "type": "multiplechoice"}, "needs choices"),
        ({**GOOD_QUESTION, "type": "multiplechoice", "choices": ["a", "b"], "default": "c"}, "not one of the choices"),
        ({**GOOD_QUESTION, "type": "multiselect", "choices": ["a", "b"], "default": "a\nc"}, "not a selection"),
    ],
)
def test_survey_rules_refuse_bad_questions(question, message):
    errors = survey_errors({"name": "s", "description": "", "spec": [question]})
    assert any(message in e for e in errors), errors


def test_survey_rules_refuse_a_duplicate_variable():
    errors = survey_errors({"name": "s", "description": "", "spec": [GOOD_QUESTION, dict(GOOD_QUESTION)]})
    assert any("used by another question" in e for e in errors), errors


def test_survey_rules_accept_good_questions():
    spec = [GOOD_QUESTION,
            {**GOOD_QUESTION, "variable": "n", "type": "integer", "min": 0, "max": 100, "default": 20},
            {**GOOD_QUESTION, "variable": "f", "type": "float", "default": 0.5},
            {**GOOD_QUESTION, "variable": "c", "type": "multiplechoice", "choices": ["a", "b"], "default": "b"},
            {**GOOD_QUESTION, "variable": "m", "type": "multiselect", "choices": "a\nb", "default": "a\nb"}]
    assert survey_errors({"name": "s", "description": "", "spec": spec}) == []


def test_one_job_template_per_tag_and_per_entry_point(job_templates):
    site = yaml.safe_load((REPO_ROOT / "playbooks/site.yml").read_text())[0]
    # The roles are imported as tasks (site.yml runs some in parts, docs/overlap.md).
    site_tags = {tag for task in site["tasks"] if "ansible.builtin.import_role" in task
                 for tag in task.get("tags", [])} - {"always"}
    by_tag = {jt["job_tags"]: jt for jt in job_templates.values() if jt["playbook"] == "playbooks/site.yml"}
    assert set(SITE_TAGS) <= set(by_tag), set(SITE_TAGS) - set(by_tag)
    assert "" in by_tag, "no template for the whole site"
    # Every tag site.yml knows has a template, and every tag template selects a role.
    assert site_tags == set(SITE_TAGS)
    for jt in job_templates.values():
        assert (REPO_ROOT / jt["playbook"]).is_file(), jt["playbook"]
        assert jt["limit"] == "servicemesh_controller"
        assert jt["credentials"] == ["servicemesh.istio cluster", "servicemesh.istio ACME and DNS update"]
    playbooks = {jt["playbook"] for jt in job_templates.values()}
    assert playbooks == {"playbooks/site.yml", "playbooks/verify.yml", "playbooks/teardown.yml"}


def test_survey_variables_are_role_options_with_compatible_choices(job_templates):
    """Each survey question sets a variable a role validates (its argument
    spec), and a choice offers only values the role accepts."""
    options = {}
    for spec_file in REPO_ROOT.glob("roles/*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec_file.read_text())["argument_specs"].values():
            options.update(entry.get("options", {}))
    not_roles = {"servicemesh_istio_teardown_confirm"}  # playbooks/teardown.yml
    for jt in job_templates.values():
        for question in jt["survey_spec"]["spec"]:
            variable = question["variable"]
            if variable in not_roles:
                continue
            assert variable in options, f"{jt['name']}: {variable} is no role's option"
            if "choices" in question and "choices" in options[variable]:
                assert set(question["choices"]) <= set(options[variable]["choices"]), variable


def test_teardown_asks_for_the_cluster_name(job_templates):
    jt = job_templates["servicemesh.istio teardown"]
    assert jt["extra_vars"]["servicemesh_istio_teardown_confirmation_required"] is True
    (question,) = jt["survey_spec"]["spec"]
    assert question["variable"] == "servicemesh_istio_teardown_confirm"
    assert question["required"] is True and "default" not in question
    assert "my-e2e-cluster" in question["question_description"]
    assert survey_defaults(jt["survey_spec"]) == {}


def test_canary_shift_asks_for_integer_weights(job_templates):
    jt = job_templates["servicemesh.istio canary shift"]
    questions = {q["variable"]: q for q in jt["survey_spec"]["spec"]}
    assert set(questions) == {"canary_stable_weight", "canary_new_weight"}
    for q in questions.values():
        assert (q["type"], q["min"], q["max"]) == ("integer", 0, 100)
    assert sum(survey_defaults(jt["survey_spec"]).values()) == 100


def test_issuer_is_a_choice_of_staging_or_production(job_templates):
    for name in ("servicemesh.istio site", "servicemesh.istio tls"):
        (question,) = [q for q in job_templates[name]["survey_spec"]["spec"] if q["variable"] == "ingress_tls_acme_environment"]
        assert question["type"] == "multiplechoice"
        assert question["choices"] == ["staging", "production"]
        assert question["default"] == "staging"


def test_a_private_acme_server_can_be_offered_as_the_custom_issuer():
    tasks = render({**OVERRIDES, "awx_configure_acme_environments": ["custom", "staging"],
                    "awx_configure_survey_defaults": {**yaml.safe_load((REPO_ROOT / "playbooks/vars/awx.yml").read_text())[
                        "awx_configure_survey_defaults"], "acme_environment": "custom"}})
    site = {a["name"]: a for a in by_module(tasks, "job_template")}["servicemesh.istio site"]
    (question,) = [q for q in site["survey_spec"]["spec"] if q["variable"] == "ingress_tls_acme_environment"]
    assert (question["choices"], question["default"]) == (["custom", "staging"], "custom")
    assert survey_errors(site["survey_spec"]) == []


def test_workflow_install_verify_approve_production_canary(tasks, job_templates):
    (workflow,) = by_module(tasks, "workflow_job_template")
    nodes = {n["identifier"]: n for n in workflow["workflow_nodes"]}
    order, node = [], nodes["install"]
    while node:
        order.append(node)
        following = node.get("related", {}).get("success_nodes", [])
        assert len(following) <= 1
        node = nodes[following[0]["identifier"]] if following else None
    assert len(order) == len(nodes)
    kinds = [(n["unified_job_template"]["type"], n["unified_job_template"]["name"]) for n in order]
    assert kinds == [
        ("job_template", "servicemesh.istio site"),
        ("job_template", "servicemesh.istio verify"),
        ("workflow_approval", "servicemesh.istio approve the production certificate"),
        ("job_template", "servicemesh.istio tls"),
        ("job_template", "servicemesh.istio canary shift"),
    ]
    for n in order:
        if n["unified_job_template"]["type"] == "job_template":
            jt = job_templates[n["unified_job_template"]["name"]]
            # A node's extra_data only reaches a template that prompts for variables (its survey).
            if n.get("extra_data"):
                assert jt["survey_enabled"], jt["name"]
                asked = {q["variable"] for q in jt["survey_spec"]["spec"]}
                assert set(n["extra_data"]) <= asked, jt["name"]
    assert order[0]["extra_data"] == {"ingress_tls_acme_environment": "staging"}
    assert order[3]["extra_data"] == {"ingress_tls_acme_environment": "production"}


def test_secrets_are_not_logged_and_injectors_are_passed_on_verbatim(tasks):
    credentials = [t for t in tasks if t.module == "credential"]
    assert credentials and all(t.no_log for t in credentials)
    types = {t["name"]: t for t in by_module(tasks, "credential_type")}
    kubeconfig = types["servicemesh.istio kubeconfig"]
    assert kubeconfig["injectors"]["file"] == {"template.kubeconfig": "{{ kubeconfig }}"}
    assert kubeconfig["injectors"]["env"]["K8S_AUTH_KUBECONFIG"] == "{{ tower.filename.kubeconfig }}"
    secret_fields = {f["id"] for t in types.values() for f in t["inputs"]["fields"] if f.get("secret")}
    assert secret_fields == {"kubeconfig", "tsig_key_secret"}
    acme = types["servicemesh.istio ACME and DNS update"]
    assert acme["injectors"]["extra_vars"]["ingress_tls_dns_tsig_key_secret"] == "{{ tsig_key_secret }}"


def test_bearer_token_uses_the_builtin_type_and_drops_the_inventory_kubeconfig():
    tasks = render({**OVERRIDES, "awx_configure_kubernetes_auth": "bearer_token",
                    "awx_configure_k8s_bearer_token": "t0ken"})
    (cluster,) = [c for c in by_module(tasks, "credential") if c["name"] == "servicemesh.istio cluster"]
    assert cluster["credential_type"] == "OpenShift or Kubernetes API Bearer Token"
    assert set(cluster["inputs"]) == {"host", "bearer_token", "verify_ssl", "ssl_ca_cert"}
    for jt in by_module(tasks, "job_template"):
        assert jt["extra_vars"]["servicemesh_istio_kubeconfig"] == ""
