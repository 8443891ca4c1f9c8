"""The ``metalplane`` command: the server, and the node/port/portgroup verbs over the API.

Errors print as one line on stderr with exit status 1 (2 for usage errors), never a
traceback.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from metalplane import __version__
from metalplane.cli.common import (
    STATE,
    CliError,
    Output,
    check_format,
    client,
    delete_each,
    kv,
)
from metalplane.cli.inspection import inspection_app
from metalplane.cli.kubeconfig import kubeconfig
from metalplane.cli.l3 import floating_app, router_app
from metalplane.cli.lab import demo, lab_app
from metalplane.cli.network import network_app, subnet_app, switch_app, vif_app
from metalplane.cli.output import console, emit, err_console
from metalplane.cli.ramdisk import image_app, ramdisk_app
from metalplane.client.http import ApiError, Client
from metalplane.client.wait import WaitTimeout, failed, wait_until_rest
from metalplane.common.bmc_address import parse_bmc_address
from metalplane.common.exceptions import MetalplaneError

__all__ = ["app", "main"]

app = typer.Typer(help="metalplane: a bare-metal cloud control plane.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
node_app = typer.Typer(help="Enroll, inspect, provide, deploy and undeploy nodes.",
                       no_args_is_help=True)
port_app = typer.Typer(help="A node's NICs (bare-metal ports).", no_args_is_help=True)
pg_app = typer.Typer(help="Bonds/LAGs of a node's ports (portgroups).", no_args_is_help=True)
user_app = typer.Typer(help="Users of http_basic authentication.", no_args_is_help=True)
key_app = typer.Typer(help="The key that seals BMC secrets at rest.", no_args_is_help=True)
app.add_typer(node_app, name="node")
app.add_typer(port_app, name="port")
app.add_typer(pg_app, name="portgroup")
app.add_typer(user_app, name="user")
app.add_typer(key_app, name="key")
app.add_typer(network_app, name="network")
app.add_typer(subnet_app, name="subnet")
app.add_typer(switch_app, name="switch")
app.add_typer(router_app, name="router")
app.add_typer(floating_app, name="floating")
app.add_typer(lab_app, name="lab")
app.add_typer(inspection_app, name="inspection")
app.add_typer(ramdisk_app, name="ramdisk")
app.add_typer(image_app, name="image")
app.command("demo")(demo)
app.command("kubeconfig")(kubeconfig)
node_app.add_typer(vif_app, name="vif")

NODE_COLUMNS = ("uuid", "name", "power_state", "provision_state", "maintenance")
LONG_COLUMNS = ("uuid", "name", "driver", "power_state", "provision_state",
                "target_provision_state", "maintenance", "owner", "last_error")
PORT_COLUMNS = ("uuid", "address", "node_uuid", "pxe_enabled", "physical_network",
                "local_link_connection")


@app.callback()
def _global(
    url: Annotated[str, typer.Option(envvar="METALPLANE_URL",
                                     help="API endpoint.")] = "http://127.0.0.1:6385",
    username: Annotated[str | None, typer.Option(envvar="METALPLANE_USERNAME",
                                                 help="http_basic user.")] = None,
    password: Annotated[str | None, typer.Option(envvar="METALPLANE_PASSWORD",
                                                 help="http_basic password.")] = None,
) -> None:
    STATE.update(url=url, username=username, password=password)


@app.command()
def version() -> None:
    """Print metalplane's version."""
    console.print(__version__)


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (Ironic's).")] = 6385,
    network_port: Annotated[int | None, typer.Option(
        help="The Networking API's own port, as Neutron's; 0 for none (/v2.0 is also "
        "served on --port) [default: 9696].")] = None,
    k8s_port: Annotated[int | None, typer.Option(
        help="The Kubernetes-style API's port (kubectl: BareMetalHosts); 0 for none "
        "[default: 6443].")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        envvar="METALPLANE_DATA_DIR", help="Store, secret key and users file "
        "[default: ~/.local/share/metalplane].")] = None,
    auth_strategy: Annotated[str | None, typer.Option(
        help="noauth or http_basic [default: noauth on loopback, http_basic elsewhere].")] = None,
    database_url: Annotated[str | None, typer.Option(
        envvar="METALPLANE_DATABASE_URL",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://u:p@127.0.0.1/metalplane "
        "[default: SQLite in the data dir].")] = None,
    workers: Annotated[int | None, typer.Option(help="Conductor worker threads.")] = None,
    conductor_hostname: Annotated[str | None, typer.Option(
        help="This conductor's name in locks [default: the host name].")] = None,
    tls_cert_file: Annotated[Path | None, typer.Option(
        "--tls-cert-file", "--tls-cert",
        help="Serve over TLS with this PEM certificate (chain).")] = None,
    tls_key_file: Annotated[Path | None, typer.Option(
        "--tls-key-file", "--tls-key", help="The PEM private key of --tls-cert-file.")] = None,
    boot_tls: Annotated[bool | None, typer.Option(
        "--boot-tls/--no-boot-tls", help="Serve the boot server's listeners over TLS too, "
        "with the same certificate (iPXE must trust its CA) [default: no].")] = None,
    debug: Annotated[bool, typer.Option(help="Log at DEBUG level.")] = False,
) -> None:
    """Run the API and the conductor in one process until interrupted."""
    import logging

    from metalplane.api.service import Service, configure_logging
    from metalplane.common.config import Settings

    configure_logging(logging.DEBUG if debug else logging.INFO)
    settings = Settings.from_env(host=host, port=port, network_port=network_port,
                                 k8s_port=k8s_port, data_dir=data_dir,
                                 auth_strategy=auth_strategy, database_url=database_url,
                                 workers=workers, conductor_hostname=conductor_hostname,
                                 tls_cert_file=str(tls_cert_file) if tls_cert_file else None,
                                 tls_key_file=str(tls_key_file) if tls_key_file else None,
                                 boot_tls=boot_tls)
    Service(settings).serve()


