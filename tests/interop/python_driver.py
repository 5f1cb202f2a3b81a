"""
Drives the official Nacos Python SDK (nacos-sdk-python 3.x, unmodified) for
the interop tests: commands come on stdin and answers and events go to
stdout, one JSON object per line. Run with the Python that has the SDK
(tests/interop/python-requirements.txt), never the project's own.

    {"id": 1, "op": "start", "servers": "127.0.0.1:P1,127.0.0.1:P2", "dir": D}
    {"id": 2, "op": "register", "service": "orders", "ip": "10.0.0.1", "port": 80,
     "metadata": {}}
    {"id": 3, "op": "deregister", "service": "orders", "ip": "10.0.0.1", "port": 80}
    {"id": 4, "op": "subscribe", "service": "orders"}
    {"id": 5, "op": "list", "service": "orders"}
    {"id": 6, "op": "shutdown"}

Each command is answered {"id": N, "ok": true, ...} or {"id": N, "ok": false,
"error": "..."}; a subscription's callbacks come as {"event": "push",
"service": S, "hosts": [[ip, port], ...]}. Servers are given as the SDK is
given them: HTTP port, the gRPC port being 1000 above.
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
        command = json.loads(line)
        rid, op = command.get("id"), command["op"]
        try:
            result = {}
            if op == "start":
                config = (
                    ClientConfigBuilder()
                    .server_address(command["servers"])
                    .namespace_id("public")
                    .grpc_config(GRPCConfig(grpc_timeout=5000))
                    .log_dir(command["dir"])
                    .cache_dir(command["dir"])
                    .log_level("INFO")
                    .build()
                )
                naming = await NacosNamingService.create_naming_service(config)
            elif op == "register":
                result["registered"] = await naming.register_instance(RegisterInstanceParam(
                    service_name=command["service"], group_name="DEFAULT_GROUP",
                    ip=command["ip"], port=command["port"], weight=1.0,
                    metadata=command.get("metadata", {}),
                ))
            elif op == "deregister":
                result["deregistered"] = await naming.deregister_instance(DeregisterInstanceParam(
                    service_name=command["service"], group_name="DEFAULT_GROUP",
                    ip=command["ip"], port=command["port"],
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
