#!/usr/bin/env python3
"""Measures a Lambda function's init time locally: from process start until it asks the
Runtime API for its first event (GET /2018-06-01/runtime/invocation/next), which is when the
Lambda service would start the first invocation.

    scripts/measure-init.py target/release/scan [runs]

The function runs with CERTPILOT_TABLE and dummy AWS settings; it makes no AWS call before
its first event, so no AWS endpoint is needed. Prints each run and the median in ms.
"""
import http.server
import os
import socket
import statistics
import subprocess
import sys
import threading
import time


def measure(binary: str) -> float:
    ready = threading.Event()

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            if "/runtime/invocation/next" in self.path:
                ready.set()
            # Never hand out an event: the measurement ends at the first request.
            time.sleep(5)

        def log_message(self, *args):
            pass

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(
        os.environ,
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}",
        AWS_LAMBDA_FUNCTION_NAME="scan",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_LOG_GROUP_NAME="local",
        AWS_LAMBDA_LOG_STREAM_NAME="local",
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="x",
        CERTPILOT_TABLE="certpilot-local",
    )
    started = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not ready.wait(30):
            raise SystemExit("the function never asked for an event")
        return (time.perf_counter() - started) * 1000
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()


def main() -> None:
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    times = [measure(binary) for _ in range(runs)]
    for t in times:
        print(f"init {t:.1f} ms")
    print(f"median init {statistics.median(times):.1f} ms over {runs} runs ({binary})")


if __name__ == "__main__":
    main()
