"""Constraint generation for markets capacitated on both sides (market/separation.py) and
the cut pool with in-out separation of market/sequential_lp.py, each against enumeration."""
from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from market.essential import list_separator
from market.exact_linalg import integer_null_basis, null_basis_by_elimination
from market.nucleolus import market_game_values, nucleolus
from market.separation import _subcubes, _zero_sums, core_point, market_separator, span_parts
from market import separation, sequential_lp
from market.sequential_lp import Stages
from tests.market.conftest import assert_nucleolus_equals_enumeration, fixed_charge_case, markets, random_box


def _both_sides_capacitated(inst):
    """The market with its first buyer and first seller given capacity >= 2, so that the
    general path (neither pairs nor stars) runs."""
    w, bc, sc = inst
    bc, sc = bc.copy(), sc.copy()
    bc[0], sc[0] = max(bc[0], 2), max(sc[0], 2)
    return w, bc, sc


def _members(N):
    masks = np.arange(1 << N)
    return ((masks[:, None] >> np.arange(N)[None, :]) & 1).astype(float)


@settings(max_examples=25, deadline=None)
@given(markets(max_buyers=3, max_sellers=4, max_cap=3))
def test_core_point_pays_every_coalition_its_value(inst):
    w, bc, sc = inst
    N = len(bc) + len(sc)
    table = market_game_values(w, bc, sc)
    x = core_point(w, bc, sc)
    assert abs(x.sum() - table[-1]) <= 1e-6
    assert (x >= -1e-9).all()
    assert (table - _members(N) @ x <= 1e-6).all()


def _separation_case(inst, seed: int, fixed: int, *, partition: bool = False):
    """A market capacitated on both sides, a random point x, stages with ``fixed`` random
    coalitions fixed -- after, with ``partition``, the blocks of a random partition of the
    players (the sequential LPs' usual case; the random coalitions can then make a part of
    the span that no partition spans) -- and the proper coalitions outside the span of
    the fixed rows: (w, bc, sc, table, x, stages, member, outside)."""
    w, bc, sc = _both_sides_capacitated(inst)
    N = len(bc) + len(sc)
    table = market_game_values(w, bc, sc)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, max(1.0, float(table[-1])), N)
    stages = Stages(N, float(table[-1]), np.zeros(N), [], [])
    member = _members(N)
    if partition:
        labels = rng.integers(0, int(rng.integers(1, N + 1)), N)
        for label in sorted(set(labels.tolist()))[:-1]:     # the last block follows from N
            stages._add_equality(member[int(sum(1 << int(p) for p in np.flatnonzero(labels == label)))], 0.0)
    for mask in rng.integers(1, (1 << N) - 1, size=fixed).tolist():
        stages._add_equality(member[mask], 0.0)
    rows = np.array(stages.eq_rows)
    rank = np.linalg.matrix_rank(rows)
    outside = [mk for mk in range(1, (1 << N) - 1)
               if np.linalg.matrix_rank(np.r_[rows, member[mk][None, :]]) > rank]
    return w, bc, sc, table, x, stages, member, outside


@settings(max_examples=25, deadline=None)
@given(markets(max_buyers=3, max_sellers=3, max_cap=3), st.integers(0, 2**32 - 1),
       st.integers(0, 3))
def test_separation_milp_finds_the_most_violated_coalition_outside_the_span(inst, seed, fixed):
    w, bc, sc, table, x, stages, member, outside = _separation_case(inst, seed, fixed)
    found = market_separator(w, bc, sc)(x, -np.inf, stages)
    if not outside:
        assert found == []
        return
    best = max(table[mk] - member[mk] @ x for mk in outside)
    mask, value = found[0]              # first the most violated coalition
    assert mask in outside
    assert value == table[mask]
    assert abs((value - member[mask] @ x) - best) <= 1e-6 * max(1.0, abs(best))
    _assert_more_cuts_exact(found, outside, table, member, x, -np.inf)