@user_app.command("add")
def user_add(
    name: str,
    data_dir: Annotated[Path | None, typer.Option(envvar="METALPLANE_DATA_DIR")] = None,
    users_file: Annotated[Path | None, typer.Option(help="[default: <data dir>/htpasswd]")] = None,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
    project: Annotated[str | None, typer.Option(
        help="The user's project: it sees and acts on the nodes its project owns or leases, "
             "and the project's networks. [default: none, the system scope]")] = None,
    role: Annotated[str | None, typer.Option(
        help="admin, member or reader. [default: admin without --project, member with it]")
    ] = None,
) -> None:
    """Add or replace a user in the http_basic users file (bcrypt hashed), with its
    project and role (see docs/security.md)."""
    from metalplane.api.auth import hash_password
    from metalplane.api.policy import ROLES
    from metalplane.common.config import Settings
    from metalplane.common.files import private_dir, private_file

    settings = Settings.from_env(data_dir=data_dir,
                                 users_file=str(users_file) if users_file else None)
    path = settings.effective_users_file
    if ":" in name or not name:
        raise CliError("a user name must be non-empty and contain no ':'")
    if project is not None and (not project or ":" in project or project != project.strip()):
        raise CliError("a project must be non-empty and contain no ':' nor outer spaces")
    if role is not None and role not in ROLES:
        raise CliError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    role = role or ("member" if project else "admin")
    pw = sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass("Password: ")
    if not pw:
        raise CliError("the password must not be empty")
    lines = [ln for ln in (path.read_text().splitlines() if path.exists() else [])
             if not ln.startswith(f"{name}:")]
    lines.append(f"{name}:{hash_password(pw)}:{project or ''}:{role}")
    if path.parent == settings.data_dir:
        private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    private_file(path)  # 0600 before the hashes are written
    path.write_text("\n".join(lines) + "\n")
    console.print(f"user {name} ({f'project {project}' if project else 'system'}, {role}) "
                  f"written to {path}")


