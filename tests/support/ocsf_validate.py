#!/usr/bin/env python3
"""Validates OCSF events (JSON Lines, one event per line) against the pinned schema version with
pydantic-ocsf (tests/support/requirements-ocsf.txt), strictly: every attribute must be one the
class (or the host/cloud profile objects) defines — pydantic-ocsf's models accept unknown keys,
so they are looked for here, at every level. Never shipped.

    ocsf_validate.py VERSION FILE      # e.g. 1.7.0 events.jsonl

Prints one line per event (`ok <class_uid> <type_uid> <uid>`) and exits 1 at the first invalid
one, naming the line and the problem.

pydantic-ocsf 3.0.0 restricts device.type_id to 0/99 although OCSF defines 1 (Server), 6
(Virtual) and the rest: the value is checked against OCSF's list here and replaced by 0 before
the model sees it.
"""
import importlib
import json
import sys

# OCSF 1.x device types (the schema's dictionary, not pydantic-ocsf's narrower enum).
DEVICE_TYPES = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 99}


def extras(model, path):
    """Every attribute the models did not define, at any depth."""
    from pydantic import BaseModel
    found = [f"{path}.{k}" for k in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        items = value if isinstance(value, list) else [value]
        for v in items:
            if isinstance(v, BaseModel):
                found += extras(v, f"{path}.{name}")
    return found


def main():
    version, path = sys.argv[1], sys.argv[2]
    mod = "ocsf.v" + version.replace(".", "_")
    events = importlib.import_module(mod + ".events")
    objects = importlib.import_module(mod + ".objects")
    # The classes ssm-companion emits (class_uid -> pydantic-ocsf model).
    classes = {
        1007: events.ProcessActivity,
        1008: events.EventLogActvity,
        3001: events.AccountChange,
        3002: events.Authentication,
        3003: events.AuthorizeSession,
    }
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    if not lines:
        print("no events", file=sys.stderr)
        return 1
    for n, line in enumerate(lines, 1):
        e = json.loads(line)
        where = f"line {n} ({e.get('type_name')})"
        problems = []
        if e.get("metadata", {}).get("version") != version:
            problems.append(f"metadata.version is {e.get('metadata', {}).get('version')!r}, not {version}")
        cls = classes.get(e.get("class_uid"))
        if cls is None:
            problems.append(f"no OCSF {version} class {e.get('class_uid')}")
        ids = [e.get(k) for k in ("class_uid", "activity_id", "type_uid")]
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            problems.append("class_uid, activity_id and type_uid must be integers")
        elif ids[2] != ids[0] * 100 + ids[1]:
            problems.append("type_uid is not class_uid * 100 + activity_id")
        device = dict(e.get("device") or {})
        if "device" in e:
            if device.get("type_id") not in DEVICE_TYPES:
                problems.append(f"device.type_id {device.get('type_id')!r} is not an OCSF device type")
            device["type_id"] = 0
        if not problems:
            body = dict(e)
            if "device" in body:
                body["device"] = device
            profile = {}
            for key, model in (("device", objects.Device), ("cloud", objects.Cloud)):
                if key in body and key not in cls.model_fields:
                    profile[key] = (model, device if key == "device" else body[key])
                    body.pop(key)
            try:
                m = cls.model_validate(body)
                problems += extras(m, "event")
                for key, (model, value) in profile.items():
                    problems += extras(model.model_validate(value), key)
            except Exception as ex:  # pydantic's ValidationError, with every field named
                problems.append(str(ex))
        # `unmapped` is OCSF's place for anything: its content is not checked.
        problems = [p for p in problems if not p.startswith("event.unmapped")]
        if problems:
            print(f"INVALID {where}: " + "; ".join(problems) + f"\n{line}", file=sys.stderr)
            return 1
        print(f"ok {e['class_uid']} {e['type_uid']} {e['metadata']['uid']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
