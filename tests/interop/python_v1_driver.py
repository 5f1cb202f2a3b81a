"""
Drives the v1 client of the official Nacos Python SDK (nacos-sdk-python
1.0.x, its C{nacos.NacosClient}, unmodified), which speaks Nacos' HTTP open
API and keeps its instances alive with beats, for the interop tests. Run
with the Python that has that SDK (tests/interop/python-v1-requirements.txt).

The protocol is the other drivers' (tests/interop/python_driver.py), with a
client name on each command, so one driver holds clients of several nodes:

    {"id": 1, "op": "start", "client": "a", "servers": "127.0.0.1:P", "dir": D,
     "username": U, "password": W}
    {"id": 2, "op": "register", "client": "a", "service": "orders", "ip": "10.0.0.1",
     "port": 80, "metadata": {}, "heartbeat_interval": 1}
    {"id": 3, "op": "list", "client": "a", "service": "orders"}
    {"id": 4, "op": "subscribe", "client": "a", "service": "orders", "interval": 1}
    {"id": 5, "op": "stop_beats", "client": "a"}
    {"id": 6, "op": "deregister", "client": "a", "service": "orders", "ip": "10.0.0.1",
     "port": 80}

C{list} answers C{"hosts": [[ip, port, healthy], ...]}; a subscription's
callbacks come as {"event": "push", "client": C, "service": S, "kind":
"ADDED"|"MODIFIED"|"DELETED", "ip": ..., "port": ..., "healthy": ...}.
C{stop_beats} stops the client's beat threads, as a process that stopped
would (its instances are not deregistered).
"""

import json
import sys
import threading

_write = threading.Lock()


def emit(message):
    with _write:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def main():
    import nacos

    clients = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        rid = command.get("id")
        try:
            answer = run(nacos, clients, command)
        except Exception as e:
            emit({"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"})
            continue
        emit(dict(answer, id=rid, ok=True))
    for client in clients.values():
        stopBeats(client)


def stopBeats(client):
    for task in list(client.heartbeats.values()):
        task.stop()


def run(nacos, clients, command):
    op = command["op"]
    name = command.get("client", "default")
    if op == "start":
        clients[name] = nacos.NacosClient(
            command["servers"],
            namespace=command.get("namespace") or None,
            username=command.get("username"),
            password=command.get("password"),
            logDir=command["dir"],
        )
        return {}
    client = clients[name]
    if op == "register":
        ok = client.add_naming_instance(
            command["service"], command["ip"], command["port"],
            metadata=command.get("metadata") or None,
            heartbeat_interval=command.get("heartbeat_interval"),
        )
        return {"registered": ok}
    if op == "deregister":
        return {"deregistered": client.remove_naming_instance(command["service"], command["ip"], command["port"])}
    if op == "list":
        listed = client.list_naming_instance(command["service"])
        return {"hosts": sorted([h["ip"], h["port"], h["healthy"]] for h in listed["hosts"]), "body": listed}
    if op == "subscribe":
        service = command["service"]

        def listener(event, instance):
            host = instance.instance
            emit({"event": "push", "client": name, "service": service, "kind": event,
                  "ip": host["ip"], "port": host["port"], "healthy": host["healthy"]})

        from nacos.listener import SubscribeListener

        client.subscribe(SubscribeListener(listener, f"driver-{service}"), command.get("interval", 1),
                         service_name=service)
        return {}
    if op == "stop_beats":
        stopBeats(client)
        return {}
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    main()