@key_app.command("rotate")
def key_rotate(
    data_dir: Annotated[Path | None, typer.Option(envvar="METALPLANE_DATA_DIR")] = None,
    database_url: Annotated[str | None, typer.Option(
        envvar="METALPLANE_DATABASE_URL", help="[default: sqlite in the data dir]")] = None,
    force: Annotated[bool, typer.Option(
        help="Rotate even though a conductor heartbeats (it would then fail to read the "
             "secrets sealed with the new key until restarted).")] = False,
) -> None:
    """Seal every BMC secret with a new key and delete the old one. Stop the servers
    sharing this data directory and database first; copy the new <data dir>/secret.key to
    every other conductor host before restarting them. Safe to run again if interrupted."""
    from metalplane.common import secrets as secrets_mod
    from metalplane.common.config import Settings
    from metalplane.db import api as db_api
    from metalplane.db.engine import Database

    settings = Settings.from_env(data_dir=data_dir, database_url=database_url)
    key_file = settings.data_dir / secrets_mod.KEY_FILE
    if not key_file.exists():
        raise CliError(f"no key at {key_file}: nothing was ever encrypted with one")
    db = Database(settings.effective_database_url)
    try:
        live = db_api.live_conductors(db, settings.heartbeat_timeout)
        if live and not force:
            raise CliError(f"conductor(s) {', '.join(live)} still heartbeat: stop them "
                           "first (or --force)")
        secrets_mod.begin_key_rotation(key_file)
        box = secrets_mod.SecretBox(key_file)
        changed = db_api.rewrite_driver_infos(db, box.reseal_driver_info)
        secrets_mod.finish_key_rotation(key_file)
    except MetalplaneError as exc:
        raise CliError(exc.message) from None
    finally:
        db.dispose()
    console.print(f"the secrets of {changed} node(s) are sealed with a new key in {key_file}; "
                  "the old key is deleted")


# ------------------------------------------------------------------------ nodes
def _bmc_options(bmc_address: str | None, bmc_username: str | None,
                 bmc_password: str | None) -> tuple[str | None, dict[str, Any]]:
    if not bmc_address:
        if bmc_username or bmc_password:
            raise CliError("--bmc-username/--bmc-password need --bmc-address")
        return None, {}
    return parse_bmc_address(bmc_address, bmc_username, bmc_password)


@node_app.command("create")
def node_create(
    name: Annotated[str | None, typer.Option(help="Unique name.")] = None,
    driver: Annotated[str | None, typer.Option(
        help="Hardware type: redfish, ipmi or fake-hardware [default: from --bmc-address].")]
    = None,
    bmc_address: Annotated[str | None, typer.Option(
        help="redfish://, redfish+http://, redfish+https:// or ipmi://host:port.")] = None,
    bmc_username: Annotated[str | None, typer.Option()] = None,
    bmc_password: Annotated[str | None, typer.Option(envvar="METALPLANE_BMC_PASSWORD")] = None,
    driver_info: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")]
    = None,
    prop: Annotated[list[str] | None, typer.Option("--property",
                                                   help="KEY=VALUE, repeatable.")] = None,
    resource_class: Annotated[str | None, typer.Option()] = None,
    owner: Annotated[str | None, typer.Option()] = None,
    conductor_group: Annotated[str | None, typer.Option()] = None,
    deploy_interface: Annotated[str | None, typer.Option()] = None,
    inspect_interface: Annotated[str | None, typer.Option()] = None,
    output: Output = "table",
) -> None:
    """Enroll a node (it starts in 'enroll'; then run `node manage`)."""
    check_format(output)
    hw, info = _bmc_options(bmc_address, bmc_username, bmc_password)
    if driver and hw and driver != hw:
        raise CliError(f"--driver {driver} does not match --bmc-address ({hw})")
    driver = driver or hw
    if not driver:
        raise CliError("give --driver or --bmc-address")
    info.update(kv(driver_info, "--driver-info"))
    body: dict[str, Any] = {"driver": driver, "driver_info": info,
                            "properties": kv(prop, "--property")}
    for key, value in (("name", name), ("resource_class", resource_class), ("owner", owner),
                       ("conductor_group", conductor_group),
                       ("deploy_interface", deploy_interface),
                       ("inspect_interface", inspect_interface)):
        if value is not None:
            body[key] = value
    emit(client().post("/v1/nodes", body), output)


