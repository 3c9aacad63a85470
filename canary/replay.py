"""Re-judge stored analyses and backtest configurations over history.

Replay takes the raw per-round observations an analysis stored and runs them again
through a judge and, for rollouts made by the daemon, through the engine — without
Prometheus or Kubernetes:

- **engine mode** (source ``daemon``): the engine starts at the recorded start time
  and decides each round with ``now`` = the round's window end, exactly as the daemon
  did; the replayed decisions are compared with the recorded ones;
- **verdict mode** (sources ``analyze`` and ``argo``, which move no traffic): each
  round's replayed verdict is compared with the recorded one.

Replaying with the recorded configuration reproduces the recorded decisions; a
different configuration (steps, alphas, judge ...) shows what it would have decided
*on the same data*. The data cannot change with it: a different step plan would have
split traffic differently, so a replay is a what-if on the observed counts, not a
simulation of the other rollout.

The store is read in batches with plain column queries (`canary.store.stored`) so a
backtest over ten thousand analyses does not load an object graph per round.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from canary import engine
from canary.config import AnalysisSettings, Config, settings_for_judge
from canary.errors import StoredDataError, UsageError
from canary.judge import JUDGES, make_judge
from canary.model import AnalysisStatus, Decision, Judgement, Verdict
from canary.overrides import apply_overrides, validate_settings
from canary.rounds import recorded_settings
from canary.store.database import Session
from canary.store.stored import (
    ENGINE_SOURCES,
    StoredAnalysis,
    StoredRound,
    iter_stored,
    load_stored,
    select_ids,
)

__all__ = [
    "ENGINE_SOURCES",
    "BacktestSummary",
    "ReplayResult",
    "ReplayedRound",
    "StoredAnalysis",
    "StoredRound",
    "backtest",
    "iter_stored",
    "load_stored",
    "recorded_settings_data",
    "replay",
    "resolve_settings",
    "select_ids",
    "summarize",
]

TERMINAL_DECISIONS = frozenset(
    {Decision.PROMOTE.value, Decision.ROLLBACK.value, Decision.HOLD.value}
)


# --------------------------------------------------------------------------- settings


def recorded_settings_data(stored: StoredAnalysis) -> dict[str, Any]:
    """The recorded configuration as a plain dict of AnalysisSettings keys.

    The judge the analysis actually used (its `judge` column) wins over the dump's.
    """
    data = {k: v for k, v in stored.settings.items() if k in AnalysisSettings.model_fields}
    return settings_for_judge(data, stored.judge)


def config_settings(config: Config, canary: str) -> dict[str, Any]:
    """The settings a configuration file gives this canary (its `[defaults]` otherwise)."""
    for entry in config.canary:
        if entry.name == canary:
            return entry.settings().model_dump(mode="json")
    return config.defaults.model_dump(mode="json")


def resolve_settings(
    stored: StoredAnalysis,
    *,
    config: Config | None = None,
    judge: str | None = None,
    overrides: Sequence[str] = (),
) -> AnalysisSettings:
    """The settings to replay with: recorded (or from `config`), then judge, then overrides.

    Another judge keeps the metrics' common keys (name, kind, query ...) and drops the
    keys of the recorded judge; `--set` then sets the new judge's keys. A recorded
    configuration that no longer validates is the analysis' StoredDataError, a bad
    `--set` or `--judge` the user's UsageError.
    """
    if config is None:
        recorded = recorded_settings(stored)
        if judge is None and not overrides:
            return recorded
        base = recorded_settings_data(stored)
        where = f"recorded configuration of {stored.id}"
    else:
        base = config_settings(config, stored.canary)
        where = "configuration"
    if judge is not None:
        if judge not in JUDGES:
            raise UsageError(f"--judge {judge!r}: unknown judge (known: {', '.join(JUDGES)})")
        base = settings_for_judge(base, judge)
    data = apply_overrides(base, overrides)
    if overrides:
        where = f"{where} with --set {' '.join(overrides)}"
    return validate_settings(data, where)


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True)
class ReplayedRound:
    """One round: recorded and replayed verdict and decision (None when not reached)."""

    index: int
    recorded_verdict: str
    recorded_decision: str | None
    verdict: str | None
    decision: str | None
    weight: int | None
    reasons: tuple[str, ...] = ()

    @property
    def differs(self) -> bool:
        if self.verdict is None and self.decision is None:
            return self.recorded_decision is not None or self.recorded_verdict is not None
        return (self.decision, self.verdict) != (self.recorded_decision, self.recorded_verdict)


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """The final verdict of an analysis, when it was reached and what it decided."""

    verdict: str
    round: int | None
    decision: str | None
    seconds: float | None  # from the start to the end of the deciding round


@dataclass(frozen=True, slots=True)
class ReplayResult:
    analysis_id: str
    canary: str
    source: str
    mode: str
    judge: str
    recorded: ReplayOutcome
    replayed: ReplayOutcome
    rounds: tuple[ReplayedRound, ...]

    @property
    def differences(self) -> list[ReplayedRound]:
        return [r for r in self.rounds if r.differs]

    @property
    def reproduced(self) -> bool:
        return not self.differences


def _seconds(stored: StoredAnalysis, start: datetime, index: int | None) -> float | None:
    if index is None:
        return None
    for round_ in stored.rounds:
        if round_.index == index and round_.data.end is not None:
            return (round_.data.end - start).total_seconds()
    return None


def _start_time(stored: StoredAnalysis) -> datetime:
    """The engine's start (recorded in its state), else the analysis' creation time."""
    recorded = stored.engine_state.get("started_at") if stored.mode == "engine" else None
    if not recorded:
        return stored.started_at
    try:
        return datetime.fromisoformat(recorded)
    except (TypeError, ValueError):
        raise StoredDataError(
            stored.id, "engine_state.started_at", f"expected an ISO 8601 time, got {recorded!r}"
        ) from None


def _judged(stored: StoredAnalysis) -> tuple[StoredRound, ...]:
    return tuple(r for r in stored.rounds if r.index >= 1)


def _recorded_outcome(stored: StoredAnalysis, start: datetime) -> ReplayOutcome:
    if stored.mode == "engine":
        for round_ in stored.rounds:
            if round_.decision in TERMINAL_DECISIONS:
                seconds = _seconds(stored, start, round_.index)
                return ReplayOutcome(stored.verdict, round_.index, round_.decision, seconds)
        return ReplayOutcome(stored.verdict, None, None, None)
    seconds = _seconds(stored, start, stored.verdict_round)
    return ReplayOutcome(stored.verdict, stored.verdict_round, None, seconds)


def replay(
    stored: StoredAnalysis, settings: AnalysisSettings, *, explain: bool = True
) -> ReplayResult:
    """Re-run `settings.judge` (and the engine, for daemon analyses) on the stored rounds.

    Every round goes through `canary.engine.step`, as in the daemon, the Argo
    endpoint and `canary analyze`: every round after the warm-up updates the judge (a
    round whose queries failed changes no evidence and gives the engine no
    judgement); a warm-up whose queries failed counts as a failed round.
    `explain=False` (backtests) lets the sequential judge skip its confidence
    intervals and reasons: the same verdicts and decisions, shorter round reasons.
    """
    start = _start_time(stored)
    if stored.mode == "engine":
        rounds, replayed = _replay_engine(stored, settings, start, explain)
    else:
        rounds, replayed = _replay_verdicts(stored, settings, start, explain=explain)
    return ReplayResult(
        analysis_id=stored.id,
        canary=stored.canary,
        source=stored.source,
        mode=stored.mode,
        judge=settings.judge,
        recorded=_recorded_outcome(stored, start),
        replayed=replayed,
        rounds=tuple(rounds),
    )


_JUDGES: dict[str, Any] = {}


def _judge(settings: AnalysisSettings, explain: bool = True) -> Any:
    """The judge named by the settings; UsageError when it cannot judge these metrics.

    Sequential judges keep no state of their own (it travels in `judge_state`), so one
    is built per distinct configuration and reused across analyses.
    """
    key = None
    if settings.judge == "sequential":
        key = f"{explain}:{settings.model_dump_json()}"
        cached = _JUDGES.get(key)
        if cached is not None:
            return cached
    try:
        if key is not None and not explain:
            from canary.judge.sequential import SequentialJudge

            judge = SequentialJudge(settings.metrics, settings, explain=False)
        else:
            judge = make_judge(settings.judge, settings.metrics, settings)
    except ValueError as exc:
        raise UsageError(f"the {settings.judge} judge cannot replay this analysis: {exc}") from None
    if key is not None:
        if len(_JUDGES) >= 256:
            _JUDGES.clear()
        _JUDGES[key] = judge
    return judge


def _step(stored: StoredAnalysis, *args: Any, index: int, **kwargs: Any) -> engine.RoundStep:
    """`engine.step` on a stored round; an observation the judge cannot use (a histogram
    where the metric counts requests) is a StoredDataError naming the round."""
    try:
        return engine.step(*args, index=index, **kwargs)
    except ValueError as exc:
        raise StoredDataError(stored.id, f"round {index}", str(exc)) from None


def _replay_engine(
    stored: StoredAnalysis, settings: AnalysisSettings, start: datetime, explain: bool = True
) -> tuple[list[ReplayedRound], ReplayOutcome]:
    judge = _judge(settings, explain).for_rounds([r.data for r in stored.rounds])
    judge_state = judge.initial_state()
    state, _weight = engine.start(settings, start)
    rounds: list[ReplayedRound] = []
    outcome: ReplayOutcome | None = None
    last: Judgement | None = None
    for round_ in stored.rounds:
        data = round_.data
        if round_.index == 0 and data.error is None:
            continue  # the warm-up snapshot: no judgement, no decision
        if state.status is not AnalysisStatus.RUNNING:
            rounds.append(_not_reached(round_))
            continue
        now = data.end or start
        step = _step(
            stored, judge, judge_state, data, now, settings, index=round_.index, state=state
        )
        assert step.outcome is not None
        judge_state, judgement, decided = step.judge_state, step.judgement, step.outcome
        if judgement is not None:
            last = judgement
        state = decided.state
        rounds.append(
            ReplayedRound(
                index=round_.index,
                recorded_verdict=round_.verdict,
                recorded_decision=round_.decision,
                verdict=(judgement.verdict if judgement else Verdict.RUNNING).value,
                decision=decided.decision.value,
                weight=state.weight,
                reasons=(decided.reason,),
            )
        )
        if outcome is None and step.finished:
            verdict = engine.stored_verdict(state.status, last) or Verdict.RUNNING
            outcome = ReplayOutcome(
                verdict.value,
                round_.index,
                decided.decision.value,
                (now - start).total_seconds(),
            )
    if outcome is None:  # still running when the recorded data ends
        verdict_ = last.verdict.value if last else Verdict.RUNNING.value
        outcome = ReplayOutcome(verdict_, None, None, None)
    return rounds, outcome


@dataclass(slots=True)
class _VerdictRun:
    """A verdict-mode replay so far: the judge's state, the rounds replayed, the last
    judgement and whether the budget ended the analysis."""

    judge_state: Any
    rounds: list[ReplayedRound]
    last: Judgement | None = None
    ended: bool = False

    def copy(self) -> _VerdictRun:
        return _VerdictRun(self.judge_state, list(self.rounds), self.last, self.ended)


def _replay_verdicts(
    stored: StoredAnalysis,
    settings: AnalysisSettings,
    start: datetime,
    window_end: bool | None = None,
    explain: bool = True,
) -> tuple[list[ReplayedRound], ReplayOutcome]:
    judged = _judged(stored)
    judge = _judge(settings, explain).for_rounds([r.data for r in judged])
    run = _VerdictRun(judge.initial_state(), [])
    if window_end is None:
        window_end = _window_end_known(stored, judged)
    if window_end is None and _is_recorded(stored, settings):
        # Whether the window ended at the last round takes a replay with the recorded
        # settings, which is this one: replay up to the last round once, then judge the
        # last round as the window's end only if it was.
        _verdict_steps(stored, settings, start, judge, run, judged[:-1], judged, False)
        before_last = run.copy()
        _verdict_steps(stored, settings, start, judge, run, judged[-1:], judged, False)
        window_end = _remember_window_end(stored, run.rounds[-1].verdict != _last_verdict(judged))
        if window_end:
            run = before_last
            _verdict_steps(stored, settings, start, judge, run, judged[-1:], judged, True)
    else:
        if window_end is None:
            window_end = _reached_window_end(stored, judged)
        _verdict_steps(stored, settings, start, judge, run, judged, judged, window_end)
    rounds, last = run.rounds, run.last
    # A closed window ends as `canary analyze` closes it; an open one keeps its last verdict.
    closed = engine.window_closing(last, 0).verdict if window_end or run.ended else None
    verdict = (closed or (last.verdict if last else Verdict.RUNNING)).value
    if last is None:
        return rounds, ReplayOutcome(verdict, None, None, None)
    return rounds, ReplayOutcome(verdict, last.round, None, _seconds(stored, start, last.round))


def _verdict_steps(
    stored: StoredAnalysis,
    settings: AnalysisSettings,
    start: datetime,
    judge: Any,
    run: _VerdictRun,
    rounds: Sequence[StoredRound],
    judged: Sequence[StoredRound],
    window_end: bool,
) -> None:
    """Judge `rounds` (a stretch of `judged`) in order, continuing `run`; with
    `window_end` the last of `judged` is judged as the window's last round."""
    for round_ in rounds:
        if run.ended:
            run.rounds.append(_not_reached(round_))
            continue
        at_budget = engine.at_budget(round_.index, start, round_.data.end, settings)
        # As in the daemon and `canary analyze`: the first judged round at the budget
        # ends the analysis (a round whose queries failed judges nothing).
        run.ended = at_budget and round_.data.error is None
        step = _step(
            stored,
            judge,
            run.judge_state,
            round_.data,
            round_.data.end or start,
            settings,
            index=round_.index,
            started_at=start,
            final=(window_end and round_ is judged[-1]) or at_budget,
        )
        run.judge_state, judgement = step.judge_state, step.judgement
        verdict = Verdict.RUNNING.value
        if judgement is not None:
            run.last = judgement
            verdict = judgement.verdict.value
        run.rounds.append(
            ReplayedRound(
                index=round_.index,
                recorded_verdict=round_.verdict,
                recorded_decision=round_.decision,
                verdict=verdict,
                decision=round_.decision,
                weight=None,
                reasons=tuple(judgement.reasons) if judgement is not None else (),
            )
        )


