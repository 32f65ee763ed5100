"""The lab's stand-in for a disaggregated vLLM deployment as llm-d runs it: prefill and
decode model servers answering OpenAI completions at their pod IPs. **The model is
simulated**: no weights, no tokens computed; what is real is the traffic (a client's
request reaches a decode pod through its Service, the decode server asks a prefill pod
over the pod network) and the logs (``kubectl logs`` shows each server's lines).

A pod is a model server when a container runs the ``vllm/vllm-openai`` image (any
registry or tag) and the pod carries ``llm-d.ai/role`` (``prefill``, ``decode`` or
``both``). Its port is ``--port`` (default 8000), its model ``--model``. It answers
``GET /health``, ``GET /v1/models``, and ``POST /v1/completions`` and
``/v1/chat/completions``, taking the request id from ``x-request-id`` (else making one):

* ``prefill``: logs the prefill of the request and answers with one token and the
  ``kv_transfer_params`` a decode server would pull the KV blocks with;
* ``decode`` with ``--kv-transfer-config`` (a KV connector): sends the request, same id,
  to a prefill pod first: the one named by ``x-prefiller-host-port`` (as llm-d's gateway
  picks it; it must be a pod IP of the lab), else the next Running prefill pod of its
  namespace and model; then logs the decode, naming that pod, and answers;
* ``decode`` or ``both`` without a KV connector: runs both phases itself and says so.

Its lines go to ``<log dir>/<ns>_<pod>_<uid>/<container>.log`` in the CRI log format,
and a kwok ``Logs`` object named like the pod points ``kubectl logs`` at that file.

Owns: recognising model-server pods, their answers, their logs. Used by
``kaic.lab.sims.porter``, which listens at the pods' IPs; it dials only pod IPs in the
lab's pod range.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaic.lab.apiserver import ApiClient, ApiError
from kaic.lab.sims import http
from kaic.lab.sims.runtime import KWOK_API, cri_line, logs_object

IMAGE = "vllm-openai"
ROLE_LABEL = "llm-d.ai/role"
ROLES = ("prefill", "decode", "both")
DEFAULT_PORT = 8000
REQUEST_ID = "x-request-id"
PREFILLER = "x-prefiller-host-port"
FIELD_MANAGER = "kaic-lab-model-server"
SIMULATED = "simulated by the kaic lab: no model runs"


@dataclass(frozen=True)
class Server:
    """One model-server pod as the stand-in serves it."""

    namespace: str
    name: str
    uid: str
    ip: str
    port: int
    role: str
    model: str
    connector: str
    """The KV connector of ``--kv-transfer-config`` ("" without one)."""
    container: str

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def _flag(argv: Sequence[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def server_of(pod: dict[str, Any], ip: str) -> Server | None:
    """The model server ``pod`` runs at ``ip``, or None when it runs none."""
    md = pod.get("metadata") or {}
    role = str((md.get("labels") or {}).get(ROLE_LABEL, ""))
    if role not in ROLES:
        return None
    for c in (pod.get("spec") or {}).get("containers") or []:
        repo = str(c.get("image", "")).rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
        if repo != IMAGE:
            continue
        argv = [str(a) for a in [*(c.get("command") or []), *(c.get("args") or [])]]
        port = _flag(argv, "--port") or str(DEFAULT_PORT)
        connector = ""
        kv = _flag(argv, "--kv-transfer-config")
        if kv:
            try:
                connector = str(json.loads(kv).get("kv_connector") or "unnamed")
            except (ValueError, AttributeError):
                connector = "unnamed"
        return Server(
            namespace=str(md.get("namespace", "")),
            name=str(md.get("name", "")),
            uid=str(md.get("uid", "")),
            ip=ip,
            port=int(port) if port.isdigit() else DEFAULT_PORT,
            role=role,
            model=_flag(argv, "--model") or "model",
            connector=connector,
            container=str(c.get("name", "")),
        )
    return None


def _json(status: int, doc: dict[str, Any]) -> http.Reply:
    return http.Reply(status, json.dumps(doc).encode(), "application/json")


def _error(status: int, message: str) -> http.Reply:
    return _json(status, {"error": {"message": message, "code": status}})


class ModelServers:
    """The model servers of the lab: their answers, the prefill pods a decode server may
    use, and their log files."""

    def __init__(
        self,
        pod_cidr: ipaddress.IPv4Network,
        log_dir: Path,
        api: ApiClient | None,
    ) -> None:
        self.pod_cidr = pod_cidr
        self.log_dir = log_dir
        self.api = api
        self.lock = threading.Lock()
        self.servers: dict[str, Server] = {}
        self.logged: set[str] = set()
        self.turn = itertools.count()

    # -- the set of servers ----------------------------------------------------------
    def update(self, servers: Sequence[Server]) -> None:
        """The model servers running now; a new one gets its log file and Logs object."""
        with self.lock:
            self.servers = {s.uid: s for s in servers}
        for s in servers:
            if s.uid not in self.logged:
                self.log(
                    s,
                    f"INFO model server stand-in ({SIMULATED}): role={s.role} model={s.model}"
                    f" port={s.port} kv_connector={s.connector or 'none'}",
                )
                if self.write_logs_object(s):
                    self.logged.add(s.uid)

    def prefill_for(self, decode: Server, named: str | None) -> tuple[str, int, str] | None:
        """(ip, port, pod) of the prefill server ``decode`` sends a request to."""
        with self.lock:
            servers = list(self.servers.values())
        if named:
            host, _, port = named.rpartition(":")
            for s in servers:
                if s.ip == host and str(s.port) == port:
                    return s.ip, s.port, s.ref
            try:
                if ipaddress.ip_address(host) in self.pod_cidr and port.isdigit():
                    return host, int(port), named
            except ValueError:
                pass
            return None
        pool = sorted(
            (
                s
                for s in servers
                if s.role == "prefill"
                and s.namespace == decode.namespace
                and s.model == decode.model
            ),
            key=lambda s: s.name,
        )
        if not pool:
            return None
        s = pool[next(self.turn) % len(pool)]
        return s.ip, s.port, s.ref

    # -- logs ----------------------------------------------------------------------------
    def log_file(self, s: Server) -> Path:
        return self.log_dir / f"{s.namespace}_{s.name}_{s.uid}" / f"{s.container}.log"

    def log(self, s: Server, line: str) -> None:
        f = self.log_file(s)
        with self.lock:
            f.parent.mkdir(parents=True, exist_ok=True)
            with f.open("a") as out:
                out.write(cri_line("stdout", line))

    def write_logs_object(self, s: Server) -> bool:
        if self.api is None:
            return True
        obj = logs_object(
            s.namespace,
            s.name,
            s.uid,
            [{"containers": [s.container], "logsFile": str(self.log_file(s)), "follow": False}],
        )
        try:
            self.api.request(
                "PATCH",
                f"/apis/{KWOK_API}/namespaces/{s.namespace}/logs/{s.name}"
                f"?fieldManager={FIELD_MANAGER}&force=true",
                obj,
                content_type="application/apply-patch+yaml",
            )
        except (ApiError, OSError) as e:
            print(f"cannot write Logs of {s.ref}: {e}", flush=True)
            return False
        return True

    # -- answers -----------------------------------------------------------------------------
    def answer(self, s: Server) -> http.Answer:
        def answer(req: http.Request) -> http.Reply:
            if req.path in ("/health", "/healthz", "/ping"):
                return http.Reply(200, b"")
            if req.path == "/v1/models":
                return _json(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": s.model, "object": "model", "owned_by": "kaic-lab"}],
                    },
                )
            if req.path not in ("/v1/completions", "/v1/chat/completions"):
                return _error(404, f"no route {req.path}")
            if req.method != "POST":
                return _error(405, "method not allowed")
            return self.complete(s, req)

        return answer

    def complete(self, s: Server, req: http.Request) -> http.Reply:
        rid = req.headers.get(REQUEST_ID) or f"cmpl-{secrets.token_hex(8)}"
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the body is not a JSON object")
        if body.get("model") != s.model:
            self.log(s, f"WARNING request {rid}: model {body.get('model')!r} does not exist")
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        if s.role == "prefill":
            self.log(s, f"INFO Received request {rid}: prefill, KV blocks kept for transfer")
            return self.reply(s, rid, "chat" in req.path, 1, prefill=True)
        if s.role == "decode" and s.connector:
            target = self.prefill_for(s, req.headers.get(PREFILLER))
            if target is None:
                self.log(s, f"ERROR request {rid}: no prefill server for model {s.model}")
                return _error(503, "no prefill server available")
            ip, port, pod = target
            failed = self.forward(rid, ip, port, req.path, body)
            if failed:
                self.log(
                    s, f"ERROR request {rid}: prefill on {pod} at {ip}:{port} failed: {failed}"
                )
                return _error(502, f"prefill on {pod} failed: {failed}")
            self.log(
                s,
                f"INFO Received request {rid}: prefill done by {pod} at {ip}:{port}, KV blocks"
                f" pulled with {s.connector}; decoding",
            )
        else:
            self.log(
                s,
                f"INFO Received request {rid}: prefill and decode in this pod (no KV connector)",
            )
        return self.reply(s, rid, "chat" in req.path, int(body.get("max_tokens") or 16))

    def forward(self, rid: str, ip: str, port: int, path: str, body: dict[str, Any]) -> str:
        """Ask the prefill server; "" when it answered 200, else why not."""
        try:
            if ipaddress.ip_address(ip) not in self.pod_cidr:
                return f"{ip} is not a pod IP of the lab"
        except ValueError:
            return f"{ip} is not an IP address"
        data = json.dumps({**body, "max_tokens": 1, "stream": False}).encode()
        request = urllib.request.Request(
            f"http://{ip}:{port}{path}",
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", REQUEST_ID: rid},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as r:
                r.read()
                return "" if r.status == 200 else f"HTTP {r.status}"
        except urllib.error.HTTPError as e:
            return f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            return str(e)

    def reply(
        self, s: Server, rid: str, chat: bool, tokens: int, *, prefill: bool = False
    ) -> http.Reply:
        text = " ".join(["hello"] * max(1, min(tokens, 8)))
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        doc: dict[str, Any] = {
            "id": f"cmpl-{rid}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": s.model,
            "choices": [choice],
            "usage": {"prompt_tokens": 8, "completion_tokens": max(1, min(tokens, 8))},
        }
        if prefill:
            doc["kv_transfer_params"] = {
                "remote_engine_id": s.ref,
                "remote_host": s.ip,
                "remote_port": s.port,
            }
        return _json(200, doc)
