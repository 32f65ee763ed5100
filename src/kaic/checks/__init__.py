"""Checks: one module per area; a check proves one requirement on a cluster.

Must not import the Kubernetes client; talks to the cluster through ``kaic.cluster``.
"""
