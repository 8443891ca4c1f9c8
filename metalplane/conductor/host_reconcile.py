"""The BareMetalHost reconcile, Metal3's way: compare a host's spec with its node and take
one step.

:func:`decide` is the whole policy, a pure function of the node (what is observed) and
the host's spec (what is wanted): it names one :class:`Step` (a provision verb, a deploy
with its image and config drive, a power change, deleting the node, dropping the
finalizer) or none. :class:`HostReconciler` runs one pass over every host, carries
changed BMC credentials to the node and executes the steps through the conductor, never
over HTTP. Being level-based it needs no memory to survive a restart: a pass after a
restart sees the node where it stopped and takes the next step (a graceful stop lets the
running step finish; a deploy cut by a crash is ``deploy failed``, Metal3's provisioning
error, retried like any failed deploy: when the spec changes). The only memory kept is
a retry backoff and what was logged, lost harmlessly.

Sources: Metal3 baremetal-operator ``host_state_machine.go`` (states, deletion with a
finalizer, detaching externally provisioned hosts) and ``pkg/provisioner/ironic``
(instance_info and config drive from the spec, redeploying a failed deploy only for a
new image). This module holds no HTTP and writes no host status (that is computed,
:func:`metalplane.common.metal3.host_status`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yaml

from metalplane.common.bmc_address import parse_bmc_address
from metalplane.common.exceptions import Invalid, MetalplaneError, NotFound
from metalplane.conductor.resources import DELETE_ALLOWED
from metalplane.db import api as db_api
from metalplane.db.kube import StaleVersion, kube_delete, kube_get, kube_list, kube_update
from metalplane.db.models import KubeObject, Node
from metalplane.lifecycle import states

if TYPE_CHECKING:
    from metalplane.conductor.hosts import KubeStore

__all__ = ["FINALIZER", "IMAGE_KEYS", "HostReconciler", "Step", "bmc_address", "decide",
           "image_info", "mirror_spec", "same_image"]

LOG = logging.getLogger(__name__)

FINALIZER = "baremetalhost.metal3.io"  # Metal3's hostFinalizer
# instance_info keys a host's spec.image sets (as metalplane's deploy reads them)
IMAGE_KEYS = ("image_source", "image_checksum", "image_os_hash_algo", "image_disk_format")
_IMAGE_FIELDS = (("url", "image_source"), ("checksum", "image_checksum"),
                 ("checksumType", "image_os_hash_algo"), ("format", "image_disk_format"))
_ROOT_HINTS = {"name": "deviceName", "hctl": "hctl", "model": "model", "vendor": "vendor",
               "serial": "serialNumber", "size": "minSizeGigabytes", "wwn": "wwn",
               "wwn_with_extension": "wwnWithExtension",
               "wwn_vendor_extension": "wwnVendorExtension", "rotational": "rotational"}
_BUSY_DEPLOY = frozenset({states.DEPLOYING, states.DEPLOY_WAIT})
_POWER = {True: "power on", False: "power off"}
RETRY_BACKOFF = (1.0, 60.0)  # seconds: first retry of a step that did not take, and the cap


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the reconcile. ``kind``: ``verb`` (``arg`` a provision verb),
    ``deploy`` (write the spec's image to instance_info, then deploy with the config
    drive), ``power`` (``arg`` ``power on``/``power off``), ``delete_node`` (``arg``
    ``detach``: maintenance first, as Metal3 detaches an externally provisioned host),
    ``finalize`` (drop metalplane's finalizer; the host goes when none is left)."""

    kind: str
    arg: str = ""


def image_info(spec: dict[str, Any]) -> dict[str, Any]:
    """The instance_info image keys of ``spec.image`` (Metal3 ``Image``: ``url`` →
    ``image_source``, ``checksum`` → ``image_checksum``, ``checksumType`` →
    ``image_os_hash_algo``, ``format`` → ``image_disk_format``); ``{}`` without a URL."""
    image = spec.get("image") or {}
    if not image.get("url"):
        return {}
    return {key: image[field] for field, key in _IMAGE_FIELDS if image.get(field)}


def same_image(node: Any, spec: dict[str, Any]) -> bool:
    """Whether the node's instance_info holds exactly ``spec.image`` (Metal3's
    ``ironicHasSameImage``)."""
    info = node.instance_info or {}
    want = image_info(spec)
    return all(info.get(k) == want.get(k) for k in IMAGE_KEYS)


