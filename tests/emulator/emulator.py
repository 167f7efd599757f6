#!/usr/bin/env python3
"""AWS + EC2 instance-metadata emulator for ssm-companion's tests and demo.

One process, two loopback listeners:

* **moto** (the AWS emulator), run in-process as a WSGI app behind our own
  middleware and served by werkzeug's threaded server.  The middleware
  - identifies each request as ``service:Action`` (service from the SigV4
    credential scope, action from ``X-Amz-Target``, the form-encoded
    ``Action=`` parameter, or the HTTP method for REST services such as S3),
  - counts them (``GET /_emulator/stats``, ``POST /_emulator/stats/reset``),
  - injects faults (``POST /_emulator/faults``): an error in the service's own
    wire protocol (so the SDKs parse the error code), a delay, or both, or a
    successful answer damaged so that it is partial (cut, mis-paged, reset
    mid-body, empty).

* **a strict IMDSv2 stub** (stdlib ``ThreadingHTTPServer``) that behaves like
  EC2's instance metadata service with ``HttpTokens=required``: a session
  token from ``PUT /latest/api/token`` is needed for every GET, tokens expire,
  ``X-Forwarded-For`` on the token PUT is refused, and the TTL header is echoed
  (the Rust AWS SDK insists on that).  Control endpoints live under
  ``/_emulator/imds/`` on the same port.

What we extend in moto, and why
-------------------------------
moto 5.2.5's ``iam:GetAccountAuthorizationDetails`` ignores ``MaxItems`` and
``Marker`` and always returns everything with ``IsTruncated=false``.  The
daemon pages through that call, so the emulator replaces the handler with one
that really paginates (see :func:`install_moto_extensions`).  moto's
dispatcher calls the method named after the action in snake_case on the
service's response class (``IamResponse``), so assigning a new function to
that class attribute is enough.

moto's serialiser also leaves ``PolicyName``/``PolicyId`` out of the
``Policies`` entries of that call; the replacement supplies them.

moto 5.2.5 has no SSM Inventory at all (``PutInventory``, ``GetInventory`` and
``ListInventoryEntries`` answer 500).  :func:`install_ssm_inventory` adds the
three to ``SimpleSystemManagerResponse`` the same way, keeping the data in an
:class:`InventoryStore` of ours.  Importing moto's SSM module costs ~0.6 s (it
pulls in moto.ec2), so the middleware installs them on the first SSM request
instead of at startup.  What they do:

* ``PutInventory`` validates like AWS: ``InstanceId`` pattern
  (``InvalidInstanceId``); 1..30 ``Items``, ``SchemaVersion`` and
  ``CaptureTime`` patterns, ``ContentHash`` <= 256 (``ValidationException``);
  ``TypeName`` 1..100 chars, ``AWS:``/``Custom:``, ``Custom:`` followed by an
  upper-case letter, ``AWS:`` only the known AWS types
  (``InvalidTypeNameException``); ``Content`` <= 10,000 maps of <= 50 string
  attributes, names 1..64, values <= 4096 chars
  (``InvalidItemContentException``); at most 20 custom type names in the
  account (``CustomSchemaCountLimitExceededException``); an attribute name
  differing only in case from one already seen for that custom type
  (``ItemContentMismatchException``; AWS documents no exact rule, so this is
  our reading; new attribute names are accepted).  A call is all or nothing.  An item
  whose ``ContentHash`` equals the stored one is skipped, as AWS does (counted).
* ``GetInventory``: ``Filters`` on ``AWS:InstanceInformation.InstanceId`` or
  ``<TypeName>.<Attribute>`` (any content entry matching; all six operators),
  ``ResultAttributes`` (only instances having that type, only that type in
  ``Data``), ``MaxResults`` 1..50 (default 50), opaque ``NextToken``; entities
  in instance-id order.  No ``Aggregators``; no synthetic
  ``AWS:InstanceInformation`` (instances appear only once they put inventory).
* ``ListInventoryEntries``: ``Filters`` (``Attribute`` or
  ``<TypeName>.<Attribute>``), ``MaxResults``, ``NextToken``; an instance or
  type without inventory gives ``Entries: []``.

Items are kept per region (from the SigV4 scope), instance and type; the
custom type names and their attribute names are account-wide.

Control endpoints
-----------------
On the moto port (everything else is passed to moto, including moto's own
``/moto-api/reset``, which wipes all emulated AWS state):

* ``GET /_emulator/stats`` -> ``{"iam:GetAccountAuthorizationDetails": 3, ...}``
* ``POST /_emulator/stats/reset``
* ``GET /_emulator/faults``, ``POST /_emulator/faults`` with a JSON list of
  rules (replaces the set; ``[]`` clears), see :class:`FaultRule`, e.g.
  ``{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": 2,
  "times": 1, "status": 400, "code": "Throttling", "message": "Rate exceeded",
  "delay_ms": 0}``, or one that damages a successful answer instead:
  ``{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": 2,
  "times": 1, "body": "truncate"}`` (``body``, exclusive with ``code`` and
  ``status``: ``truncate`` = the XML cut after about half of its
  ``</member>`` tags, Content-Length matching; ``truncated-without-marker`` =
  ``IsTruncated`` true, no ``Marker``; ``repeat-marker`` = ``IsTruncated``
  true, the request's own ``Marker`` back (requests without one pass);
  ``reset`` = headers with the full Content-Length, half the body, TCP RST;
  ``empty`` = 200 with an empty body, moto not called)
* ``GET /_emulator/inventory`` -> everything PutInventory stored::

      {"inventory": {"us-east-1": {"i-...": {"Custom:X": {"TypeName": ...,
          "SchemaVersion": ..., "CaptureTime": ..., "ContentHash": ... | null,
          "Content": [...], "Context": {...} | null, "Updates": 2,
          "SkippedUnchanged": 1, "UpdatedAt": "...Z"}}}},
       "custom_type_names": ["Custom:X", ...],      # in order of creation
       "schemas": {"Custom:X": ["Attr", ...]},
       "counters": {"put_calls": 3, "items_updated": 2, "items_skipped_unchanged": 1},
       "rejections": {"InvalidTypeNameException": 1, ...}}  # all three actions

* ``POST /_emulator/inventory/reset`` (so does moto's ``/moto-api/reset``)
* any other ``/_emulator/...``: 404 (JSON)

On the IMDS port:

* ``GET /_emulator/imds/stats`` -> ``{"PUT /latest/api/token": 2, ...}``,
  ``POST /_emulator/imds/stats/reset``
* ``GET /_emulator/imds/config``, ``POST /_emulator/imds/config`` (a JSON
  object merged into the live config; keys as in :class:`ImdsConfig`)
* ``GET /_emulator/imds/faults``, ``POST /_emulator/imds/faults`` with
  ``{"mode": null | "delay" | "error500" | "refuse_tokens", "delay_ms": N}``

This relies on moto internals (``DomainDispatcherApplication``,
``create_backend_app``, ``MotoRequestHandler``, ``IamResponse``,
``SimpleSystemManagerResponse``, ``ServiceException``, the backend's
``get_account_authorization_details`` and ``ActionResult`` serialisation), so
moto is pinned to exactly 5.2.5 in ``requirements.txt``.  Review this file
when bumping it.

Usage::

    python emulator.py [--host 127.0.0.1] [--moto-port 0] [--imds-port 0]
                       [--imds-config FILE] [--exit-on-stdin-eof] [--log FILE]

When both listeners are up, exactly one JSON line is printed on stdout:
``{"moto": "http://127.0.0.1:PORT", "imds": "http://127.0.0.1:PORT", "pid": N}``.
Nothing else is ever written to stdout.  The process serves until SIGTERM or
SIGINT (exit status 0), or, with ``--exit-on-stdin-eof``, until stdin closes.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import io
import json
import logging
import os
import re
import secrets
import signal
import socket
import string
import struct
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, Iterable
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

# moto reads some settings from the environment; pick sensible defaults before
# importing it.  Requests carry their region in the SigV4 scope anyway.  The
# account is MOTO_ACCOUNT_ID, which main() defaults to the IMDS config's
# ``account_id`` (default 123456789012, also moto's own default) so that STS
# and the instance identity document agree.  moto accepts any credentials as
# long as INITIAL_NO_AUTH_ACTION_COUNT is left unset (= infinite).
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])

import moto  # noqa: E402
from moto.iam.exceptions import InvalidInput, ValidationError  # noqa: E402
from moto.iam.responses import IamResponse  # noqa: E402
from moto.core.exceptions import ServiceException  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    UNSIGNED_ACTIONS,
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402

if TYPE_CHECKING:  # importing moto.ssm costs ~0.6 s (it pulls in moto.ec2): done lazily
    from moto.ssm.responses import SimpleSystemManagerResponse

PINNED_MOTO_VERSION = "5.2.5"
DEFAULT_ACCOUNT_ID = "123456789012"

log = logging.getLogger("emulator")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=None, sort_keys=True).encode()


def _iso_z(moment: datetime) -> str:
    """ISO-8601 UTC timestamp with a ``Z`` suffix and whole seconds."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------
