"""Planning and executing checks: timeouts, parallelism, cleanup, progress events.

Must not know any requirement's details.
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
    RunOptions,
    RunStarted,
    SubtestDone,
    check_reachable,
    execute,
    new_run_id,
    preflight,
)
from kaic.runner.plan import Plan, PlanItem, make_plan
from kaic.runner.record import ResultEntry, RunRecord, evidence_path, exit_code

__all__ = [
    "CheckDone",
    "CheckLog",
    "CheckStarted",
    "CleanupDone",
    "Event",
    "MissingPermission",
    "Observer",
    "Plan",
    "PlanItem",
    "Preflight",
    "ResultEntry",
    "RunFinished",
    "RunOptions",
    "RunRecord",
    "RunStarted",
    "SubtestDone",
    "check_reachable",
    "evidence_path",
    "execute",
    "exit_code",
    "make_plan",
    "new_run_id",
    "preflight",
]
