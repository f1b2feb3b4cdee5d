"""A real HTTP/1.1 origin server for the egress tests, run as a child process.

``python origin_server.py ROOT [CERT KEY]`` serves the files under ROOT on 127.0.0.1 (a free
port, printed on stdout once listening), over TLS when given a certificate and key (requiring
a client certificate with ``ORIGIN_REQUIRE_CLIENT_CERT=1``). Keep-alive
is on (HTTP/1.1). Besides files:

- ``GET /chunked?n=N``: N chunks of 1000 bytes, with Transfer-Encoding: chunked;
- ``POST /echo``: answers with the request body (Content-Length or chunked) and
  ``X-Body-Length``;
- ``GET /headers``: the request's header fields as text, to see what the proxy forwarded;
- ``GET /redirect?to=URL``: a 302 to URL;
- ``GET /private/PATH``: PATH as above, only with the token of ``/auth`` (else a 401 with a
  Basic challenge, which git needs before it sends the credentials of its URL);
- ``GET /auth...``: 200 ``authorized`` if the token in ``ORIGIN_EXPECT_TOKEN`` came as
  ``Authorization: Bearer``/``token``, in Basic credentials, in the query or in the path; else
  401 ``unauthorized`` (``X-Seen-Authorization`` echoes what came, for the tests that look).
- ``GET /reflect?OPTIONS``: echoes the request line and header fields as they came, as an
  origin's error page or debug endpoint would (what the masking of responses is tested
  against); ``&``-separated options: ``gzip`` (gzipped when Accept-Encoding names gzip),
  ``force-gzip`` (Content-Encoding: gzip whatever was asked), ``te-gzip`` (Transfer-Encoding:
  gzip, chunked), ``escape`` (every character outside [A-Za-z0-9 :\\n] as JSON ``\\u00XX``),
  ``extension`` / ``trailer`` (chunked, the echo also in a chunk extension / a trailer field).
"""

from __future__ import annotations

import base64
import gzip
import http.server
import os
import ssl
import sys
import urllib.parse
from functools import partial


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/chunked"):
            count = int(self.path.partition("n=")[2] or "3")
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index in range(count):
                chunk = bytes([65 + index % 26]) * 1000
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", urllib.parse.unquote(self.path.partition("to=")[2]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/auth"):
            self._auth()
            return
        if self.path.startswith("/reflect"):
            self._reflect(set(self.path.partition("?")[2].split("&")))
            return
        if self.path.startswith("/private/"):
            if not self._authorized():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="origin"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.path = self.path.removeprefix("/private")
        if self.path == "/headers":
            body = "".join(f"{name}: {value}\n" for name, value in self.headers.items()).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def _authorized(self) -> bool:
        token = os.environ.get("ORIGIN_EXPECT_TOKEN", "")
        if not token:
            return False
        given = self.headers.get("Authorization", "")
        scheme, _, credentials = given.partition(" ")
        if scheme.lower() == "basic":
            user, _, password = base64.b64decode(credentials).decode().partition(":")
            if token in (user, password):
                return True
        return given in {f"Bearer {token}", f"token {token}"} or token in urllib.parse.unquote(
            self.path
        )

    def _auth(self) -> None:
        given = self.headers.get("Authorization", "")
        authorized = self._authorized()
        body = b"authorized\n" if authorized else b"unauthorized\n"
        self.send_response(200 if authorized else 401)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Authorization", given)
        self.end_headers()
        self.wfile.write(body)

    def _reflect(self, options: set[str]) -> None:
        text = self.requestline + "\n" + "".join(f"{n}: {v}\n" for n, v in self.headers.items())
        if "escape" in options:
            text = "".join(c if c.isalnum() or c in " :\n" else f"\\u{ord(c):04x}" for c in text)
        body = text.encode("latin-1")
        line = text.replace("\n", " ")
        self.send_response(200)
        if "te-gzip" in options:
            self.send_header("Transfer-Encoding", "gzip, chunked")
            self.end_headers()
            data = gzip.compress(body)
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
            return
        accepted = self.headers.get("Accept-Encoding", "")
        if "force-gzip" in options or ("gzip" in options and "gzip" in accepted):
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        if options & {"extension", "trailer"}:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            extension = f';echo="{line}"' if "extension" in options else ""
            trailer = f"X-Echo: {line}\r\n" if "trailer" in options else ""
            self.wfile.write(f"{len(body):x}{extension}\r\n".encode("latin-1") + body)
            self.wfile.write(f"\r\n0\r\n{trailer}\r\n".encode("latin-1"))
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Body-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    root = sys.argv[1]
    host = os.environ.get("ORIGIN_HOST", "127.0.0.1")
    server = http.server.ThreadingHTTPServer((host, 0), partial(Handler, directory=root))
    if len(sys.argv) == 4:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        if os.environ.get("ORIGIN_REQUIRE_CLIENT_CERT") == "1":
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(sys.argv[2])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
