# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: site_report
type: aggregate
short_description: One report at the end of a run, what each step did and verified, as text and as a JSON file
version_added: 0.2.0
description:
  - At the end of a run of C(playbooks/site.yml) (or any playbook using this collection's roles), writes one report
    of the run; per step (role) whether it ran, its tasks ok, changed, failed and skipped, its time, and what it
    verified, as each role records it with M(ansible.builtin.set_stats) under C(istio_mesh_report).
  - A failed run's report names the step that failed, the task and its message, and what the steps before it did.
  - The report is written as JSON to O(report_path), and printed as text at the end of the run unless the stdout
    callback prints JSON itself (for example C(ansible.posix.json)), whose output it must not break.
  - In AWX the same data is the job's artifact C(istio_mesh_report) (M(ansible.builtin.set_stats)).
  - "A run against several clusters (one inventory host per cluster) gets one report per cluster: its steps, what
    they verified and the step that failed there, under C(clusters) in the JSON and a section each in the text; the
    run fails when one cluster failed, and the others' reports say what they did."
requirements:
  - Enabled in C(ansible.cfg) (C(callbacks_enabled = servicemesh.istio.site_report)), as this collection's
    C(ansible.cfg) does.
options:
  report_path:
    description:
      - Where the JSON report is written; an empty value writes no file.
    type: str
    default: servicemesh-istio-report.json
    env:
      - name: SERVICEMESH_ISTIO_REPORT_PATH
    ini:
      - section: servicemesh_istio
        key: report_path
"""

import datetime
import json
import os
import time

from ansible import constants as C
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.callback import CallbackBase

REPORT_KEY = 'istio_mesh_report'
COLLECTION = 'servicemesh.istio.'
# The stdout callbacks that print JSON (the report must not break their output).
JSON_STDOUT = ('json', 'ansible.posix.json', 'community.general.json', 'ansible.posix.jsonl', 'jsonl')


def _short(name):
    return name[len(COLLECTION):] if name.startswith(COLLECTION) else name


def step_of(task):
    """The collection role a task belongs to, or None for the play's own
    tasks. A role included by another (the preflight checks every role's
    inputs through include_role) counts as the step that included it."""
    role = getattr(task, '_role', None)
    if role is None:
        return None
    outer, seen = role, set()
    while getattr(outer, '_parents', None) and id(outer) not in seen:
        seen.add(id(outer))
        outer = outer._parents[0]
    return _short(outer.get_name())


def failure_message(result):
    """What a failed task said; for a loop, what its failed items said."""
    items = [r for r in result.get('results') or [] if isinstance(r, dict) and r.get('failed')]
    texts = [to_text(r.get('msg') or r.get('stderr') or '') for r in items] or \
        [to_text(result.get('msg') or result.get('stderr') or '')]
    return ' | '.join(t for t in texts if t)[:2000]


def is_role_spec_check(task):
    """The argument check Ansible puts before every role of the play (tagged
    always): it runs for roles the tags leave out, so it does not make a step."""
    return task.get_name().split(' : ')[-1].startswith("Validating arguments against arg spec")


def new_step(name, now):
    return {'name': name, 'started': now, 'finished': now, 'seconds': 0.0, 'busy': 0.0,
            'tasks': {'ok': 0, 'changed': 0, 'failed': 0, 'skipped': 0}, 'failure': None}


def record(steps, name, outcome, now, task_name='', message='', task_started=None):
    """Count one task result of step ``name`` (outcome: ok, changed, failed,
    skipped) that ended at ``now``; ``task_started``: when its task started.
    A step's ``seconds`` is the time its own tasks took; site.yml overlaps
    steps (one starts early, goes on after others), so a step's first and
    last task can be further apart."""
    step = steps.setdefault(name, new_step(name, now if task_started is None else task_started))
    step['tasks'][outcome] += 1
    step['finished'] = now
    step['busy'] += max(0.0, now - (now if task_started is None else task_started))
    step['seconds'] = round(step['busy'] if task_started is not None else now - step['started'], 1)
    if outcome == 'failed':
        # The latest: a failure a rescue handled is followed by the rescue's own.
        step['failure'] = {'task': task_name, 'message': message, 'at': now}
    return step


def build_report(steps, verified, stats, started, finished, check_mode=False, planned=()):
    """The report: the steps in the order they ran, each with what its role
    recorded as verified; the step that failed the run (the last failure,
    when the run failed: earlier ones were rescued); the steps the run did not
    reach or its tags left out; the totals."""
    run_failed = bool(stats.get('failures') or stats.get('unreachable'))
    ordered = sorted(steps.values(), key=lambda s: s['started'])
    failures = [s for s in ordered if s['failure']]
    failed = max(failures, key=lambda s: s['failure']['at']) if run_failed and failures else None
    out = []
    for step in ordered:
        counts = step['tasks']
        if step is failed:
            status = 'failed'
        elif counts['changed']:
            status = 'changed'
        elif counts['ok'] or counts['failed']:
            status = 'ok'
        else:
            status = 'skipped'
        out.append({'name': step['name'], 'status': status, 'seconds': step['seconds'], 'tasks': dict(counts),
                    'verified': verified.get(step['name']),
                    # When in the run (seconds from its start) the step's first task started and its last ended.
                    'span': [round(step['started'] - started, 1), round(step['finished'] - started, 1)]})
    ran = {s['name'] for s in ordered}
    not_run = [name for name in planned if name not in ran]
    done = [s['name'] for s in out if s['status'] in ('ok', 'changed') and s['name'] != (failed or {}).get('name')]
    failed_step = None
    if failed:
        failed_step = {'step': failed['name'], 'task': failed['failure']['task'],
                       'message': failed['failure']['message'], 'done_before': done}
    return {
        'result': 'failed' if run_failed else 'ok',
        'check_mode': bool(check_mode),
        'started': datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec='seconds'),
        'seconds': round(finished - started, 1),
        'failed_step': failed_step,
        'steps': out,
        'not_run': not_run,
        'totals': stats,
    }


def span_note(step):
    """For a step whose tasks ran apart (site.yml starts some early), when."""
    span = step.get('span')
    if not span or span[1] - span[0] < step['seconds'] + 2:
        return ''
    return '  (from %.0f s to %.0f s of the run, beside other steps)' % (span[0], span[1])


def render_text(report):
    """The report as lines for the end of the run."""
    lines = ['SERVICE MESH REPORT: %s in %.0f s%s' % (report['result'].upper(), report['seconds'],
                                                      ' (check mode: nothing was changed)' if report['check_mode'] else '')]
    if 'clusters' in report:
        lines[0] += ' (%d clusters: %s)' % (len(report['clusters']), ', '.join(
            '%s %s' % (c['host'], c['result']) for c in report['clusters']))
        for cluster in report['clusters']:
            lines.append('  cluster %s: %s in %.0f s' % (cluster['host'], cluster['result'].upper(), cluster['seconds']))
            lines.extend('  ' + line for line in render_text(dict(cluster, check_mode=False))[1:])
        return lines
    for step in report['steps']:
        counts = step['tasks']
        lines.append('  %-14s %-8s %6.1f s  ok=%d changed=%d failed=%d skipped=%d%s' % (
            step['name'], step['status'], step['seconds'], counts['ok'], counts['changed'], counts['failed'],
            counts['skipped'], span_note(step)))
        verified = step.get('verified') or {}
        for line in verified.get('checks', []) if isinstance(verified, dict) else []:
            lines.append('      verified: %s' % line)
        for line in verified.get('skipped', []) if isinstance(verified, dict) else []:
            lines.append('      not checked: %s' % line)
    if report.get('not_run'):
        lines.append('  not run (tags, or the run stopped before them): %s' % ', '.join(report['not_run']))
    failed = report.get('failed_step')
    if failed:
        lines.append('  FAILED in %s, task "%s": %s' % (failed['step'], failed['task'], failed['message']))
        lines.append('  done before it: %s' % (', '.join(failed['done_before']) or 'nothing'))
    return lines


def build_run_report(steps_by_host, verified_by_host, stats_by_host, started, finished, check_mode=False,
                     planned=()):
    """The report of a run: ``build_report``'s for one host (one cluster);
    for several, the run's result and one such report per host under
    ``clusters``, in inventory order as the run met them."""
    reports = []
    for host, steps in steps_by_host.items():
        report = build_report(steps, verified_by_host.get(host) or {}, stats_by_host.get(host) or {}, started,
                              max([s['finished'] for s in steps.values()] or [finished]), check_mode, planned)
        reports.append(dict(report, host=host))
    if not reports:
        return build_report({}, {}, {}, started, finished, check_mode, planned)
    if len(reports) == 1:
        single = reports[0]
        del single['host']
        single['seconds'] = round(finished - started, 1)
        return single
    totals = {key: sum(r['totals'].get(key, 0) for r in reports) for key in
              ('ok', 'changed', 'failures', 'unreachable', 'skipped', 'rescued')}
    return {
        'result': 'failed' if any(r['result'] == 'failed' for r in reports) else 'ok',
        'check_mode': bool(check_mode),
        'started': datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec='seconds'),
        'seconds': round(finished - started, 1),
        'clusters': reports,
        'totals': totals,
    }


class CallbackModule(CallbackBase):
    """Collects what each step did and verified, writes the report at the end."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'servicemesh.istio.site_report'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, options=None):
        super().__init__(display=display, options=options)
        self._steps = {}  # host -> step name -> step
        self._verified = {}  # host -> what its roles recorded with set_stats
        self._started = time.time()
        self._task_started = self._started
        self._uses_collection = False
        self._planned = []

    def v2_playbook_on_play_start(self, play):
        for role in play.get_roles():
            name = _short(role.get_name())
            if name not in self._planned:
                self._planned.append(name)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_started = time.time()
        if step_of(task) is not None and not is_role_spec_check(task):
            self._uses_collection = True

    def _result(self, result, outcome):
        host = result._host.get_name()
        stats = result._result.get('ansible_stats') if outcome != 'skipped' else None
        if isinstance(stats, dict) and isinstance((stats.get('data') or {}).get(REPORT_KEY), dict):
            self._verified.setdefault(host, {}).update(stats['data'][REPORT_KEY])
        name = step_of(result._task)
        if name is None or is_role_spec_check(result._task):
            return
        message = ''
        if outcome == 'failed':
            message = failure_message(result._result)
        steps = self._steps.setdefault(host, {})
        steps.setdefault(name, new_step(name, self._task_started))
        record(steps, name, outcome, time.time(), result._task.get_name(), message, self._task_started)

    def v2_runner_on_ok(self, result):
        self._result(result, 'changed' if result._result.get('changed') else 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, 'ok' if ignore_errors else 'failed')

    def v2_runner_on_unreachable(self, result):
        self._result(result, 'failed')

    def v2_runner_on_skipped(self, result):
        self._result(result, 'skipped')

    def v2_playbook_on_stats(self, stats):
        if not self._uses_collection:
            return
        hosts = list(self._steps) + [h for h in sorted(getattr(stats, 'processed', {}) or {}) if h not in self._steps]
        keys = ('ok', 'changed', 'failures', 'unreachable', 'skipped', 'rescued')
        by_host = {host: {key: (getattr(stats, key, {}) or {}).get(host, 0) for key in keys} for host in hosts}
        verified = dict(self._verified)
        if len(hosts) == 1 and not verified.get(hosts[0]):
            # What set_stats recorded for the run (a result without ansible_stats).
            verified[hosts[0]] = (stats.custom or {}).get('_run', {}).get(REPORT_KEY) or {}
        from ansible import context  # pylint: disable=import-outside-toplevel
        report = build_run_report({host: self._steps.get(host, {}) for host in hosts}, verified, by_host,
                                  self._started, time.time(), bool(context.CLIARGS.get('check')), self._planned)
        path = self.get_option('report_path')
        if path:
            try:
                with open(os.path.expanduser(path), 'w', encoding='utf-8') as handle:
                    json.dump(report, handle, indent=2, sort_keys=True, default=str)
                    handle.write('\n')
            except OSError as exc:
                self._display.warning('servicemesh.istio.site_report: cannot write %s: %s' % (path, exc))
        if C.DEFAULT_STDOUT_CALLBACK not in JSON_STDOUT:
            self._display.banner('SERVICE MESH REPORT')
            for line in render_text(report):
                self._display.display(line)
            if path:
                self._display.display('  JSON report: %s' % os.path.abspath(os.path.expanduser(path)))