_WINDOW_ENDS: dict[str, bool] = {}


def _last_verdict(judged: Sequence[StoredRound]) -> str | None:
    """The recorded verdict of the last judged round whose queries succeeded."""
    for round_ in reversed(judged):
        if round_.data.error is None:
            return round_.verdict
    return None


def _window_end_known(stored: StoredAnalysis, judged: Sequence[StoredRound]) -> bool | None:
    """Whether the last stored round of a `canary analyze` window was its budget, when
    that is known without a replay (None: it takes one, `_reached_window_end`).

    `canary analyze` judges the last round of its window with the budget reached and
    otherwise stops at the first PASS or FAIL. Without a PASS or FAIL at the end, the
    window's end was reached. With one, both are possible (a judge such as
    mann_whitney passes only at the budget): the recorded configuration tells — if
    it reproduces the last verdict without the budget, the window went on.
    """
    if stored.source != "analyze" or not judged:
        return False
    last = _last_verdict(judged)
    if last not in (Verdict.PASS.value, Verdict.FAIL.value):
        return True
    return _WINDOW_ENDS.get(stored.id)


def _remember_window_end(stored: StoredAnalysis, ends: bool) -> bool:
    if len(_WINDOW_ENDS) > 50_000:
        _WINDOW_ENDS.clear()
    _WINDOW_ENDS[stored.id] = ends
    return ends


