"""Result bundle writers: results.json, junit.xml, e2e.log, report.md, report.html,
evidence files (redacted) and run.json.

Must not run checks; reads what the runner reports.
"""

from kaic.report.bundle import BundleWriter, load_record
from kaic.report.gotest import render_e2e_log, render_results_json
from kaic.report.human import render_html, render_markdown
from kaic.report.junit import render_junit

__all__ = [
    "BundleWriter",
    "load_record",
    "render_e2e_log",
    "render_html",
    "render_junit",
    "render_markdown",
    "render_results_json",
]