def _assert_more_cuts_exact(found, outside, table, member, x, threshold):
    """HiGHS's earlier incumbents, after the optimum: distinct, outside the span,
    with exact values, and beating the threshold."""
    masks = [mk for mk, _v in found]
    assert len(set(masks)) == len(masks)
    for mask, value in found[1:]:
        assert mask in outside and value == table[mask]
        assert value - member[mask] @ x > threshold


@settings(max_examples=25, deadline=None)
@given(markets(max_buyers=3, max_sellers=3, max_cap=3), st.integers(0, 2**32 - 1),
       st.integers(0, 3), st.floats(-3.0, 3.0))
def test_separation_cut_off_at_the_threshold_keeps_answers_and_pool_values_exact(
        inst, seed, fixed, offset):
    # the threshold is HiGHS's objective cut-off: a violated coalition must still be
    # the most violated one, and a coalition kept in the pool when nothing is violated
    # must carry its exact value (the point HiGHS returns then need not be optimal)
    w, bc, sc, table, x, stages, member, outside = _separation_case(inst, seed, fixed)
    stages.use_pool(x, 0.0, 0)          # an empty cut pool, to see what is kept
    if not outside:
        return
    best = max(table[mk] - member[mk] @ x for mk in outside)
    threshold = best + offset
    found = market_separator(w, bc, sc)(x, threshold, stages)
    if best > threshold + 1e-6:
        mask, value = found[0]
        assert mask in outside and value == table[mask]
        assert abs((value - member[mask] @ x) - best) <= 1e-6 * max(1.0, abs(best))
        _assert_more_cuts_exact(found, outside, table, member, x, threshold)
    elif best < threshold - 1e-6:
        assert found == []
    for mask, value in stages.free.items():
        assert mask in outside
        assert abs(value * stages.scale - table[mask]) <= 1e-9 * stages.scale


@settings(max_examples=30, deadline=None)
@given(markets(max_buyers=3, max_sellers=3, max_cap=3), st.integers(1, 3), st.integers(1, 4),
       st.sampled_from([0, 1, sequential_lp.MIDPOINT_AFTER]))
# every active row settled at once (the LP had no row left and was unbounded)
@example((np.array([[30, -5, -14]]), np.array([1]), np.array([2, 3, 2])), 2, 1, 0)
def test_cut_pool_with_in_out_separation_gives_the_enumeration_nucleolus(inst, active, limit,
                                                                          midpoint_after):
    # a tiny starting LP (``active`` rows), few cuts per round (``limit``) and in-out
    # midpoints from the first rounds on make the pool check, the midpoints and the
    # face points all do real work
    w, bc, sc = _both_sides_capacitated(inst)
    N = len(bc) + len(sc)
    table = market_game_values(w, bc, sc)
    every = list(range(1, (1 << N) - 1))
    separate = list_separator(every, table[1:-1].tolist(), N, limit)
    stages = Stages(N, float(table[-1]), np.zeros(N), [1 << p for p in range(N)], [0.0] * N,
                    separate)
    stages.use_pool(core_point(w, bc, sc), 0.0, active)
    with mock.patch.object(sequential_lp, "MIDPOINT_AFTER", midpoint_after):
        x = stages.solve()
    np.testing.assert_allclose(x, nucleolus(N, table), atol=1e-6)


@settings(max_examples=12, deadline=None)
@given(markets(max_buyers=3, max_sellers=3, max_cap=3, low=-10, high=30))
def test_both_sides_capacitated_market_nucleolus_equals_enumeration(inst):
    assert_nucleolus_equals_enumeration(*_both_sides_capacitated(inst), kohlberg=True)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_nine_player_capacitated_markets_give_the_enumeration_nucleolus(seed):
    # 4 x 5 with every pair positive and capacities 1-3: richer spans (larger blocks,
    # parts no partition spans) for the separation's branch and bound
    rng = np.random.default_rng(seed)
    w, bc, sc = rng.integers(1, 40, (4, 5)), rng.integers(1, 4, 4), rng.integers(1, 4, 5)
    assert_nucleolus_equals_enumeration(*_both_sides_capacitated((w, bc, sc)), kohlberg=True)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.integers(0, 2**32 - 1), st.integers(0, 12))
