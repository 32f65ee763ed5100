"""The command-line interface: commands, options, exit codes, console rendering.

Must not hold logic a library user would need; every command calls into the
layers below and maps ``KaicError`` to its documented exit code.
"""