def _is_recorded(stored: StoredAnalysis, settings: AnalysisSettings) -> bool:
    """Whether `settings` are the analysis' recorded ones (False when those do not read:
    the replay then says so where it reads them)."""
    try:
        return settings == resolve_settings(stored)
    except (StoredDataError, UsageError):
        return False


def _reached_window_end(stored: StoredAnalysis, judged: Sequence[StoredRound]) -> bool:
    """Whether the last stored round of a `canary analyze` window was its budget
    (`_window_end_known`), replaying with the recorded configuration when it takes one."""
    known = _window_end_known(stored, judged)
    if known is not None:
        return known
    start = _start_time(stored)
    settings = resolve_settings(stored)
    rounds, _ = _replay_verdicts(stored, settings, start, window_end=False, explain=False)
    return _remember_window_end(stored, rounds[-1].verdict != _last_verdict(judged))


def _not_reached(round_: StoredRound) -> ReplayedRound:
    return ReplayedRound(
        index=round_.index,
        recorded_verdict=round_.verdict,
        recorded_decision=round_.decision,
        verdict=None,
        decision=None,
        weight=None,
    )


# --------------------------------------------------------------------------- backtest


def read_labels(path: str) -> dict[str, str]:
    """Ground truth: analysis id -> ``good`` | ``bad``.

    Accepts a JSON object (``{"id": "good"}``) or text lines ``ID good`` / ``ID,bad``
    (``#`` comments and blank lines ignored). UsageError names the bad line.
    """

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise UsageError(f"--labels {path}: cannot read: {exc.strerror}") from None
    labels: dict[str, str] = {}
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--labels {path}: invalid JSON: {exc}") from None
        items = [(str(k), v, f"key {k!r}") for k, v in raw.items()]
    else:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.replace(",", " ").split()
            if len(parts) != 2:
                raise UsageError(f"--labels {path}:{number}: expected 'ID good|bad', got {line!r}")
            items.append((parts[0], parts[1], f"line {number}"))
    for analysis_id, label, where in items:
        if label not in ("good", "bad"):
            raise UsageError(f"--labels {path}: {where}: label must be good or bad, got {label!r}")
        labels[analysis_id] = label
    return labels