@node_app.command("list")
def node_list(
    provision_state: Annotated[str | None, typer.Option()] = None,
    owner: Annotated[str | None, typer.Option()] = None,
    conductor_group: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many.")] = None,
    long: Annotated[bool, typer.Option("--long", help="More columns.")] = False,
    output: Output = "table",
) -> None:
    """List nodes."""
    check_format(output)
    params = {"provision_state": provision_state, "owner": owner,
              "conductor_group": conductor_group, "detail": "true" if long else None}
    if limit:
        nodes = client().get("/v1/nodes", limit=limit, **params)["nodes"]
    else:
        nodes = client().list_all("/v1/nodes", "nodes", **params)
    emit(nodes, output, LONG_COLUMNS if long else NODE_COLUMNS)


@node_app.command("show")
def node_show(node: str, output: Output = "table") -> None:
    """Show one node (secrets masked)."""
    check_format(output)
    emit(client().get(f"/v1/nodes/{node}"), output)


@node_app.command("set")
def node_set(
    node: str,
    name: Annotated[str | None, typer.Option()] = None,
    driver: Annotated[str | None, typer.Option()] = None,
    bmc_address: Annotated[str | None, typer.Option()] = None,
    bmc_username: Annotated[str | None, typer.Option()] = None,
    bmc_password: Annotated[str | None, typer.Option(envvar="METALPLANE_BMC_PASSWORD")] = None,
    driver_info: Annotated[list[str] | None, typer.Option(help="KEY=VALUE")] = None,
    prop: Annotated[list[str] | None, typer.Option("--property", help="KEY=VALUE")] = None,
    instance_info: Annotated[list[str] | None, typer.Option(help="KEY=VALUE")] = None,
    extra: Annotated[list[str] | None, typer.Option(help="KEY=VALUE")] = None,
    resource_class: Annotated[str | None, typer.Option()] = None,
    owner: Annotated[str | None, typer.Option()] = None,
    deploy_interface: Annotated[str | None, typer.Option()] = None,
    inspect_interface: Annotated[str | None, typer.Option()] = None,
    output: Output = "table",
) -> None:
    """Change a node's fields (sends a JSON patch)."""
    check_format(output)
    patch: list[dict[str, Any]] = []
    hw, info = _bmc_options(bmc_address, bmc_username, bmc_password)
    if hw:
        patch.append({"op": "add", "path": "/driver_info", "value": info})
        if not driver:
            driver = hw
    for key, value in (("name", name), ("driver", driver), ("resource_class", resource_class),
                       ("owner", owner), ("deploy_interface", deploy_interface),
                       ("inspect_interface", inspect_interface)):
        if value is not None:
            patch.append({"op": "add", "path": f"/{key}", "value": value})
    for field, items, flag in (("driver_info", driver_info, "--driver-info"),
                               ("properties", prop, "--property"),
                               ("instance_info", instance_info, "--instance-info"),
                               ("extra", extra, "--extra")):
        for k, v in kv(items, flag).items():
            patch.append({"op": "add", "path": f"/{field}/{k}", "value": v})
    if not patch:
        raise CliError("nothing to set; see `metalplane node set --help`")
    emit(client().patch(f"/v1/nodes/{node}", patch), output)


@node_app.command("delete")
def node_delete(nodes: list[str]) -> None:
    """Delete nodes (in enroll, manageable, available or a failed state)."""
    delete_each("/v1/nodes/{}", nodes, "node")


def _wait(c: Client, nodes: list[str], timeout: float, what: str) -> None:
    """Poll until every node rests; show progress; raise CliError if any failed."""
    from rich.live import Live
    from rich.table import Table

    last: dict[str, dict[str, Any]] = {}

    def table() -> Table:
        t = Table(title=f"waiting for {what}", show_header=True)
        for col in ("node", "provision state", "target", "power", "last error"):
            t.add_column(col)
        for n in nodes:
            d = last.get(n, {})
            t.add_row(n, d.get("provision_state") or "", d.get("target_provision_state") or "",
                      d.get("power_state") or "", (d.get("last_error") or "")[:80])
        return t

    def poll() -> dict[str, dict[str, Any]]:
        return {n: c.get(f"/v1/nodes/{n}/states") for n in nodes}

    with Live(table(), console=err_console, transient=not err_console.is_terminal,
              auto_refresh=False) as live:
        def show(round_: dict[str, dict[str, Any]]) -> None:
            last.update(round_)
            live.update(table(), refresh=True)

        try:
            wait_until_rest(poll, timeout, 0.5, show)
        except WaitTimeout as exc:
            raise CliError(f"timed out after {timeout:.0f} s waiting for {what}") from exc
    bad = [f"{n}: {d['provision_state']}: {d.get('last_error') or 'no error recorded'}"
           for n, d in last.items() if failed(d)]
    for n, d in last.items():
        console.print(f"node {n} is {d['provision_state']}")
    if bad:
        raise CliError("; ".join(bad))


