"""
The HTTP port of a node (C{http_listen}, default C{tcp:8848}): Nacos'
login and open API for the SDKs that log in or fall back to HTTP, health
and readiness for load balancers and orchestrators. A sibling of the other
ports over the same node: the same authority, readiness and limits.
"""
