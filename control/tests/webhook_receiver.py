#!/usr/bin/env python3
"""A webhook receiver for the tests, verifying both signature schemes independently of Jetmon:
Standard Webhooks with the `standardwebhooks` package from PyPI, Jetmon 2's
`X-Jetmon-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` by hand.

    webhook_receiver.py HOST LOG SECRETS [CERT KEY]

Listens on HOST (port 0: any), over TLS with CERT and KEY (PEM files) when they are given,
prints `listening on HOST:PORT`, and appends one JSON line
per request to LOG: path, delivery id, event type, the body, and for every secret listed for
the path's first segment... in SECRETS (a JSON file `{"name": ["whsec_…", …]}`, re-read on
every request) whether each scheme verifies with it. The path says how to answer:

    /ok/NAME       200
    /flaky/NAME    500 to the first 3 requests, then 200
    /hang/NAME     holds the request 45 s (longer than Jetmon waits), then 200
    /slow/NAME     holds it 4 s, then 200
    /gone/NAME     410
    /wpcom/NAME    the WPCOM notice: 503 while the file SECRETS.down exists, else 200; records
                   whether `Authorization: Bearer <the first secret listed for NAME>` came
"""

import hashlib
import hmac
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

HOST, LOG, SECRETS = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()
counts = {}
in_flight = {}


def jetmon2_valid(secret, header, body):
    """Jetmon 2's scheme, as a Jetmon 2 consumer checks it."""
    try:
        parts = dict()
        sigs = []
        for item in header.split(","):
            k, v = item.split("=", 1)
            if k == "v1":
                sigs.append(v)
            else:
                parts[k] = v
        t = parts["t"]
        if abs(time.time() - int(t)) > 300:
            return False
        want = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return any(hmac.compare_digest(want, s) for s in sigs)
    except Exception:
        return False


def standard_valid(secret, headers, body):
    try:
        Webhook(secret).verify(body, headers)
        return True
    except (WebhookVerificationError, Exception):
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        parts = self.path.strip("/").split("/")
        mode, name = parts[0], parts[1] if len(parts) > 1 else ""
        try:
            with open(SECRETS) as f:
                secrets = json.load(f).get(name, [])
        except (OSError, ValueError):
            secrets = []
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            counts[self.path] = counts.get(self.path, 0) + 1
            nth = counts[self.path]
            in_flight[name] = in_flight.get(name, 0) + 1
            concurrent = in_flight[name]
        record = {
            "at": time.time(),
            "path": self.path,
            "name": name,
            "nth": nth,
            "concurrent": concurrent,
            "id": headers.get("webhook-id"),
            "delivery": headers.get("x-jetmon-delivery"),
            "event": headers.get("x-jetmon-event"),
            "user_agent": headers.get("user-agent"),
            "body": body.decode("utf-8", "replace"),
            "standard": [standard_valid(s, headers, body) for s in secrets],
            "jetmon": [jetmon2_valid(s, headers.get("x-jetmon-signature", ""), body) for s in secrets],
            "signatures": headers.get("webhook-signature", ""),
            "auth_ok": bool(secrets) and headers.get("authorization") == f"Bearer {secrets[0]}",
            "status": None,
        }
        if mode == "wpcom" and os.path.exists(SECRETS + ".down"):
            record["status"] = 503
        with lock:
            with open(LOG, "a") as f:
                f.write(json.dumps(record) + "\n")
        try:
            if mode == "hang":
                time.sleep(45)
            elif mode == "slow":
                time.sleep(4)
            if mode == "flaky" and nth <= 3:
                status = 500
            elif mode == "gone":
                status = 410
            elif record["status"]:
                status = record["status"]
            else:
                status = 200
            reply = json.dumps({"received": record["id"]}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except OSError:
            pass
        finally:
            with lock:
                in_flight[name] -= 1


class Server(ThreadingHTTPServer):
    daemon_threads = True


server = Server((HOST, 0), Handler)
if len(sys.argv) > 5:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[4], sys.argv[5])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
print(f"listening on {HOST}:{server.server_address[1]}", flush=True)
server.serve_forever()
