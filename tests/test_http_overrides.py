"""
The operators' overrides on the HTTP port (L{distro.http.overrides},
docs/http.md): list, set with a JSON body or parameters, clear; who may.
"""

import json
import urllib.parse

from distro.auth import EVERYTHING

from ._factories import instance
from ._http import Exchange
from ._node import service
from .test_http import USERS, HttpTestCase

IID = "10.1.0.1#8080#DEFAULT"
PATH = "/v1/overrides/public/DEFAULT_GROUP/orders/10.1.0.1/8080"


class HttpOverrideTests(HttpTestCase):
    def setUp(self):
        self.start()
        self.app = self.harness.client()
        self.app.ok("register", service=service(), instance=instance())

    def put(self, path, body, ip="127.0.0.1", headers=("Content-Type: application/json",)):
        status, _, raw = Exchange(self.site, ip).request("PUT", path, json.dumps(body).encode(), headers)
        return status, json.loads(raw)

    def shown(self):
        return [(h["instance_id"], h["enabled"], h["weight"])
                for h in self.app.ok("query", service=service())["service_info"]["hosts"]]

    def test_jsonBody(self):
        status, answer = self.put(PATH, {"enabled": False, "why": "disk failing"})
        self.assertEqual(status, 200, answer)
        entry = answer["override"]
        self.assertEqual((entry["instance_id"], entry["enabled"], entry["why"], entry["who"]),
                         (IID, False, "disk failing", "anonymous@127.0.0.1"))
        self.assertEqual(self.shown(), [])
        status, answer = self.put(PATH, {"enabled": None, "weight": 3})
        self.assertEqual(answer["override"].get("enabled"), None)
        self.assertEqual(self.shown(), [(IID, True, 3.0)])
        listed = self.document("GET", "/v1/overrides")["overrides"]
        self.assertEqual([(o["instance_id"], o["weight"]) for o in listed], [(IID, 3.0)])
        status, _, raw = Exchange(self.site, "127.0.0.1").request("DELETE", PATH + "?why=done")
        self.assertEqual((status, json.loads(raw)), (200, {"cleared": True}))
        self.assertEqual(self.shown(), [(IID, True, 1.0)])

    def test_parameters(self):
        """
        The fields as parameters (curl's -d), an empty one removing it.
        """
        code, _, raw = Exchange(self.site, "127.0.0.1").request(
            "PUT", PATH + "?cluster=DEFAULT", b"enabled=false&weight=2&metadata=%7B%22zone%22%3A%22b%22%7D")
        entry = json.loads(raw)["override"]
        self.assertEqual((code, entry["enabled"], entry["weight"], entry["metadata"]), (200, False, 2.0, {"zone": "b"}))
        code, _, raw = Exchange(self.site, "127.0.0.1").request("PUT", PATH, b"enabled=")
        self.assertEqual(json.loads(raw)["override"].get("enabled"), None)

    def test_badRequests(self):
        cases = [
            (PATH, {}, 400, "override"),
            (PATH, {"weight": "heavy"}, 400, "weight"),
            (PATH, {"enabled": "no"}, 400, "enabled"),
            (PATH, {"weight": 2, "why": "\ud800"}, 400, "why"),
            (PATH, {"weight": 2, "why": "line\nbreak"}, 400, "why"),
            (PATH, {"metadata": {"k": "\ud800"}}, 400, "metadata"),
            (PATH, [1], 400, "body"),
            ("/v1/overrides/public/DEFAULT_GROUP/orders/10.1.0.1/http", {"enabled": False}, 400, "port"),
            ("/v1/overrides/public/DEFAULT_GROUP/orders/10.1.0.1/0", {"enabled": False}, 400, "port"),
            ("/v1/overrides/public/DEFAULT_GROUP/orders/10.1.0.1", {"enabled": False}, 404, "path"),
            ("/v1/overrides/public/DEFAULT_GROUP/orders/10.1.0.1/8080?cluster=a%20b", {"enabled": False},
             400, "cluster"),
        ]
        for path, body, status, field in cases:
            code, answer = self.put(path, body)
            self.assertEqual(code, status, (path, body, answer))
            self.assertTrue(answer["message"].startswith(field), (path, body, answer))
        code, _, raw = Exchange(self.site, "127.0.0.1").request(
            "PUT", PATH, b"{", ("Content-Type: application/json",))
        self.assertEqual((code, json.loads(raw)["message"]), (400, "body: is not JSON"))

    def test_onlyOperators(self):
        """
        Without credentials, writes come from loopback (or admin_from)
        only: 403 otherwise.
        """
        code, answer = self.put(PATH, {"enabled": False}, ip="10.0.0.7")
        self.assertEqual(code, 403)
        self.assertIn("admin_from", answer["message"])
        code, _, _ = Exchange(self.site, "10.0.0.7").request("DELETE", PATH)
        self.assertEqual(code, 403)

    def test_adminGrant(self):
        self.start(auth_users=USERS, cluster_secret="s")
        token = self.document("POST", "/nacos/v1/auth/users/login", username="root", password="root-pw")["accessToken"]
        app = self.document("POST", "/nacos/v1/auth/users/login", username="app", password="app-pw")["accessToken"]
        code, answer = self.put(PATH + "?accessToken=" + app, {"enabled": False}, ip="10.0.0.9")
        self.assertEqual(code, 403)
        self.assertIn("admin", answer["message"])
        code, answer = self.put(PATH + "?accessToken=" + token, {"enabled": False}, ip="10.0.0.9")
        self.assertEqual((code, answer["override"]["who"]), (200, "root"))
        self.assertEqual(len(self.document("GET", "/v1/overrides", accessToken=app, namespace="public")["overrides"]), 1)
        self.assertEqual(self.ask("GET", "/v1/overrides", accessToken=app)[0], 403)


