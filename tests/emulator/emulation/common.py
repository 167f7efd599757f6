"""What every part of the emulator shares: the pinned moto version, the account, helpers.

moto's environment defaults are set by ``emulator.py`` before anything imports moto."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any


PINNED_MOTO_VERSION = "5.2.5"
DEFAULT_ACCOUNT_ID = "123456789012"

log = logging.getLogger("emulator")


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=None, sort_keys=True).encode()


def _iso_z(moment: datetime) -> str:
    """ISO-8601 UTC timestamp with a ``Z`` suffix and whole seconds."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
