"""A real HTTP origin on 127.0.0.1 for tests: it counts requests and can be told to misbehave."""

import hashlib
import mimetypes
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OriginState:
    def __init__(self):
        self.files = {}  # path -> bytes
        self.headers = {}  # path -> extra response headers
        self.requests = []  # (method, path, request headers)
        self.mode = "ok"  # ok | down (500) | slow | truncate | refuse
        self.delay = 0.0
        self.delays = {}  # path -> seconds before answering that path
        self.headers_304 = {}  # path -> the headers its 304s carry instead of its 200's
        self.chunked = set()  # paths answered with Transfer-Encoding: chunked (no Content-Length)
        self.trickle = {}  # path -> (bytes, seconds): the body sent that many bytes at a time, pausing
        self.lock = threading.Lock()

    def count(self, path=None, method=None):
        with self.lock:
            return sum(
                1
                for m, p, _h in self.requests
                if (path is None or p == path) and (method is None or m == method)
            )

    def put(self, path, body, **headers):
        self.files[path] = body
        self.headers[path] = headers


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        state = self.server.state
        path = self.path.split("?", 1)[0]
        with state.lock:
            state.requests.append(("GET", path, dict(self.headers)))
        # The file as it is when the request arrives: a slow answer sends what it had opened.
        body = state.files.get(path)
        if state.delay or state.delays.get(path):
            time.sleep(state.delay or state.delays[path])
        if state.mode == "down":
            return self._send(503, b"origin down", {"Content-Type": "text/plain"})
        if path.startswith("/redirect-away/"):
            return self._send(302, b"", {"Location": "http://example.invalid/" + path.split("/", 2)[2]})
        if path.startswith("/redirect-here/"):
            return self._send(302, b"", {"Location": "/" + path.split("/", 2)[2]})
        if path == "/gone.jpg":
            return self._send(410, b"gone", {})
        if body is None:
            return self._send(404, b"not found", {"Content-Type": "text/plain"})
        etag = '"' + hashlib.md5(body).hexdigest() + '"'
        headers = {"ETag": etag, "Content-Type": "application/octet-stream"}
        headers.update(state.headers.get(path, {}))
        if self.headers.get("If-None-Match") == etag:
            if path in state.headers_304:
                return self._send(304, b"", {"ETag": etag, **state.headers_304[path]})
            return self._send(304, b"", {k: v for k, v in headers.items() if k != "Content-Type"})
        if state.mode == "truncate":
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if path in state.chunked or path in state.trickle:
            return self._send_slowly(body, headers, *state.trickle.get(path, (16384, 0.0)))
        self._send(200, body, headers)

    def _send_slowly(self, body, headers, size, pause):
        """200 in chunks (chunked transfer coding when asked for), pausing between them."""
        chunked = self.path.split("?", 1)[0] in self.server.state.chunked
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header(
            "Transfer-Encoding" if chunked else "Content-Length", "chunked" if chunked else str(len(body))
        )
        self.end_headers()
        try:
            for start in range(0, len(body), size):
                part = body[start : start + size]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                self.wfile.flush()
                if pause:
                    time.sleep(pause)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_HEAD(self):
        state = self.server.state
        path = self.path.split("?", 1)[0]
        with state.lock:
            state.requests.append(("HEAD", path, dict(self.headers)))
        body = state.files.get(path)
        if state.mode == "down":
            status, headers, length = 503, {}, 11
        elif body is None:
            status, headers, length = 404, {}, 9
        else:
            guessed = mimetypes.guess_type(path)[0] or "application/octet-stream"
            status, headers, length = 200, {"Content-Type": guessed, **state.headers.get(path, {})}, len(body)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, status, body, headers):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


class OriginServer:
    def __init__(self):
        self.state = OriginState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self.state
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # used by gunicorn tests: serve a folder of files until killed
    import os
    import sys

    server = OriginServer()
    for name in os.listdir(sys.argv[1]):
        with open(os.path.join(sys.argv[1], name), "rb") as fh:
            server.state.put("/" + name, fh.read())
    print(server.port, flush=True)
    server.httpd.serve_forever()