def _steps_option(value: str | None, what: str) -> list[dict[str, Any]] | None:
    """``--clean-steps`` / ``--deploy-steps``: a JSON list, a file holding one, or ``-``
    for stdin (as ``baremetal node clean --clean-steps``). Raises :class:`CliError`."""
    if value is None:
        return None
    text = value
    if value == "-":
        text = sys.stdin.read()
    elif not value.lstrip().startswith("["):
        try:
            text = Path(value).read_text()
        except OSError as exc:
            raise CliError(f"{what}: not a JSON list and not a readable file: {exc}") from None
    try:
        steps = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(steps, list):
        raise CliError(f"{what} must be a JSON list of steps")
    return steps


def _provision_command(verb: str, doc: str) -> None:
    steps_field = {"clean": "clean_steps", "deploy": "deploy_steps",
                   "rebuild": "deploy_steps"}.get(verb)

    def command(
        nodes: Annotated[list[str], typer.Argument(help="Node names or UUIDs.")],
        wait: Annotated[bool, typer.Option(help="Show progress until the nodes rest.")]
        = False,
        timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 1800,
        steps: str | None = None,  # its option: steps_option below
    ) -> None:
        body: dict[str, Any] = {"target": verb}
        if steps_field is None and steps is not None:
            raise CliError(f"{verb} takes no steps")
        if steps_field is not None:
            parsed = _steps_option(steps, "--clean-steps" if verb == "clean"
                                   else "--deploy-steps")
            if verb == "clean" and parsed is None:
                raise CliError("clean needs --clean-steps (manual cleaning runs the steps "
                               "named); `metalplane node steps NODE` lists a node's")
            if parsed is not None:
                body[steps_field] = parsed
        c = client()
        for n in nodes:
            c.put(f"/v1/nodes/{n}/states/provision", body)
            if not wait:
                console.print(f"{verb} requested for node {n}")
        if wait:
            _wait(c, nodes, timeout, verb)

    # set here, as an object: the module's postponed annotations could not see ``verb``
    command.__annotations__["steps"] = Annotated[str | None, typer.Option(
        "--clean-steps" if verb == "clean" else "--deploy-steps",
        hidden=steps_field is None,
        help=("The steps to run, in order (required): a JSON list of "
              '{"interface": ..., "step": ..., "args": {...}}, a file holding one, or - '
              "for stdin. `metalplane node steps NODE` lists them."
              if verb == "clean" else
              'Change the deploy steps: a JSON list of {"interface", "step", "args", '
              '"priority"} (priority 0 skips a step), a file holding one, or -.'))]
    command.__doc__ = doc
    node_app.command(verb)(command)


for _verb, _doc in (
    ("manage", "enroll -> manageable: check the BMC credentials work."),
    ("inspect", "manageable -> inspecting -> manageable: read CPUs, memory and NICs."),
    ("provide", "manageable -> cleaning -> available (automated cleaning)."),
    ("clean", "manageable -> cleaning -> manageable: run the clean steps named "
              "(manual cleaning)."),
    ("deploy", "available -> deploying -> active."),
    ("rebuild", "active -> deploying -> active: redeploy the image."),
    ("undeploy", "active -> deleting -> cleaning -> available."),
    ("abort", "Stop a node waiting in 'inspect wait', 'clean wait' or 'wait call-back'."),
    ("adopt", "manageable -> adopting -> active: take over a node already running."),
):
    _provision_command(_verb, _doc)


