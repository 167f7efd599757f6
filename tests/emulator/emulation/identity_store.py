"""identitystore user ``Extensions`` (enterprise attributes), which moto drops.

moto 5.2.5's CreateUser accepts ``Extensions`` and silently forgets them; DescribeUser and
ListUsers cannot return them.  Identity Center keeps a person's employee number and the like in
the ``aws:identitystore:enterprise`` extension, and an access control attribute such as
``${path:enterprise.employeeNumber}`` is where the publisher finds ``SSMSessionRunAs``, so the
emulator wraps moto's handlers: CreateUser stores the extensions, DescribeUser/ListUsers return
the ones the request names in its ``Extensions`` list (AWS returns none unless asked), DeleteUser
forgets them.  Everything else is moto's answer unchanged.

They are kept on moto's identitystore backend object (per account and region; re-created by
``/moto-api/reset``), keyed by identity store and user id.
"""

from __future__ import annotations

import json
import re
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from moto.identitystore.responses import IdentityStoreResponse

    Handler = Callable[[IdentityStoreResponse], str]


# botocore's model: ExtensionName pattern, at most 10 extensions (map and name list alike);
# "aws:identitystore:enterprise is the only supported extension name".
EXTENSION_NAME_RE = re.compile(r"aws:identitystore:[a-z]{1,20}")
SUPPORTED_EXTENSIONS = ("aws:identitystore:enterprise",)
MAX_EXTENSIONS = 10
STATE_ATTRIBUTE = "_emulator_user_extensions"  # on the backend object

_lock = threading.Lock()


def _validation_error(message: str) -> Exception:
    from moto.identitystore.exceptions import ValidationException

    return ValidationException(message=message)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not EXTENSION_NAME_RE.fullmatch(name):
        raise _validation_error(f"Invalid extension name {name!r}")
    if name not in SUPPORTED_EXTENSIONS:
        raise _validation_error(f"Extension {name} is not supported")
    return name


def _requested_names(response: IdentityStoreResponse) -> list[str]:
    """The request's ``Extensions`` name list (DescribeUser, ListUsers), validated."""
    names = response._get_param("Extensions")
    if names is None:
        return []
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_EXTENSIONS:
        raise _validation_error(f"Extensions must list 1 to {MAX_EXTENSIONS} extension names")
    return [_check_name(n) for n in names]


def _given_extensions(response: IdentityStoreResponse) -> dict[str, dict[str, Any]]:
    """CreateUser's ``Extensions`` map, validated (each value a JSON object, the document)."""
    extensions = response._get_param("Extensions")
    if extensions is None:
        return {}
    if not isinstance(extensions, dict) or not 1 <= len(extensions) <= MAX_EXTENSIONS:
        raise _validation_error(f"Extensions must map 1 to {MAX_EXTENSIONS} extension names")
    for name, value in extensions.items():
        _check_name(name)
        if not isinstance(value, dict):
            raise _validation_error(f"Extension {name} must be a JSON object")
    return extensions


def _store(response: IdentityStoreResponse) -> dict[tuple[str, str], dict[str, Any]]:
    """(identity store id, user id) -> extensions, of the caller's account and region."""
    backend = response.identitystore_backend
    return backend.__dict__.setdefault(STATE_ATTRIBUTE, {})


def _selected(response: IdentityStoreResponse, store_id: str, user_id: str,
              names: list[str]) -> dict[str, Any]:
    with _lock:
        stored = _store(response).get((store_id, user_id), {})
    return {n: stored[n] for n in names if n in stored}


def _wrap_create_user(original: Handler) -> Handler:
    def create_user(self: IdentityStoreResponse) -> str:
        extensions = _given_extensions(self)  # refused before moto creates anything
        body = original(self)
        if extensions:
            created = json.loads(body)
            with _lock:
                _store(self)[(created["IdentityStoreId"], created["UserId"])] = extensions
        return body

    return create_user


def _wrap_describe_user(original: Handler) -> Handler:
    def describe_user(self: IdentityStoreResponse) -> str:
        names = _requested_names(self)
        body = original(self)  # ResourceNotFoundException for an unknown user
        if not names:
            return body
        user = json.loads(body)
        selected = _selected(self, user["IdentityStoreId"], user["UserId"], names)
        if selected:
            user["Extensions"] = selected
        return json.dumps(user)

    return describe_user


def _wrap_list_users(original: Handler) -> Handler:
    def list_users(self: IdentityStoreResponse) -> str:
        names = _requested_names(self)
        body = original(self)
        if not names:
            return body
        page = json.loads(body)
        for user in page.get("Users") or []:
            selected = _selected(self, user["IdentityStoreId"], user["UserId"], names)
            if selected:
                user["Extensions"] = selected
        return json.dumps(page)

    return list_users


def _wrap_delete_user(original: Handler) -> Handler:
    def delete_user(self: IdentityStoreResponse) -> str:
        body = original(self)
        with _lock:
            _store(self).pop((self._get_param("IdentityStoreId"), self._get_param("UserId")), None)
        return body

    return delete_user


def install_identity_store_extensions() -> None:
    """Wraps moto's CreateUser, DescribeUser, ListUsers and DeleteUser handlers (once)."""
    from moto.identitystore.responses import IdentityStoreResponse

    if getattr(IdentityStoreResponse, "_emulator_extensions_installed", False):
        return
    for name, wrap in (("create_user", _wrap_create_user), ("describe_user", _wrap_describe_user),
                       ("list_users", _wrap_list_users), ("delete_user", _wrap_delete_user)):
        setattr(IdentityStoreResponse, name, wrap(getattr(IdentityStoreResponse, name)))
    IdentityStoreResponse._emulator_extensions_installed = True  # type: ignore[attr-defined]