def test_integer_null_basis_spans_the_null_space_exactly(n, seed, k):
    rng = np.random.default_rng(seed)
    rows = [np.ones(n)] + [(rng.random(n) < 0.5).astype(float) for _ in range(k)]
    rows += [np.eye(n)[i] for i in rng.integers(0, n, 2)]
    B = sequential_lp.integer_null_basis(rows, n)
    independent = []                    # the Stages' rows are independent: the float path
    for row in rows:
        if np.linalg.matrix_rank(np.array(independent + [row])) > len(independent):
            independent.append(row)
    np.testing.assert_array_equal(integer_null_basis(independent, n),
                                  null_basis_by_elimination(independent, n))
    rank = np.linalg.matrix_rank(np.array(rows))
    assert B.shape == (n, n - rank)
    assert not (np.array(rows).astype(np.int64) @ B).any()        # exactly, in integers
    if n > rank:
        assert np.linalg.matrix_rank(B.astype(float)) == n - rank


def test_a_repeated_level_is_certified_by_its_point_without_separation():
    # the always-tight test on the pool's rows can leave a tight coalition free, so
    # the next stage repeats the level; the point that certified it certifies it
    # again (no separation), and the result is still the enumeration nucleolus
    repeats = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        m, n = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        w, bc, sc = _both_sides_capacitated(
            (rng.integers(-5, 12, size=(m, n)), rng.integers(1, 4, m), rng.integers(1, 4, n)))
        N = m + n
        table = market_game_values(w, bc, sc)
        listed = list_separator(list(range(1, (1 << N) - 1)), table[1:-1].tolist(), N, 1)
        calls = []
        stages = Stages(N, float(table[-1]), np.zeros(N), [1 << p for p in range(N)],
                        [0.0] * N, lambda x, t, s: calls.append(t) or listed(x, t, s))
        stages.use_pool(core_point(w, bc, sc), 0.0, 1)
        in_out = stages._in_out

        def watched(x, eps, A, vals, rounds):
            repeated, before = stages.inner[1] - eps <= sequential_lp.TOL, len(calls)
            done = in_out(x, eps, A, vals, rounds)
            if repeated:
                repeats.append(seed)
                assert done and len(calls) == before
            return done

        stages._in_out = watched
        np.testing.assert_allclose(stages.solve(), nucleolus(N, table), atol=1e-6)
    assert repeats        # the case does occur on these markets


@settings(max_examples=80, deadline=None)
@given(markets(max_buyers=3, max_sellers=4, max_cap=3), st.integers(0, 2**32 - 1),
       st.integers(0, 2), st.floats(-3.0, 3.0), st.booleans())
def test_branch_and_bound_over_the_span_parts_finds_what_the_milp_finds(inst, seed, extra, offset,
                                                                       by_null_basis):
    # the separation's branch and bound (split_search, over span_parts) against
    # enumeration and against the MILP the separator falls back on; with
    # ``by_null_basis`` every part that is not a block is given by its null basis
    w, bc, sc, table, x, stages, member, outside = _separation_case(inst, seed, extra, partition=True)
    with mock.patch.object(separation, "INSIDE_UP_TO", 0 if by_null_basis else 16):
        _check_split_search(w, bc, sc, table, x, stages, member, outside, offset)



@settings(max_examples=60, deadline=None)
@given(markets(max_buyers=3, max_sellers=4, max_cap=3), st.integers(0, 2**32 - 1),
       st.integers(0, 2))