def decide(node: Any, spec: dict[str, Any], deleting: bool = False,
           drive: Callable[[], dict[str, Any] | None] | None = None,
           powered_off_tried: bool = False) -> Step | None:
    """The one step that moves ``node`` (Ironic's fields; None: it no longer exists)
    towards ``spec`` (a BareMetalHost's), or None (nothing to do, or wait: the node is
    locked, moving or in maintenance).

    - ``deleting`` (the host has a ``deletionTimestamp``): an externally provisioned host
      is detached and its node deleted; a deployed node (``active``, ``deploy failed``,
      ``error``) is undeployed first (deleting, then cleaning); a resting node is powered
      off once (``powered_off_tried``: a failed power off does not block the deletion;
      not for an externally provisioned host), then deleted; with no node left, the
      finalizer goes.
    - the lifecycle: ``enroll`` → manage (not after a failure: a registration error waits
      for new credentials); ``manageable`` → adopt (``externallyProvisioned``), else
      inspect once, then provide.
    - provisioning: ``available`` with ``spec.image`` → deploy; ``active`` whose image is
      not the spec's (removed or changed) → undeploy (then, available, the new one is
      deployed); ``deploy failed`` → undeploy without an image, deploy again only when
      the spec's image or config drive (``drive()``) differs from the failed attempt's,
      else it stays failed (Metal3's provisioning error, no timed retry).
    - power, on a resting ``available`` or ``active`` node: ``spec.online`` (true → on,
      false → off).
    """
    if node is None:
        return Step("finalize") if deleting else None
    if node.reservation or node.target_provision_state or node.target_power_state:
        return None
    state = str(node.provision_state)
    external = bool(spec.get("externallyProvisioned"))
    if node.maintenance:
        return Step("delete_node") if deleting else None
    if deleting:
        if external and state in (states.ACTIVE, states.ADOPT_FAILED):
            return Step("delete_node", "detach")
        if state in (states.ACTIVE, states.DEPLOY_FAILED, states.ERROR):
            return Step("verb", "undeploy")
        if state in DELETE_ALLOWED:
            if (node.power_state == _POWER[True] and state != states.ENROLL
                    and not powered_off_tried and not external):
                return Step("power", _POWER[False])
            return Step("delete_node")
        if state in states.FAILED_STATES:
            return Step("delete_node", "detach")
        return None
    if state == states.ENROLL:
        return None if node.last_error else Step("verb", "manage")
    if state == states.MANAGEABLE:
        if external:
            return Step("verb", "adopt")
        return Step("verb", "inspect" if node.inspection_finished_at is None else "provide")
    want_image = bool(image_info(spec)) and not external
    if state == states.AVAILABLE and want_image:
        return Step("deploy")
    if state == states.ACTIVE and not external and not (want_image and same_image(node, spec)):
        return Step("verb", "undeploy")
    if state == states.DEPLOY_FAILED:
        if not want_image:
            return Step("verb", "undeploy")
        tried = (node.instance_info or {}).get("configdrive")
        if not same_image(node, spec) or (drive is not None and drive() != tried):
            return Step("deploy")
        return None
    if state in (states.AVAILABLE, states.ACTIVE) and "online" in spec:
        wanted = _POWER[bool(spec.get("online"))]
        if node.power_state != wanted:
            return Step("power", wanted)
    return None


# ---------------------------------------------------------------- hosts of /v1 nodes
def bmc_address(driver: str, info: dict[str, Any]) -> str:
    """Metal3's ``spec.bmc.address`` of a node's driver and driver_info (the inverse of
    :func:`~metalplane.common.bmc_address.parse_bmc_address`); ``""`` for a driver
    without a BMC (``fake-hardware``)."""
    if driver == "redfish" and info.get("redfish_address"):
        base = str(info["redfish_address"])
        scheme, _, rest = base.partition("://")
        prefix = "redfish+http" if scheme == "http" else "redfish"
        return f"{prefix}://{rest.rstrip('/')}{info.get('redfish_system_id') or ''}"
    if driver == "ipmi" and info.get("ipmi_address"):
        port = info.get("ipmi_port")
        return f"ipmi://{info['ipmi_address']}" + (f":{port}" if port and
                                                    int(port) != 623 else "")
    return ""


