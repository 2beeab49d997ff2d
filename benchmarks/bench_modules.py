# Copyright (c) 2026 servicemesh.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Micro-benchmark: wall time and peak memory of one successful check of
servicemesh.istio.wait_for_dns and servicemesh.istio.wait_for_certificate.

Everything runs on loopback: a knotd tree (parent zone delegating to two
nameservers, record already published) and a TLS server with a certificate
from a throw-away CA (the fixtures of tests/unit/plugins/conftest.py).

Two ways of running each module are measured, REPS times each, and the
median is printed:
  ansible  - `ansible localhost -c local -m servicemesh.istio.<module> -a JSON`,
             as Ansible runs it (controller + AnsiballZ module process);
  module   - the module file run by Python with an argument file, i.e. the
             module's own cost without the controller.
Peak memory is the largest resident set size in the measured process tree
(ru_maxrss from wait4).

Usage: .venv/bin/python benchmarks/bench_modules.py [--reps 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / 'tests' / 'unit' / 'plugins'))

from conftest import DnsLab, TestCA, TLSServer, free_port  # noqa: E402  pylint: disable=wrong-import-position


WRAPPER = r'''
import os, sys, time, json
start = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"wall": time.monotonic() - start, "maxrss_kib": usage.ru_maxrss,
                  "rc": os.waitstatus_to_exitcode(status)}), file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
'''


def run_measured(cmd, env):
    proc = subprocess.run([sys.executable, '-c', WRAPPER] + cmd, capture_output=True, env=env, cwd=REPO,
                          check=False)
    last = proc.stderr.decode().strip().splitlines()[-1]
    stats = json.loads(last)
    if stats['rc'] != 0:
        raise SystemExit('command failed (rc %s): %s\n%s\n%s' % (
            stats['rc'], ' '.join(cmd), proc.stdout.decode()[-3000:], proc.stderr.decode()[-3000:]))
    return stats['wall'], stats['maxrss_kib'] / 1024.0, proc.stdout.decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--json', action='store_true', help='print the figures as JSON')
    opts = parser.parse_args()

    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(REPO / '.collections'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
               PYTHONPATH=str(REPO / '.collections'))
    python = str(REPO / '.venv' / 'bin' / 'python')
    ansible = str(REPO / '.venv' / 'bin' / 'ansible')

    with tempfile.TemporaryDirectory(prefix='bench-modules-') as tmp:
        tmp = Path(tmp)
        lab = DnsLab(tmp, '127.77.%d.' % (os.getpid() % 200 + 20))
        tls = None
        try:
            lab.start_tree('istio IN A 203.0.113.9')
            ca = TestCA()
            bundle = ca.write_bundle(tmp)
            tls_addr = lab.net + '20'
            tls = TLSServer(tls_addr, free_port([tls_addr]), ca.issue('istio.mesh.example'), tmp)

            cases = {
                'wait_for_dns': {
                    'name': 'istio.mesh.example', 'type': 'A', 'values': ['203.0.113.9'],
                    'start_servers': lab.start_servers(), 'port': lab.port, 'timeout': 10,
                },
                'wait_for_certificate': {
                    'served': {'host': 'istio.mesh.example', 'address': tls_addr, 'port': tls.port,
                               'ca_path': bundle},
                    'timeout': 10,
                },
            }
            figures = {}
            for module, args in cases.items():
                args_file = tmp / ('%s.json' % module)
                args_file.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
                commands = {
                    'ansible': [ansible, 'localhost', '-c', 'local', '-e', 'ansible_python_interpreter=%s' % python,
                                '-m', 'servicemesh.istio.%s' % module, '-a', json.dumps(args)],
                    'module': [python, str(REPO / 'plugins' / 'modules' / ('%s.py' % module)), str(args_file)],
                }
                for how, cmd in commands.items():
                    walls, rss = [], []
                    for dummy in range(opts.reps):
                        wall, peak, out = run_measured(cmd, env)
                        if how == 'ansible' and 'SUCCESS' not in out:
                            raise SystemExit('%s did not succeed: %s' % (module, out[-2000:]))
                        if how == 'module' and json.loads(out).get('failed'):
                            raise SystemExit('%s did not succeed: %s' % (module, out[-2000:]))
                        walls.append(wall)
                        rss.append(peak)
                    figures['%s/%s' % (module, how)] = {
                        'wall_s_median': round(statistics.median(walls), 3),
                        'wall_s_min': round(min(walls), 3),
                        'peak_rss_mib_median': round(statistics.median(rss), 1),
                        'reps': opts.reps,
                    }
        finally:
            if tls is not None:
                tls.stop()
            lab.stop()

    if opts.json:
        print(json.dumps(figures, indent=2))
        return
    print('%-34s %14s %12s %16s' % ('module/how', 'median wall s', 'min wall s', 'median peak MiB'))
    for key, fig in figures.items():
        print('%-34s %14.3f %12.3f %16.1f' % (key, fig['wall_s_median'], fig['wall_s_min'],
                                              fig['peak_rss_mib_median']))
    print('(%d repetitions each; peak = largest RSS in the process tree)' % opts.reps)


if __name__ == '__main__':
    main()
