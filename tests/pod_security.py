"""The Pod Security Standards, "baseline" and "restricted" profiles, as checks on a pod spec.

The controls and their allowed values follow the Kubernetes documentation, "Pod
Security Standards" (https://kubernetes.io/docs/concepts/security/pod-security-standards/,
policy version v1.30+: the restricted profile's seccomp, capabilities, non-root,
privilege escalation and volume-type controls; the baseline profile's host
namespaces, privileged, capabilities, hostPath, host ports, AppArmor, SELinux, /proc
mount type, seccomp and sysctls). Each check returns human-readable violations naming
the container and field, so a failing test says what to fix.

Written here rather than taken from a policy engine: checkov pulls in some fifty
packages (and downgrades shared ones), while these controls are a page of rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["BASELINE_CAPABILITIES", "containers", "pod_spec_of", "restricted_violations"]

#: Capabilities the baseline profile allows to be added.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
#: The only capability the restricted profile allows to be added.
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
#: Volume types the restricted profile allows.
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
#: Sysctls the baseline profile allows.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = {
    None,
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
}
_WORKLOADS_WITH_TEMPLATE = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def pod_spec_of(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec inside a Pod, a workload's template, or a CronJob's job template."""
    kind = resource.get("kind")
    if kind == "Pod":
        return resource.get("spec", {})
    if kind in _WORKLOADS_WITH_TEMPLATE:
        return resource["spec"]["template"]["spec"]
    if kind == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(description, container) for containers, init containers and ephemeral containers."""
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod.get(field) or []:
            yield f"{field}[{container.get('name')}]", container


def _effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A container's securityContext value, falling back to the pod's."""
    value = (container.get("securityContext") or {}).get(key)
    if value is None:
        value = (pod.get("securityContext") or {}).get(key)
    return value


def _baseline(pod: dict[str, Any]) -> list[str]:
    problems = []
    pod_sc = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"{field} must be unset or false")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("securityContext.windowsOptions.hostProcess must be false")
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            problems.append(f"volume {volume.get('name')}: hostPath volumes are forbidden")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl.get('name')} is not in the safe set")
    for where, sc in [("pod", pod_sc)] + [
        (name, c.get("securityContext") or {}) for name, c in containers(pod)
    ]:
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type") not in _SELINUX_TYPES:
            problems.append(f"{where}: seLinuxOptions.type {selinux.get('type')!r} not allowed")
        if selinux.get("user") or selinux.get("role"):
            problems.append(f"{where}: seLinuxOptions.user and .role must be unset")
        apparmor = (sc.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            problems.append(f"{where}: appArmorProfile.type {apparmor!r} not allowed")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            problems.append(f"{where}: seccompProfile.type Unconfined is forbidden")
    for name, container in containers(pod):
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"{name}: privileged must be unset or false")
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            problems.append(f"{name}: capabilities {sorted(added - BASELINE_CAPABILITIES)}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']} is forbidden")
        if sc.get("procMount") not in (None, "Default"):
            problems.append(f"{name}: procMount must be Default")
    return problems


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every way `pod` (a pod spec) breaks the restricted profile (which includes baseline)."""
    problems = _baseline(pod)
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')}: type {sorted(kinds)} not allowed")
    pod_sc = pod.get("securityContext") or {}
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod: runAsUser must not be 0")
    for name, container in containers(pod):
        sc = container.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if _effective(pod, container, "runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot must be true (container or pod)")
        if sc.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile.type must be RuntimeDefault or Localhost")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities.drop must include ALL")
        added = set(capabilities.get("add") or [])
        if added - RESTRICTED_CAPABILITIES:
            problems.append(f"{name}: may add only NET_BIND_SERVICE, adds {sorted(added)}")
    return problems