def mirror_spec(node: Node, boot_mac: str | None) -> dict[str, Any]:
    """The spec of the BareMetalHost that shows a node made through the Bare Metal API:
    ``bmc.address`` from driver_info, ``bootMACAddress`` (its first PXE port), ``online``
    from its power state, ``image`` from instance_info, ``externallyProvisioned`` for an
    active node without an image, and ``description``, ``consumerRef``
    (``extra.consumer``), ``rootDeviceHints``, ``automatedCleaningMode``."""
    spec: dict[str, Any] = {"online": node.power_state == _POWER[True]}
    address = bmc_address(str(node.driver), dict(node.driver_info or {}))
    if address:
        spec["bmc"] = {"address": address}
    if boot_mac:
        spec["bootMACAddress"] = boot_mac
    info = node.instance_info or {}
    if info.get("image_source"):
        spec["image"] = {field: info[key] for field, key in _IMAGE_FIELDS if info.get(key)}
    elif node.provision_state in (states.ACTIVE, states.ADOPTING, states.ADOPT_FAILED):
        spec["externallyProvisioned"] = True
    if node.description:
        spec["description"] = node.description
    consumer = (node.extra or {}).get("consumer")
    if consumer:
        spec["consumerRef"] = {"name": str(consumer)}
    hints = (node.properties or {}).get("root_device") or {}
    if isinstance(hints, dict) and hints:
        spec["rootDeviceHints"] = {_ROOT_HINTS[k]: v for k, v in hints.items()
                                   if k in _ROOT_HINTS}
    if node.automated_clean is False:
        spec["automatedCleaningMode"] = "disabled"
    return spec


