#!/usr/bin/env python3
"""Smoke test of the emulator: start it, poke every feature, report.

Run with the emulator's venv::

    python tests/emulator/smoke.py

Prints one line per check (``PASS name`` / ``FAIL name: why``), then
``N passed, M failed``; exits non-zero if any check failed.  Takes a few
seconds (one deliberate 2 s sleep to let an IMDS token expire).
"""

from __future__ import annotations

import base64
import http.client as http_client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Callable
from urllib.parse import urlencode, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError
from botocore.parsers import ResponseParserError

HERE = Path(__file__).resolve().parent
EMULATOR = HERE / "emulator.py"
SEED = HERE / "seed.py"

USERS = [f"user{i}" for i in range(1, 6)]
ROLES = [f"role{i}" for i in range(1, 4)]
IMDS_CONFIG = {
    "instance_id": "i-0aaaabbbbccccdddd",
    "region": "eu-west-1",
    "tags": {"Name": "smoke", "ssm-companion:env": "test"},
    "role": "smoke-role",
    "credentials_ttl_seconds": 7200,
}
HEALTH_TYPE = "Custom:SsmCompanionHealth"
CAPTURE_TIME = "2025-01-02T03:04:05Z"
INVENTORY_INSTANCES = [f"i-0{n:016x}" for n in (0x5, 0x1, 0x4, 0x2, 0x3)]  # 5 instances, unsorted
# botocore's retries "max_attempts" counts *retries* (max_attempts=1 means two
# attempts); "total_max_attempts" counts attempts, so 1 = no retry at all.
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                  connect_timeout=5, read_timeout=10)


def inventory_item(type_name: str = HEALTH_TYPE, content: list[dict[str, str]] | None = None,
                   content_hash: str | None = "h", capture_time: str = CAPTURE_TIME) -> dict[str, Any]:
    item: dict[str, Any] = {"TypeName": type_name, "SchemaVersion": "1.0", "CaptureTime": capture_time,
                            "Content": content if content is not None else [{"Status": "ok"}]}
    if content_hash is not None:
        item["ContentHash"] = content_hash
    return item


def encode_token(payload: dict[str, Any]) -> str:
    """A well-formed emulator NextToken (base64url JSON) for negative tests."""
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


class CheckFailed(Exception):
    pass


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_eq(actual: Any, wanted: Any, what: str) -> None:
    if actual != wanted:
        raise CheckFailed(f"{what}: got {actual!r}, want {wanted!r}")


