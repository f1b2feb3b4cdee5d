"""A child process for the security tests of one sandbox per client: ``open_sandbox`` in
ephemeral mode behind a mutual-TLS face (127.0.0.1) whose CA signed two client certificates;
writes the two clients' bundles into ``DIR/a`` and ``DIR/b`` (0600 keys in 0700 directories),
prints ``URL <url>``, serves until its stdin ends. Run as root or as the ordinary user, with that
user's interpreter: ``python clients_child.py DIR``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from trio_sandbox.proxy import HttpFace
from trio_sandbox.sandbox import SandboxConfig, SandboxMode, open_sandbox
from trio_sandbox.tls import CertificateChain, MtlsIdentity
from trio_sandbox.tls._bundle import write_client_bundle
from trio_sandbox.tls._x509 import LeafRole, issue_leaves


async def main(directory: Path) -> None:
    server, a, b = issue_leaves(
        ca_common_name="clients test proxy CA",
        leaves=[
            (LeafRole.SERVER, "localhost", ("localhost", "127.0.0.1")),
            (LeafRole.CLIENT, "client a", ()),
            (LeafRole.CLIENT, "client b", ()),
        ],
    )
    chain = CertificateChain(server=MtlsIdentity(server), client=MtlsIdentity(a))
    for name, leaf in (("a", a), ("b", b)):
        write_client_bundle(
            directory / name,
            ca_pem=chain.ca_cert_pem(),
            certificate=leaf.certificate,
            private_key=leaf.private_key,
        )
    # The test tells the sandboxes apart by their published ports: no warm spare beside them.
    config = SandboxConfig(mode=SandboxMode.EPHEMERAL, warm_spares=0)
    async with open_sandbox(config, face=HttpFace(chain=chain)) as sandbox:
        print(f"URL {sandbox.proxy_url}", flush=True)
        async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
            while await stdin.receive_some():
                pass


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]))
