"""Fault injection: errors in each service's wire protocol, delays, damaged answers."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Any
from xml.sax.saxutils import escape

from .identify import AwsRequest


QUERY_NAMESPACES = {
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}


@dataclass
class FaultRule:
    """One fault rule, as posted to ``/_emulator/faults``.

    ``service``/``action``/``page`` select requests (``None`` = any; ``page``
    only ever matches iam:GetAccountAuthorizationDetails).  ``params`` (a JSON
    object of strings) selects only requests carrying every one of those
    parameters with exactly that value: query-string and form parameters, and
    for JSON-protocol services (``X-Amz-Target``) the top-level members of the
    body, e.g. ``{"service": "sts", "action": "AssumeRole", "params":
    {"RoleArn": "arn:aws:iam::111111111111:role/r"}, "status": 403, "code":
    "AccessDenied"}`` refuses AssumeRole into that one role, so a test can fail
    one account of several.  ``path_contains`` selects requests whose path
    (percent-decoded) contains that text: for REST services such as S3, whose
    path names the object (path style: ``/bucket/key``).

    ``per_second`` turns the rule into a rate budget: of the requests it
    selects, the first ``per_second`` in each one-second window pass (as if the
    rule did not exist: a later rule may still match them) and the rest match,
    e.g. ``{"service": "s3", "action": "GET", "per_second": 80, "status": 503,
    "code": "SlowDown"}``.  A window starts with the first selected request
    after the previous one ended, so a burst sees exactly ``per_second`` pass.

    ``times`` is the number of matches left (``None`` = unlimited; requests a
    rate budget lets pass are no matches).  ``delay_ms`` sleeps first.
    With ``code`` and/or ``status`` the request is answered with that error
    (status defaults to 400; code to ``InternalFailure`` for 5xx, else
    ``BadRequest``); without either it is passed on to moto after the delay.

    ``body`` (exclusive with ``code``/``status``; combines with the selectors,
    ``times`` and ``delay_ms``) damages a *successful* answer instead, so that
    it still looks like one (see :data:`BODY_FAULTS`), e.g.
    ``{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": 2,
    "times": 1, "body": "repeat-marker"}``:

    * ``"truncate"``: the body cut right after about half of its
      ``</member>`` tags (at least one kept; none: cut at half its length),
      with a Content-Length matching the cut body: the framing is fine, the
      document is not (``IsTruncated``, ``Marker`` and the closing tags lost).
    * ``"truncated-without-marker"``: ``<IsTruncated>true</IsTruncated>``
      (added at the end of the ``...Result`` element if absent) and no
      ``<Marker>``.
    * ``"repeat-marker"``: ``IsTruncated`` true and the request's own
      ``Marker`` given back as the next one.  A request without a Marker
      (page 1) passes unchanged; the match still uses up a ``times``.
    * ``"reset"``: the status line and headers with the full Content-Length,
      the first half of the body, then a TCP reset (RST, no FIN).
    * ``"empty"``: HTTP 200, the protocol's Content-Type, Content-Length 0;
      moto is not called.

    An answer that is not a 200 (or, for the two Marker faults, not a
    query-protocol XML document) passes unchanged; every match uses up a
    ``times``.  Every changed body gets its own Content-Length.
    """

    service: str | None = None
    action: str | None = None
    page: int | None = None
    times: int | None = None  # None: forever; else remaining matches
    status: int | None = None
    code: str | None = None
    message: str | None = None
    delay_ms: float | None = None
    body: str | None = None
    per_second: int | None = None
    params: dict[str, str] | None = None
    path_contains: str | None = None

    def __post_init__(self) -> None:
        # Not a field: the window is the rule's state, not part of what was posted.
        self._window = RateWindow()

    @classmethod
    def from_json(cls, raw: Any) -> FaultRule:
        if not isinstance(raw, dict):
            raise ValueError("each fault rule must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown fault rule keys: {unknown}")
        rule = cls(**raw)
        rule._validate()
        return rule

    def _validate(self) -> None:
        def check(name: str, ok: bool, want: str) -> None:
            if getattr(self, name) is not None and not ok:
                raise ValueError(f"fault rule {name!r} must be {want}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        check("service", isinstance(self.service, str), "a string")
        check("action", isinstance(self.action, str), "a string")
        check("code", isinstance(self.code, str), "a string")
        check("message", isinstance(self.message, str), "a string")
        check("page", is_int(self.page) and self.page >= 1, "an integer >= 1")
        check("times", is_int(self.times) and self.times >= 1, "an integer >= 1")
        check("per_second", is_int(self.per_second) and self.per_second >= 1, "an integer >= 1")
        check("path_contains", isinstance(self.path_contains, str) and self.path_contains != "",
              "a non-empty string")
        check(
            "params",
            isinstance(self.params, dict) and bool(self.params)
            and all(isinstance(v, str) for v in self.params.values()),
            "a non-empty JSON object of strings",
        )
        check("status", is_int(self.status) and 100 <= self.status <= 599, "an HTTP status")
        check(
            "delay_ms",
            isinstance(self.delay_ms, (int, float))
            and not isinstance(self.delay_ms, bool)
            and 0 <= self.delay_ms <= 600_000,
            "a number of milliseconds (0..600000)",
        )
        if self.body is not None and self.body not in BODY_FAULTS:
            raise ValueError(f"fault rule 'body' must be one of {list(BODY_FAULTS)}")
        if self.body is not None and (self.code is not None or self.status is not None):
            raise ValueError(
                "fault rule 'body' damages a successful answer: it cannot be combined with "
                "'code' or 'status' (which answer with an error)"
            )
        if (self.code is None and self.status is None and self.delay_ms is None
                and self.body is None):
            raise ValueError("fault rule needs at least one of code, status, delay_ms, body")

    @property
    def injects_error(self) -> bool:
        return self.code is not None or self.status is not None

    def matches(self, req: AwsRequest) -> bool:
        if self.service is not None and self.service.lower() != req.service:
            return False
        if self.action is not None and self.action != req.action:
            return False
        if self.page is not None and self.page != req.page:
            return False
        if self.path_contains is not None and self.path_contains not in req.path:
            return False
        if self.params is not None and any(req.param(k) != v for k, v in self.params.items()):
            return False
        return True

    def over_budget(self, now: float) -> bool:
        """Counts a request this rule selects against ``per_second``; whether it is beyond
        the budget (always true without one).  Called under the injector's lock."""
        return self.per_second is None or self._window.count(now) > self.per_second