# moto extension: paginated iam:GetAccountAuthorizationDetails
# ---------------------------------------------------------------------------

GAAD_ACTION = "GetAccountAuthorizationDetails"
GAAD_DEFAULT_MAX_ITEMS = 100
GAAD_MAX_ITEMS_LIMIT = 1000
_MARKER_RE = re.compile(r"offset:(\d+)")


def encode_marker(offset: int) -> str:
    """Opaque pagination marker: base64 of ``offset:N``."""
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def decode_marker(marker: str) -> int:
    """Inverse of :func:`encode_marker`; raises ``ValueError`` if malformed."""
    try:
        text = base64.b64decode(marker, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"undecodable marker {marker!r}") from exc
    match = _MARKER_RE.fullmatch(text)
    if not match:
        raise ValueError(f"undecodable marker {marker!r}")
    return int(match.group(1))


def gaad_page_number(max_items: Any, marker: str | None) -> int | None:
    """Page number (1-based) of a GAAD request, for fault rules.

    Page 1 has no Marker; page k starts at offset (k-1)*MaxItems.  Returns
    ``None`` when the marker is not one of ours.
    """
    if not marker:
        return 1
    try:
        offset = decode_marker(marker)
    except ValueError:
        return None
    try:
        size = int(max_items) if max_items not in (None, "") else GAAD_DEFAULT_MAX_ITEMS
    except (TypeError, ValueError):
        size = GAAD_DEFAULT_MAX_ITEMS
    size = min(max(size, 1), GAAD_MAX_ITEMS_LIMIT)
    return offset // size + 1


def _creation_order(entities: Iterable[Any]) -> list[Any]:
    # moto keeps entities in dicts, i.e. insertion order; sorting (stably) by
    # create_date keeps renamed users (re-inserted by moto) in their place.
    return sorted(entities, key=lambda e: e.create_date)


class _ManagedPolicyDetail:
    """``ManagedPolicyDetail`` view of a moto ``ManagedPolicy``.

    moto's serialiser finds ``PolicyName``/``PolicyId`` on a ``Policy`` object
    only by stripping the class-name prefix (``Policy`` + ``Name`` -> ``name``),
    which fails for the ``ManagedPolicy`` subclass, so moto's own GAAD output
    lacks both.  This proxy supplies them and forwards everything else.
    """

    def __init__(self, policy: Any) -> None:
        self._policy = policy

    @property
    def policy_name(self) -> str:
        return self._policy.name

    @property
    def policy_id(self) -> str:
        return self._policy.id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._policy, name)


