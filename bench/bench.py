#!/usr/bin/env python3
"""System-level benchmarks of ssm-companion's accounts capability (run as root, with the
emulator's venv: ``.venv/bin/python bench/bench.py``; ``scripts/bench.sh`` does the setup).

Measures, side by side in one run so machine noise hits both sides alike:

1. **First apply of N accounts vs N bare ``useradd`` runs** in the same kind of private user
   database (mount namespace + overlay over /etc, on disk, not tmpfs): wall time and the ratio.
2. **IAM calls per sync** for N principals, counted by the emulator: ssm-companion's
   ``GetAccountAuthorizationDetails`` pages, against the alternative (``ListUsers`` +
   ``ListRoles`` + one ``ListUserTags``/``ListRoleTags`` per principal) run with boto3 against the
   same emulator.
3. **Steady-state no-change cycle**: CPU time (user + system) and wall time of ``accounts apply``
   on a converged host, including the IAM read from the emulator.
4. **Idle RSS/CPU of ``run``** after ``--idle`` seconds (default 600): VmRSS, RssAnon, threads,
   and CPU used while idle.
5. The stripped release binary's size.

Prints a Markdown report on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "target" / "release" / "ssm-companion"
USERDB = REPO / "scripts" / "private-userdb.sh"
EMULATOR = REPO / "tests" / "emulator" / "emulator.py"


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


class Emulator:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(EMULATOR), "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        info = json.loads(self.proc.stdout.readline())
        self.moto, self.imds = info["moto"], info["imds"]
        self.iam = boto3.client(
            "iam", endpoint_url=self.moto, region_name="us-east-1",
            aws_access_key_id="bench", aws_secret_access_key="bench",
        )

    def seed(self, n: int) -> None:
        for i in range(n):
            tags = [{"Key": "SSMSessionRunAs", "Value": f"u{i}"}]
            if i % 3 == 0:
                tags.append({"Key": "ssm-companion:groups", "Value": "docker"})
            if i % 2:
                self.iam.create_user(UserName=f"user{i}", Tags=tags)
            else:
                self.iam.create_role(RoleName=f"role{i}", AssumeRolePolicyDocument="{}", Tags=tags)

    def stats(self) -> dict[str, int]:
        import urllib.request
        with urllib.request.urlopen(f"{self.moto}/_emulator/stats") as r:
            return json.load(r)

    def reset_stats(self) -> None:
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(f"{self.moto}/_emulator/stats/reset", method="POST")).read()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Host:
    """A private user database plus a config for ssm-companion."""

    def __init__(self, root: Path, name: str, config: str) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True)
        (self.dir / "vendor").mkdir()
        self.config = self.dir / "config.toml"
        self.config.write_text(config.replace("@STATE@", str(self.dir / "state")))

    def run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SSM_COMPANION_VENDOR_CONFIG_DIR": str(self.dir / "vendor")}
        return subprocess.run([str(USERDB), str(self.dir / "db"), *args], env=env, **kw)

    def ssmc(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        return self.run([str(BIN), "--config", str(self.config), *args], **kw)


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(f) -> tuple[float, float]:
    """(wall, CPU of children) of f()."""
    c0, t0 = child_cpu(), time.perf_counter()
    f()
    return time.perf_counter() - t0, child_cpu() - c0


def bench_apply_vs_useradd(root: Path, n: int) -> list[str]:
    log(f"first apply of {n} accounts vs {n} bare useradd runs")
    names = [f"bench{i}" for i in range(n)]
    accounts = root / "accounts.json"
    accounts.write_text(json.dumps({"account": [{"name": x} for x in names]}))
    config = (
        '[aws]\nimds_endpoint = "http://127.0.0.1:9"\n[accounts]\nsource = "file"\n'
        f'file = "{accounts}"\n[paths]\nstate_dir = "@STATE@"\n'
    )
    rows = []
    ratios = []
    for rep in range(2):
        # Bare useradd with the same options ssm-companion passes.
        base = Host(root, f"useradd{rep}", config)
        base.run(["true"], check=True)
        script = "set -e\n" + "".join(
            f"useradd --uid {30000 + i} --user-group --comment ssm-companion --home-dir /home/{x} "
            f"--shell /bin/bash --create-home --skel /etc/skel -- {x}\n"
            for i, x in enumerate(names)
        )
        (base.dir / "useradd.sh").write_text(script)
        w_useradd, _ = timed(lambda: base.run(["/bin/bash", str(base.dir / "useradd.sh")], check=True))
        ours = Host(root, f"ssmc{rep}", config)
        ours.run(["true"], check=True)
        w_apply, c_apply = timed(lambda: ours.ssmc(["accounts", "apply", "--json"], check=True, stdout=subprocess.DEVNULL))
        ratios.append(w_apply / w_useradd)
        rows.append(f"| {rep + 1} | {w_useradd:.1f} s | {w_apply:.1f} s | {w_apply / w_useradd:.2f} | {c_apply:.1f} s |")
    return [
        f"### First apply of {n} accounts vs {n} bare `useradd` (private database on ext4)",
        "",
        "| run | bare useradd | ssm-companion apply | ratio | apply CPU (incl. children) |",
        "|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Median ratio: **{statistics.median(ratios):.2f}×**.",
        "",
    ]


def list_approach_calls(emu: Emulator) -> int:
    """ListUsers + ListRoles + one List*Tags per principal, as a per-host script would."""
    emu.reset_stats()
    iam = emu.iam
    for page in iam.get_paginator("list_users").paginate():
        for u in page["Users"]:
            iam.list_user_tags(UserName=u["UserName"])
    for page in iam.get_paginator("list_roles").paginate():
        for r in page["Roles"]:
            iam.list_role_tags(RoleName=r["RoleName"])
    return sum(v for k, v in emu.stats().items() if k.startswith("iam:"))


def bench_iam_and_steady(root: Path, sizes: list[int]) -> list[str]:
    rows_calls = []
    rows_steady = []
    for n in sizes:
        log(f"IAM calls and steady-state cycle for {n} principals")
        emu = Emulator()
        try:
            emu.seed(n)
            config = (
                f'[aws]\nendpoint_url = "{emu.moto}"\nimds_endpoint = "{emu.imds}"\n'
                '[accounts]\nallowed_groups = ["docker"]\n[paths]\nstate_dir = "@STATE@"\n'
            )
            host = Host(root, f"iam{n}", config)
            host.run(["/bin/bash", "-c", "getent group docker >/dev/null || groupadd --system docker"], check=True)
            emu.reset_stats()
            w_first, _ = timed(lambda: host.ssmc(["accounts", "apply", "--json"], check=True, stdout=subprocess.DEVNULL))
            stats = emu.stats()
            gaad = stats.get("iam:GetAccountAuthorizationDetails", 0)
            other = sum(v for k, v in stats.items() if not k.startswith("iam:"))
            listing = list_approach_calls(emu)
            rows_calls.append(f"| {n} | {gaad} | {other} | {listing} |")
            walls, cpus = [], []
            for _ in range(5):
                w, c = timed(lambda: host.ssmc(["accounts", "apply", "--json"], check=True, stdout=subprocess.DEVNULL))
                walls.append(w)
                cpus.append(c)
            rows_steady.append(
                f"| {n} | {statistics.median(cpus) * 1e3:.0f} ms | {statistics.median(walls) * 1e3:.0f} ms | {w_first:.1f} s |"
            )
        finally:
            emu.stop()
    return [
        "### IAM calls per sync",
        "",
        "| principals | ssm-companion: GetAccountAuthorizationDetails pages | other AWS calls (SSM GetDocument) | List* + List*Tags approach |",
        "|---:|---:|---:|---:|",
        *rows_calls,
        "",
        "### Steady-state no-change cycle (`accounts apply` on a converged host, IAM read included)",
        "",
        "| principals | CPU (user+sys, median of 5, whole process incl. namespace setup) | wall (median) | first apply wall |",
        "|---:|---:|---:|---:|",
        *rows_steady,
        "",
    ]


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def bench_idle(root: Path, seconds: int) -> list[str]:
    log(f"idle RSS of `run` after {seconds} s")
    emu = Emulator()
    try:
        emu.seed(100)
        config = (
            f'[aws]\nendpoint_url = "{emu.moto}"\nimds_endpoint = "{emu.imds}"\n'
            '[accounts]\ninterval = "5m"\nsplay = "0s"\n[paths]\nstate_dir = "@STATE@"\n'
        )
        host = Host(root, "idle", config)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SSM_COMPANION_VENDOR_CONFIG_DIR": str(host.dir / "vendor")}
        proc = subprocess.Popen(
            [str(USERDB), str(host.dir / "db"), str(BIN), "--config", str(host.config), "run"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(10)  # first sync done
        cpu0 = proc_cpu_seconds(proc.pid)
        rss_after_sync = proc_status(proc.pid)["VmRSS"]
        time.sleep(max(seconds - 10, 1))
        st = proc_status(proc.pid)
        cpu = proc_cpu_seconds(proc.pid) - cpu0
        idle_for = max(seconds - 10, 1)
        proc.terminate()
        proc.wait(timeout=30)
    finally:
        emu.stop()
    return [
        f"### Idle daemon (`run`, 100 principals, interval 5m) after {seconds} s",
        "",
        "| VmRSS | RssAnon | VmHWM (peak) | threads | CPU while idle | RSS right after the first sync |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {st['VmRSS']} | {st['RssAnon']} | {st['VmHWM']} | {st['Threads']} | {cpu:.2f} s in {idle_for} s ({100 * cpu / idle_for:.3f} % of a core) | {rss_after_sync} |",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=1000, help="accounts for apply vs useradd")
    ap.add_argument("--principals", default="100,1000,2500", help="principal counts for IAM calls")
    ap.add_argument("--idle", type=int, default=600, help="seconds to let the daemon idle")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.py: run as root (private user databases need mount namespaces)")
    if not BIN.exists():
        sys.exit(f"{BIN} is missing: cargo build --release")
    out = ["## ssm-companion benchmark", "", f"Host: {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}", ""]
    with tempfile.TemporaryDirectory(prefix="ssmc-bench-", dir="/var/tmp") as d:
        root = Path(d)
        out += bench_apply_vs_useradd(root, args.accounts)
        out += bench_iam_and_steady(root, [int(x) for x in args.principals.split(",")])
        if args.idle > 0:
            out += bench_idle(root, args.idle)
    size = BIN.stat().st_size
    out += ["### Binary", "", f"Stripped release binary (x86_64, `opt-level = \"s\"`, LTO): **{size / 2**20:.1f} MiB** ({size} bytes).", ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
