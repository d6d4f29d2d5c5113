"""People, not fragments: track fragments joined by face identity and position.

The tracker (track.py) cuts a face's presence into fragments: a shot cut ends every track, a lost
correlation tracker ends one. This module decides which fragments are one person:

0. False faces are screened out (`screen_tracks`): a track whose box lies inside another track's
   face box in most of its frames (a detector firing on an eye or a mouth), whose landmarks fit the
   generic face badly, whose detector scores are all low, or whose box is implausibly small or
   large for the frame (unless one of its faces is trusted: an extreme close-up's face is larger
   than the frame's height) is left out of people, with the reason (the manifest lists it).
1. Each track is described: dlib's descriptor (identity.py) on `samples` of its face chips, spread
   over the track, among the chips whose face can be trusted (quality.TRUST: large, sharp, frontal
   enough and fitting the generic face; measured in bench/results/identity_quality.md). The
   descriptor of a face that fails the rule is not evidence of identity (a small, blurred face lands
   near many people), so it is never computed: a track without a trusted face has no descriptor. If two of them are farther apart than `split_check`, every kept chip of the track
   is described and the track is split where the identity changes (a tracker that slid from one face
   onto another); the frames between the last chip of one identity and the first of the next are
   dropped, since they cannot be attributed. (On the clips, one person's chips within a shot lie up
   to 0.72 apart, a turned or blurred face against a frontal one; two people's means 0.64-0.73.)
2. Fragments are joined greedily, closest pair first: two groups are one person when the distance
   between their mean descriptors is below `threshold` (dlib's 0.6). When one continues the other
   in place (it starts at most `link_gap` frame indices after the other's last frame before it, in
   the same shot, with box IoU >= `min_iou`), the faces on either side of the gap are compared too
   (the last described face before it and the first after: the same pose and light, so a turned
   head does not split a person), and the smaller distance counts, against the same threshold.
   Groups that share a frame are never joined (one person is in one place at a time); a fragment
   without any descriptor (no trusted face) joins only a group it continues in place, so a small or
   blurred face is a person of its own until a trusted face of it links it.
3. People are ordered by screen presence (the sum of their box sizes over their frames: size x
   persistence) and numbered from 1, so person 1 is the clip's target.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .boxes import Box
from .contact import pick_evenly
from .identity import SAME_PERSON_DISTANCE, ChipSampler, descriptor_distance
from .quality import PLAUSIBLE, TRUST, FaceQuality, Plausibility, TrustRule
from .track import Track


@dataclass
class LinkConfig:
    """Settings of the identity split and the linking (defaults tuned on shared/data/media)."""

    threshold: float = SAME_PERSON_DISTANCE
    split_check: float = 0.75
    samples: int = 3
    link_gap: int = 10
    min_iou: float = 0.3
    trust: TrustRule = TRUST


@dataclass
class Fragment:
    """A piece of one track that holds one face: boxes, statuses and descriptors by frame index."""

    track_id: int
    boxes: dict[int, Box]
    status: dict[int, str]
    descriptors: dict[int, np.ndarray] = field(default_factory=dict)
    qualities: dict[int, FaceQuality] = field(default_factory=dict)  # of the track's face chips

    @property
    def first(self) -> int:
        return min(self.boxes)

    @property
    def last(self) -> int:
        return max(self.boxes)


@dataclass
class Person:
    """One person of a clip: the union of its fragments."""

    person_id: int
    fragments: list[Fragment]

    @property
    def boxes(self) -> dict[int, Box]:
        return {i: b for f in self.fragments for i, b in f.boxes.items()}

    @property
    def status(self) -> dict[int, str]:
        return {i: s for f in self.fragments for i, s in f.status.items()}

    @property
    def track_of(self) -> dict[int, int]:
        """Frame index -> id of the tracker track that holds this person's box there."""
        return {i: f.track_id for f in self.fragments for i in f.boxes}

    @property
    def track_ids(self) -> list[int]:
        return sorted({f.track_id for f in self.fragments})

    @property
    def score(self) -> float:
        """Screen presence: the sum of box sizes over the person's frames."""
        return float(sum(box.size for f in self.fragments for box in f.boxes.values()))

    def descriptors(self) -> np.ndarray:
        """Every descriptor of the person's fragments, (n, 128)."""
        found = [d for f in self.fragments for d in f.descriptors.values()]
        return np.array(found, dtype=np.float32).reshape(len(found), -1)