class RateWindow:
    """Requests counted in a one-second window that opens with the first request after the
    previous window closed (not aligned to the clock, so a burst is never split in two)."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._count = 0

    def count(self, now: float) -> int:
        """Counts one request at ``now`` (monotonic seconds); the count in its window so far."""
        if self._start is None or now - self._start >= 1.0:
            self._start, self._count = now, 0
        self._count += 1
        return self._count


BODY_FAULTS = ("truncate", "truncated-without-marker", "repeat-marker", "reset", "empty")
_MEMBER_END = b"</member>"
_ROOT_RE = re.compile(rb"<(\w+)Response[\s>]")  # <ActionResponse xmlns=...>
_IS_TRUNCATED_TRUE = b"<IsTruncated>true</IsTruncated>"


def truncate_body(body: bytes) -> bytes:
    """The body cut right after about half of its ``</member>`` tags (at least one kept when
    there are any); without any, cut at half its length."""
    ends = [m.end() for m in re.finditer(re.escape(_MEMBER_END), body)]
    if not ends:
        return body[: len(body) // 2]
    keep = max(1, len(ends) // 2)
    return body[: ends[keep - 1]]


def _result_close(body: bytes) -> int | None:
    """Offset of the ``</ActionResult>`` closing tag of a query-protocol answer
    (``<ActionResponse><ActionResult>...</ActionResult><ResponseMetadata>...``), or ``None``."""
    root = _ROOT_RE.search(body)
    if root is None:
        return None
    at = body.rfind(b"</" + root.group(1) + b"Result>")
    return at if at >= 0 else None


def _last_element(body: bytes, name: bytes, end: int) -> re.Match[bytes] | None:
    """The last ``<name>...</name>`` element (text content only) ending before ``end``.

    The result's own ``IsTruncated``/``Marker`` come after its lists in every AWS output
    shape, so the last one inside the ``...Result`` element is the result's, not a nested one.
    """
    found = None
    for m in re.finditer(rb"<" + name + rb">[^<]*</" + name + rb">", body[:end]):
        found = m
    return found


def _set_truncated(body: bytes) -> bytes | None:
    """``<IsTruncated>true</IsTruncated>`` in the result, added at the end of the ``...Result``
    element if absent; ``None`` if ``body`` is not a query-protocol answer with a result."""
    end = _result_close(body)
    if end is None:
        return None
    m = _last_element(body, b"IsTruncated", end)
    if m is None:
        return body[:end] + _IS_TRUNCATED_TRUE + body[end:]
    return body[: m.start()] + _IS_TRUNCATED_TRUE + body[m.end():]


def without_marker(body: bytes) -> bytes | None:
    """The answer says more pages follow but gives no Marker (``None``: not applicable)."""
    end = _result_close(body)
    if end is None:
        return None
    m = _last_element(body, b"Marker", end)
    if m is not None:
        body = body[: m.start()] + body[m.end():]
    return _set_truncated(body)


def with_marker(body: bytes, marker: str) -> bytes | None:
    """The answer says more pages follow and gives ``marker`` as the next page's Marker
    (``None``: not applicable)."""
    flagged = _set_truncated(body)
    end = _result_close(flagged) if flagged is not None else None
    if flagged is None or end is None:
        return None
    element = b"<Marker>" + escape(marker).encode() + b"</Marker>"
    m = _last_element(flagged, b"Marker", end)
    if m is not None:
        return flagged[: m.start()] + element + flagged[m.end():]
    flag = _last_element(flagged, b"IsTruncated", end)
    at = flag.end() if flag is not None else end  # flag: _set_truncated put it there
    return flagged[:at] + element + flagged[at:]


class FaultInjector:
    """Thread-safe rule set; the first matching rule wins and uses up a ``times``.

    The server is threaded: selection, rate windows and ``times`` all change under one lock,
    so concurrent requests are counted exactly once each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def replace(self, raw_rules: Any) -> None:
        if not isinstance(raw_rules, list):
            raise ValueError("faults must be a JSON list of rules")
        rules = [FaultRule.from_json(r) for r in raw_rules]
        with self._lock:
            self._rules = rules

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self._rules]

    def take(self, req: AwsRequest) -> FaultRule | None:
        now = time.monotonic()
        with self._lock:
            for rule in self._rules:
                if rule.matches(req) and rule.over_budget(now):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self._rules.remove(rule)
                    return rule
        return None


