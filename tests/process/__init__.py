"""
The process tier: tests that start real C{twistd -n distro-node} processes
(and the Nacos SDKs' drivers) on 127.0.0.1 and talk to them over sockets;
their helpers are in L{tests._process}. Every other test module, directly in
C{tests/}, runs in memory (the fast tier): see README.md, "Testing".
"""
