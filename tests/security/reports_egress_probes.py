"""The egress attacks of the code in the sandbox, as scripts its python runs (standard library
only), each printing one JSON document last.

``FLOOD decoys host port``: ``decoys`` refused requests to distinct names as fast as it can (a
third as new connections with CONNECT, the rest pipelined 50 at a time on kept-alive
connections), then one allowed request to ``http://host:port/``.

``ODD_FORMS host port trap_port``: requests that name the host's loopback (``trap_port``, where a
service listens on the host) or the proxy's own port in every odd form a parser might read
differently: IPv6 and IPv4-mapped literals, decimal, octal and hex forms, trailing dots, fullwidth
digits, userinfo and fragments in absolute-form URLs, SOCKS5 address types; then one allowed
request. Prints the answer's status line (or SOCKS reply code) per form.

``DENIED names``: a CONNECT per name, printing each status line and body.
"""

from __future__ import annotations

FLOOD = r"""
import json, socket, sys, time
decoys, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def proxy():
    return socket.create_connection(("127.0.0.1", 3128), timeout=60)

def read_answers(s, count):
    data = b""
    while data.count(b"HTTP/1.1 403") < count:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.count(b"HTTP/1.1 403")

start = time.monotonic()
answered = sent = 0
while sent < decoys // 3:
    with proxy() as s:
        s.sendall(f"CONNECT decoy-{sent}.example:443 HTTP/1.1\r\n\r\n".encode())
        answered += read_answers(s, 1)
    sent += 1
while sent < decoys:
    batch = min(50, decoys - sent)
    with proxy() as s:
        s.sendall(b"".join(
            f"GET http://decoy-{sent + i}.example/ HTTP/1.1\r\nHost: d\r\n\r\n".encode()
            for i in range(batch)
        ))
        answered += read_answers(s, batch)
    sent += batch
elapsed = time.monotonic() - start
with proxy() as s:
    s.sendall(f"GET http://{host}:{port}/ HTTP/1.1\r\nHost: {host}:{port}\r\n"
              "Connection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
print(json.dumps({"answered": answered, "elapsed": elapsed,
                  "allowed": data.split(b"\r\n", 1)[0].decode()}))
"""

ODD_FORMS = r"""
import json, socket, struct, sys
host, port, trap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def http(request):
    try:
        with socket.create_connection(("127.0.0.1", 3128), timeout=30) as s:
            s.sendall(request.encode("utf-8"))
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\r\n", 1)[0].decode()
    except OSError as error:
        return "error " + type(error).__name__

def socks(address_type, address, target_port):
    try:
        with socket.create_connection(("127.0.0.1", 3128), timeout=30) as s:
            s.sendall(b"\x05\x01\x00")
            s.recv(2)
            if address_type == 3:
                address = bytes([len(address)]) + address
            s.sendall(bytes([5, 1, 0, address_type]) + address + struct.pack(">H", target_port))
            reply = s.recv(10)
            return "socks %d" % reply[1] if len(reply) > 1 else "socks closed"
    except OSError as error:
        return "error " + type(error).__name__

results = {}
for target_port in (trap, 3128):
    for form in ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "[0:0:0:0:0:ffff:7f00:1]",
                 "[::127.0.0.1]", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "127.0.1",
                 "127.0.0.1.", "localhost", "localhost.", "LOCALHOST", "localhost.localdomain",
                 "\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127\u30020\u30020\u30021",
                 "[::ffff:7f00:1%lo]", "0.0.0.0", "[::]", host + "." + "127.0.0.1.nip.io"):
        target = f"{form}:{target_port}"
        results["CONNECT " + target] = http(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
        results["GET " + target] = http(f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n")
    for url in (f"http://{host}:{port}@127.0.0.1:{target_port}/",
                f"http://127.0.0.1:{target_port}#@{host}:{port}/",
                f"http://127.0.0.1:{target_port}\\@{host}:{port}/",
                f"http://{host}:{port}%40127.0.0.1:{target_port}/",
                f"http://user:pass@127.0.0.1:{target_port}/",
                f"HTTP://127.0.0.1:{target_port}/",
                f"http:/127.0.0.1:{target_port}/"):
        results["GET " + url] = http(f"GET {url} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
    results[f"socks ipv4 127.0.0.1:{target_port}"] = socks(
        1, socket.inet_aton("127.0.0.1"), target_port)
    results[f"socks ipv6 mapped:{target_port}"] = socks(
        4, socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1"), target_port)
    results[f"socks ipv6 ::1:{target_port}"] = socks(
        4, socket.inet_pton(socket.AF_INET6, "::1"), target_port)
    for name in (b"localhost", b"127.0.0.1", b"2130706433", b"localhost.", b"", b"a\x00b",
                 b"127.0.0.1\x00." + host.encode()):
        results[f"socks name {name!r}:{target_port}"] = socks(3, name, target_port)
allowed = http(f"GET http://{host}:{port}/ HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
print(json.dumps({"results": results, "allowed": allowed}))
"""

DENIED = r"""
import json, socket, sys
answers = {}
for name in sys.argv[1:]:
    with socket.create_connection(("127.0.0.1", 3128), timeout=30) as s:
        s.sendall(f"CONNECT {name} HTTP/1.1\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    answers[name] = [head.split(b"\r\n", 1)[0].decode(), body.decode().strip()]
print(json.dumps(answers))
"""
