"""The warden's namespace helper, on its own: what it holds, what it answers, how it leaves."""

from __future__ import annotations

import os
import socket

import pytest

from trio_sandbox.warden._netns import start_netns_helper


def test_the_helper_holds_its_channel_and_nothing_else_of_the_warden() -> None:
    # An inheritable descriptor, as --inject-fd's is until the warden reads it.
    secret_read, secret_write = os.pipe()
    os.set_inheritable(secret_read, True)
    helper = start_netns_helper()
    try:
        helper.channel.send(b"6")  # answered once it serves: it has opened all it will
        message, fds, _flags, _address = socket.recv_fds(helper.channel, 16, 1)
        assert message == b"S"
        with socket.socket(fileno=fds[0]) as made:
            assert made.family == socket.AF_INET6
        # One request at a time: once this is answered, its copy of that socket is closed.
        helper.channel.send(b"?")
        assert helper.channel.recv(16) == b"EINVAL"
        held = os.listdir(f"/proc/{helper.pid}/fd")
        assert len(held) == 4, held  # stdin, stdout, stderr and the channel
        targets = {os.readlink(f"/proc/{helper.pid}/fd/{fd}") for fd in held}
        assert os.readlink(f"/proc/self/fd/{secret_read}") not in targets
    finally:
        helper.close()
        os.close(secret_read)
        os.close(secret_write)
    assert helper.process.returncode == 0


@pytest.mark.parametrize("attempt", range(10))
def test_a_warden_that_hangs_up_mid_request_leaves_the_helper_quiet(
    attempt: int, capfd: pytest.CaptureFixture[str]
) -> None:
    helper = start_netns_helper()
    helper.channel.send(b"4")
    helper.channel.close()  # the reply, if it comes after this, meets a closed channel
    assert helper.process.wait(timeout=30) == 0
    assert capfd.readouterr().err == ""


def test_a_request_it_does_not_know_is_refused() -> None:
    helper = start_netns_helper()
    try:
        helper.channel.send(b"?")
        assert helper.channel.recv(16) == b"EINVAL"
    finally:
        helper.close()
