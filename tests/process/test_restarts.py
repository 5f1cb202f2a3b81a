# -*- test-case-name: tests.process.test_restarts -*-
"""
Restarts of a whole cluster of real C{twistd -n distro-node} processes
(L{tests._process.ClusterTestCase}) under library clients that keep
retrying (issue 18, "restarts nobody sees").

Every wait is bounded (polled up to a deadline); every process is ended in
cleanup.
"""

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from tests._process import ORDERS, ClusterTestCase, hostIds, instanceId

# A client's instances are back this long after every node is ready again.
BACK_WITHIN = 3.0


class WholeClusterRestartTests(ClusterTestCase):
    """
    Every node SIGKILLed, then started again on the same ports.
    """

    clients = 12

    @defer.inlineCallbacks
    def registered(self):
        """
        Start the cluster and L{clients} library clients spread over it,
        each with one instance of C{orders}; wait until every node shows
        them.

        @return: a L{Deferred} firing with the instance ids.
        """
        yield self.startCluster()
        expected = []
        for i in range(self.clients):
            client = yield self.client(self.members, start=i % 3)
            yield client.register(ORDERS, f"10.8.0.{i + 1}", 8080)
            expected.append(instanceId(f"10.8.0.{i + 1}", 8080))
        yield self.waitHosts(self.members, ORDERS, expected, "the instances on every node")
        return sorted(expected)

    @defer.inlineCallbacks
    def killAll(self):
        """
        SIGKILL every node at once, and leave them down long enough for the
        clients' retry delay to reach its longest.
        """
        yield defer.gatherResults([self.kill(m) for m in self.members])
        yield deferLater(reactor, 2.5, lambda: None)

    @defer.inlineCallbacks
    def test_instancesBackAtOnce(self):
        """
        Every node is killed and started again: each client, refused a
        resume by node after node (none knows its session), goes round
        them without waiting and registers again under a new identity:
        every instance is on every node within L{BACK_WITHIN} seconds of
        the last node being ready.
        """
        expected = yield self.registered()
        yield self.killAll()
        yield defer.gatherResults([self.startMember(m) for m in self.members])
        for m in self.members:
            yield self.waitReady(m)
        back = reactor.seconds()
        yield self.waitHosts(self.members, ORDERS, expected, "the instances back")
        took = reactor.seconds() - back
        print(f"every instance back on every node {took:.2f} s after the cluster was back")
        self.assertLess(took, BACK_WITHIN)

    @defer.inlineCallbacks
    def test_lateMemberRemovesNothing(self):
        """
        Two nodes come back first, and the clients register again there;
        the third, started later, loads their data and holds nothing of
        its own: no subscriber of the first two ever sees an instance go
        (a restarted node's data never outranks a newer registration,
        Nacos #15857), and the third ends with every instance too.
        """
        expected = yield self.registered()
        yield self.killAll()
        first = self.members[:2]
        yield defer.gatherResults([self.startMember(m) for m in first])
        for m in first:
            yield self.waitReady(m)
        yield self.waitHosts(first, ORDERS, expected, "the instances back on two nodes")
        observers = []
        for m in first:
            observer = yield self.connectObserver(m)
            reply = yield observer.request("subscribe", service=ORDERS.as_wire())
            self.assertEqual(hostIds(reply["service_info"]), expected)
            observers.append(observer)
        last = self.members[2]
        yield self.startMember(last)
        yield self.waitReady(last)
        yield self.waitHosts(self.members, ORDERS, expected, "the instances on the third node")
        # Several digest intervals: time for anything stale to act.
        yield deferLater(reactor, 2.0, lambda: None)
        yield self.waitHosts(self.members, ORDERS, expected, "the instances still everywhere")
        for observer in observers:
            for push in observer.seen:
                self.assertEqual(hostIds(push["service_info"]), expected, push)
