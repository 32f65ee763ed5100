"""The only importer of the Kubernetes client: connect, discover, CRUD, watch, exec,
port-forward, scrape, waits, and bookkeeping of what a run creates.

Must not decide pass or fail.
"""