def _paginated_get_account_authorization_details(self: IamResponse) -> ActionResult:
    """Replacement for ``IamResponse.get_account_authorization_details``.

    Pages over users, then roles, then groups (each in creation order),
    ``MaxItems`` at a time.  ``Filter`` is honoured by moto's backend method.
    Managed ``Policies`` are only returned on the first page.
    """
    filter_param = self._get_param("Filter") or []
    max_items = self._get_param("MaxItems")
    marker = self._get_param("Marker")

    if max_items is None:
        max_items = GAAD_DEFAULT_MAX_ITEMS
    max_items = int(max_items)
    if not 1 <= max_items <= GAAD_MAX_ITEMS_LIMIT:
        raise ValidationError(
            f"1 validation error detected: Value '{max_items}' at 'maxItems' "
            f"failed to satisfy constraint: Member must have value between 1 "
            f"and {GAAD_MAX_ITEMS_LIMIT}"
        )
    offset = 0
    if marker:
        try:
            offset = decode_marker(marker)
        except ValueError:
            raise InvalidInput("Invalid Marker.") from None

    details = self.backend.get_account_authorization_details(filter_param)
    principals: list[tuple[str, Any]] = [
        (list_key, entity)
        for list_key, kind in (
            ("UserDetailList", "users"),
            ("RoleDetailList", "roles"),
            ("GroupDetailList", "groups"),
        )
        for entity in _creation_order(details[kind])
    ]
    page = principals[offset : offset + max_items]
    result: dict[str, Any] = {
        "UserDetailList": [e for k, e in page if k == "UserDetailList"],
        "GroupDetailList": [e for k, e in page if k == "GroupDetailList"],
        "RoleDetailList": [e for k, e in page if k == "RoleDetailList"],
        "Policies": (
            [_ManagedPolicyDetail(p) for p in details["managed_policies"]] if offset == 0 else []
        ),
        "IsTruncated": offset + max_items < len(principals),
    }
    if result["IsTruncated"]:
        result["Marker"] = encode_marker(offset + max_items)
    # ActionResult hands the dict to moto's protocol serialiser, which walks
    # the botocore output shape and picks attributes off the model objects
    # (User, Role, Group, ManagedPolicy) - the same path moto's own handler
    # takes, so the entries look exactly like moto's unpaginated ones.
    return ActionResult(result)


def install_moto_extensions() -> None:
    """Patch moto's response classes where it lacks what the daemon needs."""
    if moto.__version__ != PINNED_MOTO_VERSION:
        log.warning(
            "moto %s found, the emulator is written against %s; "
            "its extensions may not work",
            moto.__version__,
            PINNED_MOTO_VERSION,
        )
    # Must be a plain function on the class: moto's dispatcher looks the
    # action up with inspect.getmembers(cls, inspect.isfunction).
    IamResponse.get_account_authorization_details = (  # type: ignore[method-assign]
        _paginated_get_account_authorization_details
    )


# ---------------------------------------------------------------------------
# moto extension: SSM Inventory (PutInventory, GetInventory, ListInventoryEntries)
# ---------------------------------------------------------------------------

# Constraints from the SSM API reference (API_PutInventory, API_InventoryItem,
# API_GetInventory, API_ListInventoryEntries) and botocore's service model.
# re.ASCII: AWS's patterns are Java regexes, whose \w is ASCII-only.
INSTANCE_ID_RE = re.compile(r"(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)", re.ASCII)
TYPE_NAME_RE = re.compile(r"(AWS|Custom):.*")
SCHEMA_VERSION_RE = re.compile(r"([0-9]{1,6})(\.[0-9]{1,6})")
CAPTURE_TIME_RE = re.compile(
    r"(20)[0-9][0-9]-(0[1-9]|1[012])-([12][0-9]|3[01]|0[1-9])"
    r"T(2[0-3]|[0-1][0-9]):[0-5][0-9]:[0-5][0-9]Z"
)
TYPE_NAME_MAX_LEN = 100
PUT_MAX_ITEMS = 30
CONTENT_MAX_ENTRIES = 10_000
ENTRY_MAX_ATTRIBUTES = 50
ATTRIBUTE_NAME_MAX_LEN = 64
ATTRIBUTE_VALUE_MAX_LEN = 4096
CONTENT_HASH_MAX_LEN = 256
CONTEXT_MAX_ENTRIES = 50
CUSTOM_TYPE_LIMIT = 20  # "a maximum of 20 custom inventory types per AWS account"
INVENTORY_MAX_RESULTS = 50  # MaxResults is 1..50; AWS documents no default
FILTER_LIST_MAX = 5
FILTER_VALUES_MAX = 40
FILTER_OPERATORS = ("Equal", "NotEqual", "BeginWith", "LessThan", "GreaterThan", "Exists")
# The AWS-defined inventory types (GetInventorySchema); PutInventory refuses
# other "AWS:" names.
KNOWN_AWS_TYPES = frozenset({
    "AWS:AWSComponent", "AWS:Application", "AWS:BillingInfo", "AWS:ComplianceItem",
    "AWS:ComplianceSummary", "AWS:File", "AWS:InstanceDetailedInformation",
    "AWS:InstanceInformation", "AWS:Network", "AWS:PatchSummary", "AWS:ResourceGroup",
    "AWS:Service", "AWS:Tag", "AWS:WindowsRegistry", "AWS:WindowsRole", "AWS:WindowsUpdate",
})


