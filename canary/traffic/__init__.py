"""Where weights go: Istio VirtualServices, Gateway API HTTPRoutes, or memory.

`make_router` picks the implementation: ``[kubernetes].mode = "memory"`` gives a
`MemoryRouter` (demo, tests; no cluster); otherwise the canary's
``[canary.traffic].kind`` gives an `IstioRouter` (VirtualService) or an
`HTTPRouteRouter` (HTTPRoute), both talking to the Kubernetes API (in-cluster or
through a kubeconfig, see `canary.traffic.kube`) with the one write protocol of
`canary.traffic.kuberouter`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from canary.config import CanaryConfig, KubernetesConfig
from canary.traffic.base import ANNOTATION, Router, TrafficState, Weights, WriteRecord, WriteResult

if TYPE_CHECKING:
    from canary.traffic.kube import KubeClient

__all__ = [
    "ANNOTATION",
    "Router",
    "TrafficState",
    "Weights",
    "WriteRecord",
    "WriteResult",
    "make_router",
]


def make_router(
    kubernetes_config: KubernetesConfig,
    canary_config: CanaryConfig,
    *,
    client: KubeClient | None = None,
) -> Router:
    """The router for one canary.

    Pass a shared `client` (a `canary.traffic.kube.KubeClient`) when routing many
    canaries; without one, the router creates its own and closes it in `aclose()`.
    """
    if kubernetes_config.mode == "memory":
        from canary.traffic.memory import MemoryRouter

        traffic = canary_config.traffic
        return MemoryRouter(
            canary_config.name,
            resource=f"memory route of {canary_config.namespace}/{traffic.resource_name}",
            route=traffic.route_name or "(by destinations)",
        )
    from canary.traffic.gatewayapi import HTTPRouteRouter
    from canary.traffic.istio import IstioRouter
    from canary.traffic.kube import KubeClient

    owns = client is None
    kube = KubeClient.from_config(kubernetes_config) if client is None else client
    router = HTTPRouteRouter if canary_config.traffic.kind == "HTTPRoute" else IstioRouter
    return router(
        kube,
        canary_config,
        dry_run=kubernetes_config.dry_run,
        retries=kubernetes_config.retries,
        owns_client=owns,
    )
