"""Networks, segments, subnets, ports and mechanism drivers (Neutron ML2 shapes). Not built yet."""
