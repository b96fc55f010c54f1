"""Servers for the shard tests, on 127.0.0.1 only: moto's S3 and a small HTTP server with Range requests."""

from __future__ import annotations

import contextlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def webdataset_tar(samples: list[tuple[str, dict[str, bytes]]]) -> bytes:
    """A tar holding each sample's members ``KEY.EXT`` in order, as WebDataset writes them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mtime = 1_700_000_000
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Files:
    """What the HTTP server serves: ``files[path] = bytes``; ``etag``/``last_modified`` say which headers it sends;
    ``drop_after[path] = n`` closes the connection after n bytes of that file (its full length declared)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.etag = True
        self.last_modified = False
        self.requests: list[str] = []


def _handler(files: Files):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _headers(self, data: bytes, status: int, start: int, end: int):
            self.send_response(status)
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            if files.etag:
                self.send_header("ETag", f'"{hash(data) & 0xFFFFFFFF:08x}"')
            if files.last_modified:
                self.send_header("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT")
            self.end_headers()

        def _serve(self, body: bool):
            files.requests.append(f"{self.command} {self.path}")
            data = files.files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end, status = 0, len(data), 200
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                start, end, status = int(a), min(len(data), int(b) + 1 if b else len(data)), 206
            self._headers(data, status, start, end)
            if not body:
                return
            cut = files.drop_after.get(self.path)
            if cut is not None and end > cut:
                self.wfile.write(data[start:max(start, cut)])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(data[start:end])

        def do_GET(self):
            self._serve(True)

        def do_HEAD(self):
            self._serve(False)
    return Handler


@contextlib.contextmanager
def http_server():
    """``(base_url, files)`` of an HTTP server on 127.0.0.1, stopped at the end."""
    files = Files()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