# Error classes: moto serialises any ServiceException with the error shape of
# the same code from the SSM model (status 400, TypeName member, ...).  They
# derive from ServiceException rather than moto.ssm.exceptions.SSMException
# only to keep moto.ssm out of the startup imports.
class SsmValidationException(ServiceException):
    code = "ValidationException"


class InvalidInstanceIdError(ServiceException):
    code = "InvalidInstanceId"


class InvalidTypeNameError(ServiceException):
    code = "InvalidTypeNameException"


class _TypedInventoryError(ServiceException):
    """An error whose model has a ``TypeName`` member besides ``Message``."""

    def __init__(self, message: str, type_name: str | None = None) -> None:
        super().__init__(message)
        self.type_name = type_name  # moto's serialiser picks TypeName/type_name


class InvalidItemContentError(_TypedInventoryError):
    code = "InvalidItemContentException"


class ItemContentMismatchError(_TypedInventoryError):
    code = "ItemContentMismatchException"


class CustomSchemaCountLimitExceededError(ServiceException):
    code = "CustomSchemaCountLimitExceededException"


class InvalidNextTokenError(ServiceException):
    code = "InvalidNextToken"
    message = "The specified token isn't valid."


class InvalidFilterError(ServiceException):
    code = "InvalidFilter"


class InvalidAggregatorError(ServiceException):
    code = "InvalidAggregatorException"


def _constraint_error(value: Any, where: str, constraint: str) -> SsmValidationException:
    """A ``ValidationException`` worded like AWS's model-constraint errors."""
    shown = value if isinstance(value, str) else json.dumps(value)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return SsmValidationException(
        f"1 validation error detected: Value '{shown}' at '{where}' failed to satisfy "
        f"constraint: {constraint}"
    )


def _require_str(value: Any, where: str) -> str:
    if value is None:
        raise _constraint_error("null", where, "Member must not be null")
    if not isinstance(value, str):
        raise _constraint_error(value, where, "Member must be a string")
    return value


def _check_instance_id(value: Any, where: str = "instanceId") -> str:
    instance_id = _require_str(value, where)
    if not INSTANCE_ID_RE.fullmatch(instance_id):  # fullmatch: "$" would allow a final "\n"
        raise InvalidInstanceIdError(f"Instance Id {instance_id} is not valid.")
    return instance_id


def _check_type_name(value: Any, where: str, for_put: bool) -> str:
    """Length/pattern of an inventory type name; custom names need ``Custom:[A-Z]...``."""
    type_name = _require_str(value, where)
    if not 1 <= len(type_name) <= TYPE_NAME_MAX_LEN or not TYPE_NAME_RE.fullmatch(type_name):
        raise InvalidTypeNameError(
            f"The type name {type_name!r} is not valid: it must be 1 to {TYPE_NAME_MAX_LEN} "
            "characters and start with 'AWS:' or 'Custom:'."
        )
    prefix, rest = type_name.split(":", 1)
    if prefix == "Custom" and not "A" <= rest[:1] <= "Z":
        raise InvalidTypeNameError(
            f"The type name {type_name!r} is not valid: a custom type name must start with "
            "an upper-case letter after 'Custom:'."
        )
    if for_put and prefix == "AWS" and type_name not in KNOWN_AWS_TYPES:
        raise InvalidTypeNameError(
            f"The type name {type_name!r} is not a known AWS inventory type.")
    return type_name


def _check_max_results(value: Any) -> int:
    if value is None:
        return INVENTORY_MAX_RESULTS
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 1 <= value <= INVENTORY_MAX_RESULTS:
        raise _constraint_error(
            value, "maxResults",
            f"Member must have value less than or equal to {INVENTORY_MAX_RESULTS} "
            "and greater than or equal to 1",
        )
    return value


def _validate_content(type_name: str, content: Any, where: str) -> list[dict[str, str]]:
    def bad(why: str) -> InvalidItemContentError:
        return InvalidItemContentError(f"Inventory item {type_name} has invalid content: {why}",
                                       type_name)

    if content is None:
        return []
    if not isinstance(content, list):
        raise bad(f"{where} must be a list of maps")
    if len(content) > CONTENT_MAX_ENTRIES:
        raise bad(f"{where} has {len(content)} entries, more than {CONTENT_MAX_ENTRIES}")
    for index, entry in enumerate(content, 1):
        if not isinstance(entry, dict):
            raise bad(f"entry {index} is not a map")
        if len(entry) > ENTRY_MAX_ATTRIBUTES:
            raise bad(f"entry {index} has {len(entry)} attributes, "
                      f"more than {ENTRY_MAX_ATTRIBUTES}")
        for name, value in entry.items():
            if not 1 <= len(name) <= ATTRIBUTE_NAME_MAX_LEN:
                raise bad(f"entry {index}: attribute name {name!r} must be 1 to "
                          f"{ATTRIBUTE_NAME_MAX_LEN} characters")
            if not isinstance(value, str):
                raise bad(f"entry {index}: attribute {name!r} must have a string value")
            if len(value) > ATTRIBUTE_VALUE_MAX_LEN:
                raise bad(f"entry {index}: the value of attribute {name!r} is longer than "
                          f"{ATTRIBUTE_VALUE_MAX_LEN} characters")
    return content


@dataclass
class InventoryItemIn:
    """One validated item of a PutInventory request."""

    type_name: str
    schema_version: str
    capture_time: str
    content_hash: str | None
    content: list[dict[str, str]]
    context: dict[str, str] | None


