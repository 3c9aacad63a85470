"""`canary traffic`: show or set a canary's route weights (VirtualService or HTTPRoute).

``canary traffic show NAME`` prints the current weights of the configured route and
our last recorded write; ``canary traffic set NAME --weight N`` moves them by hand
with the daemon's safety rules: integer weights summing to 100 written (weights read
as proportions, as the mesh applies them), resourceVersion
precondition with bounded retries, and no write when the weights drifted from what
canary last wrote (``--force`` takes over explicitly). Both accept ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from typing import Any

from canary.commands._common import add_json_flag, console, load, print_json
from canary.config import CanaryConfig, Config, KubernetesConfig
from canary.traffic import TrafficState, WriteResult, make_router


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "traffic", help="show or set a canary's route weights (VirtualService or HTTPRoute)"
    )
    sub = parser.add_subparsers(dest="traffic_command", metavar="ACTION", required=True)

    show = sub.add_parser("show", help="current weights of a configured canary's route")
    show.add_argument("name", help="canary name from the configuration")
    _cluster_flags(show)
    add_json_flag(show)
    show.set_defaults(handler=show_command)

    set_ = sub.add_parser(
        "set",
        help="set the canary weight by hand (same safety rules as the daemon)",
        description="Give N percent to the canary and 100-N to stable. Refuses when the "
        "weights differ from canary's last recorded write (drift) unless --force.",
    )
    set_.add_argument("name", help="canary name from the configuration")
    set_.add_argument(
        "--weight", type=int, required=True, metavar="N", help="canary weight, 0..100"
    )
    set_.add_argument(
        "--force",
        action="store_true",
        help="write even if someone else changed the weights since canary's last write",
    )
    set_.add_argument(
        "--dry-run", action="store_true", help="print the exact patch instead of sending it"
    )
    _cluster_flags(set_)
    add_json_flag(set_)
    set_.set_defaults(handler=set_command)


def _cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="override [kubernetes].kubeconfig")
    parser.add_argument("--context", help="override [kubernetes].context")


def _kubernetes(args: argparse.Namespace, config: Config) -> KubernetesConfig:
    update: dict[str, Any] = {}
    if args.kubeconfig:
        update["kubeconfig"] = args.kubeconfig
        if config.kubernetes.mode == "auto":
            update["mode"] = "kubeconfig"
    if args.context:
        update["context"] = args.context
    if getattr(args, "dry_run", False):
        update["dry_run"] = True
    return config.kubernetes.model_copy(update=update)


def _destination(canary: CanaryConfig, arm: str) -> str:
    dest = getattr(canary.traffic, arm)
    return dest.host + (f" subset {dest.subset}" if dest.subset else "")


def show_command(args: argparse.Namespace) -> int:
    config = load(args)
    canary = config.get_canary(args.name)
    state = asyncio.run(_show(_kubernetes(args, config), canary))
    if args.json:
        print_json({"canary": canary.name, "namespace": canary.namespace, **state.as_dict()})
        return 0
    console.print(f"{canary.name}: {state.resource}, route {state.route}", markup=False)
    if state.api_version:
        console.print(f"  api version  {state.api_version}", markup=False)
    console.print(
        f"  canary       {state.weights.canary:>3}%  {_destination(canary, 'canary')}",
        markup=False,
    )
    console.print(
        f"  stable       {state.weights.stable:>3}%  {_destination(canary, 'stable')}",
        markup=False,
    )
    if state.declared:
        console.print(
            f"  declared     canary={state.declared['canary']} stable={state.declared['stable']}"
            " (proportional weights as written in the resource)",
            markup=False,
        )
    record = state.last_write
    if record is None:
        console.print("  last write   none recorded by canary", markup=False)
    else:
        who = f"analysis {record.analysis} step {record.step}" if record.analysis else record.by
        console.print(
            f"  last write   canary={record.weights.canary} stable={record.weights.stable}"
            f" by {who} at {record.at}",
            markup=False,
        )
    if state.drift:
        console.print(
            "  drift        YES: the weights differ from canary's last write; the daemon will"
            " not move them (use `canary traffic set --force` to take over)",
            markup=False,
        )
    else:
        console.print("  drift        no", markup=False)
    return 0


async def _show(kubernetes: KubernetesConfig, canary: CanaryConfig) -> TrafficState:
    async with make_router(kubernetes, canary) as router:
        return await router.get()


def set_command(args: argparse.Namespace) -> int:
    config = load(args)
    canary = config.get_canary(args.name)
    kubernetes = _kubernetes(args, config)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    result = asyncio.run(
        _set(kubernetes, canary, args.weight, by=f"operator {user}", force=args.force)
    )
    if args.json:
        print_json({"canary": canary.name, "namespace": canary.namespace, **result.as_dict()})
        return 0
    before, after = result.before, result.after
    if result.dry_run:
        console.print(
            f"{canary.name}: dry run: would set canary weight {before.canary} -> {after.canary}"
            f" (stable {after.stable}) with this JSON patch:",
            markup=False,
        )
        console.print(json.dumps(result.patch, indent=2), markup=False)
    elif result.changed:
        console.print(
            f"{canary.name}: canary weight {before.canary} -> {after.canary}"
            f" (stable {after.stable})",
            markup=False,
        )
    else:
        console.print(
            f"{canary.name}: canary weight already {after.canary} (stable {after.stable})",
            markup=False,
        )
    return 0


async def _set(
    kubernetes: KubernetesConfig, canary: CanaryConfig, weight: int, *, by: str, force: bool
) -> WriteResult:
    async with make_router(kubernetes, canary) as router:
        return await router.set_weights(weight, by=by, force=force)
