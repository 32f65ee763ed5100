"""Lab components. Every module in this package is imported when a lab starts; each
registers its components with ``@kaic.lab.register`` (see kaic.lab.component)."""