def validate_put_inventory(body: dict[str, Any]) -> tuple[str, list[InventoryItemIn]]:
    """Check a PutInventory request as AWS does; returns (InstanceId, items)."""
    instance_id = _check_instance_id(body.get("InstanceId"))
    raw_items = body.get("Items")
    if raw_items is None:
        raise _constraint_error("null", "items", "Member must not be null")
    if not isinstance(raw_items, list) or not 1 <= len(raw_items) <= PUT_MAX_ITEMS:
        raise _constraint_error(
            raw_items, "items",
            f"Member must have length less than or equal to {PUT_MAX_ITEMS} and greater "
            "than or equal to 1",
        )
    items = []
    for index, raw in enumerate(raw_items, 1):
        where = f"items.{index}.member"
        if not isinstance(raw, dict):
            raise _constraint_error(raw, where, "Member must be a structure")
        type_name = _check_type_name(raw.get("TypeName"), f"{where}.typeName", for_put=True)
        schema_version = _require_str(raw.get("SchemaVersion"), f"{where}.schemaVersion")
        if not SCHEMA_VERSION_RE.fullmatch(schema_version):
            raise _constraint_error(schema_version, f"{where}.schemaVersion",
                                    "Member must satisfy regular expression pattern: "
                                    r"^([0-9]{1,6})(\.[0-9]{1,6})$")
        capture_time = _require_str(raw.get("CaptureTime"), f"{where}.captureTime")
        if not CAPTURE_TIME_RE.fullmatch(capture_time):
            raise _constraint_error(capture_time, f"{where}.captureTime",
                                    "Member must satisfy regular expression pattern: "
                                    "yyyy-MM-ddTHH:mm:ssZ (UTC)")
        content_hash = raw.get("ContentHash")
        if content_hash is not None:
            _require_str(content_hash, f"{where}.contentHash")
            if len(content_hash) > CONTENT_HASH_MAX_LEN:
                raise _constraint_error(content_hash, f"{where}.contentHash",
                                        f"Member must have length less than or equal to "
                                        f"{CONTENT_HASH_MAX_LEN}")
        context = raw.get("Context")
        if context is not None and (
            not isinstance(context, dict) or len(context) > CONTEXT_MAX_ENTRIES
            or not all(isinstance(v, str) for v in context.values())
        ):
            raise _constraint_error(context, f"{where}.context", "Member must be a map of "
                                    f"at most {CONTEXT_MAX_ENTRIES} strings")
        content = _validate_content(type_name, raw.get("Content"), f"{where}.content")
        items.append(InventoryItemIn(type_name, schema_version, capture_time, content_hash,
                                     content, context))
    return instance_id, items


@dataclass
class InventoryEntry:
    """What the store keeps per instance and type."""

    type_name: str
    schema_version: str
    capture_time: str
    content_hash: str | None
    content: list[dict[str, str]]
    context: dict[str, str] | None
    updates: int = 1
    skipped_unchanged: int = 0
    updated_at: str = ""

    def result_item(self) -> dict[str, Any]:
        """An ``InventoryResultItem`` (ContentHash only if the writer sent one)."""
        item: dict[str, Any] = {
            "TypeName": self.type_name,
            "SchemaVersion": self.schema_version,
            "CaptureTime": self.capture_time,
            "Content": [dict(e) for e in self.content],
        }
        if self.content_hash is not None:
            item["ContentHash"] = self.content_hash
        return item

    def dump(self) -> dict[str, Any]:
        return {
            "TypeName": self.type_name,
            "SchemaVersion": self.schema_version,
            "CaptureTime": self.capture_time,
            "ContentHash": self.content_hash,
            "Content": [dict(e) for e in self.content],
            "Context": dict(self.context) if self.context is not None else None,
            "Updates": self.updates,
            "SkippedUnchanged": self.skipped_unchanged,
            "UpdatedAt": self.updated_at,
        }


