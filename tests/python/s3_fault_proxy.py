"""An HTTP proxy in front of an S3 server that misbehaves on purpose, the way
S3 does under load: some requests get `503 SlowDown` (S3's throttling reply),
some connections are reset before any answer. Everything else is forwarded
unchanged (request line, headers, body), so signatures stay valid.

usage: s3_fault_proxy.py UPSTREAM_PORT LISTEN_PORT [--slowdown-every N] [--reset-every M] [--stop-after K]

Faults are counted over all requests: with --slowdown-every 7, requests 7,
14, 21, ... get 503; with --reset-every 11, requests 11, 22, ... have their
connection closed without a reply. It prints `ready` once listening and, on
exit (SIGINT or SIGTERM), how many faults it injected. With --stop-after K
it answers K requests and then exits at once, closing every connection: the
server going away in the middle of a run.
"""

import argparse
import http.client
import http.server
import os
import signal
import socket
import sys
import threading

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


class State:
    lock = threading.Lock()
    requests = 0
    slowdowns = 0
    resets = 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("upstream_port", type=int)
    parser.add_argument("listen_port", type=int)
    parser.add_argument("--slowdown-every", type=int, default=0)
    parser.add_argument("--reset-every", type=int, default=0)
    parser.add_argument("--stop-after", type=int, default=0)
    args = parser.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            with State.lock:
                State.requests += 1
                n = State.requests
            if args.stop_after and n > args.stop_after:
                print(f"stopped after {args.stop_after} requests", flush=True)
                os._exit(0)
            if args.reset_every and n % args.reset_every == 0:
                with State.lock:
                    State.resets += 1
                # SO_LINGER 0: the close sends RST, as a dropped connection does.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.connection.close()
                self.close_connection = True
                return
            if args.slowdown_every and n % args.slowdown_every == 0:
                with State.lock:
                    State.slowdowns += 1
                self.send_response(503, "Slow Down")
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOWDOWN)))
                self.end_headers()
                self.wfile.write(SLOWDOWN)
                return
            upstream = http.client.HTTPConnection("127.0.0.1", args.upstream_port, timeout=60)
            headers = {k: v for k, v in self.headers.items()}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(key, value)
            # A HEAD reply states the object's length without a body.
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                pass
            else:
                self.wfile.write(data)
            upstream.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.listen_port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        print(f"requests {State.requests} slowdowns {State.slowdowns} resets {State.resets}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
