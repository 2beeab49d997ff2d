"""Write each task's role, name, action and duration as JSON lines.

For benchmarks/bench_full_site.py only: enabled with
ANSIBLE_CALLBACK_PLUGINS=benchmarks/callback_plugins ANSIBLE_CALLBACKS_ENABLED=task_times
and SMI_TASK_TIMES=<file>; it sits beside the normal output.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_times
type: aggregate
short_description: each task's role, name, action and duration as JSON lines (benchmarks only)
description: Writes one line per finished task to the file named by SMI_TASK_TIMES.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._path = os.environ.get("SMI_TASK_TIMES", "")
        self._task = None
        self._start = 0.0

    def _close(self):
        if self._task is None or not self._path:
            return
        role = self._task._role.get_name() if self._task._role else ""  # pylint: disable=protected-access
        with open(self._path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"role": role, "name": self._task.get_name(), "action": self._task.action,
                                  "seconds": round(time.monotonic() - self._start, 3)}) + "\n")
        self._task = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        self._task, self._start = task, time.monotonic()

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats):
        self._close()
