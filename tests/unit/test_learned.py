"""Learned scoring: pure functions over ratings (no Redis, no graph)."""

from __future__ import annotations

import pytest

from graph.context import TaskContext
from graph.registry import load_registry
from nodes import learned
from nodes.policies import POLICIES, Given
from nodes.scoring import effective_weights
from nodes.selection import Limits, filter_models, rank
from tests.conftest import PORT_HEALER


@pytest.fixture(scope="module")
def setting():
    registry = load_registry()
    ctx = TaskContext.model_validate(PORT_HEALER)
    weights = effective_weights(registry.scoring, ctx)
    statuses = {m: e.status for m, e in registry.models.items()}
    filtered = filter_models(registry, ctx, Limits(40, 512), statuses, {})
    return registry, ctx, weights, statuses, filtered


def chain(setting, policy, ratings):
    registry, ctx, weights, statuses, filtered = setting
    given = Given(registry, "k", weights, ratings)
    decision = rank(registry, ctx, filtered, weights, statuses, 3,
                    order=lambda r: POLICIES[policy](r, given))
    return decision


def test_the_estimate_shrinks_the_mean_towards_the_prior():
    assert learned.estimate(1.0, (0, 0.0)) == 1.0  # unrated: the prior itself
    assert learned.estimate(1.0, (5, 0.0)) == 0.5  # five zeros weigh as much as the prior
    assert learned.estimate(0.0, (1000, 900.0)) == pytest.approx(0.9, abs=0.01)


def test_without_ratings_learned_ranks_exactly_as_the_spec(setting):
    spec = chain(setting, "spec", {})
    for policy in ("learned", "learned-quality"):
        got = chain(setting, policy, {})
        assert [r.model_id for r in got.chain] == [r.model_id for r in spec.chain]
        assert got.chain[0].score.total == pytest.approx(spec.chain[0].score.total)
        assert got.chain[0].score.ratings == 0


def test_poor_ratings_demote_the_spec_primary_and_good_ones_promote_a_candidate(setting):
    spec = chain(setting, "spec", {})
    primary, runner_up = spec.chain[0].model_id, spec.chain[1].model_id
    ratings = {r.model_id: (40, 20.0) for r in spec.candidates}  # every candidate 0.5
    ratings |= {primary: (40, 4.0), runner_up: (40, 38.0)}  # 0.1 and 0.95
    for policy in ("learned", "learned-quality"):
        got = chain(setting, policy, ratings)
        assert got.chain[0].model_id == runner_up
        ids = [r.model_id for r in got.candidates]
        assert ids.index(primary) > ids.index(runner_up)
        record = got.chain[0].score.as_dict()
        assert record["ratings"] == 40
        assert record["learned_quality"] == pytest.approx((38.0 + 5 * 1.0) / 45)
        assert record["capability_match"] == 1.0  # the best estimate keeps the full weight


def test_learned_keeps_the_cost_trade_while_learned_quality_drops_it(setting):
    """Two equally rated models: the spec's trade decides for `learned`; for
    `learned-quality` only a clearly better rating moves the primary."""
    spec = chain(setting, "spec", {})
    ids = [r.model_id for r in spec.candidates]
    best, worst = ids[0], ids[-1]
    slight = {m: (50, 20.0) for m in ids} | {best: (50, 40.0), worst: (50, 42.5)}  # 0.80, 0.85
    assert chain(setting, "learned", slight).chain[0].model_id == best
    assert chain(setting, "learned-quality", slight).chain[0].model_id == worst


def test_an_unrated_capable_model_is_tried_before_a_poorly_rated_one(setting):
    spec = chain(setting, "spec", {})
    rated = {r.model_id: (30, 12.0) for r in spec.candidates[:-1]}  # all but one: 0.4
    got = chain(setting, "learned-quality", rated)
    assert got.chain[0].model_id == spec.candidates[-1].model_id
