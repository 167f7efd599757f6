#!/usr/bin/env python3
"""TCP listeners for ssm-companion's reachability tests (never shipped).

    listener.py --tls ADDR:PORT --cert CERT --key KEY [--plain ADDR:PORT ...]

--tls answers a TLS handshake with CERT (then closes); --plain answers with a plain-text HTTP
error, so a TLS client fails its handshake. Prints "ready" once every socket listens, serves until
killed or until stdin reaches EOF.
"""
import argparse
import socket
import ssl
import sys
import threading


def serve(sock, ctx):
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=handle, args=(conn, ctx), daemon=True).start()


def handle(conn, ctx):
    try:
        if ctx is None:
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nnot TLS\r\n")
        else:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


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
    args = ap.parse_args()
    ctx = None
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
    for spec in args.tls:
        threading.Thread(target=serve, args=(listen(spec), ctx), daemon=True).start()
    for spec in args.plain:
        threading.Thread(target=serve, args=(listen(spec), None), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