class NacosUpdateTests(HttpTestCase):
    """
    Nacos' C{PUT /nacos/v1/ns/instance} by an operator is an operator's
    override, of any instance (one a gRPC SDK or a distro client
    registered too), as Nacos 2 keeps it as instance metadata; by anyone
    else, the update of a heartbeat client's own instance.
    """

    def setUp(self):
        self.start(admin_from="127.0.0.1")
        self.app = self.harness.client()
        self.app.ok("register", service=service(), instance=instance(metadata={"zone": "a"}))

    def update(self, caller="127.0.0.1", **params):
        status, _, body = Exchange(self.site, caller).request(
            "PUT", "/nacos/v1/ns/instance", urllib.parse.urlencode(params).encode())
        return status, body

    def shown(self):
        return [(h["enabled"], h["weight"], h["metadata"])
                for h in self.app.ok("query", service=service())["service_info"]["hosts"]]

    def test_operatorOverrides(self):
        self.assertEqual(self.update(serviceName="orders", ip="10.1.0.1", port="8080", weight="5"), (200, b"ok"))
        self.assertEqual(self.shown(), [(True, 5.0, {"zone": "a"})])
        self.update(serviceName="DEFAULT_GROUP@@orders", ip="10.1.0.1", port="8080", enable="false",
                    metadata="zone=b", reason="maintenance")
        self.assertEqual(self.shown(), [])
        (entry,) = self.node.listOverrides(EVERYTHING)
        self.assertEqual((entry.changes(), entry.why),
                         ({"enabled": False, "weight": 5.0, "metadata": {"zone": "b"}}, "maintenance"))
        # A re-registration keeps it.
        self.app.ok("register", service=service(), instance=instance(weight=9))
        self.assertEqual(self.shown(), [])

    def test_loopbackAloneIsNoOperator(self):
        """
        On this path a caller on the node's machine is an operator only in
        C{admin_from}: a Nacos client there updates its own instance.
        """
        self.start()
        self.app = self.harness.client()
        self.app.ok("register", service=service(), instance=instance(metadata={"zone": "a"}))
        status, body = self.update(serviceName="orders", ip="10.1.0.1", port="8080", weight="5")
        self.assertEqual(status, 404)
        self.assertEqual(self.node.listOverrides(EVERYTHING), [])

    def test_notAnOperator(self):
        """
        From elsewhere, the update of a heartbeat client: 404 for an
        instance no heartbeat client holds, as before.
        """
        status, body = self.update("10.0.0.7", serviceName="orders", port="8080", weight="5",
                                   **{"ip": "10.1.0.1"})
        self.assertEqual(status, 404)
        self.assertIn(b"not registered", body)
        self.assertEqual(self.shown(), [(True, 1.0, {"zone": "a"})])

    def test_badParameters(self):
        for params, field in ((dict(port="8080", weight="x"), b"weight"),
                              (dict(port="99999", weight="1"), b"port"),
                              (dict(port="8080", weight="20000"), b"weight")):
            status, body = self.update(serviceName="orders", ip="10.1.0.1", **params)
            self.assertEqual(status, 400, body)
            self.assertTrue(body.startswith(field), body)
