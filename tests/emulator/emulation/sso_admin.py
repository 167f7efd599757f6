"""sso-admin's instance access control attribute configuration (ABAC), which moto lacks, and
ListPermissionSetsProvisionedToAccount by account, which moto gets wrong.

moto 5.2.5 answers 500 to Create/Describe/Update/DeleteInstanceAccessControlAttributeConfiguration.
The publisher reads that configuration to learn which identity-store attribute carries a person's
``SSMSessionRunAs`` (``${path:enterprise.employeeNumber}``, ...), so the four are added to
``SSOAdminResponse`` here.  The configuration is kept on moto's sso-admin backend object, which
is per account and region (so accounts stay isolated) and which ``/moto-api/reset`` re-creates
(so a reset clears it).

moto's ListPermissionSetsProvisionedToAccount ignores ``AccountId`` and answers only the sets
given to ProvisionPermissionSet (whose ``TargetId`` it also ignores).  In AWS,
CreateAccountAssignment provisions the permission set to its account, and the list is per
account: here it answers the instance's permission sets that have an assignment in
``AccountId`` (plus those moto provisioned explicitly), in creation order.

moto answers a permission set's ``SessionDuration`` as a number of seconds (3600); AWS's shape
is an ISO-8601 duration string (``PT1H``), and the Rust SDK refuses the number, so Create and
DescribePermissionSet answer the string.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from typing import TYPE_CHECKING, Any

from moto.core.exceptions import JsonRESTError

if TYPE_CHECKING:
    from moto.ssoadmin.responses import SSOAdminResponse


# Constraints from botocore's sso-admin model (InstanceArn, AccessControlAttribute*).
INSTANCE_ARN_RE = re.compile(r"arn:aws(-[a-z]{1,5}){0,3}:sso:::instance/(sso)?ins-[a-zA-Z0-9-.]{16}")
MAX_ATTRIBUTES = 50
KEY_MAX_LEN = 128
SOURCE_MAX_LEN = 256
KEY_EXTRA_CHARS = frozenset("_.:/=+-@")
SOURCE_EXTRA_CHARS = KEY_EXTRA_CHARS | frozenset('[]{}$\\"')
STATE_ATTRIBUTE = "_emulator_access_control_configurations"  # on the backend object

_lock = threading.Lock()  # the server is threaded: check-and-set under one lock


class SsoAdminValidationException(JsonRESTError):
    """sso-admin's ValidationException (moto.ssoadmin.exceptions has none)."""

    code = 400

    def __init__(self, message: str) -> None:
        super().__init__(error_type="ValidationException", message=message)


def _allowed(text: str, extra: frozenset[str]) -> bool:
    """AWS's ``[\\p{L}\\p{Z}\\p{N}...]`` classes: letters, separators, numbers, ``extra``."""
    return all(ch in extra or unicodedata.category(ch)[0] in "LZN" for ch in text)


def _configurations(response: SSOAdminResponse) -> dict[str, dict[str, Any]]:
    """Instance ARN -> configuration, of the caller's account and region."""
    backend = response.ssoadmin_backend
    return backend.__dict__.setdefault(STATE_ATTRIBUTE, {})


def _instance_arn(response: SSOAdminResponse) -> str:
    arn = response._get_param("InstanceArn")
    if not isinstance(arn, str) or not INSTANCE_ARN_RE.fullmatch(arn):
        raise SsoAdminValidationException(f"Value '{arn}' at 'instanceArn' failed to satisfy "
                                          "constraint: Member must be a valid instance ARN")
    return arn


def _attribute(raw: Any, at: str) -> dict[str, Any]:
    """One validated ``{Key, Value: {Source: [s]}}``, copied (only the modelled members)."""
    if not isinstance(raw, dict):
        raise SsoAdminValidationException(f"{at} must be an object with Key and Value")
    key, value = raw.get("Key"), raw.get("Value")
    if not isinstance(key, str) or not 1 <= len(key) <= KEY_MAX_LEN \
            or not _allowed(key, KEY_EXTRA_CHARS):
        raise SsoAdminValidationException(f"{at}.key: invalid access control attribute key {key!r}")
    sources = value.get("Source") if isinstance(value, dict) else None
    if not isinstance(sources, list) or len(sources) != 1:
        raise SsoAdminValidationException(f"{at}.value.source must hold exactly one source")
    source = sources[0]
    if not isinstance(source, str) or len(source) > SOURCE_MAX_LEN \
            or not _allowed(source, SOURCE_EXTRA_CHARS):
        raise SsoAdminValidationException(f"{at}.value.source: invalid source {source!r}")
    return {"Key": key, "Value": {"Source": [source]}}