@node_app.command("steps")
def node_steps(node: str, output: Output = "table") -> None:
    """List a node's inspect, clean and deploy steps, in the order they run (priority 0:
    only when named, e.g. by `clean --clean-steps`)."""
    check_format(output)
    found = client().get(f"/v1/nodes/{node}/steps")
    if output != "table":
        emit(found, output)
        return
    rows = [{"phase": key.removesuffix("_steps"), "step": f"{s['interface']}.{s['step']}",
             "priority": s["priority"],
             "arguments": ", ".join(f"{a}{'' if i.get('required') else '?'}"
                                    for a, i in s.get("argsinfo", {}).items())}
            for key, steps in found.items() for s in steps]
    emit(rows, output, ("phase", "step", "priority", "arguments"))


@node_app.command("power")
def node_power(
    action: Annotated[str, typer.Argument(help="on, off or reboot.")],
    nodes: Annotated[list[str], typer.Argument(help="Node names or UUIDs.")],
    wait: Annotated[bool, typer.Option(help="Wait until the BMC reports it.")] = False,
    timeout: Annotated[float, typer.Option()] = 300,
) -> None:
    """Power nodes on, off or reboot them."""
    targets = {"on": "power on", "off": "power off", "reboot": "rebooting"}
    if action not in targets:
        raise CliError(f"power action must be on, off or reboot, not '{action}'")
    c = client()
    for n in nodes:
        c.put(f"/v1/nodes/{n}/states/power", {"target": targets[action]})
    if not wait:
        console.print(f"power {action} requested for {', '.join(nodes)}")
        return
    _wait(c, nodes, timeout, f"power {action}")
    errors = [f"{n}: {d}" for n in nodes
              if (d := c.get(f"/v1/nodes/{n}/states").get("last_error"))]
    if errors:
        raise CliError("; ".join(errors))


@node_app.command("boot-device")
def node_boot_device(
    node: str,
    device: Annotated[str | None, typer.Argument(help="pxe, disk, cdrom or bios; "
                                                       "omit to show the current one.")] = None,
    persistent: Annotated[bool, typer.Option(help="Every boot, not just the next.")] = False,
    output: Output = "table",
) -> None:
    """Show or set a node's boot device."""
    check_format(output)
    c = client()
    if device:
        c.put(f"/v1/nodes/{node}/management/boot_device",
              {"boot_device": device, "persistent": persistent})
    emit(c.get(f"/v1/nodes/{node}/management/boot_device"), output)


