"""Several gateway nodes: a Redis registry, an S3-compatible file store, relays between nodes.

Only imported when ``registry_url`` is set: the one-node gateway needs none of it (nor its
libraries, the ``cluster`` extra).

- ``ownership``: which node serves a request for a thread (pure: no I/O).
- ``registry``: nodes, thread claims with leases and fencing epochs, in Redis.
- ``objectstore``: the file store with bytes in S3 and metadata in Redis.
- ``relay``: a client's requests for a thread another node owns, over an internal websocket.
- ``node``: this node's membership, heartbeats, drain and claims, for the server.
"""
