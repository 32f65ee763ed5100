"""Planning and executing checks: timeouts, parallelism, cleanup, progress events.

Must not know any requirement's details.
"""
