"""SSM Inventory (PutInventory, GetInventory, ListInventoryEntries), which moto lacks."""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable


from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from .common import _iso_z, log

if TYPE_CHECKING:  # importing moto.ssm costs ~0.6 s (it pulls in moto.ec2): done lazily
    from moto.ssm.responses import SimpleSystemManagerResponse


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