Describe = Callable[[list[np.ndarray]], np.ndarray]


def describe_track(track: Track, sampler: ChipSampler | None, describe: Describe,
                   config: LinkConfig) -> dict[int, np.ndarray]:
    """A track's descriptors by frame (step 1): `samples` of its trusted chips, spread over the
    track, and every trusted chip when those lie farther apart than `split_check`. Needs only the
    track's own chips: the pipeline describes a track as soon as it ends and drops its chips."""
    chips = sampler.chips if sampler is not None else {}
    qualities = sampler.qualities if sampler is not None else {}
    indices = [i for i in sorted(chips) if i not in qualities or config.trust.trusted(qualities[i])]
    picked = [indices[k] for k in pick_evenly(len(indices), config.samples)]
    descriptors = dict(zip(picked, describe([chips[i] for i in picked])))
    if _spread(descriptors) > config.split_check:
        rest = [i for i in indices if i not in descriptors]
        descriptors.update(zip(rest, describe([chips[i] for i in rest])))
    return descriptors


def describe_tracks(tracks: list[Track], samplers: dict[int, ChipSampler], describe: Describe,
                    config: LinkConfig, described: dict[int, dict[int, np.ndarray]] | None = None
                    ) -> list[Fragment]:
    """Describe each track on a few trusted chips and split those whose identity changes (step 1).
    A chip without a measured quality (a caller that measures none) counts as trusted. `described`
    holds the descriptors of tracks described already (``describe_track``), by track id."""
    fragments = []
    for track in tracks:
        sampler = samplers.get(track.track_id)
        qualities = dict(sampler.qualities) if sampler is not None else {}
        if described is not None and track.track_id in described:
            descriptors = described[track.track_id]
        else:
            descriptors = describe_track(track, sampler, describe, config)
        for piece in _split(track, descriptors, config.threshold):
            piece.qualities = {i: q for i, q in qualities.items() if piece.first <= i <= piece.last}
            fragments.append(piece)
    return fragments


def false_by_itself(track: Track, sampler: ChipSampler | None, rule: Plausibility = PLAUSIBLE) -> str:
    """Why a track is a false face on its own evidence (its landmarks fit no face, its detector
    scores are all low), or ''; ``screen_tracks`` leaves such a track out whatever the other tracks
    do, so the pipeline does not describe it when it ends."""
    fits = [q.fit for q in sampler.qualities.values()] if sampler is not None else []
    if fits and float(np.median(fits)) > rule.max_fit:
        return (f"false face: its landmarks do not fit a face (median {float(np.median(fits)):.2f} eye distances"
                f" > {rule.max_fit:g})")
    if track.scores and max(track.scores.values()) < rule.min_score:
        return f"false face: detector score at most {max(track.scores.values()):.2f} < {rule.min_score:g}"
    return ""


def screen_tracks(tracks: list[Track], samplers: dict[int, ChipSampler], frame_size: tuple[int, int],
                  rule: Plausibility = PLAUSIBLE, trust: TrustRule = TRUST) -> tuple[list[Track], dict[int, str]]:
    """The tracks that may be people, and {track id: why not} for those left out (step 0)."""
    by_frame: dict[int, list[Track]] = {}
    for track in tracks:
        for index in track.boxes:
            by_frame.setdefault(index, []).append(track)
    width, height = frame_size
    kept, left_out = [], {}
    for track in tracks:
        reason = _implausible(track, by_frame, samplers.get(track.track_id), width, height, rule, trust)
        if reason:
            left_out[track.track_id] = reason
        else:
            kept.append(track)
    return kept, left_out