def test_branch_and_bound_started_from_the_last_calls_leaves_stays_exact(inst, seed, extra):
    # one separator called again and again, as a stage's rounds and the next stage call
    # it: each call starts from the last one's leaves, re-bounded at the new point
    # (split_search, _last_leaves), and a row fixed between calls keeps the cases its
    # parts did not change.  Every answer against enumeration at that call's point.
    w, bc, sc, table, x, stages, member, outside = _separation_case(inst, seed, extra, partition=True)
    n = len(bc) + len(sc)
    rng = np.random.default_rng(seed)
    separate = market_separator(w, bc, sc)
    for call in range(6):
        if call == 3 and len(outside) > 2:      # a stage fixes one more coalition
            stages._add_equality(member[outside[int(rng.integers(len(outside)))]], 0.0)
            rows = np.array(stages.eq_rows)
            rank = np.linalg.matrix_rank(rows)
            outside = [mk for mk in outside if np.linalg.matrix_rank(np.r_[rows, member[mk][None, :]]) > rank]
        if not outside or span_parts(stages) is None:
            return
        x = np.clip(x + rng.normal(0, 0.1 * max(1.0, float(table[-1])), n) * (rng.random(n) < 0.5), 0, None)
        best = max(table[mk] - member[mk] @ x for mk in outside)
        threshold = best + float(rng.choice([-2.0, -0.5, 0.5]))
        found = separate(x, threshold, stages)
        if best > threshold + 1e-6:
            _assert_branch_and_bound_answer(found, outside, table, member, x, threshold, best)
        else:
            assert found == []

def _check_split_search(w, bc, sc, table, x, stages, member, outside, offset):
    parts = span_parts(stages)
    assert parts is not None
    n = len(bc) + len(sc)
    for part, kind, data in parts:
        members = [mk for mk in range(1 << n) if mk & ~part == 0]
        if kind == "block":             # leaving L there means splitting it
            assert all(mk in outside for mk in members if 0 < mk < part)
        elif kind == "inside":          # exactly the memberships of the part inside L
            assert data == [mk for mk in members if mk not in outside]
        else:                           # a membership leaves L iff some b is not 0 on it
            cols = np.flatnonzero(member[part])
            for mk in members:
                if 0 < mk < (1 << n) - 1:
                    assert (mk in outside) == any(np.dot(b, member[mk][cols]) != 0 for b in data)
    if not outside:
        assert market_separator(w, bc, sc)(x, -np.inf, stages) == []
        return
    best = max(table[mk] - member[mk] @ x for mk in outside)
    for threshold in (-np.inf, best + offset):
        found = market_separator(w, bc, sc)(x, threshold, stages)
        with mock.patch("market.separation.span_parts", lambda s: None):
            by_milp = market_separator(w, bc, sc)(x, threshold, stages)
        if best > threshold + 1e-6:
            mask, value = by_milp[0]
            assert mask in outside and value == table[mask]
            assert abs((value - member[mask] @ x) - best) <= 1e-6 * max(1.0, abs(best))
            _assert_branch_and_bound_answer(found, outside, table, member, x, threshold, best)
        elif best < threshold - 1e-6:
            assert found == [] and by_milp == []


def _assert_branch_and_bound_answer(found, outside, table, member, x, threshold, best):
    """Violated coalitions with exact values; the most violated first unless the call
    stopped at its cap (MOST_FOUND_PER_PLAYER per player)."""
    assert found
    for mask, value in found:
        assert mask in outside and value == table[mask]
        assert value - member[mask] @ x > threshold
    assert len({mk for mk, _v in found}) == len(found)
    if len(found) < separation.MOST_FOUND_PER_PLAYER * member.shape[1]:
        mask, value = found[0]
        assert abs((value - member[mask] @ x) - best) <= 1e-6 * max(1.0, abs(best))