def rolled_back(outcome: ReplayOutcome) -> bool:
    """The analysis stopped the canary: a rollback, or a FAIL verdict."""
    return outcome.decision == Decision.ROLLBACK.value or outcome.verdict == Verdict.FAIL.value


def promoted(outcome: ReplayOutcome) -> bool:
    """The canary went ahead: a promotion, or a PASS verdict."""
    return outcome.decision == Decision.PROMOTE.value or outcome.verdict == Verdict.PASS.value


@dataclass
class BacktestSummary:
    """What one configuration did over a set of analyses, against the recorded outcomes."""

    name: str
    analyses: int = 0
    errors: int = 0
    verdicts_changed: int = 0
    decisions_changed: int = 0
    rollbacks_earlier: int = 0
    rollbacks_later: int = 0
    rollbacks_new: int = 0
    rollbacks_lost: int = 0
    promotions_lost: int = 0
    promotions_new: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    labelled: int = 0
    false_rollbacks: int = 0
    missed_regressions: int = 0
    good: int = 0
    bad: int = 0
    decision_seconds: list[float] = field(default_factory=list)
    decision_rounds: list[int] = field(default_factory=list)

    def add(self, result: ReplayResult, label: str | None = None) -> None:
        recorded, replayed = result.recorded, result.replayed
        self.analyses += 1
        self.verdicts[replayed.verdict] = self.verdicts.get(replayed.verdict, 0) + 1
        if replayed.verdict != recorded.verdict:
            self.verdicts_changed += 1
        if not result.reproduced:
            self.decisions_changed += 1
        was_rb, is_rb = rolled_back(recorded), rolled_back(replayed)
        if was_rb and is_rb and recorded.round is not None and replayed.round is not None:
            if replayed.round < recorded.round:
                self.rollbacks_earlier += 1
            elif replayed.round > recorded.round:
                self.rollbacks_later += 1
        elif is_rb and not was_rb:
            self.rollbacks_new += 1
        elif was_rb and not is_rb:
            self.rollbacks_lost += 1
        if promoted(recorded) and not promoted(replayed):
            self.promotions_lost += 1
        elif promoted(replayed) and not promoted(recorded):
            self.promotions_new += 1
        if replayed.round is not None and (promoted(replayed) or rolled_back(replayed)):
            self.decision_rounds.append(replayed.round)
            if replayed.seconds is not None:
                self.decision_seconds.append(replayed.seconds)
        if label is not None:
            self.labelled += 1
            if label == "good":
                self.good += 1
                self.false_rollbacks += is_rb
            else:
                self.bad += 1
                self.missed_regressions += not is_rb

    @property
    def median_rounds(self) -> float | None:
        return statistics.median(self.decision_rounds) if self.decision_rounds else None

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.decision_seconds) if self.decision_seconds else None

    def to_json(self) -> dict[str, Any]:
        data = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("decision_seconds", "decision_rounds")
        }
        data["median_rounds_to_decision"] = self.median_rounds
        data["median_seconds_to_decision"] = self.median_seconds
        return data


