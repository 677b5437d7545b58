"""The plain-socket echo pairs in compose (issue 14): udpclient/tcpclient against udpserver/tcpserver
over the ``sockets`` network, then the plain examples from the host on the servers' published ports.

Counted from /status: 1000 datagrams with ``sent == answered + lost``; 1000 messages of random sizes up
to 64 KiB, each echoed whole. Handshakes, not sleeps: the clients wait for their server themselves (a
probe datagram echoed, a connection accepted), and the tests wait for state ``done``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ops.cluster import echo_host_ports
from ops.compose import Project
from tests.integration.test_cluster import rerun, start, wait_done
from tests.integration.test_plain_peers import example

pytestmark = pytest.mark.docker
Report = Callable[[str], None]
N = 1000


def test_udp_and_tcp_echo_count_every_request(cluster: Project, report: Report) -> None:
    start(cluster, ["udpserver", "tcpserver"], {"udpserver": 1, "tcpserver": 1})
    env = {"ECHO_REQUESTS": str(N), "ECHO_RATE": "0", "ECHO_TIMEOUT": "30"}
    (udp,) = wait_done(rerun(cluster, "udpclient", 1, env), 180)
    (tcp,) = wait_done(rerun(cluster, "tcpclient", 1, env), 180)
    u, t = udp["counters"], tcp["counters"]
    report(f"udpclient: sent {u['sent']} answered {u['answered']} lost {u['lost']} reordered {u['reordered']}")
    report(
        f"tcpclient: sent {t['sent']} answered {t['answered']} lost {t['lost']} largest {t['largest']}"
        f" split reads {t['split_reads']} joined reads {t['joined_reads']}"
    )
    assert u["sent"] == N == u["answered"] + u["lost"]
    assert (u["answered"], u["rejected"], udp["exit_code"]) == (N, 0, 0)  # one docker bridge: no loss expected
    assert (t["sent"], t["answered"], t["lost"], t["rejected"], tcp["exit_code"]) == (N, N, 0, 0, 0)
    assert t["bytes_received"] == t["bytes_sent"] and 0 < t["largest"] <= 65536


def test_plain_examples_on_the_published_ports(cluster: Project, report: Report) -> None:
    start(cluster, ["udpserver", "tcpserver"], {"udpserver": 1, "tcpserver": 1})
    ports = echo_host_ports(cluster)
    udp = example("examples/udpclient.py", f"127.0.0.1:{ports['udpserver']}", "20", "10")
    report(f"examples/udpclient.py -> 127.0.0.1:{ports['udpserver']}: {udp[-1]}")
    assert udp == [f"message #{n}" for n in range(1, 21)] + ["sent 20 answered 20 lost 0"]
    tcp = example("examples/tcpclient.py", f"127.0.0.1:{ports['tcpserver']}", "20")
    report(f"examples/tcpclient.py -> 127.0.0.1:{ports['tcpserver']}: {len(tcp)} messages, last {tcp[-1]!r}")
    assert len(tcp) == 20 and all(line.endswith("echoed whole") for line in tcp)
