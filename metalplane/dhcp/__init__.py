"""DHCP for PXE: dnsmasq instances managed through --dhcp-hostsdir/--dhcp-optsdir.

This package must not import the network or driver layers; the lifecycle tells it which
ports to serve.
"""
