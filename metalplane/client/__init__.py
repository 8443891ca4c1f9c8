"""The Python client of metalplane's Bare Metal API, shared by the CLI and the lab's demo.

It talks to a server over HTTP only (:mod:`metalplane.client.http`) and polls nodes until
they rest (:mod:`metalplane.client.wait`); it imports none of the server's layers (api,
conductor, db, drivers, network, dhcp, lifecycle) but the state names of
:mod:`metalplane.lifecycle.states`, pure data, so the client and the state machine agree on
what a resting and a failed state are.
"""
