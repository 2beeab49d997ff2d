# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The end-of-run report (plugins/callback/site_report.py): which step failed
the run, what each step recorded as verified, what did not run, as JSON and text."""

from __future__ import annotations

from ansible_collections.servicemesh.istio.plugins.callback.site_report import (
    build_report, build_run_report, failure_message, record, render_text)

T0 = 1_800_000_000.0
TOTALS_OK = {"ok": 40, "changed": 3, "failures": 0, "unreachable": 0, "skipped": 9, "rescued": 0}
TOTALS_FAILED = dict(TOTALS_OK, failures=1)
PLANNED = ["preflight", "istio_install", "bookinfo", "mtls_verify", "ingress_tls"]


def run(events):
    steps = {}
    for i, (name, outcome, *rest) in enumerate(events):
        record(steps, name, outcome, T0 + i, *rest)
    return steps


def test_a_converged_run_lists_each_step_with_what_it_verified():
    steps = run([("preflight", "ok"), ("istio_install", "changed"), ("istio_install", "ok"),
                 ("bookinfo", "ok"), ("bookinfo", "skipped")])
    verified = {"bookinfo": {"checks": ["6 of 6 pods Ready, 6 with istio-proxy (2/2)"], "skipped": []}}
    report = build_report(steps, verified, TOTALS_OK, T0, T0 + 30, planned=PLANNED)
    assert report["result"] == "ok" and report["failed_step"] is None
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        ("preflight", "ok"), ("istio_install", "changed"), ("bookinfo", "ok")]
    assert report["steps"][2]["verified"] == verified["bookinfo"]
    assert report["steps"][1]["tasks"] == {"ok": 1, "changed": 1, "failed": 0, "skipped": 0}
    assert report["not_run"] == ["mtls_verify", "ingress_tls"]
    text = "\n".join(render_text(report))
    assert "OK in 30 s" in text and "verified: 6 of 6 pods Ready" in text and "not run" in text


def test_a_failed_run_names_the_step_task_and_message_and_what_was_done():
    steps = run([("istio_install", "changed"), ("bookinfo", "ok"),
                 ("ingress_tls", "ok"), ("ingress_tls", "failed", "Wait for the Certificate", "not ready: Pending")])
    report = build_report(steps, {}, TOTALS_FAILED, T0, T0 + 9, planned=PLANNED)
    assert report["result"] == "failed"
    assert report["failed_step"] == {"step": "ingress_tls", "task": "Wait for the Certificate",
                                     "message": "not ready: Pending", "done_before": ["istio_install", "bookinfo"]}
    assert [s["status"] for s in report["steps"]] == ["changed", "ok", "failed"]
    text = "\n".join(render_text(report))
    assert 'FAILED in ingress_tls, task "Wait for the Certificate": not ready: Pending' in text
    assert "done before it: istio_install, bookinfo" in text


def test_a_rescued_failure_does_not_fail_its_step():
    """A wait that failed inside a block whose rescue handled it: the run
    succeeded, so no step is reported failed."""
    steps = run([("mtls_verify", "failed", "Wait for the clients", "timeout"), ("mtls_verify", "ok")])
    report = build_report(steps, {}, dict(TOTALS_OK, rescued=1), T0, T0 + 5)
    assert report["result"] == "ok" and report["failed_step"] is None
    assert report["steps"][0]["status"] == "ok" and report["steps"][0]["tasks"]["failed"] == 1


def test_the_last_failure_is_the_one_that_stopped_the_run():
    steps = run([("bookinfo", "failed", "Restart", "rescued"), ("bookinfo", "ok"),
                 ("mtls_verify", "failed", "Check mTLS is enforced", "plaintext answered")])
    report = build_report(steps, {}, TOTALS_FAILED, T0, T0 + 5)
    assert report["failed_step"]["step"] == "mtls_verify"
    assert [s["status"] for s in report["steps"]] == ["ok", "failed"]


def test_check_mode_and_a_step_that_only_skipped():
    steps = run([("istio_install", "skipped"), ("istio_install", "skipped")])
    report = build_report(steps, {}, TOTALS_OK, T0, T0 + 1, check_mode=True)
    assert report["check_mode"] is True and report["steps"][0]["status"] == "skipped"
    assert "check mode: nothing was changed" in render_text(report)[0]


def test_a_loop_failure_says_what_its_failed_items_said():
    result = {"failed": True, "msg": "One or more items failed", "results": [
        {"item": "a", "failed": False, "msg": "fine"},
        {"item": "b", "failed": True, "msg": "mtls_verify_target_url 'x' is not an http(s) URL"}]}
    assert failure_message(result) == "mtls_verify_target_url 'x' is not an http(s) URL"
    assert failure_message({"failed": True, "msg": "plain"}) == "plain"


def test_one_host_gives_the_report_of_one_cluster_unchanged():
    steps = run([("preflight", "ok"), ("istio_install", "changed")])
    single = build_run_report({"localhost": steps}, {"localhost": {}}, {"localhost": TOTALS_OK}, T0, T0 + 9,
                              planned=PLANNED)
    assert single == build_report(steps, {}, TOTALS_OK, T0, T0 + 9, planned=PLANNED)


def test_several_clusters_each_get_their_report_and_one_failure_fails_the_run():
    """cluster-b stopped in its preflight; cluster-a went on and converged."""
    steps_a = run([("preflight", "ok"), ("istio_install", "changed"), ("bookinfo", "changed")])
    steps_b = run([("preflight", "failed", "Check the role's inputs", "bookinfo_namespace 'Bad_NS' is not valid")])
    verified = {"cluster-a": {"bookinfo": {"checks": ["6 of 6 pods Ready"], "skipped": []}}}
    report = build_run_report({"cluster-a": steps_a, "cluster-b": steps_b}, verified,
                              {"cluster-a": TOTALS_OK, "cluster-b": TOTALS_FAILED}, T0, T0 + 20, planned=PLANNED)
    assert report["result"] == "failed"
    a, b = report["clusters"]
    assert (a["host"], a["result"], a["failed_step"]) == ("cluster-a", "ok", None)
    assert [s["status"] for s in a["steps"]] == ["ok", "changed", "changed"]
    assert a["steps"][2]["verified"] == verified["cluster-a"]["bookinfo"]
    assert (b["host"], b["result"]) == ("cluster-b", "failed")
    assert b["failed_step"]["step"] == "preflight" and "Bad_NS" in b["failed_step"]["message"]
    assert report["totals"]["failures"] == 1
    text = "\n".join(render_text(report))
    assert "SERVICE MESH REPORT: FAILED in 20 s (2 clusters: cluster-a ok, cluster-b failed)" in text
    assert "  cluster cluster-a: OK" in text and "  cluster cluster-b: FAILED" in text
    assert "verified: 6 of 6 pods Ready" in text and "FAILED in preflight" in text


def test_a_step_that_ran_apart_counts_its_own_time_and_says_when():
    """site.yml starts ingress_tls early (cert-manager's chart) and finishes it
    late: its time is its tasks' own, its span says when it ran."""
    steps = {}
    record(steps, "ingress_tls", "changed", T0 + 2, "Install cert-manager", "", T0)
    record(steps, "istio_install", "changed", T0 + 30, "Install Istio", "", T0 + 2)
    record(steps, "ingress_tls", "ok", T0 + 35, "Wait for the Certificate", "", T0 + 30)
    report = build_report(steps, {}, TOTALS_OK, T0, T0 + 35, planned=PLANNED)
    by_name = {s["name"]: s for s in report["steps"]}
    assert by_name["ingress_tls"]["seconds"] == 7.0 and by_name["ingress_tls"]["span"] == [0.0, 35.0]
    assert by_name["istio_install"]["seconds"] == 28.0 and by_name["istio_install"]["span"] == [2.0, 30.0]
    text = "\n".join(render_text(report))
    assert "from 0 s to 35 s of the run, beside other steps" in text
    assert "istio_install  changed    28.0 s  ok=0 changed=1 failed=0 skipped=0\n" in text + "\n", text
