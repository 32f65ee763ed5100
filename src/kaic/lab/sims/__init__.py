"""The lab's simulators: programs that run as subprocesses of a lab (``python -m
kaic.lab.sims.NAME``) and stand in for hardware or for a container the lab cannot run.

* ``devices``: the device visibility agent (which GPUs an exec'd container sees);
* ``dcgm``: DCGM-style GPU metrics, one listener at each exporter pod's IP;
* ``porter``: what an ``agnhost porter`` container would serve, at its pod IP;
* ``httpd``: what a busybox ``httpd`` container would serve, at its pod IP.

They talk to the apiserver with the one lab client (``kaic.lab.apiserver``) and serve
HTTP with one helper (``kaic.lab.sims.http``). Must not import the lab's components or
start other processes; every listener is on loopback or, inside the lab's network
namespace, on a pod IP of the lab.
"""
