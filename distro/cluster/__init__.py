"""
The cluster side of a node: members and their liveness (L{members}), peer
links (L{peer}), replication of owned clients (L{replication}, L{records}),
and the service that ties them to a node (L{service}).
"""
