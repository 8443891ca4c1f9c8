"""DHCP for PXE: dnsmasq managed through --dhcp-hostsdir/--dhcp-optsdir. Not built yet."""
