"""`canary judge`: judge analyses given as JSON (no Prometheus needed).

    canary judge --input FILE [--judge sequential|mann_whitney|threshold]
                 [--set key=value ...] [--all-rounds] [--json]

FILE (or `-` for stdin) holds one JSON document or JSON Lines, one analysis per line
(format: `canary.analysis_json`). JSON Lines are answered with one JSON line per
analysis, in the same order. Exit code 1 when any analysis fails, 2 for bad input.

`--set` overrides settings: an analysis setting (`max_rounds=30`), a metric setting
for every metric (`alpha_fail=0.001`) or for one metric (`errors.margin=2`). Values
are JSON (`fail_grid=[1.5,2,4]`) or plain strings. Precedence: the input's own
settings < `--set key` < `--set metric.key`. The budget is the engine's
(`canary.engine.at_budget`): the `max_rounds`-th round, or the first whose `end` is
`max_duration` after the first round's `start` — which needs the rounds' times;
without them `max_duration` does not apply (and a given one is refused, unless null:
no time budget). Without a given `max_rounds` or `max_duration` the end of the input is
the budget too; a given one the input does not reach leaves the analysis running.
Each analysis stops at its first FAIL or PASS — or, with `--all-rounds`, judges every
round as the daemon does after a PASS (it keeps judging until the last step, and a
later FAIL wins): the answer then names the first PASS round (`pass_round`) and a
later FAIL round (`fail_round`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from canary import engine
from canary.analysis_json import AnalysisInput, read_analyses
from canary.commands._common import console, print_json, to_jsonable
from canary.config import AnalysisSettings, MetricConfig, metric_config
from canary.errors import EXIT_FAIL_VERDICT, EXIT_OK, UsageError
from canary.judge import JUDGES, make_judge
from canary.model import Decision, Judgement, Verdict
from canary.overrides import parse_overrides, validation_message
from canary.verdict_words import describe_metric


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "judge",
        help="judge analyses given as JSON (no Prometheus needed)",
        description=(
            "Judge analyses given as JSON: one document, or JSON Lines with one analysis "
            "per line (answered with one JSON line per analysis). Exit 1 if any fails. "
            "The budget is the engine's: max_rounds, and max_duration when the rounds "
            "carry their times (the first round's start, each round's end)."
        ),
    )
    parser.add_argument("--input", "-i", required=True, help="JSON or JSON Lines file, - for stdin")
    parser.add_argument(
        "--judge", choices=JUDGES, default=None, help="judge to use (default: sequential)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting: max_rounds=30, alpha_fail=0.001, errors.margin=2; "
        "max_duration=20m needs rounds with times (the first round's start, each round's "
        "end) and is refused without them",
    )
    parser.add_argument(
        "--all-rounds",
        action="store_true",
        help="judge every round, as the daemon does after a PASS (a later FAIL wins)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run)


def _where(analysis: AnalysisInput, source: str) -> str:
    if analysis.line is not None:
        return f"{source} line {analysis.line}"
    return f"{source} (analysis {analysis.id})" if analysis.id else source


def apply_overrides(
    analysis: AnalysisInput,
    judge_name: str,
    overrides: tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]],
    where: str,
) -> tuple[list[MetricConfig], AnalysisSettings]:
    """The analysis's metrics (read for `judge_name`) and settings, `--set` applied."""
    settings_over, every, per_metric = overrides
    names = {m.name for m in analysis.metrics}
    for name in per_metric:
        if name not in names:
            raise UsageError(
                f"--set {name}.…: {where} has no metric {name!r} "
                f"(its metrics: {', '.join(sorted(names))})"
            )
    metrics = []
    for config in analysis.metrics:
        fields = {**every, **per_metric.get(config.name, {})}
        if fields:
            try:
                config = metric_config(config.judge, {**config.model_dump(), **fields})
            except ValidationError as exc:
                raise UsageError(
                    validation_message(exc, f"{where}: metrics.{config.name}.")
                ) from None
        metrics.append(config)
    settings = AnalysisSettings.model_validate(
        {**analysis.settings, **settings_over, "judge": judge_name, "metrics": metrics}
    )
    return metrics, settings


# ---------------------------------------------------------------------- judging

_DECISIONS = {
    Verdict.RUNNING: Decision.CONTINUE,
    Verdict.FAIL: Decision.ROLLBACK,
    Verdict.PASS: Decision.PROMOTE,
}


def _decision(verdict: Verdict, settings: AnalysisSettings) -> str:
    if verdict is Verdict.INCONCLUSIVE:
        return Decision.HOLD.value if settings.on_inconclusive == "hold" else "rollback"
    return _DECISIONS[verdict].value


