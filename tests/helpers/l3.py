"""A mechanism driver that realises routers by recording them: the test double that turns
the Networking API's L3 on (``supports_l3``) in a server with no L3 datapath."""

from __future__ import annotations

import copy

from metalplane.common.exceptions import MetalplaneError
from metalplane.network.mech import Binding, MechanismDriver, PortContext, RouterState
from tests.helpers.server import RunningServer


class RecordingL3Driver(MechanismDriver):
    """Keeps the last :class:`RouterState` each router was realised with (``states``) and
    the routers deleted (``deleted``); raises ``fail`` from every L3 call when set."""

    name = "recording-l3"
    supports_l3 = True

    def __init__(self) -> None:
        self.states: dict[str, RouterState] = {}
        self.deleted: list[str] = []
        self.calls = 0
        self.fail: MetalplaneError | None = None

    def router_postcommit(self, router: RouterState) -> None:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        self.states[router.id] = copy.deepcopy(router)

    def delete_router_postcommit(self, router_id: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.deleted.append(router_id)
        self.states.pop(router_id, None)

    def bind_port(self, ctx: PortContext) -> Binding | None:
        return None  # binds no port: the switch drivers do

    def unbind_port(self, ctx: PortContext) -> Binding:
        return Binding(vif_type="unbound", driver=self.name)


def enable_l3(server: RunningServer) -> RecordingL3Driver:
    """Append a :class:`RecordingL3Driver` to ``server``'s mechanism drivers (L3 is served
    from now on) and return it."""
    driver = RecordingL3Driver()
    server.conductor.network.mechanism_drivers.append(driver)
    return driver