def recorded_summary(results: Iterable[ReplayResult], labels: Mapping[str, str]) -> BacktestSummary:
    """The recorded outcomes scored like a configuration (the baseline column)."""
    summary = BacktestSummary(name="recorded")
    for result in results:
        as_recorded = ReplayResult(
            analysis_id=result.analysis_id,
            canary=result.canary,
            source=result.source,
            mode=result.mode,
            judge=result.judge,
            recorded=result.recorded,
            replayed=result.recorded,
            rounds=(),
        )
        summary.add(as_recorded, labels.get(result.analysis_id))
    return summary


def summarize(
    name: str, results: Iterable[ReplayResult], labels: Mapping[str, str]
) -> BacktestSummary:
    summary = BacktestSummary(name=name)
    for result in results:
        summary.add(result, labels.get(result.analysis_id))
    return summary


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


# --------------------------------------------------------------------------- many analyses

#: (name, configuration) pairs to replay with; None is each analysis' recorded one.
Configs = Sequence[tuple[str, Config | None]]


@dataclass
class BacktestRun:
    """Replayed results per configuration name, and analyses that could not be replayed."""

    results: dict[str, list[ReplayResult]]
    errors: dict[str, list[str]]


def _replay_chunk(
    session: Session,
    ids: Sequence[str],
    configs: Configs,
    judge: str | None,
    overrides: Sequence[str],
) -> BacktestRun:
    run = BacktestRun({name: [] for name, _ in configs}, {name: [] for name, _ in configs})
    # Analyses of one canary mostly share their recorded settings: validate each once.
    resolved: dict[tuple[str, str], AnalysisSettings] = {}
    for stored in iter_stored(session, ids):
        if isinstance(stored, StoredDataError):
            for name, _ in configs:
                run.errors[name].append(str(stored))
            continue
        for name, config in configs:
            try:
                if config is None:
                    key = (
                        name,
                        json.dumps([stored.judge, stored.settings], sort_keys=True, default=str),
                    )
                else:
                    key = (name, stored.canary)
                settings = resolved.get(key)
                if settings is None:
                    settings = resolve_settings(
                        stored, config=config, judge=judge, overrides=overrides
                    )
                    if len(resolved) >= 1024:
                        resolved.clear()
                    resolved[key] = settings
                run.results[name].append(replay(stored, settings, explain=False))
            except StoredDataError as exc:
                run.errors[name].append(str(exc))
            except UsageError as exc:
                if overrides or judge:
                    raise  # a bad override is the user's mistake, not the analysis'
                run.errors[name].append(f"analysis {stored.id}: {exc}")
    return run