def http(method: str, url: str, headers: dict[str, str] | None = None,
         body: Any = None) -> tuple[int, dict[str, str], bytes]:
    """Plain HTTP request; returns (status, headers, body) even for errors."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def http_json(method: str, url: str, body: Any = None) -> Any:
    status, _, data = http(method, url, body=body)
    expect_eq(status, 200, f"{method} {url} status")
    return json.loads(data)


def query_headers(service: str) -> dict[str, str]:
    """Headers of a query-protocol request to ``service`` (the emulator reads the service from
    the SigV4 scope; moto checks no signature)."""
    return {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE000000000/20250101/"
                         f"us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0",
    }


def raw_exchange(base_url: str, service: str,
                 form: str) -> tuple[bytes, bytes, BaseException | None]:
    """POSTs ``form`` on a raw TCP connection and reads until the end of the stream or an
    error; returns (status line and headers, body bytes received, the error or ``None``)."""
    url = urlsplit(base_url)
    data = form.encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in query_headers(service).items())
    request = (f"POST / HTTP/1.1\r\nHost: {url.netloc}\r\n{head}"
               f"Content-Length: {len(data)}\r\n\r\n").encode() + data
    received, error = b"", None
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError as exc:
            error = exc
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    return head_bytes, body, error


def header_value(head: bytes, name: str) -> str:
    """A header's value from a raw status line and header block ('' if absent)."""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def process_counts(pid: int) -> tuple[int, int]:
    """(open file descriptors, threads) of a process (Linux /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def idle_counts(pid: int) -> tuple[int, int]:
    """:func:`process_counts` at rest: the lowest of a few readings (a request's handler thread
    may still be finishing; under load that only makes the baseline more lenient)."""
    readings = []
    for _ in range(5):
        readings.append(process_counts(pid))
        time.sleep(0.05)
    return min(readings)


def counts_back_to(pid: int, baseline: tuple[int, int], timeout: float = 5.0) -> tuple[int, int]:
    """Waits until the process has no more descriptors and threads than ``baseline``; returns
    the last reading (still above it after ``timeout``: something leaked)."""
    deadline = time.monotonic() + timeout
    while True:
        now = process_counts(pid)
        if (now[0] <= baseline[0] and now[1] <= baseline[1]) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def start_emulator(*extra: str, stderr: IO[str] | int = subprocess.DEVNULL
                   ) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, str(EMULATOR), "--exit-on-stdin-eof", *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        proc.kill()
        raise RuntimeError(f"emulator exited without a ready line (rc {proc.wait()})")
    return proc, json.loads(line)


class Smoke:
    def __init__(self, moto_url: str, imds_url: str) -> None:
        self.moto = moto_url
        self.imds = imds_url
        session = boto3.Session(region_name="us-east-1", aws_access_key_id="AKIAEXAMPLE000000000",
                                aws_secret_access_key="secret")
        self.iam = session.client("iam", endpoint_url=moto_url, config=NO_RETRY)
        self.sts = session.client("sts", endpoint_url=moto_url, config=NO_RETRY)
        self.ssm = session.client("ssm", endpoint_url=moto_url, config=NO_RETRY)
        self.s3 = session.client("s3", endpoint_url=moto_url, config=NO_RETRY)
        # Without botocore's client-side checks, so the emulator's own are exercised.
        self.ssm_raw = session.client("ssm", endpoint_url=moto_url,
                                      config=NO_RETRY.merge(Config(parameter_validation=False)))
        self.session = session
        self.passed = 0
        self.failed = 0

    def check(self, name: str, fn: Callable[[], Any]) -> None:
        started = time.monotonic()
        try:
            fn()
        except CheckFailed as exc:
            self.failed += 1
            print(f"FAIL {name}: {exc}", flush=True)
        except Exception as exc:  # noqa: BLE001 - report, keep going
            self.failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc(file=sys.stderr)
        else:
            self.passed += 1
            print(f"PASS {name} ({time.monotonic() - started:.2f}s)", flush=True)

    # -- helpers ------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        return http_json("GET", f"{self.moto}/_emulator/stats")

    def set_faults(self, rules: list[dict[str, Any]]) -> None:
        http_json("POST", f"{self.moto}/_emulator/faults", rules)

    def client_error(self, fn: Callable[[], Any]) -> ClientError:
        try:
            fn()
        except ClientError as err:
            return err
        raise CheckFailed("call succeeded, wanted a ClientError")

    def token(self, ttl: int = 60) -> str:
        status, headers, body = http("PUT", f"{self.imds}/latest/api/token",
                                     {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})
        expect_eq(status, 200, "token PUT status")
        return body.decode()

    def imds_get(self, path: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
        headers = {"X-aws-ec2-metadata-token": token} if token else {}
        return http("GET", f"{self.imds}{path}", headers)

    def imds_text(self, path: str, token: str) -> str:
        status, _, body = self.imds_get(path, token)
        expect_eq(status, 200, f"GET {path}")
        return body.decode()

    # -- moto checks ----------------------------------------------------------

    def check_control_404(self) -> None:
        status, _, body = http("GET", f"{self.moto}/_emulator/nope")
        expect_eq(status, 404, "status")
        expect("error" in json.loads(body), "JSON error body")

    def check_stats(self) -> None:
        http_json("POST", f"{self.moto}/_emulator/stats/reset")
        self.sts.get_caller_identity()
        self.sts.get_caller_identity()
        self.ssm.describe_parameters()
        self.s3.list_buckets()
        stats = self.stats()
        expect_eq(stats.get("sts:GetCallerIdentity"), 2, "sts:GetCallerIdentity")
        expect_eq(stats.get("ssm:DescribeParameters"), 1, "ssm:DescribeParameters")
        expect_eq(stats.get("s3:GET"), 1, "s3:GET")
        http_json("POST", f"{self.moto}/_emulator/stats/reset")
        expect_eq(self.stats(), {}, "stats after reset")

    def check_seed(self) -> None:
        seed_data = {
            "users": [{"name": u, "tags": {"SSMSessionRunAs": u, "ssm-companion:groups": "docker"}}
                      for u in USERS],
            "roles": [{"name": r, "path": "/service/", "tags": {"SSMSessionRunAs": f"{r}-os"}}
                      for r in ROLES],
            "session_preferences": {"runAsEnabled": True, "runAsDefaultUser": "ops-default"},
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(seed_data, fh)
        try:
            for expected in ("created", "unchanged"):
                out = subprocess.run(
                    [sys.executable, str(SEED), "--endpoint", self.moto, "--file", fh.name],
                    capture_output=True, text=True, timeout=20,
                )
                expect_eq(out.returncode, 0, f"seed.py rc (stderr: {out.stderr.strip()[-300:]})")
                expect_eq(len(out.stdout.strip().splitlines()), 1, "seed.py summary lines")
                expect(expected in out.stdout, f"seed.py summary {out.stdout!r} lacks {expected!r}")
            # Change the preferences: a new default version must appear.
            seed_data = {"session_preferences": {"runAsEnabled": True, "runAsDefaultUser": "ops2"}}
            Path(fh.name).write_text(json.dumps(seed_data))
            out = subprocess.run(
                [sys.executable, str(SEED), "--endpoint", self.moto, "--file", fh.name],
                capture_output=True, text=True, timeout=20,
            )
            expect("updated (v2)" in out.stdout, f"seed.py update summary {out.stdout!r}")
        finally:
            os.unlink(fh.name)

    def check_session_document(self) -> None:
        doc = self.ssm.get_document(Name="SSM-SessionManagerRunShell", DocumentFormat="JSON")
        expect_eq(doc["DocumentType"], "Session", "DocumentType")
        expect_eq(doc["DocumentVersion"], "2", "default DocumentVersion")
        content = json.loads(doc["Content"])
        expect_eq(content["sessionType"], "Standard_Stream", "sessionType")
        expect_eq(content["inputs"]["runAsEnabled"], True, "runAsEnabled")
        expect_eq(content["inputs"]["runAsDefaultUser"], "ops2", "runAsDefaultUser")

    def _gaad_pages(self, **kwargs: Any) -> list[dict[str, Any]]:
        pages, marker = [], None
        for _ in range(20):
            args = dict(kwargs, **({"Marker": marker} if marker else {}))
            page = self.iam.get_account_authorization_details(**args)
            pages.append(page)
            if not page["IsTruncated"]:
                expect("Marker" not in page, "last page has no Marker")
                return pages
            marker = page["Marker"]
            expect(marker, "truncated page carries a Marker")
        raise CheckFailed("pagination did not end")

    def check_gaad_pagination(self) -> None:
        self.iam.create_policy(PolicyName="smoke-policy", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]}))
        http_json("POST", f"{self.moto}/_emulator/stats/reset")
        pages = self._gaad_pages(MaxItems=3)
        total = len(USERS) + len(ROLES)
        expect_eq(len(pages), math.ceil(total / 3), "page count")
        sizes = [len(p["UserDetailList"]) + len(p["RoleDetailList"]) + len(p["GroupDetailList"])
                 for p in pages]
        expect_eq(sizes, [3, 3, 2], "page sizes")
        users = [u["UserName"] for p in pages for u in p["UserDetailList"]]
        roles = [r["RoleName"] for p in pages for r in p["RoleDetailList"]]
        expect_eq(users, USERS, "users in creation order, once each")
        expect_eq(roles, ROLES, "roles in creation order, once each")
        expect_eq([len(p["RoleDetailList"]) for p in pages], [0, 1, 2], "users before roles")
        for p in pages:
            for u in p["UserDetailList"]:
                tags = {t["Key"]: t["Value"] for t in u.get("Tags", [])}
                expect_eq(tags.get("SSMSessionRunAs"), u["UserName"], f"{u['UserName']} tag")
            for r in p["RoleDetailList"]:
                tags = {t["Key"]: t["Value"] for t in r.get("Tags", [])}
                expect_eq(tags.get("SSMSessionRunAs"), f"{r['RoleName']}-os", f"{r['RoleName']} tag")
        expect([x["PolicyName"] for x in pages[0]["Policies"]] == ["smoke-policy"],
               "managed policies on page 1")
        expect(all(not p["Policies"] for p in pages[1:]), "no policies after page 1")
        expect_eq(self.stats().get("iam:GetAccountAuthorizationDetails"), 3, "GAAD count")

        one = self._gaad_pages()  # default MaxItems=100: a single page
        expect_eq(len(one), 1, "default MaxItems page count")
        only_roles = self._gaad_pages(MaxItems=2, Filter=["Role"])
        expect_eq([r["RoleName"] for p in only_roles for r in p["RoleDetailList"]], ROLES, "Filter=Role")
        expect(all(not p["UserDetailList"] for p in only_roles), "Filter=Role has no users")

    def check_gaad_bad_marker(self) -> None:
        err = self.client_error(lambda: self.iam.get_account_authorization_details(Marker="not-a-marker"))
        expect_eq(err.response["Error"]["Code"], "InvalidInput", "error code")
        expect_eq(err.response["ResponseMetadata"]["HTTPStatusCode"], 400, "status")

    def check_gaad_throttling_fault(self) -> None:
        self.set_faults([{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": 2,
                          "times": 1, "status": 400, "code": "Throttling", "message": "Rate exceeded"}])
        http_json("POST", f"{self.moto}/_emulator/stats/reset")
        first = self.iam.get_account_authorization_details(MaxItems=3)
        err = self.client_error(
            lambda: self.iam.get_account_authorization_details(MaxItems=3, Marker=first["Marker"]))
        expect_eq(err.response["Error"]["Code"], "Throttling", "error code")
        expect_eq(err.response["Error"]["Message"], "Rate exceeded", "error message")
        expect_eq(err.response["ResponseMetadata"]["HTTPStatusCode"], 400, "status")
        second = self.iam.get_account_authorization_details(MaxItems=3, Marker=first["Marker"])
        expect_eq(len(second["UserDetailList"]) + len(second["RoleDetailList"]), 3, "retried page 2")
        expect_eq(http_json("GET", f"{self.moto}/_emulator/faults"), [], "rule used up")
        expect_eq(self.stats().get("iam:GetAccountAuthorizationDetails"), 3, "faulted call counted")

    def check_ssm_fault(self) -> None:
        self.set_faults([{"service": "ssm", "action": "GetDocument", "status": 400,
                          "code": "ThrottlingException", "message": "slow down"}])
        try:
            err = self.client_error(lambda: self.ssm.get_document(Name="SSM-SessionManagerRunShell"))
            expect_eq(err.response["Error"]["Code"], "ThrottlingException", "error code")
            expect_eq(err.response["Error"]["Message"], "slow down", "error message")
            self.ssm.describe_parameters()  # other SSM actions unaffected
        finally:
            self.set_faults([])
        self.ssm.get_document(Name="SSM-SessionManagerRunShell")

    def check_s3_and_sts_faults(self) -> None:
        self.set_faults([
            {"service": "s3", "code": "SlowDown", "status": 503, "message": "Reduce your request rate"},
            {"service": "sts", "action": "GetCallerIdentity", "code": "ExpiredToken",
             "status": 400, "message": "expired", "times": 1},
        ])
        try:
            err = self.client_error(self.s3.list_buckets)
            expect_eq(err.response["Error"]["Code"], "SlowDown", "s3 error code")
            expect_eq(err.response["ResponseMetadata"]["HTTPStatusCode"], 503, "s3 status")
            err = self.client_error(self.sts.get_caller_identity)
            expect_eq(err.response["Error"]["Code"], "ExpiredToken", "sts error code")
        finally:
            self.set_faults([])

    def check_delay_fault(self) -> None:
        self.set_faults([{"service": "sts", "action": "GetCallerIdentity", "delay_ms": 300, "times": 1}])
        started = time.monotonic()
        ident = self.sts.get_caller_identity()
        elapsed = time.monotonic() - started
        expect(elapsed >= 0.3, f"delayed call took {elapsed:.3f}s")
        expect_eq(ident["Account"], "123456789012", "account")

    def check_bad_fault_rules(self) -> None:
        for bad in ({"service": "iam"}, [{"service": "iam", "bogus": 1}], [{"code": "X", "times": 0}]):
            status, _, data = http("POST", f"{self.moto}/_emulator/faults", body=bad)
            expect_eq(status, 400, f"rules {bad!r}")
        for bad in ([{"body": "truncate", "code": "Throttling"}], [{"body": "reset", "status": 500}],
                    [{"body": "empty", "code": "X", "status": 503, "times": 1}]):
            status, _, data = http("POST", f"{self.moto}/_emulator/faults", body=bad)
            expect_eq(status, 400, f"rules {bad!r}")
            expect("cannot be combined" in json.loads(data)["error"], f"why: {data!r}")
        for bad in ([{"body": "sideways"}], [{"body": 1}], [{"body": ["truncate"]}]):
            status, _, data = http("POST", f"{self.moto}/_emulator/faults", body=bad)
            expect_eq(status, 400, f"rules {bad!r}")
            error = json.loads(data)["error"]
            expect(all(v in error for v in ("truncate", "truncated-without-marker", "repeat-marker",
                                            "reset", "empty")), f"allowed values named: {error!r}")
        expect_eq(http_json("GET", f"{self.moto}/_emulator/faults"), [], "bad rules set nothing")
        good = [{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": 2,
                 "times": 3, "delay_ms": 5, "body": "truncate"}]
        self.set_faults(good)
        rules = http_json("GET", f"{self.moto}/_emulator/faults")
        expect_eq([{k: v for k, v in r.items() if v is not None} for r in rules], good,
                  "a body rule with selectors, times and delay_ms")
        self.set_faults([])

    # -- faults that damage a successful answer ----------------------------------
    # The seeded 5 users + 3 roles make three GAAD pages at MaxItems=3 (3, 3, 2 principals).

    def _raw_query(self, service: str, params: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """A query-protocol request on a fresh connection; (status, headers, body) exactly as
        sent (a signature is not checked, its scope names the service)."""
        url = urlsplit(self.moto)
        conn = http_client.HTTPConnection(url.hostname, url.port, timeout=10)
        try:
            conn.request("POST", "/", body=urlencode(params), headers=query_headers(service))
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def _raw_gaad(self, **params: str) -> tuple[int, dict[str, str], bytes]:
        return self._raw_query("iam", {"Action": "GetAccountAuthorizationDetails",
                                       "Version": "2010-05-08", **params})

    def _gaad_marker(self, page: int) -> str:
        """The Marker that asks for ``page`` (>= 2) at MaxItems=3, from undamaged answers."""
        marker = ""
        for _ in range(page - 1):
            marker = self.iam.get_account_authorization_details(
                MaxItems=3, **({"Marker": marker} if marker else {}))["Marker"]
        return marker

    def _body_fault(self, fault: str, page: int | None = 1, times: int = 1,
                    **extra: Any) -> None:
        rule = {"service": "iam", "action": "GetAccountAuthorizationDetails", "page": page,
                "times": times, "body": fault, **extra}
        self.set_faults([{k: v for k, v in rule.items() if v is not None}])

    def _times_left(self) -> list[int | None]:
        return [r["times"] for r in http_json("GET", f"{self.moto}/_emulator/faults")]

    def check_body_fault_truncate(self) -> None:
        status, _, whole = self._raw_gaad(MaxItems="6")
        expect_eq(status, 200, "undamaged status")
        expect(whole.count(b"</member>") >= 4, f"several members: {whole.count(b'</member>')}")
        expect(b"<IsTruncated>true</IsTruncated>" in whole, "page 1 of several")
        self._body_fault("truncate", times=2)
        status, headers, cut = self._raw_gaad(MaxItems="6")
        expect_eq(status, 200, "a damaged answer still says 200")
        expect_eq(int(headers["Content-Length"]), len(cut), "Content-Length matches the cut body")
        expect(0 < cut.count(b"</member>") < whole.count(b"</member>"),
               f"{cut.count(b'</member>')} of {whole.count(b'</member>')} members kept")
        expect_eq(cut.count(b"</member>"), whole.count(b"</member>") // 2, "about half kept")
        expect(cut.endswith(b"</member>"), "cut right after a member")
        expect(b"</GetAccountAuthorizationDetailsResponse>" not in cut, "no closing tag")
        expect(b"<IsTruncated>" not in cut and b"<Marker>" not in cut, "IsTruncated, Marker lost")
        expect(whole.startswith(cut), "a prefix of the real answer")
        expect_eq(self._times_left(), [1], "one match left")
        # botocore's XML parser (expat) refuses the cut document; the Rust SDK's reader accepts
        # it (see tests/iam_read_e2e.rs): that difference is why ssm-companion checks the body.
        try:
            self.iam.get_account_authorization_details(MaxItems=6)
        except ResponseParserError as exc:
            expect("invalid XML" in str(exc), f"botocore: {exc}")
        else:
            raise CheckFailed("botocore accepted a cut document")
        expect_eq(self._times_left(), [], "rule used up after times=2")
        status, _, again = self._raw_gaad(MaxItems="6")
        expect_eq((status, again.count(b"</member>")), (200, whole.count(b"</member>")), "whole again")

    def check_body_fault_truncated_without_marker(self) -> None:
        status, _, real = self._raw_gaad(MaxItems="3")
        expect(status == 200 and b"<Marker>" in real, "the real page 1 has a Marker")
        self._body_fault("truncated-without-marker")
        status, headers, body = self._raw_gaad(MaxItems="3")
        expect_eq(status, 200, "status")
        expect_eq(int(headers["Content-Length"]), len(body), "Content-Length")
        expect_eq(body.count(b"<IsTruncated>true</IsTruncated>"), 1, "IsTruncated true")
        expect(b"<Marker>" not in body, "no Marker")
        expect_eq(body.count(b"</member>"), real.count(b"</member>"), "all members kept")
        expect(body.rstrip().endswith(b"</GetAccountAuthorizationDetailsResponse>"), "whole document")
        expect_eq(self._times_left(), [], "rule used up")
        # The last page says IsTruncated=false: the fault turns it to true (botocore's view).
        last = self._gaad_marker(3)
        self._body_fault("truncated-without-marker", page=3)
        page = self.iam.get_account_authorization_details(MaxItems=3, Marker=last)
        expect(page["IsTruncated"] is True and "Marker" not in page, f"botocore: {page['IsTruncated']}")
        page = self.iam.get_account_authorization_details(MaxItems=3, Marker=last)
        expect(page["IsTruncated"] is False, "the next call is whole again")
        # An answer without IsTruncated at all gets one inside its ...Result element.
        self.set_faults([{"service": "sts", "action": "GetCallerIdentity", "times": 1,
                          "body": "truncated-without-marker"}])
        status, headers, body = self._raw_query("sts", {"Action": "GetCallerIdentity",
                                                        "Version": "2011-06-15"})
        expect_eq(status, 200, "sts status")
        expect_eq(int(headers["Content-Length"]), len(body), "sts Content-Length")
        expect(b"<IsTruncated>true</IsTruncated></GetCallerIdentityResult>" in body,
               f"IsTruncated added at the end of the result: {body!r}")

    def check_body_fault_repeat_marker(self) -> None:
        marker = self._gaad_marker(2)
        # Page 1 carries no Marker: the rule passes it through, and is used up all the same.
        self._body_fault("repeat-marker", page=1)
        status, _, body = self._raw_gaad(MaxItems="3")
        expect_eq(status, 200, "page 1 status")
        expect(f"<Marker>{marker}</Marker>".encode() in body, "page 1 unchanged")
        expect_eq(self._times_left(), [], "rule used up by page 1")
        # Page 2: its real next Marker (page 3's) is replaced by the request's own.
        next_marker = self._gaad_marker(3)
        expect(next_marker != marker, "page 2's real Marker differs")
        self._body_fault("repeat-marker", page=2)
        status, headers, body = self._raw_gaad(MaxItems="3", Marker=marker)
        expect_eq(status, 200, "page 2 status")
        expect_eq(int(headers["Content-Length"]), len(body), "Content-Length")
        expect(b"<IsTruncated>true</IsTruncated>" in body, "IsTruncated true")
        expect_eq(body.count(b"<Marker>"), 1, "one Marker")
        expect(f"<Marker>{marker}</Marker>".encode() in body, "the request's own Marker back")
        expect_eq(self._times_left(), [], "rule used up")
        # The last page (no Marker, IsTruncated=false) gets both, seen through botocore.
        self._body_fault("repeat-marker", page=3)
        page3 = self.iam.get_account_authorization_details(MaxItems=3, Marker=next_marker)
        expect_eq((page3["IsTruncated"], page3.get("Marker")), (True, next_marker), "page 3")

    def check_body_fault_reset(self) -> None:
        status, _, whole = self._raw_gaad(MaxItems="6")
        expect_eq(status, 200, "undamaged status")
        self._body_fault("reset")
        head, partial, error = raw_exchange(self.moto, "iam", urlencode(
            {"Action": "GetAccountAuthorizationDetails", "Version": "2010-05-08", "MaxItems": "6"}))
        expect(isinstance(error, ConnectionResetError), f"a TCP reset, not {error!r}")
        expect(head.startswith(b"HTTP/1.1 200 "), f"status line: {head[:40]!r}")
        length = int(header_value(head, "Content-Length"))
        expect_eq(length, len(whole), "the full Content-Length")
        expect_eq(len(partial), length // 2, "half the body, then the reset")
        expect(whole[:100] == partial[:100] and partial.count(b"<member>") >= 1, "its start")
        expect_eq(header_value(head, "Connection"), "close", "Connection: close")
        expect_eq(self._times_left(), [], "rule used up")
        status, _, body = self._raw_gaad(MaxItems="6")
        expect_eq(status, 200, "the next request, on a new connection, works")
        expect(body.rstrip().endswith(b"</GetAccountAuthorizationDetailsResponse>"), "whole")
        # botocore (urllib3) reports it as a closed connection; with retries it would retry.
        self._body_fault("reset")
        try:
            self.iam.get_account_authorization_details(MaxItems=6)
        except ConnectionClosedError:
            pass
        else:
            raise CheckFailed("botocore got a whole answer")

    def check_body_fault_reset_quiet(self) -> None:
        """On an emulator of its own, its stderr kept: resets leave no traceback, no leaked
        descriptor or thread, and it goes on serving."""
        with tempfile.TemporaryFile("w+") as err:
            proc, ready = start_emulator(stderr=err)
            try:
                other = Smoke(ready["moto"], ready["imds"])
                other.iam.create_user(UserName="quiet")
                before = idle_counts(proc.pid)
                other._body_fault("reset", page=None, times=3)
                for _ in range(3):
                    _, partial, error = raw_exchange(other.moto, "iam", urlencode(
                        {"Action": "GetAccountAuthorizationDetails", "Version": "2010-05-08"}))
                    expect(isinstance(error, ConnectionResetError) and partial, f"reset: {error!r}")
                status, _, body = other._raw_gaad()
                expect(status == 200 and b"<UserName>quiet</UserName>" in body, "still serving")
                after = counts_back_to(proc.pid, before)
                expect(after[0] <= before[0] and after[1] <= before[1],
                       f"(descriptors, threads) {after}, before the resets {before}")
            finally:
                proc.stdin.close()  # type: ignore[union-attr]
                rc = proc.wait(timeout=10)
            expect_eq(rc, 0, "rc")
            err.seek(0)
            log = err.read()
        expect_eq(log.count("(injected reset mid-body)"), 3, "three resets logged")
        noise = [w for w in ("Traceback", "Error on request", "Exception occurred") if w in log]
        expect(not noise, f"quiet, but {noise}: {log[-600:]!r}")

    def check_body_fault_empty(self) -> None:
        http_json("POST", f"{self.moto}/_emulator/stats/reset")
        self._body_fault("empty", page=None, times=2, delay_ms=150)
        started = time.monotonic()
        status, headers, body = self._raw_gaad(MaxItems="6")
        expect(time.monotonic() - started >= 0.15, "delay_ms applies too")
        expect_eq(status, 200, "status")
        expect_eq(len(body), 0, "body length")
        expect_eq(headers.get("Content-Length"), "0", "Content-Length")
        expect_eq(headers.get("Content-Type"), "text/xml", "Content-Type")
        # moto is not asked: it would refuse this Marker with a 400 InvalidInput.
        status, headers, body = self._raw_gaad(Marker="not-a-marker")
        expect_eq((status, body, headers.get("Content-Length")), (200, b"", "0"), "moto not called")
        expect_eq(self._times_left(), [], "rule used up after times=2")
        status, _, body = self._raw_gaad(MaxItems="6")
        expect(status == 200 and body.count(b"</member>") >= 4, "whole again")
        expect_eq(self.stats().get("iam:GetAccountAuthorizationDetails"), 3, "counted")
        # botocore's parser refuses an empty document.
        self._body_fault("empty")
        try:
            self.iam.get_account_authorization_details(MaxItems=6)
        except ResponseParserError:
            pass
        else:
            raise CheckFailed("botocore accepted an empty body")

    # -- SSM Inventory checks ---------------------------------------------------

    def inventory(self) -> dict[str, Any]:
        return http_json("GET", f"{self.moto}/_emulator/inventory")

    def reset_inventory(self) -> None:
        http_json("POST", f"{self.moto}/_emulator/inventory/reset")

    def stored(self, instance_id: str, type_name: str = HEALTH_TYPE) -> dict[str, Any] | None:
        region = self.inventory()["inventory"].get("us-east-1", {})
        return region.get(instance_id, {}).get(type_name)

    def put_error(self, instance_id: str, items: list[dict[str, Any]]) -> tuple[str, ClientError]:
        """PutInventory without client-side validation; returns (error code, error)."""
        err = self.client_error(lambda: self.ssm_raw.put_inventory(InstanceId=instance_id, Items=items))
        return err.response["Error"]["Code"], err

    def check_inventory_round_trip(self) -> None:
        self.reset_inventory()
        expect_eq(self.inventory()["counters"]["put_calls"], 0, "put_calls after reset")
        iid = INVENTORY_INSTANCES[0]
        content = [{"Status": "ok", "Version": "1.2.3", "Detail": ""}, {"Status": "ok", "Version": "x"}]
        self.ssm.put_inventory(InstanceId=iid, Items=[
            inventory_item(content=content, content_hash="hash-1"),
            inventory_item(type_name="Custom:NoHash", content=[{"A": "1"}], content_hash=None),
        ])
        entry = self.stored(iid)
        expect(entry is not None, "dump has the item")
        expect_eq(entry["Content"], content, "stored Content")
        expect_eq((entry["SchemaVersion"], entry["CaptureTime"], entry["ContentHash"]),
                  ("1.0", CAPTURE_TIME, "hash-1"), "stored SchemaVersion, CaptureTime, ContentHash")
        got = self.ssm.get_inventory(
            Filters=[{"Key": "AWS:InstanceInformation.InstanceId", "Values": [iid], "Type": "Equal"}])
        expect_eq([e["Id"] for e in got["Entities"]], [iid], "GetInventory Ids")
        data = got["Entities"][0]["Data"]
        expect_eq(sorted(data), ["Custom:NoHash", HEALTH_TYPE], "Data has both types")
        expect_eq(data[HEALTH_TYPE], {"TypeName": HEALTH_TYPE, "SchemaVersion": "1.0",
                                      "CaptureTime": CAPTURE_TIME, "ContentHash": "hash-1",
                                      "Content": content}, "InventoryResultItem")
        expect("ContentHash" not in data["Custom:NoHash"], "no ContentHash when none was sent")
        expect("NextToken" not in got, "single page has no NextToken")
        listed = self.ssm.list_inventory_entries(InstanceId=iid, TypeName=HEALTH_TYPE)
        listed.pop("ResponseMetadata")
        expect_eq(listed, {"TypeName": HEALTH_TYPE, "InstanceId": iid, "SchemaVersion": "1.0",
                           "CaptureTime": CAPTURE_TIME, "Entries": content}, "ListInventoryEntries")
        page1 = self.ssm.list_inventory_entries(InstanceId=iid, TypeName=HEALTH_TYPE, MaxResults=1)
        expect_eq(page1["Entries"], content[:1], "ListInventoryEntries page 1")
        page2 = self.ssm.list_inventory_entries(InstanceId=iid, TypeName=HEALTH_TYPE, MaxResults=1,
                                                NextToken=page1["NextToken"])
        expect_eq(page2["Entries"], content[1:], "ListInventoryEntries page 2")
        expect("NextToken" not in page2, "ListInventoryEntries last page")
        filtered = self.ssm.list_inventory_entries(
            InstanceId=iid, TypeName=HEALTH_TYPE,
            Filters=[{"Key": f"{HEALTH_TYPE}.Version", "Values": ["1."], "Type": "BeginWith"}])
        expect_eq(filtered["Entries"], content[:1], "ListInventoryEntries filter")
        other = self.ssm.list_inventory_entries(InstanceId=INVENTORY_INSTANCES[1], TypeName=HEALTH_TYPE)
        expect_eq((other["Entries"], "SchemaVersion" in other), ([], False), "no inventory: no entries")
        err = self.client_error(lambda: self.ssm.list_inventory_entries(
            InstanceId=iid, TypeName="Custom:NoHash", NextToken=page1["NextToken"]))
        expect_eq(err.response["Error"]["Code"], "InvalidNextToken", "token of another type")

    def check_inventory_validation(self) -> None:
        self.reset_inventory()
        iid = INVENTORY_INSTANCES[0]
        good = inventory_item()
        cases: list[tuple[str, str, list[dict[str, Any]], str]] = [
            ("bad instance id", "instance-1", [good], "InvalidInstanceId"),
            ("instance id of 9 chars", "i-012345678", [good], "InvalidInstanceId"),
            ("no items", iid, [], "ValidationException"),
            ("31 items", iid, [good] * 31, "ValidationException"),
            ("TypeName prefix", iid, [dict(good, TypeName="Foo:Bar")], "InvalidTypeNameException"),
            ("TypeName lower-case custom", iid, [dict(good, TypeName="Custom:health")],
             "InvalidTypeNameException"),
            ("TypeName empty custom", iid, [dict(good, TypeName="Custom:")], "InvalidTypeNameException"),
            ("TypeName > 100", iid, [dict(good, TypeName="Custom:H" + "x" * 93)],
             "InvalidTypeNameException"),
            ("TypeName unknown AWS type", iid, [dict(good, TypeName="AWS:Nope")],
             "InvalidTypeNameException"),
            ("SchemaVersion", iid, [dict(good, SchemaVersion="1")], "ValidationException"),
            ("SchemaVersion 7 digits", iid, [dict(good, SchemaVersion="1234567.0")],
             "ValidationException"),
            ("CaptureTime format", iid, [dict(good, CaptureTime="2025-01-02 03:04:05")],
             "ValidationException"),
            ("CaptureTime missing", iid, [{k: v for k, v in good.items() if k != "CaptureTime"}],
             "ValidationException"),
            ("ContentHash > 256", iid, [dict(good, ContentHash="h" * 257)], "ValidationException"),
            ("10001 content entries", iid, [dict(good, Content=[{"A": "1"}] * 10_001)],
             "InvalidItemContentException"),
            ("51 attributes", iid, [dict(good, Content=[{f"A{i}": "1" for i in range(51)}])],
             "InvalidItemContentException"),
            ("attribute name > 64", iid, [dict(good, Content=[{"A" * 65: "1"}])],
             "InvalidItemContentException"),
            ("empty attribute name", iid, [dict(good, Content=[{"": "1"}])],
             "InvalidItemContentException"),
            ("value > 4096", iid, [dict(good, Content=[{"A": "v" * 4097}])],
             "InvalidItemContentException"),
        ]
        for what, instance_id, items, want in cases:
            code, err = self.put_error(instance_id, items)
            expect_eq(code, want, what)
            expect_eq(err.response["ResponseMetadata"]["HTTPStatusCode"], 400, f"{what} status")
        # The edges themselves are fine.
        self.ssm.put_inventory(InstanceId="i-01234567", Items=[good] * 30)
        self.ssm.put_inventory(InstanceId="mi-0123456789abcdef0", Items=[dict(
            good, TypeName="Custom:H" + "x" * 92, SchemaVersion="123456.654321",
            Content=[{"A" * 64: "v" * 4096, **{f"B{i}": "" for i in range(49)}}] * 3)])
        code, err = self.put_error(iid, [dict(good, Content=[{"A": "1"}] * 10_001)])
        expect_eq(err.response.get("TypeName"), HEALTH_TYPE, "InvalidItemContentException TypeName")
        dump = self.inventory()
        expect_eq(dump["rejections"].get("InvalidTypeNameException"), 5, "rejections counted")
        expect_eq(sorted(dump["inventory"]["us-east-1"]), ["i-01234567", "mi-0123456789abcdef0"],
                  "rejected calls stored nothing")
        # Attribute names are case-insensitively consistent per type.
        self.ssm.put_inventory(InstanceId=iid, Items=[inventory_item(content=[{"Status": "ok"}])])
        code, err = self.put_error(INVENTORY_INSTANCES[1],
                                   [inventory_item(content=[{"status": "ok"}], content_hash="h2")])
        expect_eq(code, "ItemContentMismatchException", "attribute differing in case only")
        code, _ = self.put_error(iid, [inventory_item(content=[{"New": "1"}, {"NEW": "2"}],
                                                      content_hash="h3")])
        expect_eq(code, "ItemContentMismatchException", "case clash within one item")
        self.ssm.put_inventory(InstanceId=iid, Items=[inventory_item(
            content=[{"Status": "ok", "Extra": "1"}], content_hash="h4")])  # new attributes are fine

    def check_inventory_pagination(self) -> None:
        self.reset_inventory()
        for n, iid in enumerate(INVENTORY_INSTANCES):
            self.ssm.put_inventory(InstanceId=iid, Items=[
                inventory_item(content=[{"Status": "degraded" if n == 3 else "ok", "N": str(n)}],
                               content_hash=f"h{n}"),
                inventory_item(type_name="Custom:Other", content=[{"X": "1"}]),
            ])
        # One more instance without the health type: not in the health fleet view.
        self.ssm.put_inventory(InstanceId="i-0fffffffffffffff9",
                               Items=[inventory_item(type_name="Custom:Other")])
        pages: list[dict[str, Any]] = []
        token = None
        while len(pages) < 10:
            kwargs: dict[str, Any] = {"ResultAttributes": [{"TypeName": HEALTH_TYPE}], "MaxResults": 2}
            if token:
                kwargs["NextToken"] = token
            pages.append(self.ssm.get_inventory(**kwargs))
            token = pages[-1].get("NextToken")
            if not token:
                break
        expect_eq([len(p["Entities"]) for p in pages], [2, 2, 1], "page sizes")
        ids = [e["Id"] for p in pages for e in p["Entities"]]
        expect_eq(ids, sorted(INVENTORY_INSTANCES), "every instance once, in Id order")
        for page in pages:
            for entity in page["Entities"]:
                expect_eq(list(entity["Data"]), [HEALTH_TYPE], f"{entity['Id']}: only the asked type")
                n = INVENTORY_INSTANCES.index(entity["Id"])
                expect_eq(entity["Data"][HEALTH_TYPE]["Content"][0]["N"], str(n), "content per instance")
        # boto3's own paginator agrees.
        paginator = self.ssm.get_paginator("get_inventory")
        ids = [e["Id"] for page in paginator.paginate(ResultAttributes=[{"TypeName": HEALTH_TYPE}],
                                                      PaginationConfig={"PageSize": 2})
               for e in page["Entities"]]
        expect_eq(ids, sorted(INVENTORY_INSTANCES), "boto3 paginator")
        everything = self.ssm.get_inventory()
        expect_eq(len(everything["Entities"]), len(INVENTORY_INSTANCES) + 1, "no ResultAttributes: all")
        expect("NextToken" not in everything, "default MaxResults covers 6 instances")
        two = self.ssm.get_inventory(Filters=[{"Key": "AWS:InstanceInformation.InstanceId",
                                               "Values": INVENTORY_INSTANCES[3:], "Type": "Equal"}],
                                     ResultAttributes=[{"TypeName": HEALTH_TYPE}])
        expect_eq([e["Id"] for e in two["Entities"]], sorted(INVENTORY_INSTANCES[3:]), "InstanceId filter")
        sick = self.ssm.get_inventory(Filters=[{"Key": f"{HEALTH_TYPE}.Status", "Values": ["degraded"]}])
        expect_eq([e["Id"] for e in sick["Entities"]], [INVENTORY_INSTANCES[3]], "attribute filter")
        none = self.ssm.get_inventory(ResultAttributes=[{"TypeName": "Custom:NeverPut"}])
        expect_eq(none["Entities"], [], "unknown type: no entities")
        for what, kwargs, want in (
            ("bad NextToken", {"NextToken": "bm90LWEtdG9rZW4="}, "InvalidNextToken"),
            ("garbage NextToken", {"NextToken": "%%%"}, "InvalidNextToken"),
            ("ListInventoryEntries token", {"NextToken": encode_token(
                {"op": "ListInventoryEntries", "offset": 1})}, "InvalidNextToken"),
            ("MaxResults 51", {"MaxResults": 51}, "ValidationException"),
            ("MaxResults 0", {"MaxResults": 0}, "ValidationException"),
            ("ResultAttributes lower-case", {"ResultAttributes": [{"TypeName": "Custom:x"}]},
             "InvalidTypeNameException"),
            ("unsupported filter key", {"Filters": [{"Key": "AWS:InstanceInformation.PlatformType",
                                                     "Values": ["Linux"]}]}, "InvalidFilter"),
            ("filter key without attribute", {"Filters": [{"Key": "Custom", "Values": ["x"]}]},
             "InvalidFilter"),
        ):
            err = self.client_error(lambda: self.ssm_raw.get_inventory(**kwargs))
            expect_eq(err.response["Error"]["Code"], want, what)

    def check_inventory_unchanged_hash(self) -> None:
        self.reset_inventory()
        iid = INVENTORY_INSTANCES[0]
        self.ssm.put_inventory(InstanceId=iid, Items=[inventory_item(content=[{"Status": "ok"}],
                                                                     content_hash="same")])
        # Same hash, different content and capture time: AWS keeps what it has.
        self.ssm.put_inventory(InstanceId=iid, Items=[inventory_item(
            content=[{"Status": "changed"}], content_hash="same", capture_time="2025-06-01T00:00:00Z")])
        entry = self.stored(iid)
        expect_eq(entry["Content"], [{"Status": "ok"}], "content not updated")
        expect_eq(entry["CaptureTime"], CAPTURE_TIME, "capture time not updated")
        expect_eq((entry["Updates"], entry["SkippedUnchanged"]), (1, 1), "updates, skips")
        self.ssm.put_inventory(InstanceId=iid, Items=[inventory_item(
            content=[{"Status": "new"}], content_hash="other", capture_time="2025-06-02T00:00:00Z")])
        entry = self.stored(iid)
        expect_eq((entry["Content"], entry["CaptureTime"]), ([{"Status": "new"}], "2025-06-02T00:00:00Z"),
                  "new hash updates")
        expect_eq((entry["Updates"], entry["SkippedUnchanged"]), (2, 1), "updates, skips after change")
        expect_eq(self.inventory()["counters"],
                  {"put_calls": 3, "items_updated": 2, "items_skipped_unchanged": 1}, "counters")
        got = self.ssm.list_inventory_entries(InstanceId=iid, TypeName=HEALTH_TYPE)
        expect_eq(got["Entries"], [{"Status": "new"}], "ListInventoryEntries sees the update")

    def check_inventory_custom_type_limit(self) -> None:
        self.reset_inventory()
        types = [f"Custom:Type{i:02d}" for i in range(1, 21)]
        for first in range(0, 20, 10):  # two calls of 10 items, two instances
            self.ssm.put_inventory(InstanceId=INVENTORY_INSTANCES[first // 10],
                                   Items=[inventory_item(type_name=t) for t in types[first:first + 10]])
        expect_eq(self.inventory()["custom_type_names"], types, "20 custom types")
        code, _ = self.put_error(INVENTORY_INSTANCES[2], [
            inventory_item(type_name="Custom:Type01", content_hash="new"),
            inventory_item(type_name="Custom:Type21")])
        expect_eq(code, "CustomSchemaCountLimitExceededException", "21st custom type")
        expect(INVENTORY_INSTANCES[2] not in self.inventory()["inventory"]["us-east-1"],
               "the failing call stored nothing, not even its known type")
        # Existing custom types (and AWS types) still work on any instance.
        self.ssm.put_inventory(InstanceId=INVENTORY_INSTANCES[2], Items=[
            inventory_item(type_name="Custom:Type20"),
            inventory_item(type_name="AWS:Application", content=[{"Name": "ssm-companion"}])])
        expect_eq(len(self.inventory()["custom_type_names"]), 20, "still 20 custom types")

    def check_inventory_concurrency(self) -> None:
        self.reset_inventory()
        errors: list[BaseException] = []

        def writer(iid: str) -> None:
            try:
                client = self.session.client("ssm", endpoint_url=self.moto, config=NO_RETRY)
                for n in range(10):
                    client.put_inventory(InstanceId=iid, Items=[
                        inventory_item(content=[{"N": str(n)}], content_hash=f"h{n}")])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(iid,)) for iid in INVENTORY_INSTANCES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        expect(not errors, f"writer errors: {errors[:1]}")
        dump = self.inventory()
        expect_eq(dump["counters"]["items_updated"], 10 * len(INVENTORY_INSTANCES), "items_updated")
        for iid in INVENTORY_INSTANCES:
            entry = dump["inventory"]["us-east-1"][iid][HEALTH_TYPE]
            expect_eq((entry["Updates"], entry["Content"]), (10, [{"N": "9"}]), f"{iid} last write")

    def check_inventory_fault(self) -> None:
        self.reset_inventory()
        http_json("POST", f"{self.moto}/_emulator/stats/reset")
        self.set_faults([{"service": "ssm", "action": "PutInventory", "times": 1, "status": 400,
                          "code": "ThrottlingException", "message": "Rate exceeded"}])
        try:
            iid = INVENTORY_INSTANCES[0]
            err = self.client_error(lambda: self.ssm.put_inventory(InstanceId=iid, Items=[inventory_item()]))
            expect_eq(err.response["Error"]["Code"], "ThrottlingException", "error code")
            expect_eq(self.stored(iid), None, "faulted call not stored")
            self.ssm.put_inventory(InstanceId=iid, Items=[inventory_item()])
            expect(self.stored(iid) is not None, "retry stored")
            expect_eq(self.stats().get("ssm:PutInventory"), 2, "both calls counted")
        finally:
            self.set_faults([])

    def check_inventory_resets(self) -> None:
        self.ssm.put_inventory(InstanceId=INVENTORY_INSTANCES[0], Items=[inventory_item()])
        expect(self.inventory()["inventory"], "something stored")
        status, _, _ = http("GET", f"{self.moto}/_emulator/inventory/reset")
        expect_eq(status, 405, "GET on the reset endpoint")
        http_json("POST", f"{self.moto}/_emulator/inventory/reset")
        expect_eq(self.inventory(), {"inventory": {}, "custom_type_names": [], "schemas": {},
                                     "counters": {"put_calls": 0, "items_updated": 0,
                                                  "items_skipped_unchanged": 0},
                                     "rejections": {}}, "dump after reset")
        self.ssm.put_inventory(InstanceId=INVENTORY_INSTANCES[0], Items=[inventory_item()])
        expect_eq(http("POST", f"{self.moto}/moto-api/reset")[0], 200, "moto-api reset")
        expect_eq(self.inventory()["inventory"], {}, "moto-api reset clears the inventory")
        expect_eq(self.ssm.get_inventory()["Entities"], [], "GetInventory after reset")

    # -- fleet publisher: accounts, rate and parameter faults, sso-admin, identitystore, KMS --

    def assumed(self, account: str, role: str = "ssm-companion-publish-read",
                session_name: str = "ssm-companion-publish") -> boto3.Session:
        """A session with keys from sts:AssumeRole into ``role`` of ``account``."""
        creds = self.sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}",
                                     RoleSessionName=session_name, ExternalId="fleet")["Credentials"]
        return boto3.Session(region_name="us-east-1", aws_access_key_id=creds["AccessKeyId"],
                             aws_secret_access_key=creds["SecretAccessKey"],
                             aws_session_token=creds["SessionToken"])

    def check_account_pinned(self) -> None:
        """Without --multi-account, keys from AssumeRole into another account still act in the
        one pinned account (the emulator's default)."""
        other = self.assumed("111111111111").client("sts", endpoint_url=self.moto, config=NO_RETRY)
        expect_eq(other.get_caller_identity()["Account"], "123456789012", "pinned account")

    def check_rate_budget_fault(self) -> None:
        """20 quick S3 GETs against a budget of 5 a second: some pass, the rest 503 SlowDown."""
        self.set_faults([{"service": "s3", "action": "GET", "per_second": 5, "status": 503,
                          "code": "SlowDown", "message": "Please reduce your request rate."}])
        try:
            expect_eq(http_json("GET", f"{self.moto}/_emulator/faults")[0]["per_second"], 5,
                      "per_second in the rule listing")
            outcomes, started = [], time.monotonic()
            for _ in range(20):
                try:
                    self.s3.list_buckets()
                    outcomes.append("ok")
                except ClientError as err:
                    outcomes.append(f"{err.response['ResponseMetadata']['HTTPStatusCode']} "
                                    f"{err.response['Error']['Code']}")
            elapsed = time.monotonic() - started
            passed, slowed = outcomes.count("ok"), outcomes.count("503 SlowDown")
            expect_eq(passed + slowed, 20, f"only passes and 503 SlowDown: {outcomes}")
            expect(passed >= 5 and slowed >= 1, f"some pass, some slowed: {outcomes}")
            if elapsed < 1.0:  # one window: exactly the budget passed, first
                expect_eq(outcomes[:6], ["ok"] * 5 + ["503 SlowDown"], f"in {elapsed:.2f}s")
                expect_eq(passed, 5, f"passes in one window ({elapsed:.2f}s)")
            time.sleep(1.05)
            self.s3.list_buckets()  # a new window
            self.sts.get_caller_identity()  # other services unaffected
            # With times, only requests over the budget use it up; in-budget ones pass.
            self.set_faults([{"service": "sts", "action": "GetCallerIdentity", "per_second": 1,
                              "times": 2, "status": 400, "code": "Throttling"}])
            outcomes = []
            for _ in range(5):
                try:
                    self.sts.get_caller_identity()
                    outcomes.append("ok")
                except ClientError as err:
                    outcomes.append(err.response["Error"]["Code"])
            expect_eq(outcomes[:3], ["ok", "Throttling", "Throttling"], "budget 1, then 2 faults")
            expect_eq(self._times_left(), [], "times used up by the faults only")
        finally:
            self.set_faults([])

    def check_rate_budget_concurrent(self) -> None:
        """The threaded server counts concurrent requests once each: 30 at once against a budget
        of 10 in a window that outlasts them give exactly 10 passes."""
        self.set_faults([{"service": "sts", "action": "GetCallerIdentity", "per_second": 10,
                          "status": 400, "code": "Throttling"}])
        try:
            for attempt in range(3):  # a slow machine may straddle a window: try again
                time.sleep(1.05)  # a fresh window
                started = time.monotonic()
                statuses = self._concurrent_callers(30)
                if time.monotonic() - started < 0.9:
                    break
            expect_eq(sorted(statuses), [200] * 10 + [400] * 20, f"statuses ({attempt + 1} tries)")
        finally:
            self.set_faults([])

    def _concurrent_callers(self, n: int) -> list[int]:
        """``n`` GetCallerIdentity calls at once, each on its own connection; their statuses."""
        barrier, statuses, lock = threading.Barrier(n), [], threading.Lock()

        def call() -> None:
            barrier.wait()
            status, _, _ = self._raw_query("sts", {"Action": "GetCallerIdentity",
                                                   "Version": "2011-06-15"})
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=call) for _ in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        return statuses

    def check_param_fault(self) -> None:
        """Only requests with the given parameter values (or path) are refused."""
        denied = "arn:aws:iam::111111111111:role/ssm-companion-publish-read"
        self.set_faults([{"service": "sts", "action": "AssumeRole", "params": {"RoleArn": denied},
                          "status": 403, "code": "AccessDenied",
                          "message": "not authorized to perform: sts:AssumeRole"}])
        try:
            err = self.client_error(lambda: self.assumed("111111111111"))
            expect_eq((err.response["ResponseMetadata"]["HTTPStatusCode"],
                       err.response["Error"]["Code"]), (403, "AccessDenied"), "the chosen role")
            self.assumed("222222222222")  # any other role passes
            self.sts.assume_role(RoleArn=denied + "2", RoleSessionName="xy")  # equality, not prefix
            err = self.client_error(lambda: self.assumed("111111111111", session_name="other"))
            expect_eq(err.response["Error"]["Code"], "AccessDenied", "every time (no times)")
            # Two parameters: both must match.
            self.set_faults([{"service": "sts", "action": "AssumeRole", "status": 403,
                              "code": "AccessDenied",
                              "params": {"RoleArn": denied, "RoleSessionName": "publish"}}])
            self.assumed("111111111111", session_name="other")
            err = self.client_error(lambda: self.assumed("111111111111", session_name="publish"))
            expect_eq(err.response["Error"]["Code"], "AccessDenied", "both parameters match")
            # JSON-protocol services: top-level members of the body (KMS Sign of one key).
            kms = self.session.client("kms", endpoint_url=self.moto, config=NO_RETRY)
            keys = [kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
                    ["KeyMetadata"]["KeyId"] for _ in range(2)]
            self.set_faults([{"service": "kms", "action": "Sign", "params": {"KeyId": keys[0]},
                              "status": 400, "code": "ThrottlingException"}])
            sign = {"Message": b"m", "SigningAlgorithm": "ECDSA_SHA_256"}
            err = self.client_error(lambda: kms.sign(KeyId=keys[0], **sign))
            expect_eq(err.response["Error"]["Code"], "ThrottlingException", "KMS Sign of key 1")
            kms.sign(KeyId=keys[1], **sign)
            # REST (S3): path_contains on /bucket/key.
            s3 = self.session.client("s3", endpoint_url=self.moto,
                                     config=NO_RETRY.merge(Config(s3={"addressing_style": "path"})))
            s3.create_bucket(Bucket="smoke-faults")
            for key in ("mapping/111111111111.json", "mapping/222222222222.json"):
                s3.put_object(Bucket="smoke-faults", Key=key, Body=b"{}")
            self.set_faults([{"service": "s3", "action": "GET", "status": 503, "code": "SlowDown",
                              "path_contains": "/smoke-faults/mapping/111111111111"}])
            err = self.client_error(
                lambda: s3.get_object(Bucket="smoke-faults", Key="mapping/111111111111.json"))
            expect_eq((err.response["ResponseMetadata"]["HTTPStatusCode"],
                       err.response["Error"]["Code"]), (503, "SlowDown"), "the chosen object")
            expect_eq(s3.get_object(Bucket="smoke-faults", Key="mapping/222222222222.json")
                      ["Body"].read(), b"{}", "another object")
            # The rule selects GETs only: a PUT of the same object passes.
            s3.put_object(Bucket="smoke-faults", Key="mapping/111111111111.json", Body=b"{}")
        finally:
            self.set_faults([])

    def check_new_fault_fields_validated(self) -> None:
        for bad in ({"per_second": 0}, {"per_second": "5"}, {"per_second": True},
                    {"params": {}}, {"params": []}, {"params": {"RoleArn": 1}},
                    {"path_contains": ""}, {"path_contains": 3}):
            rule = [{"service": "sts", "status": 403, **bad}]
            status, _, data = http("POST", f"{self.moto}/_emulator/faults", body=rule)
            expect_eq(status, 400, f"rule {rule!r}")
            expect(next(iter(bad)) in json.loads(data)["error"], f"names the field: {data!r}")
        good = [{"service": "s3", "action": "GET", "per_second": 80, "status": 503,
                 "code": "SlowDown", "params": {"versionId": "v"}, "path_contains": "/b/k",
                 "times": 2, "delay_ms": 1}]
        self.set_faults(good)
        rules = http_json("GET", f"{self.moto}/_emulator/faults")
        expect_eq([{k: v for k, v in r.items() if v is not None} for r in rules], good, "listed")
        self.set_faults([])

    def check_sso_access_control(self) -> None:
        sso = self.session.client("sso-admin", endpoint_url=self.moto, config=NO_RETRY)
        arn = sso.list_instances()["Instances"][0]["InstanceArn"]
        attributes = [{"Key": "SSMSessionRunAs",
                       "Value": {"Source": ["${path:enterprise.employeeNumber}"]}}]
        config = {"AccessControlAttributes": attributes}
        for call in (
            lambda: sso.describe_instance_access_control_attribute_configuration(InstanceArn=arn),
            lambda: sso.update_instance_access_control_attribute_configuration(
                InstanceArn=arn, InstanceAccessControlAttributeConfiguration=config),
            lambda: sso.delete_instance_access_control_attribute_configuration(InstanceArn=arn),
        ):
            err = self.client_error(call)
            expect_eq((err.response["ResponseMetadata"]["HTTPStatusCode"],
                       err.response["Error"]["Code"]), (400, "ResourceNotFoundException"),
                      "before a create")
        sso.create_instance_access_control_attribute_configuration(
            InstanceArn=arn, InstanceAccessControlAttributeConfiguration=config)
        got = sso.describe_instance_access_control_attribute_configuration(InstanceArn=arn)
        expect_eq(got["Status"], "ENABLED", "Status")
        expect_eq(got["InstanceAccessControlAttributeConfiguration"], config, "configuration")
        err = self.client_error(lambda: sso.create_instance_access_control_attribute_configuration(
            InstanceArn=arn, InstanceAccessControlAttributeConfiguration=config))
        expect_eq((err.response["ResponseMetadata"]["HTTPStatusCode"],
                   err.response["Error"]["Code"]), (400, "ConflictException"), "second create")
        changed = {"AccessControlAttributes": attributes + [
            {"Key": "Department", "Value": {"Source": ["${path:enterprise.department}"]}}]}
        sso.update_instance_access_control_attribute_configuration(
            InstanceArn=arn, InstanceAccessControlAttributeConfiguration=changed)
        got = sso.describe_instance_access_control_attribute_configuration(InstanceArn=arn)
        expect_eq(got["InstanceAccessControlAttributeConfiguration"], changed, "after update")
        for bad_arn, bad_config in (
            ("arn:aws:sso:::instance/not-an-instance", config),
            (arn, {"AccessControlAttributes": [{"Key": "K", "Value": {"Source": ["a", "b"]}}]}),
            (arn, {"AccessControlAttributes": attributes * 2}),
        ):
            err = self.client_error(lambda: sso.update_instance_access_control_attribute_configuration(
                InstanceArn=bad_arn, InstanceAccessControlAttributeConfiguration=bad_config))
            expect_eq(err.response["Error"]["Code"], "ValidationException", f"{bad_config}")
        sso.delete_instance_access_control_attribute_configuration(InstanceArn=arn)
        err = self.client_error(
            lambda: sso.describe_instance_access_control_attribute_configuration(InstanceArn=arn))
        expect_eq(err.response["Error"]["Code"], "ResourceNotFoundException", "after delete")

    def check_sso_provisioned_per_account(self) -> None:
        sso = self.session.client("sso-admin", endpoint_url=self.moto, config=NO_RETRY)
        arn = sso.list_instances()["Instances"][0]["InstanceArn"]
        sets = [sso.create_permission_set(Name=f"Smoke{i}", InstanceArn=arn)
                ["PermissionSet"]["PermissionSetArn"] for i in range(2)]
        for account, ps in (("111111111111", sets[0]), ("222222222222", sets[1])):
            sso.create_account_assignment(
                InstanceArn=arn, TargetId=account, TargetType="AWS_ACCOUNT",
                PermissionSetArn=ps, PrincipalType="USER", PrincipalId="u-1")
        for account, want in (("111111111111", [sets[0]]), ("222222222222", [sets[1]]),
                              ("333333333333", [])):
            got = sso.list_permission_sets_provisioned_to_account(
                InstanceArn=arn, AccountId=account)["PermissionSets"]
            expect_eq(got, want, f"permission sets provisioned to {account}")
        described = sso.describe_permission_set(InstanceArn=arn, PermissionSetArn=sets[0])
        expect_eq(described["PermissionSet"]["SessionDuration"], "PT1H", "ISO-8601 duration")

    def check_identitystore_extensions(self) -> None:
        sso = self.session.client("sso-admin", endpoint_url=self.moto, config=NO_RETRY)
        ids = self.session.client("identitystore", endpoint_url=self.moto, config=NO_RETRY)
        store = sso.list_instances()["Instances"][0]["IdentityStoreId"]
        enterprise = {"aws:identitystore:enterprise": {"employeeNumber": "alice",
                                                       "department": "ops"}}
        alice = ids.create_user(IdentityStoreId=store, UserName="alice@example.com",
                                DisplayName="Alice", Name={"GivenName": "Alice", "FamilyName": "L"},
                                Extensions=enterprise)["UserId"]
        bob = ids.create_user(IdentityStoreId=store, UserName="bob@example.com", DisplayName="Bob",
                              Name={"GivenName": "Bob", "FamilyName": "M"})["UserId"]
        plain = ids.describe_user(IdentityStoreId=store, UserId=alice)
        expect("Extensions" not in plain, "not returned unless asked")
        expect_eq(plain["UserName"], "alice@example.com", "moto's answer kept")
        asked = ids.describe_user(IdentityStoreId=store, UserId=alice,
                                  Extensions=["aws:identitystore:enterprise"])
        expect_eq(asked.get("Extensions"), enterprise, "DescribeUser with Extensions")
        expect_eq(asked["DisplayName"], "Alice", "other attributes too")
        expect("Extensions" not in ids.describe_user(
            IdentityStoreId=store, UserId=bob, Extensions=["aws:identitystore:enterprise"]),
            "a user without extensions")
        listed = ids.list_users(IdentityStoreId=store, Extensions=["aws:identitystore:enterprise"])
        by_id = {u["UserId"]: u.get("Extensions") for u in listed["Users"]}
        expect_eq((by_id.get(alice), by_id.get(bob)), (enterprise, None), "ListUsers")
        err = self.client_error(lambda: ids.create_user(
            IdentityStoreId=store, UserName="carol", DisplayName="Carol",
            Name={"GivenName": "C", "FamilyName": "D"},
            Extensions={"aws:identitystore:other": {"x": "y"}}))
        expect_eq(err.response["Error"]["Code"], "ValidationException", "unsupported extension")
        ids.delete_user(IdentityStoreId=store, UserId=alice)
        err = self.client_error(lambda: ids.describe_user(
            IdentityStoreId=store, UserId=alice, Extensions=["aws:identitystore:enterprise"]))
        expect_eq(err.response["Error"]["Code"], "ResourceNotFoundException", "deleted user")

    def check_kms_sign_and_public_key(self) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        kms = self.session.client("kms", endpoint_url=self.moto, config=NO_RETRY)
        meta = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
        public = kms.get_public_key(KeyId=meta["KeyId"])
        expect_eq((public.get("KeySpec"), public.get("KeyUsage"), public["KeyId"]),
                  ("ECC_NIST_P256", "SIGN_VERIFY", meta["Arn"]), "KeySpec, KeyUsage, KeyId (ARN)")
        expect_eq(public["SigningAlgorithms"], ["ECDSA_SHA_256"], "SigningAlgorithms")
        key = load_der_public_key(public["PublicKey"])
        expect(isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1",
               f"a P-256 SPKI: {key!r}")
        message = bytes(range(256)) * 16  # 4,096 bytes: the most AWS signs RAW
        signature = kms.sign(KeyId=meta["KeyId"], Message=message, MessageType="RAW",
                             SigningAlgorithm="ECDSA_SHA_256")["Signature"]
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))  # raises if it does not verify
        try:
            key.verify(signature, message[:-1] + b"\x00", ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            pass
        else:
            raise CheckFailed("a tampered message verified")
        for message_type in ("RAW", None):
            extra = {"MessageType": message_type} if message_type else {}
            err = self.client_error(lambda: kms.sign(KeyId=meta["KeyId"], Message=message + b"x",
                                                     SigningAlgorithm="ECDSA_SHA_256", **extra))
            expect_eq((err.response["ResponseMetadata"]["HTTPStatusCode"],
                       err.response["Error"]["Code"]), (400, "ValidationException"),
                      f"4,097 bytes, MessageType {message_type}")
            expect("4096" in err.response["Error"]["Message"], "the limit named")
        expect(kms.verify(KeyId=meta["KeyId"], Message=message, Signature=signature,
                          SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"], "KMS Verify")

    # -- IMDS checks ------------------------------------------------------------

    def check_imds_token(self) -> None:
        status, headers, body = http("PUT", f"{self.imds}/latest/api/token",
                                     {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
        expect_eq(status, 200, "status")
        expect(len(body) >= 20, "token body")
        lowered = {k.lower(): v for k, v in headers.items()}
        expect_eq(lowered.get("x-aws-ec2-metadata-token-ttl-seconds"), "21600", "echoed TTL")

    def check_imds_no_token(self) -> None:
        expect_eq(self.imds_get("/latest/meta-data/instance-id", None)[0], 401, "no token")
        expect_eq(self.imds_get("/latest/meta-data/instance-id", "bogus")[0], 401, "bogus token")

    def check_imds_bad_ttl(self) -> None:
        for ttl in ("0", "21601", "abc", "-5", None):
            headers = {"X-aws-ec2-metadata-token-ttl-seconds": ttl} if ttl is not None else {}
            status, _, _ = http("PUT", f"{self.imds}/latest/api/token", headers)
            expect_eq(status, 400, f"TTL {ttl!r}")
        expect_eq(http("GET", f"{self.imds}/latest/api/token")[0], 405, "GET on token path")

    def check_imds_forwarded(self) -> None:
        status, _, _ = http("PUT", f"{self.imds}/latest/api/token",
                            {"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.0.0.1"})
        expect_eq(status, 403, "status")

    def check_imds_expiry(self) -> None:
        token = self.token(ttl=1)
        expect_eq(self.imds_get("/latest/meta-data/instance-id", token)[0], 200, "fresh token")
        time.sleep(2)
        expect_eq(self.imds_get("/latest/meta-data/instance-id", token)[0], 401, "expired token")

    def check_imds_metadata(self) -> None:
        token = self.token()
        expect_eq(self.imds_text("/latest/meta-data/instance-id", token),
                  IMDS_CONFIG["instance_id"], "instance-id")
        expect_eq(self.imds_text("/latest/meta-data/placement/region", token), "eu-west-1", "region")
        expect_eq(self.imds_text("/latest/meta-data/placement/availability-zone", token), "eu-west-1a", "az")
        expect_eq(self.imds_text("/latest/meta-data/instance-type", token), "t3.micro", "instance-type")
        expect(self.imds_text("/latest/meta-data/local-hostname", token).endswith(".compute.internal"),
               "local-hostname")
        expect(self.imds_text("/latest/meta-data/ami-id", token).startswith("ami-"), "ami-id")
        expect_eq(sorted(self.imds_text("/latest/meta-data/tags/instance", token).split("\n")),
                  sorted(IMDS_CONFIG["tags"]), "tag keys")
        expect_eq(self.imds_text("/latest/meta-data/tags/instance/ssm-companion:env", token),
                  "test", "tag value")
        expect_eq(self.imds_get("/latest/meta-data/tags/instance/nope", token)[0], 404, "unknown tag")
        expect_eq(self.imds_get("/latest/meta-data/nope", token)[0], 404, "unknown path")
        status, headers, body = self.imds_get("/latest/meta-data/instance-id", token)
        expect({k.lower(): v for k, v in headers.items()}["content-type"].startswith("text/plain"),
               "text/plain content type")

    def check_imds_credentials(self) -> None:
        token = self.token()
        expect_eq(self.imds_text("/latest/meta-data/iam/security-credentials/", token), "smoke-role", "role")
        creds = json.loads(self.imds_text("/latest/meta-data/iam/security-credentials/smoke-role", token))
        for key in ("AccessKeyId", "SecretAccessKey", "Token", "LastUpdated"):
            expect(creds.get(key), f"credentials {key}")
        expect_eq(creds["Code"], "Success", "Code")
        expect_eq(creds["Type"], "AWS-HMAC", "Type")
        expiry = time.strptime(creds["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
        ahead = (time.mktime(expiry) - time.mktime(time.gmtime())) / 3600
        expect(1.9 < ahead < 2.1, f"Expiration {creds['Expiration']} ~2 h ahead (got {ahead:.2f} h)")
        info = json.loads(self.imds_text("/latest/meta-data/iam/info", token))
        expect_eq(info["Code"], "Success", "iam/info Code")
        expect_eq(info["InstanceProfileArn"], "arn:aws:iam::123456789012:instance-profile/smoke-role",
                  "InstanceProfileArn")
        expect_eq(self.imds_get("/latest/meta-data/iam/security-credentials/other", token)[0], 404,
                  "unknown role")

    def check_imds_botocore(self) -> None:
        """botocore's own IMDSv2 client fetches region and credentials."""
        from botocore.utils import InstanceMetadataFetcher, InstanceMetadataRegionFetcher

        config = {"ec2_metadata_service_endpoint": self.imds + "/"}
        fetcher = InstanceMetadataFetcher(timeout=2, num_attempts=1, config=config)
        creds = fetcher.retrieve_iam_role_credentials()
        expect_eq(creds.get("role_name"), "smoke-role", "botocore role_name")
        expect(creds.get("access_key"), "botocore access key")
        region = InstanceMetadataRegionFetcher(timeout=2, num_attempts=1, config=config).retrieve_region()
        expect_eq(region, "eu-west-1", "botocore region")

    def check_imds_identity_document(self) -> None:
        doc = json.loads(self.imds_text("/latest/dynamic/instance-identity/document", self.token()))
        expect_eq(doc["instanceId"], IMDS_CONFIG["instance_id"], "instanceId")
        expect_eq(doc["region"], "eu-west-1", "region")
        expect_eq(doc["availabilityZone"], "eu-west-1a", "availabilityZone")
        expect_eq(doc["accountId"], "123456789012", "accountId")
        for key in ("instanceType", "imageId", "architecture", "pendingTime", "privateIp", "version"):
            expect(doc.get(key), f"identity document {key}")

    def check_imds_stats(self) -> None:
        http_json("POST", f"{self.imds}/_emulator/imds/stats/reset")
        token = self.token()
        self.token()
        self.imds_text("/latest/meta-data/instance-id", token)
        stats = http_json("GET", f"{self.imds}/_emulator/imds/stats")
        expect_eq(stats, {"PUT /latest/api/token": 2, "GET /latest/meta-data/instance-id": 1}, "stats")

    def check_imds_config_change(self) -> None:
        token = self.token()
        http_json("POST", f"{self.imds}/_emulator/imds/config",
                  {"instance_id": "i-0fffffffffffffff0", "tags_enabled": False})
        expect_eq(self.imds_text("/latest/meta-data/instance-id", token), "i-0fffffffffffffff0", "new id")
        expect_eq(self.imds_get("/latest/meta-data/tags/instance", token)[0], 404, "tags off")
        http_json("POST", f"{self.imds}/_emulator/imds/config", {"role": None})
        for path in ("iam/info", "iam/security-credentials/", "iam/security-credentials/smoke-role"):
            expect_eq(self.imds_get(f"/latest/meta-data/{path}", token)[0], 404, f"{path} without role")
        status, _, _ = http("POST", f"{self.imds}/_emulator/imds/config", body={"bogus": 1})
        expect_eq(status, 400, "unknown config key")
        http_json("POST", f"{self.imds}/_emulator/imds/config",
                  {"instance_id": IMDS_CONFIG["instance_id"], "tags_enabled": True, "role": "smoke-role"})

    def check_imds_faults(self) -> None:
        url = f"{self.imds}/_emulator/imds/faults"
        try:
            http_json("POST", url, {"mode": "refuse_tokens"})
            status, _, _ = http("PUT", f"{self.imds}/latest/api/token",
                                {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
            expect_eq(status, 403, "refuse_tokens")
            http_json("POST", url, {"mode": None})
            token = self.token()
            http_json("POST", url, {"mode": "error500"})
            expect_eq(self.imds_get("/latest/meta-data/instance-id", token)[0], 500, "error500")
            http_json("POST", url, {"mode": "delay", "delay_ms": 300})
            started = time.monotonic()
            self.imds_text("/latest/meta-data/instance-id", token)
            expect(time.monotonic() - started >= 0.3, "delay")
            status, _, _ = http("POST", url, body={"mode": "bogus"})
            expect_eq(status, 400, "bad mode")
        finally:
            http("POST", url, body={"mode": None})
        expect_eq(http("GET", f"{self.imds}/_emulator/nope")[0], 404, "unknown control path")


def check_multi_account() -> None:
    """A second emulator with --multi-account: AssumeRole into two other accounts; IAM users and
    the sso-admin configuration land in the assumed account and stay there."""
    proc, ready = start_emulator("--multi-account")
    try:
        smoke = Smoke(ready["moto"], ready["imds"])
        accounts = ("111111111111", "222222222222")
        sessions = {a: smoke.assumed(a) for a in accounts}
        for account, session in sessions.items():
            ident = session.client("sts", endpoint_url=smoke.moto, config=NO_RETRY).get_caller_identity()
            expect_eq((ident["Account"], ident["Arn"]),
                      (account, f"arn:aws:sts::{account}:assumed-role/ssm-companion-publish-read/"
                                "ssm-companion-publish"), "caller")
            session.client("iam", endpoint_url=smoke.moto, config=NO_RETRY).create_user(
                UserName=f"bob-{account}", Tags=[{"Key": "SSMSessionRunAs", "Value": "bob"}])
        for account, session in sessions.items():
            users = session.client("iam", endpoint_url=smoke.moto,
                                   config=NO_RETRY).list_users()["Users"]
            expect_eq([(u["UserName"], u["Arn"].split(":")[4]) for u in users],
                      [(f"bob-{account}", account)], f"IAM users of {account}")
        expect_eq(smoke.iam.list_users()["Users"], [], "none in the default account")
        expect_eq(smoke.sts.get_caller_identity()["Account"], "123456789012",
                  "unknown keys map to the default account")
        # State the emulator adds is per account too.
        ssos = {a: s.client("sso-admin", endpoint_url=smoke.moto, config=NO_RETRY)
                for a, s in sessions.items()}
        arn = ssos[accounts[0]].list_instances()["Instances"][0]["InstanceArn"]
        ssos[accounts[0]].create_instance_access_control_attribute_configuration(
            InstanceArn=arn, InstanceAccessControlAttributeConfiguration={
                "AccessControlAttributes": [{"Key": "SSMSessionRunAs",
                                             "Value": {"Source": ["${path:userName}"]}}]})
        err = smoke.client_error(
            lambda: ssos[accounts[1]].describe_instance_access_control_attribute_configuration(
                InstanceArn=arn))
        expect_eq(err.response["Error"]["Code"], "ResourceNotFoundException", "other account")
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        rc = proc.wait(timeout=10)
    expect_eq(rc, 0, "rc")


def check_lifecycle() -> None:
    """More emulators: SIGTERM and SIGINT give rc 0; stdin EOF also stops it."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc, _ = start_emulator()
        proc.send_signal(sig)
        expect_eq(proc.wait(timeout=10), 0, f"rc after {sig.name}")
        proc.stdin.close()  # type: ignore[union-attr]
    proc, _ = start_emulator()
    proc.stdin.close()  # type: ignore[union-attr]
    expect_eq(proc.wait(timeout=10), 0, "rc after stdin EOF")


def main() -> int:
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(IMDS_CONFIG, fh)
    proc, ready = start_emulator("--imds-config", fh.name)
    os.unlink(fh.name)
    print(f"emulator up: {json.dumps(ready)}", flush=True)
    smoke = Smoke(ready["moto"], ready["imds"])
    try:
        smoke.check("ready line", lambda: expect(ready.get("pid") == proc.pid, "pid in ready line"))
        checks = [
            ("control: unknown path 404", smoke.check_control_404),
            ("stats counting and reset", smoke.check_stats),
            ("seed.py users, roles, session preferences", smoke.check_seed),
            ("ssm session document round trip", smoke.check_session_document),
            ("iam GAAD pagination", smoke.check_gaad_pagination),
            ("iam GAAD bad Marker -> InvalidInput", smoke.check_gaad_bad_marker),
            ("fault: Throttling on GAAD page 2, once", smoke.check_gaad_throttling_fault),
            ("fault: ssm error code", smoke.check_ssm_fault),
            ("fault: s3 and sts errors", smoke.check_s3_and_sts_faults),
            ("fault: delay only", smoke.check_delay_fault),
            ("fault: invalid rules rejected", smoke.check_bad_fault_rules),
            ("fault: body truncate", smoke.check_body_fault_truncate),
            ("fault: body truncated-without-marker", smoke.check_body_fault_truncated_without_marker),
            ("fault: body repeat-marker", smoke.check_body_fault_repeat_marker),
            ("fault: body reset mid-body", smoke.check_body_fault_reset),
            ("fault: body reset leaves the emulator quiet and serving",
             smoke.check_body_fault_reset_quiet),
            ("fault: body empty", smoke.check_body_fault_empty),
            ("inventory: put, get, list round trip", smoke.check_inventory_round_trip),
            ("inventory: PutInventory validation errors", smoke.check_inventory_validation),
            ("inventory: GetInventory pagination and filters", smoke.check_inventory_pagination),
            ("inventory: unchanged ContentHash skipped", smoke.check_inventory_unchanged_hash),
            ("inventory: 21st custom type refused", smoke.check_inventory_custom_type_limit),
            ("inventory: concurrent writers", smoke.check_inventory_concurrency),
            ("fault: ssm PutInventory error", smoke.check_inventory_fault),
            ("accounts: pinned by default (AssumeRole changes nothing)", smoke.check_account_pinned),
            ("accounts: --multi-account, AssumeRole into two accounts", check_multi_account),
            ("fault: rate budget per_second (S3 SlowDown)", smoke.check_rate_budget_fault),
            ("fault: rate budget under concurrent requests", smoke.check_rate_budget_concurrent),
            ("fault: params and path_contains matchers", smoke.check_param_fault),
            ("fault: per_second, params, path_contains validated", smoke.check_new_fault_fields_validated),
            ("sso-admin: instance access control attributes", smoke.check_sso_access_control),
            ("sso-admin: permission sets provisioned per account",
             smoke.check_sso_provisioned_per_account),
            ("identitystore: user Extensions round trip", smoke.check_identitystore_extensions),
            ("kms: GetPublicKey KeySpec, Sign 4,096-byte limit, local verify",
             smoke.check_kms_sign_and_public_key),
            ("inventory: reset endpoints (last moto check)", smoke.check_inventory_resets),
            ("imds: token PUT echoes TTL", smoke.check_imds_token),
            ("imds: GET without token -> 401", smoke.check_imds_no_token),
            ("imds: bad TTL -> 400, GET token -> 405", smoke.check_imds_bad_ttl),
            ("imds: X-Forwarded-For -> 403", smoke.check_imds_forwarded),
            ("imds: expired token -> 401", smoke.check_imds_expiry),
            ("imds: metadata and tags", smoke.check_imds_metadata),
            ("imds: role credentials", smoke.check_imds_credentials),
            ("imds: botocore IMDSv2 client", smoke.check_imds_botocore),
            ("imds: identity document", smoke.check_imds_identity_document),
            ("imds: stats", smoke.check_imds_stats),
            ("imds: config change", smoke.check_imds_config_change),
            ("imds: fault modes", smoke.check_imds_faults),
            ("lifecycle: SIGTERM, SIGINT, stdin EOF", check_lifecycle),
        ]
        for name, fn in checks:
            smoke.check(name, fn)
    finally:
        proc.stdin.close()  # type: ignore[union-attr]  # --exit-on-stdin-eof
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    smoke.check("emulator exits 0 on stdin EOF", lambda: expect_eq(rc, 0, "rc"))
    print(f"smoke finished in {time.monotonic() - started:.1f}s", flush=True)
    print(f"{smoke.passed} passed, {smoke.failed} failed", flush=True)
    return 1 if smoke.failed else 0


if __name__ == "__main__":
    sys.exit(main())
