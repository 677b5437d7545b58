"""``python -m ops.swarm``: the same cluster on Docker Swarm - one node (this engine) or three (engines in containers).

compose/compose.yaml stays the one description of the services; :mod:`ops.swarm.stack` derives the
stack file from it. Why the rest is shaped as it is (dnsrr, no published ports, a probe container to
read /status) is in docs/scaling.md.
"""
