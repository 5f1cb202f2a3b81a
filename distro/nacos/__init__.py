"""
The Nacos front end: Nacos 2.x/3.x SDKs' gRPC naming protocol (docs/nacos.md),
one more way in to the node's clients, registry and replication.
"""