def _configuration(response: SSOAdminResponse) -> dict[str, Any]:
    """The request's validated ``InstanceAccessControlAttributeConfiguration``."""
    raw = response._get_param("InstanceAccessControlAttributeConfiguration")
    attributes = raw.get("AccessControlAttributes") if isinstance(raw, dict) else None
    if not isinstance(attributes, list):
        raise SsoAdminValidationException(
            "instanceAccessControlAttributeConfiguration.accessControlAttributes is required")
    if len(attributes) > MAX_ATTRIBUTES:
        raise SsoAdminValidationException(
            f"at most {MAX_ATTRIBUTES} access control attributes, got {len(attributes)}")
    checked = [_attribute(a, f"accessControlAttributes.{i + 1}") for i, a in enumerate(attributes)]
    keys = [a["Key"] for a in checked]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise SsoAdminValidationException(f"duplicate access control attribute keys: {duplicates}")
    return {"AccessControlAttributes": checked}


def _not_found(arn: str) -> Exception:
    from moto.ssoadmin.exceptions import ResourceNotFoundException

    return ResourceNotFoundException(
        f"Access control attribute configuration not found for instance {arn}")


def create_configuration(self: SSOAdminResponse) -> str:
    """CreateInstanceAccessControlAttributeConfiguration: ConflictException if one exists."""
    from moto.ssoadmin.exceptions import ConflictException

    arn, configuration = _instance_arn(self), _configuration(self)
    with _lock:
        store = _configurations(self)
        if arn in store:
            raise ConflictException(
                f"Access control attribute configuration already exists for instance {arn}")
        store[arn] = configuration
    return "{}"


def describe_configuration(self: SSOAdminResponse) -> str:
    """DescribeInstanceAccessControlAttributeConfiguration: always ``ENABLED`` (AWS creates it
    asynchronously; nothing here takes time)."""
    arn = _instance_arn(self)
    with _lock:
        configuration = _configurations(self).get(arn)
    if configuration is None:
        raise _not_found(arn)
    return json.dumps({"Status": "ENABLED",
                       "InstanceAccessControlAttributeConfiguration": configuration})


def update_configuration(self: SSOAdminResponse) -> str:
    """UpdateInstanceAccessControlAttributeConfiguration: the new attributes replace the old."""
    arn, configuration = _instance_arn(self), _configuration(self)
    with _lock:
        store = _configurations(self)
        if arn not in store:
            raise _not_found(arn)
        store[arn] = configuration
    return "{}"


def delete_configuration(self: SSOAdminResponse) -> str:
    """DeleteInstanceAccessControlAttributeConfiguration."""
    arn = _instance_arn(self)
    with _lock:
        if _configurations(self).pop(arn, None) is None:
            raise _not_found(arn)
    return "{}"


def list_permission_sets_provisioned_to_account(self: SSOAdminResponse) -> str:
    instance_arn = self._get_param("InstanceArn")
    account = self._get_param("AccountId")
    backend = self.ssoadmin_backend
    assigned = {a.permission_set_arn for a in backend.account_assignments
                if a.instance_arn == instance_arn and a.target_id == account}
    explicit = {p.permission_set_arn
                for p in backend.list_permission_sets_provisioned_to_account(instance_arn)}
    arns = [p.permission_set_arn for p in backend.permission_sets
            if p.permission_set_arn in assigned | explicit]
    return json.dumps({"PermissionSets": arns})


def _iso_duration(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    seconds = int(value)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    return f"PT{text or '0S'}"


def _wrap_permission_set(original: Any) -> Any:
    def handler(self: SSOAdminResponse) -> Any:
        answer = original(self)
        if not isinstance(answer, str):
            return answer
        doc = json.loads(answer)
        ps = doc.get("PermissionSet")
        if isinstance(ps, dict) and "SessionDuration" in ps:
            ps["SessionDuration"] = _iso_duration(ps["SessionDuration"])
        return json.dumps(doc)

    return handler


def install_sso_admin_access_control() -> None:
    """Adds the four actions to ``SSOAdminResponse`` (plain functions: moto's dispatcher finds
    actions with ``inspect.getmembers(cls, inspect.isfunction)``)."""
    from moto.ssoadmin.responses import SSOAdminResponse

    for name, fn in (
        ("create_instance_access_control_attribute_configuration", create_configuration),
        ("describe_instance_access_control_attribute_configuration", describe_configuration),
        ("update_instance_access_control_attribute_configuration", update_configuration),
        ("delete_instance_access_control_attribute_configuration", delete_configuration),
        ("list_permission_sets_provisioned_to_account",
         list_permission_sets_provisioned_to_account),
    ):
        setattr(SSOAdminResponse, name, fn)
    for name in ("create_permission_set", "describe_permission_set"):
        setattr(SSOAdminResponse, name, _wrap_permission_set(getattr(SSOAdminResponse, name)))
