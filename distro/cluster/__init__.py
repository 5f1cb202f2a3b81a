"""
The cluster side of a node: members and their liveness (L{members}), peer
links (L{peer}), replication of owned clients (sent by L{sending}, applied by
L{receiving} over what L{senders} keeps per sender, in the records of
L{records}), and the service that ties them to a node (L{service}).
"""
