"""The WSGI middleware in front of moto: counting, faults, control endpoints."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from http import HTTPStatus
from typing import Any, Callable, Iterable


from moto.moto_server.werkzeug_app import MotoRequestHandler
from .common import _json_bytes, log
from .faults import FaultInjector, _damage, _success_content_type, render_error
from .identify import AwsRequest, _read_and_rewind_body, identify_request
from .inventory import INVENTORY_STORE, InventoryStore, install_ssm_inventory


StartResponse = Callable[..., Any]


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


class EmulatorMiddleware:
    """Counts requests, injects faults and serves ``/_emulator/*``."""

    CONTROL_PREFIX = "/_emulator/"

    def __init__(self, app: Callable[..., Iterable[bytes]],
                 inventory: InventoryStore = INVENTORY_STORE) -> None:
        self.app = app
        self.faults = FaultInjector()
        self.inventory = inventory
        self._stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()

    # -- control API ------------------------------------------------------

    def _control(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")

        def reply(status: int, obj: Any) -> list[bytes]:
            body = _json_bytes(obj)
            start_response(
                _status_line(status),
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]

        allowed = {
            "/_emulator/stats": ("GET",),
            "/_emulator/stats/reset": ("POST",),
            "/_emulator/faults": ("GET", "POST"),
            "/_emulator/inventory": ("GET",),
            "/_emulator/inventory/reset": ("POST",),
        }
        path = path.rstrip("/")
        if path not in allowed:
            return reply(404, {"error": "not found", "path": path})
        if method not in allowed[path]:
            return reply(405, {"error": "method not allowed", "allowed": allowed[path]})

        if path == "/_emulator/stats":
            return reply(200, self.stats())
        if path == "/_emulator/stats/reset":
            self.reset_stats()
            return reply(200, {})
        if path == "/_emulator/inventory":
            return reply(200, self.inventory.dump())
        if path == "/_emulator/inventory/reset":
            self.inventory.reset()
            log.info("inventory reset")
            return reply(200, {})
        if method == "POST":  # /_emulator/faults
            try:
                self.faults.replace(json.loads(_read_and_rewind_body(environ) or b"null"))
            except ValueError as exc:  # includes json.JSONDecodeError
                return reply(400, {"error": str(exc)})
            log.info("faults set: %s", json.dumps(self.faults.snapshot()))
        return reply(200, self.faults.snapshot())

    def _damaged(self, fault: str, req: AwsRequest, environ: dict[str, Any],
                 start_response: StartResponse) -> Iterable[bytes]:
        """Answers with moto's successful answer damaged by ``fault`` (see FaultRule)."""
        if fault == "empty":
            start_response("200 OK", [("Content-Type", _success_content_type(req)),
                                      ("Content-Length", "0"),
                                      ("x-amzn-RequestId", str(uuid.uuid4()))])
            log.info("moto %s %s 200 (injected empty body)", req.service, req.action)
            return [b""]
        status, headers, body = self._call_moto(req, environ)
        damaged, why_not = _damage(fault, req, body) if status.split(" ", 1)[0] == "200" else (
            None, "not a success")
        if damaged is None:
            log.info("moto %s %s %s (fault %r not applied: %s)", req.service, req.action,
                     status.split(" ", 1)[0], fault, why_not)
        elif fault == "reset":
            log.info("moto %s %s 200 (injected reset mid-body)", req.service, req.action)
            _reset_mid_body(environ, status, headers, body)  # raises ConnectionResetError
        else:
            log.info("moto %s %s 200 (injected %s: %d of %d bytes)", req.service, req.action,
                     fault, len(damaged), len(body))
            body = damaged
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def _call_moto(self, req: AwsRequest,
                   environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """moto's whole answer to ``environ``: (status line, headers, body)."""
        captured: dict[str, Any] = {}
        written: list[bytes] = []

        def capture(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, list(headers)
            return written.append

        try:
            result = self.app(environ, capture)
        except Exception:
            log.info("moto %s %s 500 (unhandled exception in moto)", req.service, req.action)
            raise
        try:
            body = b"".join(written) + b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return captured["status"], captured["headers"], body

    def stats(self) -> dict[str, int]:
        with self._stats_lock:
            return dict(sorted(self._stats.items()))

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats.clear()

    # -- WSGI ---------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(self.CONTROL_PREFIX) or path == self.CONTROL_PREFIX.rstrip("/"):
            return self._control(environ, start_response)
        if path.startswith("/moto-api"):  # moto's own dashboard/reset API
            if path.rstrip("/") == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
                self.inventory.reset()  # "all emulated AWS state" includes the inventory
            return self.app(environ, start_response)

        req = identify_request(environ)
        with self._stats_lock:
            self._stats[req.key] += 1
        if req.service == "ssm" or environ.get("HTTP_X_AMZ_TARGET", "").startswith("AmazonSSM."):
            install_ssm_inventory(self.inventory)  # cheap after the first time

        rule = self.faults.take(req)
        if rule is not None:
            if rule.delay_ms:
                time.sleep(rule.delay_ms / 1000)
            if rule.body is not None:
                return self._damaged(rule.body, req, environ, start_response)
            if rule.injects_error:
                status = rule.status or 400
                code = rule.code or ("InternalFailure" if status >= 500 else "BadRequest")
                message = rule.message or "Injected fault"
                headers, body = render_error(req, status, code, message)
                headers.append(("Content-Length", str(len(body))))
                start_response(_status_line(status), headers)
                budget = f", over {rule.per_second}/s" if rule.per_second is not None else ""
                log.info("moto %s %s %d (injected %s%s)", req.service, req.action, status, code,
                         budget)
                return [body]

        def logging_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            log.info("moto %s %s %s", req.service, req.action, status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, logging_start_response)
        except Exception:
            # werkzeug turns this into a 500 and logs the traceback.
            log.info("moto %s %s 500 (unhandled exception in moto)", req.service, req.action)
            raise


def _reset_mid_body(environ: dict[str, Any], status: str, headers: list[tuple[str, str]],
                    body: bytes) -> None:
    """Sends the status line and headers (full Content-Length) and the first half of the body
    on the raw socket, then resets the connection (see :func:`_abort_connection`).  Raises
    ``ConnectionResetError``, which werkzeug takes quietly for a dropped connection."""
    sock = environ.get("werkzeug.socket")
    if sock is None:
        raise RuntimeError("the 'reset' fault needs werkzeug's raw socket")
    head = [f"HTTP/1.1 {status}"]
    head += [f"{k}: {v}" for k, v in headers if k.lower() not in ("content-length", "connection")]
    head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    sock.sendall("\r\n".join(head).encode("latin-1") + body[: len(body) // 2])
    _abort_connection(sock)
    raise ConnectionResetError("injected: connection reset in the middle of the body")


def _abort_connection(sock: socket.socket) -> None:
    """Resets ``sock``'s TCP connection now (RST, no FIN), leaving werkzeug a harmless socket.

    A RST needs the last close of the connection with ``SO_LINGER`` 0, before any
    ``shutdown()`` (which sends a FIN, so the client would see a clean end of stream, not a
    reset; socketserver always shuts a connection down before closing it).  werkzeug still
    holds ``sock`` and uses its descriptor afterwards, so the descriptor is not closed:
    ``dup2`` points it at one end of a socketpair whose other end is closed (reads see EOF,
    which ends werkzeug's keep-alive loop; shutdown/close work), and the connection's last
    reference, a ``dup`` taken first, is closed: that sends the RST.  The descriptor number
    never becomes free, so no other thread's socket can be hit by werkzeug's later close.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    fd = sock.fileno()
    last_ref = os.dup(fd)
    dead, peer = socket.socketpair()
    try:
        peer.close()
        os.dup2(dead.fileno(), fd, inheritable=False)
    finally:
        dead.close()
        os.close(last_ref)


class QuietMotoRequestHandler(MotoRequestHandler):
    """moto's handler, minus werkzeug's access log (the middleware logs)."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass
