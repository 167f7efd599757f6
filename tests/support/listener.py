#!/usr/bin/env python3
"""TCP listeners for ssm-companion's reachability tests (never shipped).

    listener.py --tls ADDR:PORT --cert CERT --key KEY [--plain ADDR:PORT ...]
                [--proxy ADDR:PORT --proxy-upstream ADDR:PORT --proxy-auth USER:PASS --proxy-log FILE]

--tls answers a TLS handshake with CERT (then closes); --plain answers with a plain-text HTTP
error, so a TLS client fails its handshake. --proxy is an HTTP CONNECT proxy: it demands
`Proxy-Authorization: Basic base64(USER:PASS)` (else 407), tunnels every CONNECT to the upstream
whatever host was asked for, and appends one line per request to FILE: `CONNECT <target> <auth
ok|bad|none>`. With --http-dir DIR, a TLS connection's request is read and answered with the
bytes of DIR/answers/<path, "/" as "_"> sent as they are (a whole raw HTTP answer, any hostile
one; a file holding exactly HANG is never answered), the request line appended to
DIR/requests.log; other paths get the 404. Prints "ready" once every socket listens, serves until
killed or until stdin reaches EOF.
"""
import os
import time
import base64
import argparse
import socket
import ssl
import sys
import threading


def serve(sock, ctx, http_dir=None):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=handle, args=(conn, ctx, http_dir), daemon=True).start()


def answer(tls, http_dir):
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 8192:
        chunk = tls.recv(1)
        if not chunk:
            return None
        head += chunk
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    with open(os.path.join(http_dir, "requests.log"), "a") as f:
        f.write(line + "\n")
    path = (line.split() + ["", ""])[1]
    name = os.path.join(http_dir, "answers", path.replace("/", "_"))
    if not os.path.isfile(name):
        return None
    with open(name, "rb") as f:
        data = f.read()
    if data == b"HANG":
        while True:
            time.sleep(3600)
    return data


def handle(conn, ctx, http_dir=None):
    try:
        if ctx is None:
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nnot TLS\r\n")
        else:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                data = answer(tls, http_dir) if http_dir else None
                tls.sendall(data or b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def handle_proxy(conn, args):
    try:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = conn.recv(1)
            if not chunk:
                return
            head += chunk
        lines = head.decode("latin-1").split("\r\n")
        method, target = (lines[0].split() + ["", ""])[:2]
        want = "Basic " + base64.b64encode(args.proxy_auth.encode()).decode()
        got = next((l.split(":", 1)[1].strip() for l in lines[1:]
                    if l.lower().startswith("proxy-authorization:")), None)
        auth = "none" if got is None else ("ok" if got == want else "bad")
        with open(args.proxy_log, "a") as f:
            f.write(f"{method} {target} {auth}\n")
        if method != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        if auth != "ok":
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"test\"\r\n\r\n")
            return
        host, port = args.proxy_upstream.rsplit(":", 1)
        up = socket.create_connection((host, int(port)), timeout=5)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        t = threading.Thread(target=pipe, args=(up, conn), daemon=True)
        t.start()
        pipe(conn, up)
        t.join(5)
    except OSError:
        pass
    finally:
        conn.close()


def serve_proxy(sock, args):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=handle_proxy, args=(conn, args), daemon=True).start()


def listen(spec):
    host, port = spec.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(64)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", action="append", default=[])
    ap.add_argument("--plain", action="append", default=[])
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--proxy")
    ap.add_argument("--proxy-upstream")
    ap.add_argument("--proxy-auth")
    ap.add_argument("--proxy-log")
    ap.add_argument("--http-dir")
    args = ap.parse_args()
    ctx = None
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
    for spec in args.tls:
        threading.Thread(target=serve, args=(listen(spec), ctx, args.http_dir), daemon=True).start()
    for spec in args.plain:
        threading.Thread(target=serve, args=(listen(spec), None), daemon=True).start()
    if args.proxy:
        threading.Thread(target=serve_proxy, args=(listen(args.proxy), args), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
