"""The request-reply protocol: what client, broker and worker put in the envelopes they exchange.

client -> broker -> worker   kind "request"    {"n": N, "payload": bytes}
worker -> broker -> client   kind "reply"      {"request_id": id, "worker": name, "n": N}
                                                (or {"error": reason, "worker": name})
lru mode, worker <-> broker  kind "ready" / "heartbeat" (no body): Paranoid Pirate's control frames
"""

from __future__ import annotations

from typing import Any

REQUEST, REPLY, READY, HEARTBEAT = "request", "reply", "ready", "heartbeat"


def request(n: int, payload: bytes) -> dict[str, Any]:
    return {"n": n, "payload": payload}


def reply(request_id: str, worker: str, n: Any) -> dict[str, Any]:
    return {"request_id": request_id, "worker": worker, "n": n}


def error_reply(reason: str, worker: str) -> dict[str, Any]:
    return {"error": reason, "worker": worker}
