"""Lab components, one module per component, named like it (``node-autoscaler`` →
``node_autoscaler.py``). Every module in this package is imported when a lab starts;
each registers its component with ``@kaic.lab.register`` (see kaic.lab.component).
Modules whose names start with ``_`` hold what several components share and register
nothing."""
