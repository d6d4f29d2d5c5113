"""Linking fragments into people keeps its joinable pairs compactly (issue 21) and joins exactly as
the plain greedy rule says: the closest joinable pair of groups first, ties by the lower ids."""

import tracemalloc

import numpy as np

from sse.faces.boxes import Box
from sse.faces.people import Fragment, LinkConfig, _Group, _link_distance, link_people

RNG = np.random.default_rng(21)
FACES = [RNG.normal(size=128) * 0.1 for _ in range(3)]  # three people, about 1.6 apart


def _near(base: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    step = rng.normal(size=128)
    return base + distance * step / np.linalg.norm(step)


def _shots(n: int, seed: int, shot: int = 10) -> tuple[list[Fragment], list[int]]:
    """n fragments, one per shot of `shot` frames, of three people at three places; some without a
    descriptor, some continuing the shot before in place (no cut between them)."""
    rng = np.random.default_rng(seed)
    fragments, cuts = [], []
    for k in range(n):
        first = k * shot
        who = int(rng.integers(3))
        x = 100.0 * who + (0 if rng.random() < 0.7 else 300)
        frames = range(first, first + shot - 1)
        boxes = {i: Box(x, 0, x + 40, 40) for i in frames}
        descriptors = {}
        if rng.random() < 0.8:
            distance = float(rng.choice([0.2, 0.25, 0.3, 0.3]))  # repeated distances: ties
            descriptors = {first + 2: _near(FACES[who], distance, rng)}
        fragments.append(Fragment(k, boxes, {i: "detected" for i in frames}, descriptors))
        if rng.random() < 0.6:
            cuts.append(first)
    return fragments, cuts


def _greedy(fragments: list[Fragment], cuts: list[int], config: LinkConfig) -> list[list[int]]:
    """The rule, plainly: score every pair of the current groups, join the smallest key, again."""
    groups = {k: _Group([f], config.trust) for k, f in enumerate(sorted(fragments, key=lambda f: (f.first, f.track_id)))}
    next_id = len(groups)
    while True:
        keys = []
        for a in groups:
            for b in groups:
                if a < b:
                    ga, gb = groups[a], groups[b]
                    mean = None if ga.mean is None or gb.mean is None else float(np.linalg.norm(gb.mean - ga.mean))
                    distance = _link_distance(ga, gb, mean, sorted(cuts), config)
                    if distance is not None:
                        keys.append((distance, a, b))
        if not keys:
            break
        _, a, b = min(keys)
        groups[next_id] = groups.pop(a).joined(groups.pop(b))
        next_id += 1
    return sorted(sorted({f.track_id for f in g.fragments}) for g in groups.values())


def test_people_are_the_greedy_rule_s_with_ties_and_in_place_links():
    config = LinkConfig(link_gap=3)
    for seed in range(4):
        fragments, cuts = _shots(28, seed)
        people = link_people(fragments, cuts, config)
        assert sorted(p.track_ids for p in people) == _greedy(fragments, cuts, config), seed


def test_a_person_returning_in_many_shots_costs_bytes_not_a_tuple_per_pair():
    # 600 shots of one person: ~180000 joinable pairs; a heap of (distance, id, id) tuples held
    # ~150 bytes a pair (27 MB), the candidate rows 12
    rng = np.random.default_rng(5)
    fragments = [Fragment(k, {4 * k: Box(0, 0, 40, 40)}, {4 * k: "detected"}, {4 * k: _near(FACES[0], 0.3, rng)})
                 for k in range(600)]
    cuts = [4 * k for k in range(600)]
    tracemalloc.start()
    try:
        people = link_people(fragments, cuts, LinkConfig())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(people) == 1 and len(people[0].fragments) == 600
    pairs = 600 * 599 // 2
    assert peak < 40 * pairs, f"{peak / pairs:.0f} bytes a pair"