_WORKER: dict[str, Any] = {}


def _worker_init(url: str) -> None:
    from canary.store.database import connect, sessions

    _WORKER["sessions"] = sessions(connect(url))


def _worker_chunk(
    ids: Sequence[str], configs: Configs, judge: str | None, overrides: Sequence[str]
) -> BacktestRun:
    with _WORKER["sessions"]() as session:
        return _replay_chunk(session, ids, configs, judge, overrides)


def backtest(
    url: str,
    ids: Sequence[str],
    configs: Configs,
    *,
    judge: str | None = None,
    overrides: Sequence[str] = (),
    workers: int = 1,
    chunk: int = 100,
    progress: Any = None,
) -> BacktestRun:
    """Replay `ids` with every configuration; `workers` > 1 judges in that many processes.

    Judging is CPU-bound pure Python/numpy, so processes (not threads) share the
    work; each worker reads its own chunks of analyses from the store. `progress`
    (optional) is called with the number of analyses finished since the last call.
    Results keep the order of `ids`.
    """
    from canary.store.database import connect, sessions

    chunks = [list(ids[i : i + chunk]) for i in range(0, len(ids), chunk)]
    run = BacktestRun({name: [] for name, _ in configs}, {name: [] for name, _ in configs})

    def merge(part: BacktestRun, size: int) -> None:
        for name in run.results:
            run.results[name].extend(part.results[name])
            run.errors[name].extend(part.errors[name])
        if progress is not None:
            progress(size)

    if workers <= 1 or len(chunks) <= 1:
        engine_ = connect(url)
        try:
            with sessions(engine_)() as session:
                for part_ids in chunks:
                    merge(
                        _replay_chunk(session, part_ids, configs, judge, overrides), len(part_ids)
                    )
        finally:
            engine_.dispose()
        return run

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the caller may run threads (a progress bar) that fork would copy
    # mid-flight; a spawned worker imports canary afresh (about a second).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_worker_init, initargs=(url,)
    ) as pool:
        futures = [
            pool.submit(_worker_chunk, part_ids, configs, judge, overrides) for part_ids in chunks
        ]
        for part_ids, future in zip(chunks, futures, strict=True):
            merge(future.result(), len(part_ids))
    return run
