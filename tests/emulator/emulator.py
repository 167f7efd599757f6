#!/usr/bin/env python3
"""AWS + EC2 instance-metadata emulator for ssm-companion's tests and demo.

One process, two loopback listeners:

* **moto** (the AWS emulator), run in-process as a WSGI app behind our own
  middleware and served by werkzeug's threaded server.  The middleware
  - identifies each request as ``service:Action`` (service from the SigV4
    credential scope, action from ``X-Amz-Target``, the form-encoded
    ``Action=`` parameter, or the HTTP method for REST services such as S3),
  - counts them (``GET /_emulator/stats``, ``POST /_emulator/stats/reset``),
  - injects faults (``POST /_emulator/faults``): an error in the service's own
    wire protocol (so the SDKs parse the error code), a delay, or both, or a
    successful answer damaged so that it is partial (cut, mis-paged, reset
    mid-body, empty).

* **a strict IMDSv2 stub** (stdlib ``ThreadingHTTPServer``) that behaves like
  EC2's instance metadata service with ``HttpTokens=required``: a session
  token from ``PUT /latest/api/token`` is needed for every GET, tokens expire,
  ``X-Forwarded-For`` on the token PUT is refused, and the TTL header is echoed
  (the Rust AWS SDK insists on that).  Control endpoints live under
  ``/_emulator/imds/`` on the same port.

What we extend in moto, and why
-------------------------------
moto 5.2.5's ``iam:GetAccountAuthorizationDetails`` ignores ``MaxItems`` and
``Marker`` and always returns everything with ``IsTruncated=false``.  The
daemon pages through that call, so the emulator replaces the handler with one
that really paginates (see :func:`install_moto_extensions`).  moto's
dispatcher calls the method named after the action in snake_case on the
service's response class (``IamResponse``), so assigning a new function to
that class attribute is enough.

moto's serialiser also leaves ``PolicyName``/``PolicyId`` out of the
``Policies`` entries of that call; the replacement supplies them.

moto 5.2.5 has no SSM Inventory at all (``PutInventory``, ``GetInventory`` and
``ListInventoryEntries`` answer 500).  :func:`install_ssm_inventory` adds the
three to ``SimpleSystemManagerResponse`` the same way, keeping the data in an
:class:`InventoryStore` of ours.  Importing moto's SSM module costs ~0.6 s (it
pulls in moto.ec2), so the middleware installs them on the first SSM request
instead of at startup.  What they do:

* ``PutInventory`` validates like AWS: ``InstanceId`` pattern
  (``InvalidInstanceId``); 1..30 ``Items``, ``SchemaVersion`` and
  ``CaptureTime`` patterns, ``ContentHash`` <= 256 (``ValidationException``);
  ``TypeName`` 1..100 chars, ``AWS:``/``Custom:``, ``Custom:`` followed by an
  upper-case letter, ``AWS:`` only the known AWS types
  (``InvalidTypeNameException``); ``Content`` <= 10,000 maps of <= 50 string
  attributes, names 1..64, values <= 4096 chars
  (``InvalidItemContentException``); at most 20 custom type names in the
  account (``CustomSchemaCountLimitExceededException``); an attribute name
  differing only in case from one already seen for that custom type
  (``ItemContentMismatchException``; AWS documents no exact rule, so this is
  our reading; new attribute names are accepted).  A call is all or nothing.  An item
  whose ``ContentHash`` equals the stored one is skipped, as AWS does (counted).
* ``GetInventory``: ``Filters`` on ``AWS:InstanceInformation.InstanceId`` or
  ``<TypeName>.<Attribute>`` (any content entry matching; all six operators),
  ``ResultAttributes`` (only instances having that type, only that type in
  ``Data``), ``MaxResults`` 1..50 (default 50), opaque ``NextToken``; entities
  in instance-id order.  No ``Aggregators``; no synthetic
  ``AWS:InstanceInformation`` (instances appear only once they put inventory).
* ``ListInventoryEntries``: ``Filters`` (``Attribute`` or
  ``<TypeName>.<Attribute>``), ``MaxResults``, ``NextToken``; an instance or
  type without inventory gives ``Entries: []``.

Items are kept per region (from the SigV4 scope), instance and type; the
custom type names and their attribute names are account-wide.

For the fleet publisher, installed at startup (each in its own module under
``emulation/``, state kept on moto's per-account, per-region backend objects,
so accounts stay isolated and ``/moto-api/reset`` clears it):

* sso-admin ``Create``/``Describe``/``Update``/``Delete``
  ``InstanceAccessControlAttributeConfiguration`` (moto: 500), AWS's shapes:
  ``InstanceArn`` and ``InstanceAccessControlAttributeConfiguration`` =
  ``{"AccessControlAttributes": [{"Key": ..., "Value": {"Source":
  ["${path:...}"]}}]}`` (Key, one Source, at most 50, no duplicate keys:
  else ``ValidationException``); Describe answers ``Status`` ``ENABLED`` and
  the configuration; ``ResourceNotFoundException`` when there is none
  (Describe/Update/Delete), ``ConflictException`` on a second Create; Update
  replaces the attributes.  The instance ARN is checked for its form only.
* sso-admin ListPermissionSetsProvisionedToAccount per ``AccountId`` (moto
  ignores it): the sets with an assignment in that account, as AWS provisions
  them on CreateAccountAssignment; Create/DescribePermissionSet answer
  ``SessionDuration`` as an ISO-8601 string (``PT1H``; moto: a number the Rust
  SDK refuses).
* identitystore ``Extensions`` (moto drops them): CreateUser stores the map
  (only ``aws:identitystore:enterprise``, each value an object, else
  ``ValidationException``); DescribeUser and ListUsers return the stored
  extensions named in the request's ``Extensions`` list, none without it.
* KMS: GetPublicKey also answers ``KeySpec`` (moto gives only the deprecated
  ``CustomerMasterKeySpec``) and ``KeyUsage``, and ``KeyId`` is the key ARN as
  in AWS; Sign and Verify refuse a ``Message`` over 4,096 bytes with
  ``ValidationException`` (moto signs any size; AWS wants larger input as a
  digest).

Control endpoints
-----------------
On the moto port (everything else is passed to moto, including moto's own
``/moto-api/reset``, which wipes all emulated AWS state):

* ``GET /_emulator/stats`` -> ``{"iam:GetAccountAuthorizationDetails": 3, ...}``
* ``POST /_emulator/stats/reset``
* ``GET /_emulator/faults``, ``POST /_emulator/faults`` with a JSON list of
  rules (replaces the set; ``[]`` clears), see :class:`FaultRule`, e.g.
  ``{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": 2,
  "times": 1, "status": 400, "code": "Throttling", "message": "Rate exceeded",
  "delay_ms": 0}``, or one that damages a successful answer instead:
  ``{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": 2,
  "times": 1, "body": "truncate"}`` (``body``, exclusive with ``code`` and
  ``status``: ``truncate`` = the XML cut after about half of its
  ``</member>`` tags, Content-Length matching; ``truncated-without-marker`` =
  ``IsTruncated`` true, no ``Marker``; ``repeat-marker`` = ``IsTruncated``
  true, the request's own ``Marker`` back (requests without one pass);
  ``reset`` = headers with the full Content-Length, half the body, TCP RST;
  ``empty`` = 200 with an empty body, moto not called).  More selectors:
  ``params`` (``{"RoleArn": "arn:aws:iam::111111111111:role/r"}``: only
  requests whose query/form parameters, or top-level JSON body members for
  ``X-Amz-Target`` services, equal every one given), ``path_contains`` (text
  in the request path, for S3: ``/bucket/key``).  ``per_second`` makes a rate
  budget: ``{"service": "s3", "action": "GET", "per_second": 80, "status":
  503, "code": "SlowDown"}`` lets the first 80 selected requests of each
  one-second window pass and answers the rest with the error.
* ``GET /_emulator/inventory`` -> everything PutInventory stored::

      {"inventory": {"us-east-1": {"i-...": {"Custom:X": {"TypeName": ...,
          "SchemaVersion": ..., "CaptureTime": ..., "ContentHash": ... | null,
          "Content": [...], "Context": {...} | null, "Updates": 2,
          "SkippedUnchanged": 1, "UpdatedAt": "...Z"}}}},
       "custom_type_names": ["Custom:X", ...],      # in order of creation
       "schemas": {"Custom:X": ["Attr", ...]},
       "counters": {"put_calls": 3, "items_updated": 2, "items_skipped_unchanged": 1},
       "rejections": {"InvalidTypeNameException": 1, ...}}  # all three actions

* ``POST /_emulator/inventory/reset`` (so does moto's ``/moto-api/reset``)
* any other ``/_emulator/...``: 404 (JSON)

On the IMDS port:

* ``GET /_emulator/imds/stats`` -> ``{"PUT /latest/api/token": 2, ...}``,
  ``POST /_emulator/imds/stats/reset``
* ``GET /_emulator/imds/config``, ``POST /_emulator/imds/config`` (a JSON
  object merged into the live config; keys as in :class:`ImdsConfig`)
* ``GET /_emulator/imds/faults``, ``POST /_emulator/imds/faults`` with
  ``{"mode": null | "delay" | "error500" | "refuse_tokens", "delay_ms": N}``

This relies on moto internals (``DomainDispatcherApplication``,
``create_backend_app``, ``MotoRequestHandler``, ``IamResponse``,
``SimpleSystemManagerResponse``, ``SSOAdminResponse``,
``IdentityStoreResponse`` and ``KmsResponse`` and the JSON their handlers
return, ``ServiceException``/``JsonRESTError``, the backends'
``get_account_authorization_details``/``describe_key`` and ``ActionResult``
serialisation, the request's account from ``MOTO_ACCOUNT_ID`` or the access
key), so moto is pinned to exactly 5.2.5 in ``requirements.txt``.  Review
this file when bumping it.

Usage::

    python emulator.py [--host 127.0.0.1] [--moto-port 0] [--imds-port 0]
                       [--imds-config FILE] [--exit-on-stdin-eof] [--log FILE]
                       [--multi-account]

By default every request is answered in one account, the IMDS config's
``account_id`` (``MOTO_ACCOUNT_ID`` is set to it unless already set), whatever
key signed it: an ``sts:AssumeRole`` into another account changes nothing.
``--multi-account`` leaves ``MOTO_ACCOUNT_ID`` unset (and removes an inherited
one), so moto picks each request's account itself: ``AssumeRole`` into
``arn:aws:iam::<X>:role/...`` mints keys owned by X and every later call
signed with them lands in X (IAM users, SSO instances, ... per account;
``GetCallerIdentity`` says ``arn:aws:sts::X:assumed-role/<role>/<session>``);
a request may also name its account in an ``x-moto-account-id`` header.  Keys
moto did not issue (the IMDS stub's, any made-up ones) map to 123456789012,
so keep the IMDS ``account_id`` at that default with this option (a warning
is logged otherwise).  moto checks no trust policy or ExternalId: refuse an
AssumeRole with a fault rule (``params`` on ``RoleArn``).  The SSM Inventory
store above is the emulator's own and is not per account: all accounts share
it.

When both listeners are up, exactly one JSON line is printed on stdout:
``{"moto": "http://127.0.0.1:PORT", "imds": "http://127.0.0.1:PORT", "pid": N}``.
Nothing else is ever written to stdout.  The process serves until SIGTERM or
SIGINT (exit status 0), or, with ``--exit-on-stdin-eof``, until stdin closes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

# moto reads some settings from the environment; pick sensible defaults before
# importing it.  Requests carry their region in the SigV4 scope anyway.  The
# account is MOTO_ACCOUNT_ID, which main() defaults to the IMDS config's
# ``account_id`` (default 123456789012, also moto's own default) so that STS
# and the instance identity document agree (with --multi-account it stays
# unset: moto reads it per request).  moto accepts any credentials as
# long as INITIAL_NO_AUTH_ACTION_COUNT is left unset (= infinite).
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])

import moto  # noqa: E402
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from emulation.common import DEFAULT_ACCOUNT_ID, log  # noqa: E402
from emulation.iam_pages import install_moto_extensions  # noqa: E402
from emulation.identity_store import install_identity_store_extensions  # noqa: E402
from emulation.imds import ImdsConfig, load_imds_config, make_imds_server  # noqa: E402
from emulation.kms import install_kms_fixes  # noqa: E402
from emulation.middleware import EmulatorMiddleware, QuietMotoRequestHandler  # noqa: E402
from emulation.sso_admin import install_sso_admin_access_control  # noqa: E402


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _setup_logging(path: str | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(path, encoding="utf-8") if path else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    for name in ("emulator", "werkzeug"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    log.setLevel(logging.INFO)
    # werkzeug's own logger only reports errors (tracebacks) here.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--moto-port", type=int, default=0, help="moto port (0 = ephemeral)")
    parser.add_argument("--imds-port", type=int, default=0, help="IMDS port (0 = ephemeral)")
    parser.add_argument("--imds-config", metavar="FILE", help="JSON file with the IMDS config")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="exit as soon as stdin reaches EOF")
    parser.add_argument("--log", metavar="FILE", help="request log file (default: stderr)")
    parser.add_argument("--multi-account", action="store_true",
                        help="do not pin every request to the IMDS account (MOTO_ACCOUNT_ID): "
                             "AssumeRole into another account's role then acts in that account")
    return parser.parse_args(argv)


def _choose_account_mode(multi_account: bool, imds_config: ImdsConfig) -> None:
    """Pins moto to the IMDS account (default) or, with ``--multi-account``, lets moto take
    each request's account from its access key (see the module doc)."""
    if not multi_account:
        # One account for every request, whatever access key signed it (moto
        # would otherwise map keys it issued itself to their own accounts).
        os.environ.setdefault("MOTO_ACCOUNT_ID", imds_config.account_id)
        return
    inherited = os.environ.pop("MOTO_ACCOUNT_ID", None)
    if inherited is not None:
        log.warning("--multi-account: ignoring MOTO_ACCOUNT_ID=%s from the environment", inherited)
    if imds_config.account_id != DEFAULT_ACCOUNT_ID:
        log.warning("--multi-account: the IMDS account %s is not %s, the account moto gives "
                    "keys it did not issue (the IMDS stub's among them)",
                    imds_config.account_id, DEFAULT_ACCOUNT_ID)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _setup_logging(args.log)
    # stdout carries exactly one line (the ready line); anything moto prints
    # (it does use print() in places) goes to stderr instead.
    ready_out = sys.stdout
    sys.stdout = sys.stderr

    try:
        imds_config = load_imds_config(args.imds_config)
    except (OSError, ValueError) as exc:
        print(f"emulator: bad --imds-config: {exc}", file=sys.stderr)
        return 2

    _choose_account_mode(args.multi_account, imds_config)
    install_moto_extensions()
    install_sso_admin_access_control()
    install_identity_store_extensions()
    install_kms_fixes()
    middleware = EmulatorMiddleware(DomainDispatcherApplication(create_backend_app))
    moto_server = make_server(
        args.host, args.moto_port, middleware, threaded=True,
        request_handler=QuietMotoRequestHandler,
    )
    imds_server = make_imds_server(args.host, args.imds_port, imds_config)

    stop = threading.Event()
    # The handlers only record the signal: calling stop.set() from a handler deadlocks when the
    # signal lands while the main thread holds the Event's lock inside its own stop.wait()
    # (seen in CI: an emulator that never exited after SIGTERM).
    signalled: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: signalled.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: signalled.append(signum))

    # A short poll interval keeps shutdown() (which waits for the loop to
    # notice) quick; tests start and stop emulators a lot.
    threads = [
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                         name=name, daemon=True)
        for name, srv in (("moto", moto_server), ("imds", imds_server))
    ]
    if args.exit_on_stdin_eof:
        def watch_stdin() -> None:
            # os.read on the raw fd, not sys.stdin: a daemon thread blocked
            # inside the buffered reader holds its lock, and interpreter
            # shutdown then aborts ("could not acquire lock for <stdin>").
            try:
                while os.read(sys.stdin.fileno(), 65536):
                    pass
            except (OSError, ValueError):
                pass
            stop.set()

        threads.append(threading.Thread(target=watch_stdin, name="stdin", daemon=True))
    for thread in threads:
        thread.start()

    ready = {
        "moto": _url(args.host, moto_server.server_port),
        "imds": _url(args.host, imds_server.server_address[1]),
        "pid": os.getpid(),
    }
    ready_out.write(json.dumps(ready) + "\n")
    ready_out.flush()
    log.info("emulator ready: %s (moto %s, %s)", json.dumps(ready), moto.__version__,
             "multi-account" if args.multi_account else
             f"every request in account {os.environ['MOTO_ACCOUNT_ID']}")

    while not signalled and not stop.wait(0.1):  # a timed wait keeps signal handlers responsive
        pass
    log.info("emulator shutting down")
    for server in (moto_server, imds_server):
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
