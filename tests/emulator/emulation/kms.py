"""KMS answers made to match AWS where the manifest signer and its checks depend on them.

moto 5.2.5's GetPublicKey gives only the deprecated ``CustomerMasterKeySpec`` (no ``KeySpec``)
and a bare key id where AWS gives the key ARN; and its Sign and Verify take messages of any size,
where AWS refuses a ``Message`` over 4,096 bytes (ValidationException: larger documents must be
signed as a digest).  A publisher that signed a big manifest RAW would pass every test and fail
in AWS, so the emulator wraps the three handlers and otherwise keeps moto's answers.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from moto.kms.responses import KmsResponse

    Handler = Callable[[KmsResponse], str]


MESSAGE_MAX_BYTES = 4096  # Sign and Verify, RAW or DIGEST (API_Sign: "Maximum length of 4096")


def _check_message_size(response: KmsResponse) -> None:
    from moto.kms.exceptions import ValidationException

    message = response._get_param("Message")  # moto hands the blob over base64-decoded
    if isinstance(message, str):
        message = message.encode("utf-8")
    if message is not None and len(message) > MESSAGE_MAX_BYTES:
        raise ValidationException(
            "1 validation error detected: Value at 'Message' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MESSAGE_MAX_BYTES}")


def _wrap_size_checked(original: Handler) -> Handler:
    def handler(self: KmsResponse) -> str:
        _check_message_size(self)
        return original(self)

    handler.__name__ = original.__name__
    return handler


def _wrap_get_public_key(original: Handler) -> Handler:
    def get_public_key(self: KmsResponse) -> str:
        answer = json.loads(original(self))  # moto validates the key and its usage first
        key = self.kms_backend.describe_key(answer["KeyId"])
        answer.update(KeyId=key.arn, KeySpec=key.key_spec, KeyUsage=key.key_usage)
        return json.dumps(answer)

    return get_public_key


def install_kms_fixes() -> None:
    """Wraps moto's GetPublicKey, Sign and Verify handlers (once)."""
    from moto.kms.responses import KmsResponse

    if getattr(KmsResponse, "_emulator_fixes_installed", False):
        return
    KmsResponse.get_public_key = _wrap_get_public_key(KmsResponse.get_public_key)  # type: ignore[method-assign]
    KmsResponse.sign = _wrap_size_checked(KmsResponse.sign)  # type: ignore[method-assign]
    KmsResponse.verify = _wrap_size_checked(KmsResponse.verify)  # type: ignore[method-assign]
    KmsResponse._emulator_fixes_installed = True  # type: ignore[attr-defined]
