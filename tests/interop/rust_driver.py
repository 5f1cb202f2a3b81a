"""
Drives the official Nacos Rust SDK (nacos-sdk-rust, unmodified, through its
Python binding nacos-sdk-rust-binding-py) for the interop tests, with the
commands and events of tests/interop/python_driver.py: JSON objects, one per
line, commands on stdin, answers and events on stdout. Run with the Python
that has the binding (.interop/rust, installed by tests/interop/setup.sh),
never the project's own.

The SDK keeps its logs and caches under $HOME (logs/nacos, nacos/naming):
start points HOME at its "dir" before the SDK first reads it. The binding
has no way to close a client: shutdown answers, then ends the process, which
closes its connection.
"""

import asyncio
import json
import os
import sys
import threading

GROUP = "DEFAULT_GROUP"
# Pushes come on the SDK's own threads, answers on the event loop's.
_out = threading.Lock()


def emit(message):
    line = json.dumps(message) + "\n"
    with _out:
        sys.stdout.write(line)
        sys.stdout.flush()


def hosts(instances):
    return sorted([i.ip, i.port] for i in instances)


def end(code=0):
    sys.stdout.flush()
    # The SDK's threads (tokio runtimes) would keep the interpreter from
    # finalising cleanly: leave without waiting for them.
    os._exit(code)


async def main():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    nacos = naming = None
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
                os.environ["HOME"] = command["dir"]
                import nacos_sdk_rust_binding_py as nacos

                options = nacos.ClientOptions(
                    server_addr=command["servers"],
                    namespace=command.get("namespace") or "public",
                    app_name="distro-interop",
                    username=command.get("username"),
                    password=command.get("password"),
                    naming_load_cache_at_start=False,
                )
                # Building connects (and logs in, given a username), blocking:
                # off the event loop.
                naming = await asyncio.to_thread(nacos.AsyncNacosNamingClient, options)
            elif op == "register":
                await naming.register_instance(command["service"], GROUP, nacos.NacosServiceInstance(
                    command["ip"], command["port"], weight=1.0,
                    ephemeral=command.get("ephemeral", True),
                    metadata={str(k): str(v) for k, v in command.get("metadata", {}).items()},
                ))
                result["registered"] = True
            elif op == "deregister":
                await naming.deregister_instance(command["service"], GROUP, nacos.NacosServiceInstance(
                    command["ip"], command["port"], ephemeral=command.get("ephemeral", True),
                ))
                result["deregistered"] = True
            elif op == "subscribe":
                service = command["service"]

                def pushed(instances, service=service):
                    emit({"event": "push", "service": service, "hosts": hosts(instances)})

                await naming.subscribe(service, GROUP, None, pushed)
            elif op == "list":
                result["hosts"] = hosts(await naming.get_all_instances(
                    command["service"], GROUP, None, False,
                ))
            elif op == "shutdown":
                emit({"id": rid, "ok": True})
                end()
            else:
                raise ValueError(f"unknown op {op!r}")
            emit(dict(result, id=rid, ok=True))
        except Exception as e:
            emit({"id": rid, "ok": False, "error": f"{e.__class__.__name__}: {e}"})
    end()


if __name__ == "__main__":
    asyncio.run(main())
