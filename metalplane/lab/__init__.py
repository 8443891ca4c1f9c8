"""The virtual rack used by the demo and the tests. So far: the TCP to unix-socket
forwarder that lets nodes in namespaces reach the server; `lab up|status|down` is not built yet."""
