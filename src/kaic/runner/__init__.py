"""The run session and everything below it: planning, executing, deadlines,
parallelism, cleanup, progress events and the one ``run.json`` schema.

Which module owns what:

- ``request``: ``RunRequest``, the typed input of a run (serialised as ``run.json``'s
  ``options``).
- ``session``: ``RunSession``/``run``: check options, connect, catalog version (its
  warning as a value), plan, preflight, output directory, execute; ``SessionResult``.
- ``plan``: ``make_plan`` (level, focus, skip) and ``check_option_problems``.
- ``execute``: ``preflight``, ``execute`` (thread pool, one ``Deadline`` per check,
  cleanup, interruption) and the frozen progress events observers receive.
- ``guard``: ``GuardedCluster``, the cluster a check sees (bounded by its deadline).
- ``record``: ``RunRecord``/``ResultEntry``, ``run.json`` out and the one strict reader
  in (``read_record``), and the exit rule (``exit_code``).

Must not know any requirement's details, render anything, or import the Kubernetes
client (the session connects through ``kaic.cluster.client`` only when it runs).
"""

from kaic.runner.execute import (
    CheckDone,
    CheckLog,
    CheckStarted,
    CleanupDone,
    Event,
    MissingPermission,
    Observer,
    Preflight,
    RunFinished,
    RunStarted,
    SubtestDone,
    check_reachable,
    execute,
    new_run_id,
    preflight,
)
from kaic.runner.plan import LEVELS, Plan, PlanItem, check_option_problems, make_plan
from kaic.runner.record import (
    NoRunRecordError,
    ResultEntry,
    RunRecord,
    checklist_status,
    evidence_path,
    exit_code,
    read_record,
    unmet,
)
from kaic.runner.request import FAIL_ON, RunRequest
from kaic.runner.session import PreflightFailed, Prepared, RunSession, SessionResult, run

__all__ = [
    "FAIL_ON",
    "LEVELS",
    "CheckDone",
    "CheckLog",
    "CheckStarted",
    "CleanupDone",
    "Event",
    "MissingPermission",
    "NoRunRecordError",
    "Observer",
    "Plan",
    "PlanItem",
    "Preflight",
    "PreflightFailed",
    "Prepared",
    "ResultEntry",
    "RunFinished",
    "RunRecord",
    "RunRequest",
    "RunSession",
    "RunStarted",
    "SessionResult",
    "SubtestDone",
    "check_option_problems",
    "check_reachable",
    "checklist_status",
    "evidence_path",
    "execute",
    "exit_code",
    "make_plan",
    "new_run_id",
    "preflight",
    "read_record",
    "run",
    "unmet",
]
