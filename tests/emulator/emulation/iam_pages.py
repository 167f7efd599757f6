"""The paginated `iam:GetAccountAuthorizationDetails` that moto lacks."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Iterable


import moto
from moto.iam.exceptions import InvalidInput, ValidationError
from moto.iam.responses import IamResponse
from moto.core.responses import ActionResult
from .common import PINNED_MOTO_VERSION, log


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
