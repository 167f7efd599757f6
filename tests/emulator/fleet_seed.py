#!/usr/bin/env python3
"""Seed an emulator started with ``--multi-account`` with a small fleet for ``publish``.

Usage::

    python fleet_seed.py --endpoint http://127.0.0.1:PORT [--bucket fleet-mapping]
                         [--role ssm-companion-publish-read] [--external-id demo]

Made, as an operator's AWS would have them:

* an organization managed by the emulator's own account, with two member
  accounts (ids chosen by the emulator: never assumed);
* in each account an IAM user tagged ``SSMSessionRunAs`` (alice in the
  management account, carol and dave in the members), made through the read
  role ``publish`` assumes there;
* IAM Identity Center: the attribute for access control ``SSMSessionRunAs``
  from ``${path:enterprise.employeeNumber}``; users erin (assigned to the first
  member directly), frank (through the group ``platform``, assigned to the
  first member) and eve (assigned to the second member, with no employee
  number: left out by ``publish``, which says so); a permission set
  ``SSMRunAs``;
* the mapping bucket (versioned) and a KMS signing key (ECC_NIST_P256).

Prints one JSON object: ``management``, ``members`` (two ids), ``kms_key_id``,
``instance_arn``, ``identity_store_id``, ``bucket``.
"""

from __future__ import annotations

import argparse
import json

import boto3

REGION = "us-east-1"
ENTERPRISE = "aws:identitystore:enterprise"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", default="fleet-mapping")
    ap.add_argument("--role", default="ssm-companion-publish-read")
    ap.add_argument("--external-id", default="demo")
    args = ap.parse_args()
    session = boto3.session.Session(aws_access_key_id="demo", aws_secret_access_key="demo",
                                    region_name=REGION)

    def client(name: str, creds: dict | None = None):
        if creds is None:
            return session.client(name, endpoint_url=args.endpoint)
        return boto3.client(name, endpoint_url=args.endpoint, region_name=REGION,
                            aws_access_key_id=creds["AccessKeyId"],
                            aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"])

    management = client("sts").get_caller_identity()["Account"]
    org = client("organizations")
    org.create_organization(FeatureSet="ALL")
    members = []
    for name in ("workloads-a", "workloads-b"):
        status = org.create_account(Email=f"{name}@example.com", AccountName=name)
        members.append(status["CreateAccountStatus"]["AccountId"])

    def tagged_user(creds: dict | None, user: str) -> None:
        client("iam", creds).create_user(
            UserName=user, Tags=[{"Key": "SSMSessionRunAs", "Value": user}])

    tagged_user(None, "alice")
    for account, user in zip(members, ("carol", "dave")):
        creds = client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/{args.role}",
            RoleSessionName="fleet-seed", ExternalId=args.external_id)["Credentials"]
        tagged_user(creds, user)

    sso = client("sso-admin")
    instance = sso.list_instances()["Instances"][0]
    arn, store = instance["InstanceArn"], instance["IdentityStoreId"]
    sso.create_instance_access_control_attribute_configuration(
        InstanceArn=arn,
        InstanceAccessControlAttributeConfiguration={"AccessControlAttributes": [
            {"Key": "SSMSessionRunAs",
             "Value": {"Source": ["${path:enterprise.employeeNumber}"]}}]})
    ids = client("identitystore")

    def ic_user(name: str, employee: str | None) -> str:
        extra = {}
        if employee is not None:
            extra["Extensions"] = {ENTERPRISE: {"employeeNumber": employee}}
        return ids.create_user(IdentityStoreId=store, UserName=f"{name}@example.com",
                               DisplayName=name.title(),
                               Name={"GivenName": name.title(), "FamilyName": "Example"},
                               **extra)["UserId"]

    erin, frank, eve = ic_user("erin", "erin"), ic_user("frank", "frank"), ic_user("eve", None)
    group = ids.create_group(IdentityStoreId=store, DisplayName="platform")["GroupId"]
    ids.create_group_membership(IdentityStoreId=store, GroupId=group,
                                MemberId={"UserId": frank})
    permission_set = sso.create_permission_set(
        Name="SSMRunAs", InstanceArn=arn)["PermissionSet"]["PermissionSetArn"]
    for account, kind, principal in ((members[0], "USER", erin), (members[0], "GROUP", group),
                                     (members[1], "USER", eve)):
        sso.create_account_assignment(
            InstanceArn=arn, TargetId=account, TargetType="AWS_ACCOUNT",
            PermissionSetArn=permission_set, PrincipalType=kind, PrincipalId=principal)

    s3 = client("s3")
    s3.create_bucket(Bucket=args.bucket)
    s3.put_bucket_versioning(Bucket=args.bucket,
                             VersioningConfiguration={"Status": "Enabled"})
    key = client("kms").create_key(KeySpec="ECC_NIST_P256",
                                   KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    print(json.dumps({"management": management, "members": members, "kms_key_id": key,
                      "instance_arn": arn, "identity_store_id": store,
                      "bucket": args.bucket}))


if __name__ == "__main__":
    main()