# ---------------------------------------------------------------- the pass
class HostReconciler:
    """One reconcile pass over every BareMetalHost of ``store``
    (:class:`~metalplane.conductor.hosts.KubeStore`), executing :func:`decide`'s steps
    through its conductor."""

    def __init__(self, store: KubeStore) -> None:
        self.store, self.c, self.db = store, store.c, store.db
        self._retry: dict[str, tuple[float, float]] = {}  # "uuid:what" -> (not before, wait)
        self._powered_off: set[str] = set()  # nodes of deleted hosts already asked off
        self._good_secret: dict[str, int] = {}  # host uid -> Secret resourceVersion applied
        self._said: dict[str, str] = {}  # host uid -> last problem logged (logged once)

    def run(self) -> int:
        """Reconcile every host once; returns how many are driven (those a user
        declared, and any being deleted). A host's failure is logged and does not stop
        the others."""
        self.store.sync_nodes()
        objs = [o for o in kube_list(self.db, "BareMetalHost")  # not mirrors: nothing asked
                if not (o.body or {}).get("mirror") or o.deleted_at is not None]
        nodes = {n.uuid: n for n in db_api.rows_where(
            self.db, Node, uuid=[o.node_uuid for o in objs if o.node_uuid])} if objs else {}
        secrets = {(o.namespace, o.name): o for o in kube_list(self.db, "Secret")} \
            if objs else {}
        for obj in objs:
            try:
                self._host(obj, nodes.get(obj.node_uuid or ""), secrets)
            except MetalplaneError as exc:  # locked meanwhile, refused: the next pass
                LOG.debug("BareMetalHost %s/%s: %s", obj.namespace, obj.name, exc.message)
            except Exception:
                LOG.exception("BareMetalHost %s/%s: reconcile failed", obj.namespace,
                              obj.name)
        return len(objs)

    def _say(self, obj: KubeObject, problem: str) -> None:
        if self._said.get(obj.uid) != problem:
            self._said[obj.uid] = problem
            LOG.warning("BareMetalHost %s/%s: %s", obj.namespace, obj.name, problem)

    def _host(self, obj: KubeObject, node: Node | None,
              secrets: dict[tuple[str, str], KubeObject]) -> None:
        body = obj.body or {}
        deleting = obj.deleted_at is not None
        if body.get("mirror") and not deleting:
            return  # a node of the Bare Metal API: its spec is the node's, nothing asked
        if node is None and obj.node_uuid is None and not deleting:
            return  # being created
        spec = dict(body.get("spec") or {})
        if node is not None and not deleting and not node.reservation and (
                self._carry_credentials(obj, node, spec, secrets)
                or self.store.carry_spec(node, spec)):
            return  # the node changed: the next pass sees it
        step = decide(node, spec, deleting,
                      drive=lambda: self._drive(obj, spec, secrets),
                      powered_off_tried=node is not None and node.uuid in self._powered_off)
        resting = node is not None and not (node.reservation or node.target_provision_state
                                            or node.target_power_state)
        if resting and (step is None or step.kind != "power"):
            self._retry.pop(f"{obj.node_uuid}:power", None)  # power as wanted: forget
        if step is None:
            return
        self._do(obj, node, spec, step, secrets)

    def _do(self, obj: KubeObject, node: Node | None, spec: dict[str, Any], step: Step,
            secrets: dict[tuple[str, str], KubeObject]) -> None:
        where = f"BareMetalHost {obj.namespace}/{obj.name}"
        if step.kind == "finalize" or node is None:
            self.finalize(obj)
        elif step.kind == "verb":
            LOG.info("%s: %s node %s", where, step.arg, node.uuid)
            self.c.provision(node.uuid, step.arg)
        elif step.kind == "deploy":
            drive = self._drive(obj, spec, secrets)
            if drive is None or not self._may_try(node.uuid, "deploy"):
                return
            if not same_image(node, spec):
                with self.c.acquire(node.uuid, "BareMetalHost image") as task:
                    info = {k: v for k, v in (task.node.instance_info or {}).items()
                            if k not in IMAGE_KEYS}
                    task.save(instance_info={**info, **image_info(spec)})
            LOG.info("%s: deploying %s on node %s", where, image_info(spec)["image_source"],
                     node.uuid)
            try:
                self.c.provision(node.uuid, "deploy", configdrive=drive)
            except Invalid as exc:  # the driver refuses this image: said once, backed off
                self._say(obj, f"cannot provision: {exc.message}")
                return
            self._retry.pop(f"{node.uuid}:deploy", None)
        elif step.kind == "power":
            if not self._may_try(node.uuid, "power"):
                return
            if obj.deleted_at is not None:
                self._powered_off.add(node.uuid)
            LOG.info("%s: %s node %s", where, step.arg, node.uuid)
            self.c.set_power_state(node.uuid, step.arg)
        elif step.kind == "delete_node":
            if step.arg == "detach" or (node.provision_state not in DELETE_ALLOWED
                                        and not node.maintenance):
                self.store.res.set_maintenance(node.uuid, True, "BareMetalHost deleted")
            self.store.res.delete_node(node.uuid)
            self._powered_off.discard(node.uuid)
            self._retry.pop(f"{node.uuid}:power", None)
            LOG.info("%s: node %s deleted", where, node.uuid)
            self.finalize(obj)

    def _may_try(self, uuid: str, what: str) -> bool:
        """Whether ``what`` (``power``, ``deploy``) may be tried on node ``uuid`` now: a
        step that did not take is tried again after 1, 2, 4... s (at most 60 s,
        :data:`RETRY_BACKOFF`); the wait is forgotten once the step is not needed."""
        now = time.monotonic()
        not_before, wait = self._retry.get(f"{uuid}:{what}", (0.0, RETRY_BACKOFF[0] / 2))
        if now < not_before:
            return False
        wait = min(wait * 2, RETRY_BACKOFF[1])
        self._retry[f"{uuid}:{what}"] = (now + wait, wait)
        return True

    def finalize(self, obj: KubeObject) -> None:
        """Drop metalplane's finalizer from a deleted host; the host goes when no
        finalizer is left (another's keeps it until a write removes it)."""
        left = [f for f in obj.finalizers or [] if f != FINALIZER]
        if left and len(left) == len(obj.finalizers or []) and obj.node_uuid is None:
            return  # done: another's finalizer holds it
        self._good_secret.pop(obj.uid, None)
        self._said.pop(obj.uid, None)
        with contextlib.suppress(NotFound, StaleVersion):
            if left:
                kube_update(self.db, "BareMetalHost", obj.namespace, obj.name,
                            obj.resource_version, finalizers=left, node_uuid=None)
            else:
                current = kube_get(self.db, "BareMetalHost", obj.namespace, obj.name)
                if current.resource_version == obj.resource_version:
                    kube_delete(self.db, "BareMetalHost", obj.namespace, obj.name)
                    LOG.info("BareMetalHost %s/%s deleted", obj.namespace, obj.name)

    # ------------------------------------------------------------ inputs from Secrets
    def _secret(self, secrets: dict[tuple[str, str], KubeObject], namespace: str,
                ref: Any) -> dict[str, bytes] | None:
        """The decoded data of the Secret ``ref`` (``{name, namespace}``), None if it is
        missing."""
        if not isinstance(ref, dict) or not ref.get("name"):
            return None
        obj = secrets.get((str(ref.get("namespace") or namespace), str(ref["name"])))
        if obj is None:
            return None
        out = {}
        for key, value in self.store.secret_data(obj).items():
            with contextlib.suppress(binascii.Error, ValueError):
                out[key] = base64.b64decode(value)
        return out

    def _drive(self, obj: KubeObject, spec: dict[str, Any],
               secrets: dict[tuple[str, str], KubeObject]) -> dict[str, Any] | None:
        """The config drive of ``spec`` (Ironic's ``configdrive`` object, as Metal3's
        provisioner builds it): ``user_data`` from the ``userData`` Secret (key
        ``userData``, else ``value``), ``network_data`` and extra ``meta_data`` from the
        ``networkData`` and ``metaData`` Secrets (keys ``networkData``, ``metaData``;
        YAML or JSON), ``meta_data`` naming the host. None (logged once) when a Secret is
        missing or does not parse."""
        drive: dict[str, Any] = {"meta_data": {
            "uuid": obj.uid, "metal3-namespace": obj.namespace, "metal3-name": obj.name,
            "local-hostname": obj.name, "local_hostname": obj.name, "name": obj.name}}
        for field, keys, target in (("userData", ("userData", "value"), "user_data"),
                                    ("networkData", ("networkData",), "network_data"),
                                    ("metaData", ("metaData",), "meta_data")):
            ref = spec.get(field)
            if not ref:
                continue
            data = self._secret(secrets, obj.namespace, ref)
            if data is None:
                self._say(obj, f'spec.{field}: Secret "{ref.get("name")}" not found; '
                          "not provisioning until it exists")
                return None
            raw = next((data[k] for k in keys if k in data), None)
            if raw is None:
                continue
            try:
                text = raw.decode()
                if target == "user_data":
                    drive[target] = text
                    continue
                parsed = yaml.safe_load(text) if text.strip() else {}
            except (UnicodeDecodeError, yaml.YAMLError) as exc:
                self._say(obj, f"spec.{field}: Secret {ref.get('name')!r} does not parse: "
                          f"{exc.__class__.__name__}")
                return None
            if not isinstance(parsed, dict):
                self._say(obj, f"spec.{field}: Secret {ref.get('name')!r} must hold a map")
                return None
            drive[target] = {**drive.get(target, {}), **parsed}
        stored: dict[str, Any] = json.loads(json.dumps(drive))  # as stored: comparable
        return stored

    def _carry_credentials(self, obj: KubeObject, node: Node, spec: dict[str, Any],
                           secrets: dict[tuple[str, str], KubeObject]) -> bool:
        """Carry the credentials of ``spec.bmc.credentialsName`` to the node's driver_info
        when the Secret changed (and clear a registration error, so manage is retried).
        Returns whether the node was changed (the step waits for the next pass)."""
        name = (spec.get("bmc") or {}).get("credentialsName")
        secret = secrets.get((obj.namespace, str(name))) if name else None
        if secret is None or self._good_secret.get(obj.uid) == secret.resource_version:
            return False
        data = self._secret(secrets, obj.namespace, {"name": name}) or {}
        try:
            username = data.get("username", b"").decode()
            password = data.get("password", b"").decode()
            _, wanted = parse_bmc_address(spec["bmc"]["address"], username or None,
                                          password or None)
        except (UnicodeDecodeError, Invalid, KeyError) as exc:
            self._say(obj, f"spec.bmc.credentialsName: unusable credentials: "
                      f"{getattr(exc, 'message', exc.__class__.__name__)}")
            return False
        if not username or not password:
            return False
        current = self.c.secrets.decrypt_driver_info(dict(node.driver_info or {}))
        keys = [k for k in wanted if k.endswith(("_username", "_password"))]
        if all(current.get(k) == wanted[k] for k in keys):
            self._good_secret[obj.uid] = secret.resource_version
            return False
        if node.reservation:
            return False
        with self.c.acquire(node.uuid, "BareMetalHost credentials") as task:
            clear = self.c.secrets.decrypt_driver_info(dict(task.node.driver_info or {}))
            clear.update({k: wanted[k] for k in keys})
            fields: dict[str, Any] = {"driver_info": self.c.secrets.encrypt_driver_info(clear)}
            if task.node.provision_state == states.ENROLL:
                fields["last_error"] = None  # a registration error: manage again
            task.save(**fields)
        self._good_secret[obj.uid] = secret.resource_version
        LOG.info("BareMetalHost %s/%s: new BMC credentials from Secret %s carried to "
                 "node %s", obj.namespace, obj.name, name, node.uuid)
        return True
