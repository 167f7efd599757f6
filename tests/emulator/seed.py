#!/usr/bin/env python3
"""Seed the emulator's moto with IAM principals and Session Manager preferences.

Usage::

    python seed.py --endpoint http://127.0.0.1:PORT --file seed.json

``seed.json``::

    {
      "users": [{"name": "alice", "path": "/",
                 "tags": {"SSMSessionRunAs": "alice", "ssm-companion:groups": "docker"},
                 "groups": ["admins"]}],
      "roles": [{"name": "ops", "path": "/", "tags": {"SSMSessionRunAs": "ops"},
                 "assume_role_policy": {...}}],
      "groups": [{"name": "admins", "path": "/"}],
      "session_preferences": {"runAsEnabled": true, "runAsDefaultUser": "ops-default"}
    }

Every key is optional; so are ``path``, ``tags``, ``groups`` (user membership)
and ``assume_role_policy`` (defaults to an EC2 trust policy).
``session_preferences`` is merged into the ``inputs`` of the Session Manager
preferences document ``SSM-SessionManagerRunShell`` (DocumentType
``Session``), which is created, or updated (new default version) if its
content differs.  Seeding is idempotent: existing principals get their tags
updated.  Uses dummy static credentials and region us-east-1 (moto accepts
anything), and prints a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import boto3
from botocore.exceptions import ClientError

SESSION_DOCUMENT = "SSM-SessionManagerRunShell"
REGION = "us-east-1"
DUMMY_CREDENTIALS = {"aws_access_key_id": "AKIAEMULATORSEED0000", "aws_secret_access_key": "seed-secret"}
DEFAULT_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }],
}
# What the console writes for fresh Session Manager preferences.
DEFAULT_SESSION_INPUTS: dict[str, Any] = {
    "s3BucketName": "",
    "s3KeyPrefix": "",
    "s3EncryptionEnabled": True,
    "cloudWatchLogGroupName": "",
    "cloudWatchEncryptionEnabled": True,
    "cloudWatchStreamingEnabled": True,
    "kmsKeyId": "",
    "runAsEnabled": False,
    "runAsDefaultUser": "",
    "idleSessionTimeout": "20",
    "maxSessionDuration": "",
    "shellProfile": {"windows": "", "linux": ""},
}


def _tag_list(tags: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in (tags or {}).items()]


def _exists(err: ClientError) -> bool:
    return err.response["Error"]["Code"] == "EntityAlreadyExists"


def session_document_content(preferences: dict[str, Any]) -> str:
    """JSON content of the Session Manager preferences document."""
    return json.dumps({
        "schemaVersion": "1.0",
        "description": "Document to hold regional settings for Session Manager",
        "sessionType": "Standard_Stream",
        "inputs": {**DEFAULT_SESSION_INPUTS, **preferences},
    }, indent=2)


def seed_groups(iam: Any, groups: list[dict[str, Any]]) -> None:
    for group in groups:
        try:
            iam.create_group(GroupName=group["name"], Path=group.get("path", "/"))
        except ClientError as err:
            if not _exists(err):
                raise


def seed_users(iam: Any, users: list[dict[str, Any]]) -> None:
    for user in users:
        name, tags = user["name"], _tag_list(user.get("tags"))
        try:
            kwargs: dict[str, Any] = {"UserName": name, "Path": user.get("path", "/")}
            if tags:
                kwargs["Tags"] = tags
            iam.create_user(**kwargs)
        except ClientError as err:
            if not _exists(err):
                raise
            if tags:
                iam.tag_user(UserName=name, Tags=tags)
        for group in user.get("groups", []):
            iam.add_user_to_group(GroupName=group, UserName=name)


def seed_roles(iam: Any, roles: list[dict[str, Any]]) -> None:
    for role in roles:
        name, tags = role["name"], _tag_list(role.get("tags"))
        policy = json.dumps(role.get("assume_role_policy") or DEFAULT_TRUST_POLICY)
        try:
            kwargs: dict[str, Any] = {
                "RoleName": name,
                "Path": role.get("path", "/"),
                "AssumeRolePolicyDocument": policy,
            }
            if tags:
                kwargs["Tags"] = tags
            iam.create_role(**kwargs)
        except ClientError as err:
            if not _exists(err):
                raise
            if tags:
                iam.tag_role(RoleName=name, Tags=tags)


def seed_session_preferences(ssm: Any, preferences: dict[str, Any]) -> str:
    """Create or update the preferences document; returns what was done."""
    content = session_document_content(preferences)
    try:
        current = ssm.get_document(Name=SESSION_DOCUMENT, DocumentFormat="JSON")
    except ClientError as err:
        if err.response["Error"]["Code"] != "InvalidDocument":
            raise
        ssm.create_document(
            Name=SESSION_DOCUMENT,
            Content=content,
            DocumentType="Session",
            DocumentFormat="JSON",
        )
        return "created"
    if json.loads(current["Content"]) == json.loads(content):
        return f"unchanged (v{current['DocumentVersion']})"
    updated = ssm.update_document(
        Name=SESSION_DOCUMENT,
        Content=content,
        DocumentVersion="$LATEST",
        DocumentFormat="JSON",
    )
    version = updated["DocumentDescription"]["DocumentVersion"]
    ssm.update_document_default_version(Name=SESSION_DOCUMENT, DocumentVersion=version)
    return f"updated (v{version})"


def seed(endpoint: str, data: dict[str, Any]) -> str:
    """Apply ``data`` to the emulator at ``endpoint``; returns a summary line."""
    session = boto3.Session(region_name=REGION, **DUMMY_CREDENTIALS)
    iam = session.client("iam", endpoint_url=endpoint)
    groups, users, roles = data.get("groups", []), data.get("users", []), data.get("roles", [])
    seed_groups(iam, groups)
    seed_users(iam, users)
    seed_roles(iam, roles)
    summary = f"seeded {len(users)} users, {len(roles)} roles, {len(groups)} groups"
    preferences = data.get("session_preferences")
    if preferences is not None:
        ssm = session.client("ssm", endpoint_url=endpoint)
        summary += f"; {SESSION_DOCUMENT} {seed_session_preferences(ssm, preferences)}"
    return f"{summary} at {endpoint}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed the ssm-companion test emulator.")
    parser.add_argument("--endpoint", required=True, help="moto URL printed by emulator.py")
    parser.add_argument("--file", required=True, help="seed JSON file")
    args = parser.parse_args(argv)
    with open(args.file, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        parser.error("the seed file must hold a JSON object")
    print(seed(args.endpoint, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