@node_app.command("maintenance")
def node_maintenance(
    node: str,
    on: Annotated[bool, typer.Option("--on/--off", help="Set or unset.")] = True,
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Put a node in maintenance (the conductor leaves it alone) or take it out."""
    c = client()
    if on:
        c.put(f"/v1/nodes/{node}/maintenance", {"reason": reason} if reason else {})
    else:
        c.delete(f"/v1/nodes/{node}/maintenance")
    console.print(f"maintenance {'set' if on else 'unset'} on node {node}")


@node_app.command("validate")
def node_validate(node: str, output: Output = "table") -> None:
    """Check each interface of a node can work with its driver_info."""
    check_format(output)
    result = client().get(f"/v1/nodes/{node}/validate")
    rows = [{"interface": k, **v} for k, v in sorted(result.items())]
    emit(rows if output == "table" else result, output, ("interface", "result", "reason"))


# ------------------------------------------------------------------------ ports
def _llc(items: list[str] | None) -> dict[str, Any]:
    return {k: str(v) for k, v in kv(items, "--local-link-connection").items()}


@port_app.command("create")
def port_create(
    address: Annotated[str, typer.Argument(help="MAC address.")],
    node: Annotated[str, typer.Option(help="Node name or UUID.")],
    local_link_connection: Annotated[list[str] | None, typer.Option(
        help="switch_id=MAC, port_id=NAME, switch_info=NAME; repeatable.")] = None,
    physical_network: Annotated[str | None, typer.Option()] = None,
    pxe_enabled: Annotated[bool, typer.Option("--pxe-enabled/--no-pxe-enabled")] = True,
    portgroup: Annotated[str | None, typer.Option(help="Portgroup name or UUID.")] = None,
    name: Annotated[str | None, typer.Option()] = None,
    output: Output = "table",
) -> None:
    """Create a port (a NIC of a node)."""
    check_format(output)
    c = client()
    node_uuid = c.get(f"/v1/nodes/{node}", fields="uuid")["uuid"]
    body: dict[str, Any] = {"address": address, "node_uuid": node_uuid,
                            "pxe_enabled": pxe_enabled,
                            "local_link_connection": _llc(local_link_connection)}
    if physical_network:
        body["physical_network"] = physical_network
    if portgroup:
        body["portgroup_uuid"] = c.get(f"/v1/portgroups/{portgroup}")["uuid"]
    if name:
        body["name"] = name
    emit(c.post("/v1/ports", body), output)


@port_app.command("list")
def port_list(node: Annotated[str | None, typer.Option()] = None,
              output: Output = "table") -> None:
    """List ports, optionally of one node."""
    check_format(output)
    emit(client().list_all("/v1/ports", "ports", node=node), output, PORT_COLUMNS)


@port_app.command("show")
def port_show(port: Annotated[str, typer.Argument(help="UUID, name or MAC.")],
              output: Output = "table") -> None:
    """Show one port."""
    check_format(output)
    c = client()
    if ":" in port:
        found = c.get("/v1/ports", address=port)["ports"]
        if not found:
            raise CliError(f"no port with MAC {port}")
        port = found[0]["uuid"]
    emit(c.get(f"/v1/ports/{port}"), output)


@port_app.command("set")
def port_set(
    port: str,
    local_link_connection: Annotated[list[str] | None, typer.Option()] = None,
    physical_network: Annotated[str | None, typer.Option()] = None,
    pxe_enabled: Annotated[bool | None, typer.Option("--pxe-enabled/--no-pxe-enabled")] = None,
    output: Output = "table",
) -> None:
    """Change a port's wiring, physical network or PXE flag."""
    check_format(output)
    patch: list[dict[str, Any]] = []
    if local_link_connection:
        patch.append({"op": "add", "path": "/local_link_connection",
                      "value": _llc(local_link_connection)})
    if physical_network is not None:
        patch.append({"op": "add", "path": "/physical_network", "value": physical_network})
    if pxe_enabled is not None:
        patch.append({"op": "add", "path": "/pxe_enabled", "value": pxe_enabled})
    if not patch:
        raise CliError("nothing to set; see `metalplane port set --help`")
    emit(client().patch(f"/v1/ports/{port}", patch), output)


@port_app.command("delete")
def port_delete(ports: list[str]) -> None:
    """Delete ports."""
    delete_each("/v1/ports/{}", ports, "port")


# ------------------------------------------------------------------------ portgroups
@pg_app.command("create")
def pg_create(
    node: Annotated[str, typer.Option(help="Node name or UUID.")],
    name: Annotated[str | None, typer.Option()] = None,
    address: Annotated[str | None, typer.Option(help="MAC of the bond.")] = None,
    mode: Annotated[str, typer.Option(help="Bonding mode, e.g. 802.3ad.")] = "active-backup",
    output: Output = "table",
) -> None:
    """Create a portgroup; then attach ports with `port create --portgroup`."""
    check_format(output)
    c = client()
    body: dict[str, Any] = {"node_uuid": c.get(f"/v1/nodes/{node}", fields="uuid")["uuid"],
                            "mode": mode}
    if name:
        body["name"] = name
    if address:
        body["address"] = address
    emit(c.post("/v1/portgroups", body), output)


@pg_app.command("list")
def pg_list(node: Annotated[str | None, typer.Option()] = None,
            output: Output = "table") -> None:
    """List portgroups."""
    check_format(output)
    emit(client().get("/v1/portgroups", node=node)["portgroups"], output,
         ("uuid", "name", "address", "node_uuid", "mode"))


@pg_app.command("delete")
def pg_delete(portgroups: list[str]) -> None:
    """Delete portgroups (their ports stay, unbonded)."""
    delete_each("/v1/portgroups/{}", portgroups, "portgroup")


def main() -> None:
    """Entry point: run the app, turning known errors into one line and exit status 1."""
    try:
        code = app(standalone_mode=False)  # a typer.Exit comes back as its code here
        if isinstance(code, int) and code:
            sys.exit(code)
    except (ApiError, CliError, MetalplaneError) as exc:
        err_console.print(f"[red]error:[/red] {getattr(exc, 'message', None) or exc}",
                          highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("METALPLANE_DEBUG"):
            raise
        err_console.print(f"[red]error:[/red] {type(exc).__name__}: {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