class InventoryStore:
    """Thread-safe inventory of the emulated account.

    Items live per region, instance and type name.  The custom type names and
    their attribute names (the inferred "schema") are account-wide, as is the
    custom type limit; the emulator serves a single account.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            # region -> instance id -> type name -> entry
            self._items: dict[str, dict[str, dict[str, InventoryEntry]]] = {}
            # custom type name -> {lower-cased attribute name: attribute name}
            self._schemas: dict[str, dict[str, str]] = {}
            self._counters: Counter[str] = Counter()
            self._rejections: Counter[str] = Counter()

    def note_rejection(self, code: str) -> None:
        with self._lock:
            self._rejections[code] += 1

    def put(self, region: str, instance_id: str, items: list[InventoryItemIn]) -> tuple[int, int]:
        """Store ``items`` atomically; returns (updated, skipped as unchanged)."""
        with self._lock:
            new_types = []
            schemas = {}
            for item in items:
                if not item.type_name.startswith("Custom:"):
                    continue
                if item.type_name not in self._schemas and item.type_name not in new_types:
                    new_types.append(item.type_name)
                schema = schemas.setdefault(item.type_name,
                                            dict(self._schemas.get(item.type_name, {})))
                for entry in item.content:
                    for name in entry:
                        known = schema.setdefault(name.lower(), name)
                        if known != name:
                            raise ItemContentMismatchError(
                                f"Inventory item {item.type_name}: attribute {name!r} differs "
                                f"only in case from the existing attribute {known!r}.",
                                item.type_name,
                            )
            if len(self._schemas) + len(new_types) > CUSTOM_TYPE_LIMIT:
                raise CustomSchemaCountLimitExceededError(
                    f"You have exceeded the limit of {CUSTOM_TYPE_LIMIT} custom inventory types "
                    f"({len(self._schemas)} exist, this request adds {len(new_types)})."
                )
            self._schemas.update(schemas)

            instance = self._items.setdefault(region, {}).setdefault(instance_id, {})
            now = _iso_z(datetime.now(timezone.utc))
            updated = skipped = 0
            for item in items:
                old = instance.get(item.type_name)
                if old is not None and item.content_hash is not None \
                        and item.content_hash == old.content_hash:
                    old.skipped_unchanged += 1
                    skipped += 1
                    continue
                instance[item.type_name] = InventoryEntry(
                    item.type_name, item.schema_version, item.capture_time, item.content_hash,
                    [dict(e) for e in item.content],
                    dict(item.context) if item.context is not None else None,
                    updates=(old.updates + 1) if old else 1,
                    skipped_unchanged=old.skipped_unchanged if old else 0,
                    updated_at=now,
                )
                updated += 1
            self._counters["put_calls"] += 1
            self._counters["items_updated"] += updated
            self._counters["items_skipped_unchanged"] += skipped
            return updated, skipped

    def region_snapshot(self, region: str) -> dict[str, dict[str, InventoryEntry]]:
        """A copy of one region's items.  Entries are replaced on update, never
        changed, except for their ``skipped_unchanged`` counter."""
        with self._lock:
            return {iid: dict(types) for iid, types in self._items.get(region, {}).items()}

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return {
                "inventory": {
                    region: {
                        iid: {t: e.dump() for t, e in sorted(types.items())}
                        for iid, types in sorted(instances.items())
                    }
                    for region, instances in sorted(self._items.items())
                },
                "custom_type_names": list(self._schemas),
                "schemas": {t: sorted(s.values()) for t, s in self._schemas.items()},
                "counters": {
                    "put_calls": self._counters["put_calls"],
                    "items_updated": self._counters["items_updated"],
                    "items_skipped_unchanged": self._counters["items_skipped_unchanged"],
                },
                "rejections": dict(sorted(self._rejections.items())),
            }


INVENTORY_STORE = InventoryStore()


def encode_inventory_token(payload: dict[str, Any]) -> str:
    """Opaque NextToken: base64url of a small JSON object."""
    return base64.urlsafe_b64encode(json.dumps(payload, sort_keys=True).encode()).decode()


def decode_inventory_token(token: Any, op: str) -> dict[str, Any]:
    """Inverse of :func:`encode_inventory_token`; ``InvalidNextToken`` if not ours."""
    try:
        if not isinstance(token, str):
            raise ValueError
        payload = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        if not isinstance(payload, dict) or payload.get("op") != op:
            raise ValueError
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidNextTokenError() from None
    return payload


@dataclass
class InventoryFilter:
    """One ``InventoryFilter``: ``type_name`` ``attribute`` ``operator`` ``values``."""

    type_name: str
    attribute: str
    operator: str
    values: list[str]

    @property
    def on_instance_id(self) -> bool:
        return self.type_name == "AWS:InstanceInformation" and self.attribute == "InstanceId"

    def test(self, value: str | None) -> bool:
        op, values = self.operator, self.values
        if op == "Exists":
            return value is not None
        if value is None:
            return False
        if op == "Equal":
            return value in values
        if op == "NotEqual":
            return value not in values
        if op == "BeginWith":
            return any(value.startswith(v) for v in values)
        # LessThan / GreaterThan: numerically if both sides are numbers.
        try:
            left, right = float(value), float(values[0])
        except ValueError:
            left, right = value, values[0]  # type: ignore[assignment]
        return left < right if op == "LessThan" else left > right

    def test_content(self, content: list[dict[str, str]]) -> bool:
        return any(self.test(entry.get(self.attribute)) for entry in content)


def parse_inventory_filters(raw: Any, bare_keys_as: str | None = None) -> list[InventoryFilter]:
    """Validate ``Filters``; keys are ``TypeName.Attribute`` (or, with
    ``bare_keys_as``, a plain attribute of that type)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not 1 <= len(raw) <= FILTER_LIST_MAX:
        raise _constraint_error(raw, "filters", f"Member must have length less than or equal "
                                f"to {FILTER_LIST_MAX} and greater than or equal to 1")
    filters = []
    for index, spec in enumerate(raw, 1):
        where = f"filters.{index}.member"
        if not isinstance(spec, dict):
            raise _constraint_error(spec, where, "Member must be a structure")
        key = _require_str(spec.get("Key"), f"{where}.key")
        values = spec.get("Values")
        if not isinstance(values, list) or not 1 <= len(values) <= FILTER_VALUES_MAX \
                or not all(isinstance(v, str) for v in values):
            raise _constraint_error(values, f"{where}.values", "Member must be a list of 1 to "
                                    f"{FILTER_VALUES_MAX} strings")
        operator = spec.get("Type") or "Equal"
        if operator not in FILTER_OPERATORS:
            raise _constraint_error(operator, f"{where}.type", "Member must satisfy enum value "
                                    f"set: [{', '.join(FILTER_OPERATORS)}]")
        if bare_keys_as is not None and key.startswith(bare_keys_as + "."):
            type_name, attribute = bare_keys_as, key[len(bare_keys_as) + 1:]
        else:  # an attribute name with dots needs the form above, or no type at all
            type_name, _, attribute = key.rpartition(".")
            if not TYPE_NAME_RE.fullmatch(type_name):
                if bare_keys_as is None:
                    raise InvalidFilterError(f"The filter key {key!r} is not of the form "
                                             "TypeName.AttributeName.")
                type_name, attribute = bare_keys_as, key
        if not attribute:
            raise InvalidFilterError(f"The filter key {key!r} names no attribute.")
        if bare_keys_as is not None and type_name != bare_keys_as:
            raise InvalidFilterError(f"The filter key {key!r} is not an attribute of "
                                     f"{bare_keys_as}.")
        if type_name == "AWS:InstanceInformation" and attribute != "InstanceId":
            raise InvalidFilterError(f"The filter key {key!r} is not supported by the emulator "
                                     f"(of AWS:InstanceInformation only InstanceId is modelled).")
        filters.append(InventoryFilter(type_name, attribute, operator, values))
    return filters