@settings(max_examples=20, deadline=None)
@given(markets(max_buyers=9, max_sellers=9, max_cap=3, low=-10, high=40), st.integers(0, 2**32 - 1))
def test_a_call_that_stops_at_its_cap_leaves_the_next_call_exact(inst, seed):
    # a call stops once it has found MOST_FOUND_PER_PLAYER per player, and every box
    # still open stays a leaf: the next call (here at another point) starts from those
    # leaves and still finds the most violated coalition, as a fresh separator does
    # (checked against enumeration above).  The bound of a box kept before its LP was
    # solved is checked directly below: at these sizes a stop seldom leaves one.
    w, bc, sc = _both_sides_capacitated(inst)
    n = len(bc) + len(sc)
    full = (1 << n) - 1
    rng = np.random.default_rng(seed)
    grand = separation.mask_value(w, bc, sc, full)
    stages = Stages(n, grand, np.zeros(n), [], [])
    labels = rng.integers(0, int(rng.integers(1, 4)), n)
    for label in sorted(set(labels.tolist()))[:-1]:
        stages._add_equality((labels == label).astype(float), 0.0)
    if stages.null_basis().shape[1] == 0 or span_parts(stages) is None:
        return      # every coalition is in the span
    x = rng.uniform(0, max(1.0, grand) / 2, n)
    first = rng.uniform(0, max(1.0, grand) / 2, n)
    separate = market_separator(w, bc, sc)
    with mock.patch.object(separation, "MOST_FOUND_PER_PLAYER", 1 / n):
        capped = separate(first, -np.inf, stages)
    with mock.patch.object(separation, "MOST_FOUND_PER_PLAYER", 10_000):
        again = separate(x, -np.inf, stages)
        fresh = market_separator(w, bc, sc)(x, -np.inf, stages)
    assert len(capped) == 1 and again and fresh
    excess = lambda mask, value: value - separation.mask_bits(mask, n) @ x
    for mask, value in [*capped, *again, *fresh]:
        assert value == separation.mask_value(w, bc, sc, mask)
    assert abs(excess(*again[0]) - excess(*fresh[0])) <= 1e-6 * max(1.0, grand)


@settings(max_examples=60, deadline=None)
@given(markets(max_buyers=5, max_sellers=5, max_cap=3), st.integers(0, 2**32 - 1))
def test_a_box_kept_before_its_lp_is_solved_is_bounded_by_its_parents_lp_at_any_point(inst, seed):
    # when a call stops, a child box not solved yet is kept as a leaf bounded by its
    # parent's LP over the child's box (separation._open); the next call moves that
    # bound to its own point (_last_leaves): it must stay at least the child's LP there
    n, rng, top, lp = fixed_charge_case(_both_sides_capacitated(inst), seed)
    x = rng.uniform(0, top, n)
    fixed, lo, hi = random_box(rng, n, 0.3)
    lp.costs(x)
    parent = lp.solve(lo, hi)
    if parent is None or fixed.all():
        return
    k = int(rng.choice(np.flatnonzero(~fixed)))
    for side in (0.0, 1.0):
        child_lo, child_hi = lo.copy(), hi.copy()
        child_lo[k] = child_hi[k] = side
        kept = separation._open(child_lo, child_hi, None, separation._leaf(parent, lo, hi))
        assert kept[0] <= -parent[0] + 1e-9 * top      # never looser than the parent's
        for later in (x, rng.uniform(0, top, n)):
            (moved,) = sum(separation._last_leaves([kept], later - x, -np.inf), [])
            lp.costs(later)
            child = lp.solve(child_lo, child_hi)
            if child is not None:
                assert -child[0] <= moved[0] + 1e-7 * top


def test_span_parts_finds_blocks_and_lists_the_part_no_partition_spans():
    # rows {0,1} and {2,3,4} over 6 players: blocks {0,1} and {2,3,4} ({5} is the rest
    # of the grand coalition, one player, never split)
    stages = Stages(6, 10.0, np.zeros(6), [], [])
    for row in ([1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0]):
        stages._add_equality(np.array(row, dtype=float), 0.0)
    assert span_parts(stages) == [(0b000011, "block", None), (0b011100, "block", None)]
    # rows {0,1} and {1,2} over 5 players: with the grand coalition the span holds
    # {}, {0,1}, {1,2}, {2,3,4}, {0,3,4} and N, and no partition spans it -- one part of
    # all five, listed by those six memberships
    stages = Stages(5, 10.0, np.zeros(5), [], [])
    for row in ([1, 1, 0, 0, 0], [0, 1, 1, 0, 0]):
        stages._add_equality(np.array(row, dtype=float), 0.0)
    assert span_parts(stages) == [(0b11111, "inside", [0b00000, 0b00011, 0b00110, 0b11001, 0b11100, 0b11111])]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_zero_sums_finds_every_0_1_vector_the_rows_annihilate(k, d, seed):
    rng = np.random.default_rng(seed)
    rows = rng.integers(-2, 3, (k, d))
    rows[rng.random(k) < 0.3] = 0                       # some members free
    codes = np.arange(1 << k)
    bits = (codes[:, None] >> np.arange(k)) & 1
    assert _zero_sums(rows) == np.flatnonzero(~(bits @ rows).any(axis=1)).tolist()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.integers(0, 2**32 - 1), st.integers(0, 20))
