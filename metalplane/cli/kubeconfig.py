"""``metalplane kubeconfig``: a kubeconfig with which kubectl reaches the running server's
Kubernetes-style API (``k8s_port``).

Only builds text: it reads the CA file it is given and nothing else. Format: Kubernetes'
``clientcmd/api/v1`` ``Config`` (clusters, users, contexts, current-context).
"""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from metalplane.cli.common import STATE, CliError
from metalplane.cli.output import err_console

__all__ = ["build_kubeconfig", "k8s_server_url", "kubeconfig"]


def k8s_server_url(api_url: str, k8s_port: int) -> str:
    """The Kubernetes-style API's URL beside the API at ``api_url``: same scheme and host,
    port ``k8s_port``. Raises :class:`CliError` for a URL without a host."""
    parts = urllib.parse.urlsplit(api_url)
    if not parts.hostname:
        raise CliError(f"--url {api_url!r} has no host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme or 'http'}://{host}:{k8s_port}"


def build_kubeconfig(server: str, username: str | None = None, password: str | None = None,
                     ca_pem: bytes | None = None, namespace: str = "default",
                     name: str = "metalplane") -> dict[str, Any]:
    """A kubeconfig (``apiVersion: v1``, ``kind: Config``) for ``server`` with the http_basic
    credentials (if ``username``) as a bearer token, base64 of ``user:password`` (as HTTP
    basic encodes them, RFC 7617), and the CA certificate ``ca_pem`` (PEM) if given."""
    cluster: dict[str, Any] = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    user: dict[str, Any] = {}
    if username:  # kubectl >= 1.19 sends no basic credentials: the server takes them
        # as a bearer token too (metalplane.api.k8s_api)
        user = {"token": base64.b64encode(f"{username}:{password or ''}".encode()).decode()}
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name,
                                                    "namespace": namespace}}],
            "current-context": name}


def kubeconfig(
    k8s_port: Annotated[int, typer.Option(
        envvar="METALPLANE_K8S_PORT", help="The server's k8s_port.")] = 6443,
    server: Annotated[str | None, typer.Option(
        help="The Kubernetes-style API's URL [default: --url's scheme and host, "
        "--k8s-port].")] = None,
    ca_file: Annotated[Path | None, typer.Option(
        envvar="METALPLANE_CA_FILE", help="PEM CA certificate that signed the server's "
        "(its own certificate, if self-signed) to embed.")] = None,
    namespace: Annotated[str, typer.Option(help="The context's namespace.")] = "default",
) -> None:
    """Print a kubeconfig for kubectl: the server's Kubernetes-style API, its CA if TLS,
    and the user of --username/--password (METALPLANE_USERNAME, METALPLANE_PASSWORD) as a
    bearer token (base64 of user:password).

    kubectl --kubeconfig FILE then works, e.g. ``metalplane kubeconfig > mp.kubeconfig;
    kubectl --kubeconfig mp.kubeconfig get bmh``. The token is the password, merely encoded:
    keep the file private (mode 0600)."""
    url = server or k8s_server_url(str(STATE["url"]), k8s_port)
    ca = None
    if ca_file is not None:
        try:
            ca = ca_file.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read --ca-file {ca_file}: {exc.strerror}") from None
    elif url.startswith("https:"):
        err_console.print("no --ca-file: kubectl will check the server's certificate "
                          "against the system's CAs", highlight=False)
    doc = build_kubeconfig(url, STATE.get("username"), STATE.get("password"), ca, namespace)
    typer.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)