def judge_analysis(
    analysis: AnalysisInput,
    judge_name: str,
    overrides: tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]],
    where: str,
    *,
    all_rounds: bool = False,
) -> dict[str, Any]:
    """Judge one analysis round by round up to its first FAIL/PASS or its budget.

    With `all_rounds`, a PASS does not stop the judging (only a FAIL does), as in the
    daemon after a PASS; the result then carries `pass_round` and `fail_round`.
    """
    metrics, settings = apply_overrides(analysis, judge_name, overrides, where)
    try:
        judge = make_judge(judge_name, metrics, settings)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None
    rounds = analysis.rounds
    start = rounds[0].start if rounds else None
    timed = start is not None and any(r.end is not None for r in rounds)
    given = "max_duration" in overrides[0] or "max_duration" in analysis.settings
    given_duration = given and settings.max_duration is not None
    if given_duration and not timed:
        raise UsageError(
            f"{where}: max_duration needs the rounds' times (the first round's start and "
            "each round's end); without them only max_rounds and the end of the input "
            "end the analysis"
        )
    state = judge.initial_state()
    out_rounds: list[dict[str, Any]] = []
    judgement: Judgement | None = None
    pass_round: int | None = None
    fail_round: int | None = None
    # A budget given (max_rounds, or max_duration on timed rounds) that the input does
    # not reach leaves the analysis running; else the end of the input is the budget.
    end_is_budget = settings.max_rounds is None and not given_duration
    for index, round_data in enumerate(rounds):
        # The engine's budget: the max_rounds-th round, or the first whose window ends
        # max_duration after the first round's start. A failed round judges nothing,
        # so the next one ends the analysis then.
        at_budget = engine.at_budget(index + 1, start, round_data.end, settings)
        final = at_budget or (end_is_budget and index + 1 == len(rounds))
        try:
            state, judgement = judge.update(state, round_data, final=final)
        except ValueError as exc:
            raise UsageError(f"{where}: rounds[{index}]: {exc}") from None
        out_rounds.append(
            {
                "round": index + 1,
                "verdict": judgement.verdict.value,
                "decision": _decision(judgement.verdict, settings),
                "evidence": {
                    name: to_jsonable(result.evidence[-1]) if result.evidence else None
                    for name, result in judgement.metrics.items()
                },
            }
        )
        if judgement.verdict is Verdict.PASS and pass_round is None:
            pass_round = index + 1
        if judgement.verdict is Verdict.FAIL:
            fail_round = index + 1
            break
        if judgement.verdict is Verdict.PASS and not all_rounds:
            break
        if at_budget and round_data.error is None:
            break
    if judgement is None:
        return {
            "id": analysis.id,
            "judge": judge_name,
            "verdict": Verdict.INCONCLUSIVE.value,
            "round": None,
            "reasons": ["no rounds to judge"],
            "score": None,
            "metrics": {},
            "rounds": [],
        }
    extra: dict[str, Any] = {}
    if all_rounds:
        extra = {"pass_round": pass_round, "fail_round": fail_round}
    return {
        "id": analysis.id,
        "judge": judge_name,
        "verdict": judgement.verdict.value,
        "round": judgement.round,
        **extra,
        "reasons": list(judgement.reasons),
        "score": judgement.score,
        "metrics": {
            name: {
                "verdict": result.verdict.value,
                "round": result.round,
                "reasons": list(result.reasons),
                "statistics": to_jsonable(dict(result.statistics)),
            }
            for name, result in judgement.metrics.items()
        },
        "rounds": out_rounds,
    }


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None


def _print_text(result: Mapping[str, Any]) -> None:
    ident = result["id"] or "analysis"
    at = f" at round {result['round']}" if result["round"] is not None else ""
    console.print(f"{ident}: {result['verdict'].upper()}{at}", markup=False)
    if result.get("pass_round") is not None and result.get("fail_round") is not None:
        console.print(
            f"  passed at round {result['pass_round']}, failed later at round "
            f"{result['fail_round']} (a later FAIL wins)",
            markup=False,
        )
    for reason in result["reasons"]:
        console.print(f"  {reason}", markup=False)
    for name, metric in result["metrics"].items():
        words = describe_metric(name, metric["verdict"], metric["statistics"], metric["reasons"])
        at = f" (round {metric['round']})" if metric["round"] is not None else ""
        effect = f": {words.effect}" if words.effect else ""
        console.print(f"  {name}: {metric['verdict']}{at}{effect}", markup=False)
        if words.progress:
            console.print("    " + " · ".join(words.progress), markup=False)
        for note in words.notes:
            console.print(f"    {note}", markup=False)


def run(args: argparse.Namespace) -> int:
    judge_name = args.judge or "sequential"
    overrides = parse_overrides(args.overrides)
    text, source = _read(args.input)
    lines = True if source.endswith((".jsonl", ".ndjson")) else None
    analyses = read_analyses(text, source, lines=lines, judge=judge_name)
    results = [
        judge_analysis(
            analysis, judge_name, overrides, _where(analysis, source), all_rounds=args.all_rounds
        )
        for analysis in analyses
    ]
    json_lines = bool(lines) or any(a.line is not None for a in analyses)
    if json_lines:
        for result in results:
            sys.stdout.write(json.dumps(result, allow_nan=False, separators=(",", ":")) + "\n")
    elif args.json:
        print_json(results[0] if len(results) == 1 else results)
    else:
        for result in results:
            _print_text(result)
    failed = any(r["verdict"] == Verdict.FAIL.value for r in results)
    return EXIT_FAIL_VERDICT if failed else EXIT_OK