def _implausible(track: Track, by_frame: dict[int, list[Track]], sampler: ChipSampler | None, width: int,
                 height: int, rule: Plausibility, trust: TrustRule = TRUST) -> str:
    frames = len(track.boxes)
    holders: dict[int, int] = {}
    for index, box in track.boxes.items():
        for other in by_frame[index]:
            outer = other.boxes[index]
            if (other is not track and outer.area >= rule.inside_ratio * box.area
                    and _intersection(box, outer) >= rule.inside * box.area):
                holders[other.track_id] = holders.get(other.track_id, 0) + 1
                break
    if holders:
        holder = max(holders, key=holders.get)
        if sum(holders.values()) >= rule.inside_frames * frames:
            return f"false face: its box lies inside track {holder}'s face in {sum(holders.values())} of {frames} frames"
    alone = false_by_itself(track, sampler, rule)
    if alone:
        return alone
    side = float(np.median([b.size for b in track.boxes.values()]))
    if width and height and not rule.min_size * max(width, height) <= side <= rule.max_size * min(width, height):
        # a face whose descriptor can be trusted (large, sharp, frontal, fitting the generic face) is a
        # face at any size: an extreme close-up's box is larger than the frame's height
        if not (sampler is not None and any(trust.trusted(q) for q in sampler.qualities.values())):
            return f"false face: a {side:.0f} px face in a {width}x{height} frame"
    return ""


def _intersection(a: Box, b: Box) -> float:
    w = min(a.right, b.right) - max(a.left, b.left)
    h = min(a.bottom, b.bottom) - max(a.top, b.top)
    return max(0.0, w) * max(0.0, h)


