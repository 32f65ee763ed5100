"""The command-line interface: commands, options, exit codes, console rendering.

Must not hold logic a library user would need; every command parses its flags, calls
into the layers below and renders; ``KaicError`` maps to its documented exit code.

Which module owns what: ``main`` (the command tree, imported lazily per command, and the
one fatal-error path), ``run`` (``kaic run``: flags into a ``RunRequest``, the
``kaic.runner`` session, progress), ``report``, ``cleanup``, ``catalog``, ``checklist``,
``lab``, and ``output`` (tables and structured output).
"""
