"""
Drives the official Nacos Python SDK (nacos-sdk-python 3.x, unmodified) for
the interop tests: commands come on stdin and answers and events go to
stdout, one JSON object per line. Run with the Python that has the SDK
(tests/interop/python-requirements.txt), never the project's own.

This is the protocol of every driver (tests/interop/: this one, rust_driver.py,
go/, java/):

    {"id": 1, "op": "start", "servers": "127.0.0.1:P1,127.0.0.1:P2", "dir": D,
     "namespace": "public", "username": U, "password": W}
    {"id": 2, "op": "register", "service": "orders", "ip": "10.0.0.1", "port": 80,
     "metadata": {}, "ephemeral": true}
    {"id": 3, "op": "deregister", "service": "orders", "ip": "10.0.0.1", "port": 80,
     "ephemeral": true}
    {"id": 4, "op": "subscribe", "service": "orders"}
    {"id": 5, "op": "list", "service": "orders"}
    {"id": 6, "op": "shutdown"}

Each command is answered {"id": N, "ok": true, ...} or {"id": N, "ok": false,
"error": "..."} (whatever the SDK raised, a refused start included: the
driver goes on reading commands); a subscription's callbacks come as
{"event": "push", "service": S, "hosts": [[ip, port], ...]}. Servers are
given as the SDK is given them: HTTP port, the gRPC port being 1000 above.
D is where the SDK keeps its logs and caches. Optional fields: "namespace"
(default "public"), "username" and "password" (given to the SDK's config
when present; the SDK logs in with them), "metadata" (default {}) and
"ephemeral" (default true; the instance's, as the SDK sends it). Every
instance is in the group DEFAULT_GROUP.
"""

import asyncio
import json
import sys


def emit(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def main():
    from v2.nacos import (
        ClientConfigBuilder,
        DeregisterInstanceParam,
        GRPCConfig,
        ListInstanceParam,
        NacosNamingService,
        RegisterInstanceParam,
        SubscribeServiceParam,
    )

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    naming = None
    while True:
        line = await reader.readline()
        if not line:
            break
        if not line.strip():
            continue
        rid = None
        try:
            command = json.loads(line)
            rid, op = command.get("id"), command["op"]
            if naming is None and op not in ("start", "shutdown"):
                raise RuntimeError("not started")
            result = {}
            if op == "start":
                builder = (
                    ClientConfigBuilder()
                    .server_address(command["servers"])
                    .namespace_id(command.get("namespace") or "public")
                    .grpc_config(GRPCConfig(grpc_timeout=5000))
                    .log_dir(command["dir"])
                    .cache_dir(command["dir"])
                    .log_level("INFO")
                )
                if command.get("username") is not None:
                    builder = builder.username(command["username"])
                if command.get("password") is not None:
                    builder = builder.password(command["password"])
                config = builder.build()
                naming = await NacosNamingService.create_naming_service(config)
            elif op == "register":
                result["registered"] = await naming.register_instance(RegisterInstanceParam(
                    service_name=command["service"], group_name="DEFAULT_GROUP",
                    ip=command["ip"], port=command["port"], weight=1.0,
                    metadata=command.get("metadata", {}),
                    ephemeral=command.get("ephemeral", True),
                ))
            elif op == "deregister":
                result["deregistered"] = await naming.deregister_instance(DeregisterInstanceParam(
                    service_name=command["service"], group_name="DEFAULT_GROUP",
                    ip=command["ip"], port=command["port"],
                    ephemeral=command.get("ephemeral", True),
                ))
            elif op == "subscribe":
                service = command["service"]

                async def pushed(instances, service=service):
                    emit({"event": "push", "service": service,
                          "hosts": sorted([i.ip, i.port] for i in instances)})

                await naming.subscribe(SubscribeServiceParam(
                    service_name=service, group_name="DEFAULT_GROUP", subscribe_callback=pushed,
                ))
            elif op == "list":
                instances = await naming.list_instances(ListInstanceParam(
                    service_name=command["service"], group_name="DEFAULT_GROUP",
                    healthy_only=None, subscribe=False,
                ))
                result["hosts"] = sorted([i.ip, i.port] for i in instances)
            elif op == "shutdown":
                if naming is not None:
                    await naming.shutdown()
                emit({"id": rid, "ok": True})
                return
            else:
                raise ValueError(f"unknown op {op!r}")
            emit(dict(result, id=rid, ok=True))
        except Exception as e:
            emit({"id": rid, "ok": False, "error": f"{e.__class__.__name__}: {e}"})


if __name__ == "__main__":
    asyncio.run(main())