def _request_json(response: Any) -> dict[str, Any]:
    body = response.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body or "{}")
    except ValueError:
        raise SsmValidationException("The request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise SsmValidationException("The request body must be a JSON object.")
    return parsed


def _counting_rejections(store: InventoryStore, handler: Callable[[Any], ActionResult]
                         ) -> Callable[[Any], ActionResult]:
    def method(self: Any) -> ActionResult:
        try:
            return handler(self)
        except ServiceException as exc:
            store.note_rejection(exc.code)
            raise

    method.__name__ = handler.__name__
    method.__doc__ = handler.__doc__
    return method


_ssm_inventory_lock = threading.Lock()
_ssm_inventory_store: InventoryStore | None = None


def install_ssm_inventory(store: InventoryStore = INVENTORY_STORE) -> None:
    """Add PutInventory, GetInventory and ListInventoryEntries to moto's SSM.

    They keep their data in ``store`` (see :class:`InventoryStore`), not in
    moto's SSM backend; ``/moto-api/reset`` and ``/_emulator/inventory/reset``
    both clear it.  Idempotent and thread-safe.  Importing moto's SSM module
    takes ~0.6 s, so :class:`EmulatorMiddleware` calls this on the first SSM
    request rather than at startup (moto itself imports it only then, too).
    """
    global _ssm_inventory_store
    if _ssm_inventory_store is store:  # fast path, no lock
        return
    with _ssm_inventory_lock:
        if _ssm_inventory_store is store:
            return
        from moto.ssm.responses import SimpleSystemManagerResponse

        for name, handler in _ssm_inventory_handlers(store).items():
            # A plain function on the class, as for IAM above.
            setattr(SimpleSystemManagerResponse, name, _counting_rejections(store, handler))
        _ssm_inventory_store = store


def _ssm_inventory_handlers(store: InventoryStore) -> dict[str, Callable[[Any], ActionResult]]:
    """The three handlers, as functions of the response object, bound to ``store``."""

    def put_inventory(self: SimpleSystemManagerResponse) -> ActionResult:
        instance_id, items = validate_put_inventory(_request_json(self))
        updated, skipped = store.put(self.region, instance_id, items)
        log.info("ssm PutInventory %s %s: %d updated, %d unchanged", self.region, instance_id,
                 updated, skipped)
        return ActionResult({})

    def get_inventory(self: SimpleSystemManagerResponse) -> ActionResult:
        body = _request_json(self)
        filters = parse_inventory_filters(body.get("Filters"))
        if body.get("Aggregators") is not None:
            raise InvalidAggregatorError("Aggregators are not supported by the emulator.")
        wanted_type = None
        result_attributes = body.get("ResultAttributes")
        if result_attributes is not None:
            if not isinstance(result_attributes, list) or len(result_attributes) != 1 \
                    or not isinstance(result_attributes[0], dict):
                raise _constraint_error(result_attributes, "resultAttributes",
                                        "Member must have length less than or equal to 1 and "
                                        "greater than or equal to 1")
            wanted_type = _check_type_name(result_attributes[0].get("TypeName"),
                                           "resultAttributes.1.member.typeName", for_put=False)
        max_results = _check_max_results(body.get("MaxResults"))
        after = None
        if body.get("NextToken") is not None:
            after = decode_inventory_token(body["NextToken"], "GetInventory").get("after")
            if not isinstance(after, str):
                raise InvalidNextTokenError()

        entities = []
        for instance_id, types in sorted(store.region_snapshot(self.region).items()):
            if wanted_type is not None and wanted_type not in types:
                continue
            if not all(
                f.test(instance_id) if f.on_instance_id
                else f.type_name in types and f.test_content(types[f.type_name].content)
                for f in filters
            ):
                continue
            shown = {wanted_type: types[wanted_type]} if wanted_type else types
            entities.append({"Id": instance_id,
                             "Data": {t: e.result_item() for t, e in sorted(shown.items())}})
        if after is not None:
            entities = [e for e in entities if e["Id"] > after]
        result: dict[str, Any] = {"Entities": entities[:max_results]}
        if len(entities) > max_results:
            result["NextToken"] = encode_inventory_token(
                {"op": "GetInventory", "after": entities[max_results - 1]["Id"]})
        return ActionResult(result)

    def list_inventory_entries(self: SimpleSystemManagerResponse) -> ActionResult:
        body = _request_json(self)
        instance_id = _check_instance_id(body.get("InstanceId"))
        type_name = _check_type_name(body.get("TypeName"), "typeName", for_put=False)
        filters = parse_inventory_filters(body.get("Filters"), bare_keys_as=type_name)
        max_results = _check_max_results(body.get("MaxResults"))
        offset = 0
        if body.get("NextToken") is not None:
            token = decode_inventory_token(body["NextToken"], "ListInventoryEntries")
            offset = token.get("offset")
            if token.get("instance") != instance_id or token.get("type") != type_name \
                    or isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise InvalidNextTokenError()

        result: dict[str, Any] = {"TypeName": type_name, "InstanceId": instance_id, "Entries": []}
        entry = store.region_snapshot(self.region).get(instance_id, {}).get(type_name)
        if entry is not None:
            entries = [e for e in entry.content if all(f.test(e.get(f.attribute)) for f in filters)]
            result.update(SchemaVersion=entry.schema_version, CaptureTime=entry.capture_time,
                          Entries=[dict(e) for e in entries[offset:offset + max_results]])
            if offset + max_results < len(entries):
                result["NextToken"] = encode_inventory_token({
                    "op": "ListInventoryEntries", "instance": instance_id, "type": type_name,
                    "offset": offset + max_results,
                })
        return ActionResult(result)

    return {
        "put_inventory": put_inventory,
        "get_inventory": get_inventory,
        "list_inventory_entries": list_inventory_entries,
    }


# ---------------------------------------------------------------------------
# Request identification
# ---------------------------------------------------------------------------

_SCOPE_RE = re.compile(r"Credential=([^,\s]+)")


@dataclass
class AwsRequest:
    """What the middleware knows about one AWS API request."""

    service: str
    action: str
    protocol: str  # "json" (X-Amz-Target), "query" (Action=...) or "rest"
    params: dict[str, str]  # query-string and form parameters
    content_type: str

    @property
    def key(self) -> str:
        return f"{self.service}:{self.action}"

    @property
    def page(self) -> int | None:
        """Page number, defined for GetAccountAuthorizationDetails only."""
        if self.service == "iam" and self.action == GAAD_ACTION:
            return gaad_page_number(self.params.get("MaxItems"), self.params.get("Marker"))
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
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:  # AmazonSSM.GetDocument -> GetDocument
        action, protocol = target.rsplit(".", 1)[-1], "json"
    else:
        if content_type.startswith("application/x-www-form-urlencoded"):
            body = _read_and_rewind_body(environ)
            if environ.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
                try:
                    body = gzip.decompress(body)
                except (OSError, EOFError):
                    pass
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            params.update({k: v[0] for k, v in form.items()})
        if params.get("Action"):
            action, protocol = params["Action"], "query"
        else:
            action, protocol = environ.get("REQUEST_METHOD", "GET"), "rest"

    if service is None:
        service = UNSIGNED_ACTIONS.get(action, ("unknown",))[0]
    return AwsRequest(service, action, protocol, params, content_type)


# ---------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------

QUERY_NAMESPACES = {
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}


@dataclass
class FaultRule:
    """One fault rule, as posted to ``/_emulator/faults``.

    ``service``/``action``/``page`` select requests (``None`` = any; ``page``
    only ever matches iam:GetAccountAuthorizationDetails).  ``times`` is the
    number of matches left (``None`` = unlimited).  ``delay_ms`` sleeps first.
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
        return True


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
    """Thread-safe rule set; the first matching rule wins and uses up a ``times``."""

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
        with self._lock:
            for rule in self._rules:
                if rule.matches(req):
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


# ---------------------------------------------------------------------------
# WSGI middleware in front of moto
# ---------------------------------------------------------------------------

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
                log.info("moto %s %s %d (injected %s)", req.service, req.action, status, code)
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


# ---------------------------------------------------------------------------
# IMDSv2 stub
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _setup_logging(path: str | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(path, encoding="utf-8") if path else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    for name in ("emulator", "werkzeug"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    log.setLevel(logging.INFO)
    # werkzeug's own logger only reports errors (tracebacks) here.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--moto-port", type=int, default=0, help="moto port (0 = ephemeral)")
    parser.add_argument("--imds-port", type=int, default=0, help="IMDS port (0 = ephemeral)")
    parser.add_argument("--imds-config", metavar="FILE", help="JSON file with the IMDS config")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="exit as soon as stdin reaches EOF")
    parser.add_argument("--log", metavar="FILE", help="request log file (default: stderr)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _setup_logging(args.log)
    # stdout carries exactly one line (the ready line); anything moto prints
    # (it does use print() in places) goes to stderr instead.
    ready_out = sys.stdout
    sys.stdout = sys.stderr

    try:
        imds_config = load_imds_config(args.imds_config)
    except (OSError, ValueError) as exc:
        print(f"emulator: bad --imds-config: {exc}", file=sys.stderr)
        return 2

    # One account for every request, whatever access key signed it (moto
    # would otherwise map keys it issued itself to their own accounts).
    os.environ.setdefault("MOTO_ACCOUNT_ID", imds_config.account_id)
    install_moto_extensions()
    middleware = EmulatorMiddleware(DomainDispatcherApplication(create_backend_app))
    moto_server = make_server(
        args.host, args.moto_port, middleware, threaded=True,
        request_handler=QuietMotoRequestHandler,
    )
    imds_server = make_imds_server(args.host, args.imds_port, imds_config)

    stop = threading.Event()
    # The handlers only record the signal: calling stop.set() from a handler deadlocks when the
    # signal lands while the main thread holds the Event's lock inside its own stop.wait()
    # (seen in CI: an emulator that never exited after SIGTERM).
    signalled: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: signalled.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: signalled.append(signum))

    # A short poll interval keeps shutdown() (which waits for the loop to
    # notice) quick; tests start and stop emulators a lot.
    threads = [
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                         name=name, daemon=True)
        for name, srv in (("moto", moto_server), ("imds", imds_server))
    ]
    if args.exit_on_stdin_eof:
        def watch_stdin() -> None:
            # os.read on the raw fd, not sys.stdin: a daemon thread blocked
            # inside the buffered reader holds its lock, and interpreter
            # shutdown then aborts ("could not acquire lock for <stdin>").
            try:
                while os.read(sys.stdin.fileno(), 65536):
                    pass
            except (OSError, ValueError):
                pass
            stop.set()

        threads.append(threading.Thread(target=watch_stdin, name="stdin", daemon=True))
    for thread in threads:
        thread.start()

    ready = {
        "moto": _url(args.host, moto_server.server_port),
        "imds": _url(args.host, imds_server.server_address[1]),
        "pid": os.getpid(),
    }
    ready_out.write(json.dumps(ready) + "\n")
    ready_out.flush()
    log.info("emulator ready: %s (moto %s)", json.dumps(ready), moto.__version__)

    while not signalled and not stop.wait(0.1):  # a timed wait keeps signal handlers responsive
        pass
    log.info("emulator shutting down")
    for server in (moto_server, imds_server):
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
