#!/usr/bin/env python3
"""A webhook receiver that verifies Tally's deliveries with the Standard Webhooks reference library
(`pip install standardwebhooks`), for tests and for trying webhooks out.

Usage: webhook-receiver.py --secret whsec_… [--secret whsec_…] [--port 0] [--plan 200] [--log FILE]

Each request is verified against each --secret (standardwebhooks.Webhook.verify: the signature and a timestamp
within five minutes) and written to --log (or stdout) as one JSON line: webhook_id, timestamp, which secrets
verified it (by index), the payload and the status answered. --plan is the statuses to answer, in order, per
webhook-id: "500,200" answers a webhook-id's first delivery 500 and every later one 200; "hang" never answers;
"410" asks Tally to stop. --delay S waits S seconds before each answer. --retry-after N adds that header to answers that are not 2xx. The port it listens on is
printed first, as "listening on PORT".
"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

parser = argparse.ArgumentParser()
parser.add_argument("--secret", action="append", default=[])
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--plan", default="200")
parser.add_argument("--retry-after")
parser.add_argument("--delay", type=float, default=0, help="seconds to wait before answering")
parser.add_argument("--log")
args = parser.parse_args()

plan = args.plan.split(",")
seen = {}
lock = threading.Lock()
out = open(args.log, "a", buffering=1) if args.log else sys.stdout


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {name.lower(): value for name, value in self.headers.items()}
        verified, payload = [], None
        for index, secret in enumerate(args.secret):
            try:
                payload = Webhook(secret).verify(body, headers)
                verified.append(index)
            except WebhookVerificationError:
                pass
        webhook_id = headers.get("webhook-id", "")
        with lock:
            count = seen.get(webhook_id, 0)
            seen[webhook_id] = count + 1
        answer = plan[min(count, len(plan) - 1)]
        record = {
            "webhook_id": webhook_id, "timestamp": headers.get("webhook-timestamp"), "verified": verified,
            "signatures": len(headers.get("webhook-signature", "").split()), "payload": payload or json.loads(body or b"null"),
            "answer": answer, "received_at": time.time(),
        }
        with lock:
            out.write(json.dumps(record) + "\n")
            out.flush()
        if args.delay:
            time.sleep(args.delay)
        if answer == "hang":
            time.sleep(3600)
            return
        status = int(answer)
        self.send_response(status)
        if args.retry_after and not 200 <= status < 300:
            self.send_header("Retry-After", args.retry_after)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


class Server(ThreadingHTTPServer):
    # Tally sends up to 32 deliveries at once: the default listen backlog of 5 drops connections (retried 1 s later).
    request_queue_size = 256


server = Server(("127.0.0.1", args.port), Receiver)
server.daemon_threads = True
print(f"listening on {server.server_address[1]}", flush=True)
server.serve_forever()
