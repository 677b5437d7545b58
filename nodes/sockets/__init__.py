"""The chapter's first programs: a UDP and a TCP echo pair on plain sockets, no ZeroMQ, no broker.

``udpserver``/``udpclient`` show what UDP promises (nothing: a datagram may be lost, duplicated or
reordered, and the client counts each honestly); ``tcpserver``/``tcpclient`` show why a byte stream
needs framing (a length prefix), which the chapter's fixed-buffer ``recv(1024)`` examples lack.
"""