def test_subcubes_cover_exactly_the_memberships_not_listed_each_once(k, seed, count):
    # the cases of a part listed by its memberships inside L: every other membership
    # of the part in exactly one subcube, no listed one in any
    rng = np.random.default_rng(seed)
    members = sorted(rng.choice(12, k, replace=False).tolist())
    codes = rng.integers(0, 1 << k, count).tolist()
    inside = sorted({sum(1 << members[b] for b in range(k) if c >> b & 1) for c in codes})
    covered = {}
    for ins, outs in _subcubes(members, inside):
        assert sorted(ins + outs) == sorted(set(ins + outs)) and set(ins + outs) <= set(members)
        free = [p for p in members if p not in ins and p not in outs]
        for c in range(1 << len(free)):
            mk = sum(1 << p for p in ins) | sum(1 << free[b] for b in range(len(free)) if c >> b & 1)
            covered[mk] = covered.get(mk, 0) + 1
    every = {sum(1 << members[b] for b in range(k) if c >> b & 1) for c in range(1 << k)}
    assert set(covered) == every - set(inside)
    assert all(n == 1 for n in covered.values())

def test_a_large_part_no_partition_spans_is_described_exactly_not_left_to_the_milp():
    # 14 players, rows on the overlapping triples {0,1,2}, {2,3,4}, ..., {10,11,12} (and
    # the grand coalition): one part of all 14 that no partition spans, larger than
    # the 10 players whose 2^k memberships were listed before; 42 of them lie in L
    n = 14
    stages = Stages(n, 10.0, np.zeros(n), [], [])
    for p in range(0, 11, 2):
        stages._add_equality(np.isin(np.arange(n), [p, p + 1, p + 2]).astype(float), 0.0)
    with mock.patch.object(separation, "INSIDE_UP_TO", 64):
        parts = span_parts(stages)
    assert parts is not None and len(parts) == 1
    part, kind, inside = parts[0]
    assert kind == "inside"
    assert span_parts(stages)[0][1] == "null"      # 42 listed memberships are more than allowed
    rows = np.array(stages.eq_rows)
    rank = np.linalg.matrix_rank(rows)
    member = _members(n)
    want = [mk for mk in range(1 << n) if mk & ~part == 0
            and np.linalg.matrix_rank(np.r_[rows, member[mk][None, :]]) == rank]
    assert part == (1 << n) - 1 and inside == want and len(inside) == 42
    # chaining pairs {0,1}, {1,2}, ..., {11,12} instead: 3,432 memberships in L, too
    # many to list -- the part is given by its null basis, which tells exactly
    stages = Stages(n, 10.0, np.zeros(n), [], [])
    for p in range(12):
        stages._add_equality(np.eye(n)[p] + np.eye(n)[p + 1], 0.0)
    (part, kind, null), = span_parts(stages)
    assert part == (1 << n) - 1 and kind == "null"
    rows = np.array(stages.eq_rows)
    rank = np.linalg.matrix_rank(rows)
    for mk in np.random.default_rng(0).integers(1, (1 << n) - 1, 300).tolist():
        inside_l = np.linalg.matrix_rank(np.r_[rows, member[mk][None, :]]) == rank
        assert inside_l == (not any(np.dot(b, member[mk]) for b in null))