def render_error(
    req: AwsRequest, status: int, code: str, message: str
) -> tuple[list[tuple[str, str]], bytes]:
    """Error headers and body in the wire protocol of ``req``'s service."""
    request_id = str(uuid.uuid4())
    if req.protocol == "json":
        # awsJson1_0 / awsJson1_1 (SSM is 1.1): answer in the request's flavour.
        ctype = req.content_type if req.content_type.startswith("application/x-amz-json") \
            else "application/x-amz-json-1.1"
        headers = [
            ("Content-Type", ctype),
            ("x-amzn-ErrorType", code),
            ("x-amzn-RequestId", request_id),
        ]
        return headers, json.dumps({"__type": code, "message": message}).encode()
    if req.protocol == "query":
        # Query protocol (IAM, STS, ...).
        ns = QUERY_NAMESPACES.get(req.service, f"https://{req.service}.amazonaws.com/doc/")
        err_type = "Receiver" if status >= 500 else "Sender"
        body = (
            f'<ErrorResponse xmlns="{ns}"><Error><Type>{err_type}</Type>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], body.encode()
    # REST-XML (S3).
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{request_id}</RequestId></Error>"
    )
    return [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)], body.encode()


def _success_content_type(req: AwsRequest) -> str:
    """The Content-Type of a successful answer in ``req``'s wire protocol."""
    if req.protocol == "query":
        return "text/xml"
    if req.protocol == "json":
        return req.content_type if req.content_type.startswith("application/x-amz-json") \
            else "application/x-amz-json-1.1"
    return "application/xml"


def _damage(fault: str, req: AwsRequest, body: bytes) -> tuple[bytes | None, str]:
    """``body`` damaged by ``fault`` (for ``reset``: unchanged, the socket is what breaks), or
    ``None`` and why the fault does not apply to this answer."""
    if fault == "reset":
        return body, ""
    if fault == "truncate":
        return truncate_body(body), ""
    if fault == "truncated-without-marker":
        return without_marker(body), "not a query-protocol answer with a ...Result element"
    if fault == "repeat-marker":
        marker = req.params.get("Marker")
        if not marker:
            return None, "the request has no Marker"
        return with_marker(body, marker), "not a query-protocol answer with a ...Result element"
    raise AssertionError(f"unhandled body fault {fault!r}")
