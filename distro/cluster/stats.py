# -*- test-case-name: tests.test_clustermetrics -*-
"""
What replication did, counted where it happens (a snapshot sent or loaded,
a digest that found a difference), for the node's metrics: a scrape reads
these counts and walks nothing.
"""


class ReplicationStats:
    """
    Counts of one node's replication, both ways.

    @ivar snapshotsSent: snapshots streamed whole to a member (its
        C{snapshot_end} written).
    @ivar snapshotsReceived: snapshots of members loaded here (their
        C{snapshot_end} read after their C{snapshot_begin}).
    @ivar digestMismatches: hash digests whose buckets differed from ours:
        their listing was asked (C{digest_ask}).
    @ivar digestRepairs: digests (full or listings) that found clients
        missing here or at another revision: asked again (C{resend}).
    @ivar digestRepairedClients: the clients those digests asked again.
    """

    __slots__ = (
        "snapshotsSent", "snapshotsReceived", "digestMismatches", "digestRepairs",
        "digestRepairedClients",
    )

    def __init__(self):
        self.snapshotsSent = self.snapshotsReceived = 0
        self.digestMismatches = self.digestRepairs = self.digestRepairedClients = 0

    def counts(self):
        """
        C{{"snapshots_sent", "snapshots_received", "digest_mismatches",
        "digest_repairs", "digest_repaired_clients"}}.
        """
        return {
            "snapshots_sent": self.snapshotsSent,
            "snapshots_received": self.snapshotsReceived,
            "digest_mismatches": self.digestMismatches,
            "digest_repairs": self.digestRepairs,
            "digest_repaired_clients": self.digestRepairedClients,
        }
