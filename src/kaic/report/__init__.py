"""Result bundle writers: results.json, junit.xml, e2e.log, report.md, report.html."""
