"""
distro's own port: its msgpack protocol (docs/PROTOCOL.md).
"""
