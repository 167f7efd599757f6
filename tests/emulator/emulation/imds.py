"""The strict IMDSv2 stub."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import string
import threading
import time
from collections import Counter
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable

from .common import DEFAULT_ACCOUNT_ID, _iso_z, log


TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TOKEN_TTL = 21600
FAULT_MODES = (None, "delay", "error500", "refuse_tokens")


def _random_id(prefix: str, length: int, alphabet: str = string.ascii_uppercase + string.digits) -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class ImdsConfig:
    """What the instance looks like.  ``None`` means "derive a default"."""

    instance_id: str = "i-0123456789abcdef0"
    region: str = "us-east-1"
    availability_zone: str | None = None  # default: region + "a"
    account_id: str = DEFAULT_ACCOUNT_ID
    instance_type: str = "t3.micro"
    hostname: str | None = None  # default: ip-<private_ip>.<region domain>
    ami_id: str = "ami-0abcdef1234567890"
    private_ip: str = "172.31.16.10"
    architecture: str = "x86_64"
    tags: dict[str, str] | None = None  # default: {}
    tags_enabled: bool = True
    role: str | None = "ssm-companion-test"
    credentials_ttl_seconds: int = 21600
    # Static credentials handed out for the role; generated once if unset.
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    _TYPES = {
        "instance_id": str, "region": str, "availability_zone": (str, type(None)),
        "account_id": str, "instance_type": str, "hostname": (str, type(None)),
        "ami_id": str, "private_ip": str, "architecture": str,
        "tags": (dict, type(None)), "tags_enabled": bool, "role": (str, type(None)),
        "credentials_ttl_seconds": int, "access_key_id": str,
        "secret_access_key": str, "session_token": str,
    }

    def __post_init__(self) -> None:
        self.access_key_id = self.access_key_id or _random_id("ASIA", 16)
        self.secret_access_key = self.secret_access_key or _random_id(
            "", 40, string.ascii_letters + string.digits + "+/"
        )
        self.session_token = self.session_token or base64.b64encode(secrets.token_bytes(96)).decode()

    def merge(self, updates: Any) -> None:
        """Validate ``updates`` (a JSON object) and apply them atomically."""
        if not isinstance(updates, dict):
            raise ValueError("IMDS config must be a JSON object")
        for key, value in updates.items():
            want = self._TYPES.get(key)
            if want is None:
                raise ValueError(f"unknown IMDS config key {key!r}")
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise ValueError(f"IMDS config key {key!r} has the wrong type")
            if key == "tags" and value is not None and not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ValueError("IMDS config 'tags' must map strings to strings")
            if key == "credentials_ttl_seconds" and value < 1:
                raise ValueError("credentials_ttl_seconds must be >= 1")
        for key, value in updates.items():
            setattr(self, key, value)

    # Derived values.
    @property
    def az(self) -> str:
        return self.availability_zone or f"{self.region}a"

    @property
    def host(self) -> str:
        if self.hostname:
            return self.hostname
        domain = "ec2.internal" if self.region == "us-east-1" else f"{self.region}.compute.internal"
        return f"ip-{self.private_ip.replace('.', '-')}.{domain}"

    def as_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(availability_zone=self.az, hostname=self.host, tags=self.tags or {})
        return data


class ImdsState:
    """Shared state of the IMDS stub: config, tokens, stats, fault mode."""

    def __init__(self, config: ImdsConfig) -> None:
        self.lock = threading.Lock()
        self.config = config
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.stats: Counter[str] = Counter()
        self.fault_mode: str | None = None
        self.fault_delay_ms: float = 0
        self.started = datetime.now(timezone.utc)

    def issue_token(self, ttl: int) -> str:
        token = base64.urlsafe_b64encode(secrets.token_bytes(42)).decode()
        now = time.monotonic()
        with self.lock:
            self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}
            self.tokens[token] = now + ttl
        return token

    def token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self.lock:
            expiry = self.tokens.get(token)
        return expiry is not None and expiry > time.monotonic()


class ImdsHandler(BaseHTTPRequestHandler):
    """Request handler of the IMDSv2 stub (one instance per request)."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real IMDS
    state: ImdsState  # set on the subclass built by make_imds_server

    # -- plumbing -----------------------------------------------------------

    def version_string(self) -> str:
        return "EC2ws"  # the real IMDS's Server header

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.info("imds " + format, *args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        log.info("imds %s %s %s", self.command, self.path, getattr(code, "value", code))

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes | str = b"", ctype: str = "text/plain",
              extra: Iterable[tuple[str, str]] = ()) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, indent=2), "application/json")

    # -- entry points -------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        if path.startswith("/_emulator/"):
            self._control(path, body)
            return

        state = self.state
        with state.lock:
            state.stats[f"{self.command} {path}"] += 1
            mode, delay_ms = state.fault_mode, state.fault_delay_ms
        if mode == "delay" and delay_ms:
            time.sleep(delay_ms / 1000)
        if mode == "error500":
            self._send(500, "Internal Server Error\n")
            return

        if path == TOKEN_PATH:
            if self.command == "PUT":
                self._put_token(refuse=mode == "refuse_tokens")
            else:
                self._send(405, "Method Not Allowed\n", extra=[("Allow", "PUT")])
            return
        if self.command != "GET":
            self._send(405, "Method Not Allowed\n", extra=[("Allow", "GET")])
            return
        if not state.token_valid(self.headers.get(TOKEN_HEADER)):
            self._send(401, "Unauthorized\n")
            return
        with state.lock:
            resolved = self._metadata(path, state.config)
        if resolved is None:
            self._send(404, "Not Found\n")
        elif isinstance(resolved, str):
            self._send(200, resolved)
        else:
            self._send(200, json.dumps(resolved, indent=2), "application/json")

    # -- IMDS proper --------------------------------------------------------

    def _put_token(self, refuse: bool) -> None:
        if refuse or self.headers.get("X-Forwarded-For") is not None:
            self._send(403, "Forbidden\n")
            return
        raw_ttl = (self.headers.get(TTL_HEADER) or "").strip()
        if not raw_ttl.isdigit() or not 1 <= int(raw_ttl) <= MAX_TOKEN_TTL:
            self._send(400, "Bad Request\n")
            return
        ttl = int(raw_ttl)
        token = self.state.issue_token(ttl)
        self._send(200, token, extra=[(TTL_HEADER, str(ttl))])

    def _metadata(self, path: str, cfg: ImdsConfig) -> str | dict[str, Any] | None:
        """Resolve a GET path to text, a JSON object, or ``None`` (404)."""
        now = datetime.now(timezone.utc)
        if path == "/latest/dynamic/instance-identity/document":
            return {
                "accountId": cfg.account_id,
                "architecture": cfg.architecture,
                "availabilityZone": cfg.az,
                "billingProducts": None,
                "devpayProductCodes": None,
                "marketplaceProductCodes": None,
                "imageId": cfg.ami_id,
                "instanceId": cfg.instance_id,
                "instanceType": cfg.instance_type,
                "kernelId": None,
                "pendingTime": _iso_z(self.state.started),
                "privateIp": cfg.private_ip,
                "ramdiskId": None,
                "region": cfg.region,
                "version": "2017-09-30",
            }
        prefix = "/latest/meta-data/"
        if not path.startswith(prefix):
            return None
        # Like the real IMDS, a trailing slash on a leaf is tolerated (botocore
        # asks for ``placement/availability-zone/``).
        rel = path[len(prefix):].rstrip("/")
        simple = {
            "instance-id": cfg.instance_id,
            "placement/region": cfg.region,
            "placement/availability-zone": cfg.az,
            "instance-type": cfg.instance_type,
            "local-hostname": cfg.host,
            "hostname": cfg.host,
            "local-ipv4": cfg.private_ip,
            "ami-id": cfg.ami_id,
        }
        if rel in simple:
            return simple[rel]
        if rel.startswith("tags/instance"):
            if not cfg.tags_enabled:
                return None
            tags = cfg.tags or {}
            key = rel[len("tags/instance"):]
            if key == "":
                return "\n".join(tags)
            return tags.get(key[1:]) if key.startswith("/") else None
        if rel.startswith("iam/"):
            if not cfg.role:
                return None
            if rel == "iam/info":
                # A stable, plausible-looking id derived from the instance id.
                profile_id = "AIPA" + cfg.instance_id.removeprefix("i-").upper()[:17].ljust(17, "0")
                return {
                    "Code": "Success",
                    "LastUpdated": _iso_z(self.state.started),
                    "InstanceProfileArn": f"arn:aws:iam::{cfg.account_id}:instance-profile/{cfg.role}",
                    "InstanceProfileId": profile_id,
                }
            if rel == "iam/security-credentials":
                return cfg.role
            if rel == f"iam/security-credentials/{cfg.role}":
                return {
                    "Code": "Success",
                    "LastUpdated": _iso_z(now),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": cfg.access_key_id,
                    "SecretAccessKey": cfg.secret_access_key,
                    "Token": cfg.session_token,
                    "Expiration": _iso_z(now + timedelta(seconds=cfg.credentials_ttl_seconds)),
                }
        return None

    # -- control API --------------------------------------------------------

    def _control(self, path: str, body: bytes) -> None:
        state = self.state
        route = (self.command, path.rstrip("/"))
        try:
            if route == ("GET", "/_emulator/imds/stats"):
                with state.lock:
                    stats = dict(sorted(state.stats.items()))
                self._send_json(200, stats)
            elif route == ("POST", "/_emulator/imds/stats/reset"):
                with state.lock:
                    state.stats.clear()
                self._send_json(200, {})
            elif route == ("GET", "/_emulator/imds/config"):
                with state.lock:
                    current = state.config.as_json()
                self._send_json(200, current)
            elif route == ("POST", "/_emulator/imds/config"):
                updates = json.loads(body or b"{}")
                with state.lock:
                    state.config.merge(updates)
                    current = state.config.as_json()
                log.info("imds config updated: %s", json.dumps(updates))
                self._send_json(200, current)
            elif route == ("GET", "/_emulator/imds/faults"):
                with state.lock:
                    fault = {"mode": state.fault_mode, "delay_ms": state.fault_delay_ms}
                self._send_json(200, fault)
            elif route == ("POST", "/_emulator/imds/faults"):
                self._set_fault(json.loads(body or b"{}"))
            elif route[1] in ("/_emulator/imds/stats", "/_emulator/imds/stats/reset",
                              "/_emulator/imds/config", "/_emulator/imds/faults"):
                self._send_json(405, {"error": "method not allowed"})
            else:
                self._send_json(404, {"error": "not found", "path": path})
        except ValueError as exc:
            self._send_json(400, {"error": str(exc)})

    def _set_fault(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise ValueError("IMDS fault must be a JSON object")
        mode = spec.get("mode")
        delay_ms = spec.get("delay_ms", 0) or 0
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {list(FAULT_MODES)}")
        if (not isinstance(delay_ms, (int, float)) or isinstance(delay_ms, bool)
                or not 0 <= delay_ms <= 600_000):
            raise ValueError("delay_ms must be a number of milliseconds (0..600000)")
        with self.state.lock:
            self.state.fault_mode, self.state.fault_delay_ms = mode, delay_ms
        log.info("imds fault mode: %s (delay_ms=%s)", mode, delay_ms)
        self._send_json(200, {"mode": mode, "delay_ms": delay_ms})


class _ImdsServer(ThreadingHTTPServer):
    daemon_threads = True  # never wait for (possibly delayed) requests on exit


class _ImdsServer6(_ImdsServer):
    address_family = socket.AF_INET6


def make_imds_server(host: str, port: int, config: ImdsConfig) -> ThreadingHTTPServer:
    """IMDS stub bound to ``host:port``, with its own state."""
    handler = type("BoundImdsHandler", (ImdsHandler,), {"state": ImdsState(config)})
    server_cls = _ImdsServer6 if ":" in host else _ImdsServer
    return server_cls((host, port), handler)


def load_imds_config(path: str | None) -> ImdsConfig:
    config = ImdsConfig()
    if path:
        with open(path, encoding="utf-8") as fh:
            config.merge(json.load(fh))
    return config
