"""Which AWS service and action a request is (`service:Action`)."""

from __future__ import annotations

import gzip
import io
import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs


from moto.moto_server.werkzeug_app import UNSIGNED_ACTIONS
from .iam_pages import GAAD_ACTION, gaad_page_number


_SCOPE_RE = re.compile(r"Credential=([^,\s]+)")


@dataclass
class AwsRequest:
    """What the middleware knows about one AWS API request."""

    service: str
    action: str
    protocol: str  # "json" (X-Amz-Target), "query" (Action=...) or "rest"
    params: dict[str, str]  # query-string and form parameters
    content_type: str
    path: str = ""  # the request path, percent-decoded (S3 path style: /bucket/key)
    json_body: bytes = b""  # the body of a "json" request, parsed only when a rule asks

    @property
    def key(self) -> str:
        return f"{self.service}:{self.action}"

    @property
    def page(self) -> int | None:
        """Page number, defined for GetAccountAuthorizationDetails only."""
        if self.service == "iam" and self.action == GAAD_ACTION:
            return gaad_page_number(self.params.get("MaxItems"), self.params.get("Marker"))
        return None

    @cached_property
    def json_members(self) -> dict[str, str]:
        """The top-level scalar members of a JSON request body as strings (booleans ``true`` /
        ``false``, numbers as JSON writes them); lists and objects left out.  Parsed on first
        use: only fault rules with ``params`` need it, and bodies such as PutInventory's can be
        large."""
        try:
            doc = json.loads(self.json_body) if self.json_body else None
        except ValueError:
            return {}
        if not isinstance(doc, dict):
            return {}
        return {k: v if isinstance(v, str) else json.dumps(v)
                for k, v in doc.items() if isinstance(v, (str, int, float, bool))}

    def param(self, name: str) -> str | None:
        """A request parameter: from the query string or form, else (JSON protocol) a top-level
        member of the body."""
        if name in self.params:
            return self.params[name]
        if self.protocol == "json":
            return self.json_members.get(name)
        return None


def _service_from_scope(scope: str) -> str | None:
    # AKID/DATE/REGION/SERVICE/aws4_request
    parts = scope.split("/")
    if len(parts) == 5 and parts[4] == "aws4_request":
        return parts[3].lower()
    return None


def _read_and_rewind_body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put an equivalent stream back for moto.

    werkzeug hands us the socket's file object as ``wsgi.input``; once read it
    cannot be read again, so we substitute a ``BytesIO`` and fix
    ``CONTENT_LENGTH`` to match what we actually read.
    """
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length >= 0:
        body = stream.read(length) if length else b""
    elif environ.get("wsgi.input_terminated"):  # chunked: read to the end
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _decoded_body(environ: dict[str, Any]) -> bytes:
    """The request body (read and put back for moto), gunzipped if it says so."""
    body = _read_and_rewind_body(environ)
    if environ.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError):
            pass
    return body


def _request_path(environ: dict[str, Any]) -> str:
    # WSGI hands PATH_INFO over percent-decoded, as latin-1 text of the raw bytes.
    return environ.get("PATH_INFO", "").encode("latin-1", "replace").decode("utf-8", "replace")


def identify_request(environ: dict[str, Any]) -> AwsRequest:
    """Work out ``service`` and ``action`` of a request (see module doc)."""
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    content_type = environ.get("CONTENT_TYPE", "")

    service = None
    match = _SCOPE_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match:
        service = _service_from_scope(match.group(1))
    elif "X-Amz-Credential" in query:  # presigned URL
        service = _service_from_scope(query["X-Amz-Credential"][0])

    params: dict[str, str] = {k: v[0] for k, v in query.items()}
    json_body = b""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:  # AmazonSSM.GetDocument -> GetDocument
        action, protocol = target.rsplit(".", 1)[-1], "json"
        json_body = _decoded_body(environ)
    else:
        if content_type.startswith("application/x-www-form-urlencoded"):
            body = _decoded_body(environ)
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            params.update({k: v[0] for k, v in form.items()})
        if params.get("Action"):
            action, protocol = params["Action"], "query"
        else:
            action, protocol = environ.get("REQUEST_METHOD", "GET"), "rest"

    if service is None:
        service = UNSIGNED_ACTIONS.get(action, ("unknown",))[0]
    return AwsRequest(service, action, protocol, params, content_type,
                      path=_request_path(environ), json_body=json_body)