def identity_note(qualities: dict[int, FaceQuality], rule: TrustRule = TRUST) -> str:
    """How far a track's faces speak for its identity, for the manifest."""
    if not qualities:
        return "no face chip measured: joined only in place"
    trusted = sum(rule.trusted(q) for q in qualities.values())
    if trusted:
        return f"{trusted} of {len(qualities)} faces trusted"
    middle = sorted(qualities.items(), key=lambda item: item[1].size)[len(qualities) // 2][1]
    return f"no face trusted ({rule.why_not(middle)}): joined only in place"


def _spread(descriptors: dict[int, np.ndarray]) -> float:
    values = list(descriptors.values())
    return max((descriptor_distance(a, b) for k, a in enumerate(values) for b in values[k + 1:]), default=0.0)


def _split(track: Track, descriptors: dict[int, np.ndarray], threshold: float) -> list[Fragment]:
    """The track cut into one fragment per identity run of its described frames."""
    indices = sorted(descriptors)
    runs = _identity_runs(np.array([descriptors[i] for i in indices]), threshold) if indices else []
    if len(runs) <= 1:
        return [Fragment(track.track_id, dict(track.boxes), dict(track.status), descriptors)]
    fragments = []
    for k, (start, stop) in enumerate(runs):
        low = indices[start] if k > 0 else min(track.boxes)
        high = indices[stop - 1] if k < len(runs) - 1 else max(track.boxes)
        frames = [i for i in track.boxes if low <= i <= high]
        fragments.append(Fragment(
            track.track_id,
            {i: track.boxes[i] for i in frames},
            {i: track.status[i] for i in frames},
            {i: descriptors[i] for i in indices[start:stop]},
        ))
    return fragments


def _identity_runs(values: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Split a time-ordered (n, 128) sequence into runs [start, stop) of one identity, recursively at
    the cut that leaves the least spread inside the two sides, while their means are farther apart
    than `threshold`. A run of a single descriptor is accepted only if it is that far from both
    neighbours' means by a clear margin (one blurred or turned face is not a new person)."""
    n = len(values)
    best, best_cost = None, np.inf
    for cut in range(1, n):
        left, right = values[:cut], values[cut:]
        cost = ((left - left.mean(0)) ** 2).sum() + ((right - right.mean(0)) ** 2).sum()
        if cost < best_cost:
            best, best_cost = cut, cost
    if best is None:
        return [(0, n)]
    left, right = values[:best], values[best:]
    margin = threshold if min(len(left), len(right)) > 1 else threshold + 0.15
    if descriptor_distance(left.mean(0), right.mean(0)) <= margin:
        return [(0, n)]
    return _identity_runs(left, threshold) + [(best + a, best + b) for a, b in _identity_runs(right, threshold)]


class _Group:
    """Fragments joined so far, with what the linking reads: frames, boxes, the descriptors of
    trusted faces by frame (a descriptor without a quality counts as trusted) and their mean."""

    def __init__(self, fragments: list[Fragment], trust: TrustRule = TRUST):
        self.fragments = fragments
        self.trust = trust
        self.boxes = {i: b for f in fragments for i, b in f.boxes.items()}
        self.frames = sorted(self.boxes)
        self.described = sorted((i, d) for f in fragments for i, d in f.descriptors.items()
                                if i not in f.qualities or trust.trusted(f.qualities[i]))
        self.mean = np.mean([d for _, d in self.described], axis=0) if self.described else None

    def joined(self, other: "_Group") -> "_Group":
        return _Group(sorted(self.fragments + other.fragments, key=lambda f: f.first), self.trust)


def link_people(fragments: list[Fragment], cuts: list[int], config: LinkConfig,
                min_frames: int = 1, short: list[Person] | None = None) -> list[Person]:
    """Join fragments into people (step 2) and number them by screen presence (step 3); people with
    fewer than `min_frames` frames are left out (appended to `short`, unnumbered).

    Greedy: the closest joinable pair of groups, ordered by (distance, lower id, higher id), is joined
    first. Every joinable pair is scored once, when the later of its two groups appears, and kept in
    that group's `_Candidates` (numpy rows, 12 bytes a pair, dropped with the group): a film whose
    main characters return in hundreds of shots has that many squared pairs (issue 21: a tuple a pair
    on a heap made the face pipeline's memory grow with the square of a film's length)."""
    cut_list = sorted(cuts)
    groups = {k: _Group([f], config.trust)
              for k, f in enumerate(sorted(fragments, key=lambda f: (f.first, f.track_id)))}
    candidates: dict[int, _Candidates] = {}
    heads: list[tuple[tuple[float, int, int], int]] = []  # (a candidate list's first pair, its owner)

    def offer(a: int, others: list[int]) -> None:
        """Score the pairs (a, other); the mean distances are computed in one numpy step."""
        means: dict[int, float] = {}
        described = [o for o in others if groups[o].mean is not None]
        if groups[a].mean is not None and described:
            distances = np.linalg.norm(np.stack([groups[o].mean for o in described]) - groups[a].mean, axis=1)
            means = dict(zip(described, distances.tolist()))
        found = [(distance, other) for other in others
                 if (distance := _link_distance(groups[a], groups[other], means.get(other), cut_list, config))
                 is not None]
        if found:
            candidates[a] = _Candidates(a, found)
            _push_head(heads, candidates[a], groups)

    ids = list(groups)
    for k, a in enumerate(ids):
        offer(a, ids[k + 1:])
    next_id = len(groups)
    while heads:
        key, owner = heapq.heappop(heads)
        if owner not in groups:
            continue  # its group was joined: its pairs went with it
        _, a, b = key
        if a not in groups or b not in groups:
            candidates[owner].advance()
            _push_head(heads, candidates[owner], groups)
            continue
        for gone in (a, b):
            candidates.pop(gone, None)
        groups[next_id] = groups.pop(a).joined(groups.pop(b))
        offer(next_id, list(groups)[:-1])
        next_id += 1
    people = [Person(0, g.fragments) for g in groups.values() if len(g.boxes) >= min_frames]
    if short is not None:
        short.extend(Person(0, g.fragments) for g in groups.values() if len(g.boxes) < min_frames)
    people.sort(key=lambda p: -p.score)
    for number, person in enumerate(people, start=1):
        person.person_id = number
    return people


class _Candidates:
    """The joinable pairs (owner, other) scored when group `owner` appeared, sorted by the linking's
    key (distance, lower id, higher id): float64 distances and int32 ids, read from `position` on."""

    def __init__(self, owner: int, found: list[tuple[float, int]]) -> None:
        self.owner = owner
        distance = np.array([d for d, _ in found], dtype=np.float64)
        other = np.array([o for _, o in found], dtype=np.int64)
        low, high = np.minimum(other, owner), np.maximum(other, owner)
        order = np.lexsort((high, low, distance))
        self.distance, self.other = distance[order], other[order].astype(np.int32)
        self.position = 0

    def advance(self) -> None:
        self.position += 1

    def head(self, alive: dict) -> tuple[float, int, int] | None:
        """The first pair whose other group still exists (moving past the others), or None."""
        while self.position < len(self.other) and int(self.other[self.position]) not in alive:
            self.position += 1
        if self.position == len(self.other):
            return None
        other = int(self.other[self.position])
        return float(self.distance[self.position]), min(self.owner, other), max(self.owner, other)


def _push_head(heads: list, pairs: _Candidates, alive: dict) -> None:
    key = pairs.head(alive)
    if key is not None:
        heapq.heappush(heads, (key, pairs.owner))


def _link_distance(a: _Group, b: _Group, mean_distance: float | None, cuts: list[int],
                   config: LinkConfig) -> float | None:
    """The distance at which groups a and b may be joined, or None if they must not be."""
    found = [] if mean_distance is None else [mean_distance]
    in_place = False
    for earlier, later in ((a, b), (b, a)):
        if _continues(earlier, later, cuts, config):
            in_place = True
            adjacent = _adjacent_distance(earlier, later)
            if adjacent is not None:
                found.append(adjacent)
    if not found:
        distance = 0.0 if in_place else None
    else:
        distance = min(found)
    if distance is None or distance >= config.threshold:
        return None
    small, large = (a, b) if len(a.frames) <= len(b.frames) else (b, a)
    if any(i in large.boxes for i in small.frames):
        return None
    return distance


def _adjacent_distance(earlier: _Group, later: _Group) -> float | None:
    """Distance between the last descriptor of `earlier` before `later` starts and the first of
    `later`, None if either side has none."""
    start = later.frames[0]
    before = [d for i, d in earlier.described if i < start]
    if not before or not later.described:
        return None
    return descriptor_distance(before[-1], later.described[0][1])


def _continues(a: _Group, b: _Group, cuts: list[int], config: LinkConfig) -> bool:
    """Whether b starts where a last left off: soon after, in the same shot, at the same place."""
    start = b.frames[0]
    position = bisect_left(a.frames, start)
    if position == 0:
        return False
    end = a.frames[position - 1]
    if start - end > config.link_gap or bisect_right(cuts, end) != bisect_right(cuts, start):
        return False
    return a.boxes[end].iou(b.boxes[start]) >= config.min_iou


def track_entries(tracks: list[Track], samplers: dict[int, ChipSampler], fragments: list[Fragment],
                  people: list[Person], kept: list[Person], short: list[Person], false_faces: dict[int, str],
                  config: LinkConfig) -> list[dict]:
    """The manifest's record of every track: its frames, its kept person (the one holding most of
    its frames; a track split by identity feeds several), how far its faces speak for its identity,
    whether it was split, and why it is in no kept person (`left_out`: a false face, a person
    shorter than the minimum, or with faces='target' a person that is not the target)."""
    why = dict(false_faces)
    for person in short:
        for track_id in person.track_ids:
            why.setdefault(track_id, f"in a person of {len(person.boxes)} frames, too short to keep")
    kept_ids = {p.person_id for p in kept}
    for person in people:
        if person.person_id not in kept_ids:
            for track_id in person.track_ids:
                why.setdefault(track_id, f"person {person.person_id}, not the target (faces='target')")
    entries = []
    for track in tracks:
        sampler = samplers.get(track.track_id)
        entry = {"id": track.track_id, "first": min(track.boxes), "last": max(track.boxes),
                 "frames": len(track.boxes), "score": round(track.score, 1),
                 "person": person_of(track.track_id, kept),
                 "identity": identity_note(sampler.qualities if sampler is not None else {}, config.trust)}
        pieces = sum(f.track_id == track.track_id for f in fragments)
        if pieces > 1:
            entry["split"] = f"split by identity into {pieces} fragments"
        if entry["person"] is None and track.track_id in why:
            entry["left_out"] = why[track.track_id]
        entries.append(entry)
    return entries


def person_of(track_id: int, people: list[Person]) -> int | None:
    """The person holding most of a track's frames (a track split by identity has several)."""
    frames = {p.person_id: sum(len(f.boxes) for f in p.fragments if f.track_id == track_id) for p in people}
    best = max(frames, key=frames.get, default=None)
    return best if best is not None and frames[best] > 0 else None
