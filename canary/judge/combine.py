"""The overall verdict of an analysis from its per-metric verdicts (shared by every judge).

Rules:

- FAIL if any judged metric is FAIL; the overall round is the earliest failing round.
- PASS only when every judged metric is PASS; the overall round is the latest of
  their pass rounds (the round at which the last metric passed).
- otherwise RUNNING, or INCONCLUSIVE when `final` (the budget is reached) — never an
  implicit pass; the overall round is then the current round.

FAIL wins a tie: a metric that is FAIL makes the analysis FAIL whatever the others
say. The function describes the *current* state; callers that stop at the first
decisive verdict (`canary judge`, the engine) stop the first time it is FAIL or PASS.

The per-metric judges (sequential, threshold) call it after updating their
per-metric results::

    judgement = combine(results, final=final, round=k)

The mann_whitney judge does not: like Kayenta it scores all metrics together and
its overall verdict comes from that score.

Metrics named in `ignored` (e.g. a `value` metric that the sequential judge does not
judge) are reported but take no part in the overall verdict.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from canary.model import Judgement, MetricResult, Verdict

__all__ = ["combine"]


def combine(
    results: Mapping[str, MetricResult],
    *,
    final: bool,
    round: int,
    ignored: Collection[str] = (),
    score: float | None = None,
    reasons: Sequence[str] = (),
) -> Judgement:
    """The overall Judgement of `results` after 1-based round `round`.

    `final=True` means the budget is reached: without FAIL or PASS the analysis is
    INCONCLUSIVE. `reasons` are extra overall reasons put after the generated ones.
    """
    judged = {name: r for name, r in results.items() if name not in ignored}
    failed = [r for r in judged.values() if r.verdict is Verdict.FAIL]
    passed = [r for r in judged.values() if r.verdict is Verdict.PASS]
    open_ = [r for r in judged.values() if r.verdict not in (Verdict.FAIL, Verdict.PASS)]

    if failed:
        fail_round = min((r.round if r.round is not None else round) for r in failed)
        names = ", ".join(sorted(r.name for r in failed))
        return Judgement(
            verdict=Verdict.FAIL,
            round=fail_round,
            metrics=dict(results),
            reasons=[f"failed: {names}", *reasons],
            score=score,
        )
    if judged and not open_:
        pass_round = max((r.round if r.round is not None else round) for r in passed)
        return Judgement(
            verdict=Verdict.PASS,
            round=pass_round,
            metrics=dict(results),
            reasons=["every metric passed", *reasons],
            score=score,
        )
    if not judged:
        generated = ["no metric is judged by this judge"]
    else:
        names = ", ".join(sorted(r.name for r in open_))
        generated = [f"no verdict yet: {names}"]
    if final:
        return Judgement(
            verdict=Verdict.INCONCLUSIVE,
            round=round,
            metrics=dict(results),
            reasons=[
                *[
                    g.replace("no verdict yet", "budget reached without a verdict")
                    for g in generated
                ],
                *reasons,
            ],
            score=score,
        )
    return Judgement(
        verdict=Verdict.RUNNING,
        round=None,
        metrics=dict(results),
        reasons=[*generated, *reasons],
        score=score,
    )
