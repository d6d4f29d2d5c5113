"""When is dlib's face descriptor evidence of identity? Descriptor distances of same-person and
other-person pairs by face quality, on the clips and photos of shared/data/media.

Faces:
* clips: the face pipeline's own detection, tracking and landmarks on every clip of media/videos
  (shot cuts end tracks); on every track, up to --per-track faces of its detection frames, spread
  evenly, are described with their quality (sse.faces.quality: box size, sharpness of the
  descriptor chip, |yaw|, landmark fit);
* photos: every face dlib's HOG (upsample 1) finds in media/photos; dlib_bald_guys.jpg is a collage of
  several photos each of four actors (dlib's dnn_face_recognition_ex says so): who is who there is
  dlib's own chinese-whispers clustering of its sharp faces at 0.6 (the script checks it finds 4), so
  its pairs of sharp faces are left out and only its degraded faces are paired;
* degraded: every face of the above at least --base-size pixels large and turned at most 30 degrees, shrunk to a smaller face
  (box side 20-56 px) and blurred (Gaussian, sigma 0-3 px of the small face), its landmarks found
  again on the degraded picture as the pipeline would: a small, blurred face of a known person.

Pairs (no identity is labelled by hand; the pairs follow from how the faces were found):
* same person: two faces of one track (the tracker follows one face within a shot), a degraded
  face with the sharp face it was made from, and in the collage a degraded face with the sharp
  faces of its cluster (other photos of the same actor);
* other people: faces of two tracks that are seen together in some frame at boxes that never
  overlap, or two faces of one photo (one person is in one place at a time), and a degraded face
  with every face of such another person.

A pair's quality is that of its worse face. The tables give, by quality bin, how many same-person
pairs lie below dlib's 0.6 (a person found) and how many other-person pairs do (two people joined),
then the same for the trust rule in sse.faces.quality.TRUST: pairs of two trusted faces against
pairs with an untrusted face. Writes bench/results/identity_quality.md.

    python bench/identity_quality.py [--media DIR] [--per-track N] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sse.faces.boxes import Box  # noqa: E402
from sse.faces.contact import pick_evenly  # noqa: E402
from sse.faces.decode import MediaReader  # noqa: E402
from sse.faces.detect import FaceDetector  # noqa: E402
from sse.faces.identity import SAME_PERSON_DISTANCE, FaceDescriptor, face_chip  # noqa: E402
from sse.faces.landmarks import LandmarkPredictor  # noqa: E402
from sse.faces.quality import SHARPNESS_SCALE, TRUST, FaceQuality, TrustRule, chip_sharpness, face_quality  # noqa: E402
from sse.faces.shots import ShotCutDetector  # noqa: E402
from sse.faces.track import MultiFaceTracker, TrackerConfig  # noqa: E402

DEFAULT_MEDIA = REPO.parent / "shared" / "data" / "media"
RESULTS = REPO / "bench" / "results" / "identity_quality.md"
DEGRADE_SIZES = (20, 28, 40, 56)
DEGRADE_SIGMAS = (0.0, 1.5, 3.0)
THRESHOLD = SAME_PERSON_DISTANCE
COLLAGES = {"dlib_bald_guys.jpg": 4}  # photo -> how many people its faces show (dlib's example says 4)


@dataclass
class Face:
    """One described face: where it comes from, who it is (`person`: a track or a photo face),
    when (`frame`), where (`box`), its descriptor and quality; `base` is the face a degraded one
    was made from (None for a face as found)."""

    source: str
    person: str
    frame: int
    box: Box
    descriptor: np.ndarray
    quality: FaceQuality
    base: int | None = None
    level: str = ""
    chip: np.ndarray | None = None
    together: frozenset = frozenset()  # people seen beside this one in a frame (never the same person)


class Models:
    def __init__(self) -> None:
        self.detector = FaceDetector(upsample=1, detect_width=640)
        self.predictor = LandmarkPredictor()
        self.descriptor = FaceDescriptor()

    def describe(self, rgb: np.ndarray, box: Box, landmarks: np.ndarray) -> tuple[np.ndarray, FaceQuality, np.ndarray]:
        chip = face_chip(rgb, box, landmarks)
        height, width = rgb.shape[:2]
        return self.descriptor([chip])[0], face_quality(chip, box, landmarks, (width, height)), chip


def clip_faces(path: Path, models: Models, per_track: int, keep_images: dict) -> list[Face]:
    """Faces of every track of a clip, as the pipeline's pass 1 finds them."""
    tracker = MultiFaceTracker(TrackerConfig())
    shots = ShotCutDetector()
    found: dict[int, list[tuple[int, Box, np.ndarray]]] = {}
    frames: dict[int, np.ndarray] = {}
    for frame in MediaReader(path).frames():
        if frame.image is None:
            continue
        gray = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)
        if shots.is_cut(gray):
            tracker.cut()
        detections = models.detector.detect(gray) if tracker.needs_detection() else None
        for track, index, image in tracker.step(frame.index, gray, detections):
            if index == frame.index and track.status[index] == "detected":
                box = track.boxes[index]
                found.setdefault(track.track_id, []).append((index, box, models.predictor(image, box)))
                frames[index] = frame.image
    together: dict[int, set] = {t.track_id: set() for t in tracker.tracks}
    for a, b in itertools.combinations(tracker.tracks, 2):
        shared = set(a.boxes) & set(b.boxes)
        if shared and all(a.boxes[i].iou(b.boxes[i]) == 0.0 for i in shared):
            together[a.track_id].add(f"{path.name}#t{b.track_id}")
            together[b.track_id].add(f"{path.name}#t{a.track_id}")
    faces = []
    for track_id, entries in found.items():
        for k in pick_evenly(len(entries), per_track):
            index, box, landmarks = entries[k]
            rgb = cv2.cvtColor(frames[index], cv2.COLOR_BGR2RGB)
            descriptor, quality, chip = models.describe(rgb, box, landmarks)
            faces.append(Face(path.name, f"{path.name}#t{track_id}", index, box, descriptor, quality, chip=chip,
                              together=frozenset(together[track_id])))
            keep_images[path.name, index] = rgb
    return faces


def photo_faces(path: Path, models: Models, keep_images: dict) -> list[Face]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    keep_images[path.name, 0] = rgb
    faces = []
    for k, detection in enumerate(models.detector.detect(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))):
        landmarks = models.predictor(rgb, detection.box)
        descriptor, quality, chip = models.describe(rgb, detection.box, landmarks)
        faces.append(Face(path.name, f"{path.name}#f{k}", 0, detection.box, descriptor, quality, chip=chip))
    if path.name in COLLAGES:
        # several photos of each of a few people: who is who is dlib's own clustering of these faces
        # (chinese whispers at 0.6, as dlib's dnn_face_recognition_ex does on this image)
        labels = dlib.chinese_whispers_clustering([dlib.vector(f.descriptor.tolist()) for f in faces], THRESHOLD)
        if len(set(labels)) != COLLAGES[path.name]:
            raise SystemExit(f"{path.name}: clustering found {len(set(labels))} people, expected {COLLAGES[path.name]}")
        for face, label in zip(faces, labels):
            face.person = f"{path.name}#c{label}"
    people = {f.person for f in faces}
    for face in faces:
        face.together = frozenset(people - {face.person})
    return faces


def degrade(rgb: np.ndarray, box: Box, size: float, sigma: float) -> tuple[np.ndarray, Box]:
    """The picture around `box` shrunk so that the face is `size` pixels, then blurred."""
    h, w = rgb.shape[:2]
    margin = box.size
    left, top = int(max(0, box.left - margin)), int(max(0, box.top - margin))
    right, bottom = int(min(w, box.right + margin)), int(min(h, box.bottom + margin))
    region = rgb[top:bottom, left:right]
    scale = size / box.size
    small = cv2.resize(region, (max(8, round(region.shape[1] * scale)), max(8, round(region.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
    if sigma > 0:
        small = cv2.GaussianBlur(small, (0, 0), sigma)
    moved = Box(box.left - left, box.top - top, box.right - left, box.bottom - top).scaled(scale)
    return np.ascontiguousarray(small), moved


def degraded_faces(faces: list[Face], models: Models, images: dict, base_size: float) -> list[Face]:
    out = []
    for k, face in enumerate(faces):
        if face.base is not None or face.quality.size < base_size or face.quality.yaw > 30:
            continue
        rgb = images[face.source, face.frame]
        for size, sigma in itertools.product(DEGRADE_SIZES, DEGRADE_SIGMAS):
            if size >= face.quality.size:
                continue
            small, box = degrade(rgb, face.box, size, sigma)
            landmarks = models.predictor(small, box)
            descriptor, quality, chip = models.describe(small, box, landmarks)
            out.append(Face(face.source, face.person, face.frame, box, descriptor, quality, k,
                            f"{size}px sigma {sigma:g}", chip, face.together))
    return out


def pairs(faces: list[Face]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(same-person pairs, other-person pairs) of face indices (see the module doc)."""
    same, other = [], []
    for i, j in itertools.combinations(range(len(faces)), 2):
        a, b = faces[i], faces[j]
        if a.source != b.source:
            continue
        degraded = (a.base is not None) + (b.base is not None)
        if degraded == 2:
            continue
        if degraded == 1:
            base, small = (a, b) if b.base is not None else (b, a)
            if small.base == (i if base is a else j) or (base.person == small.person and a.source in COLLAGES):
                same.append((i, j))
            elif base.person in small.together:
                other.append((i, j))
            continue
        if a.source in COLLAGES:
            continue  # its identities come from the descriptor itself: no pair of sharp faces counts
        if a.person == b.person:
            same.append((i, j))
        elif a.person in b.together:
            other.append((i, j))
    return same, other


def worse(faces: list[Face], pair: tuple[int, int]) -> FaceQuality:
    a, b = faces[pair[0]].quality, faces[pair[1]].quality
    return FaceQuality(min(a.size, b.size), min(a.sharpness, b.sharpness), max(a.yaw, b.yaw), max(a.fit, b.fit))


BINS = {
    "size": ("face size (px, box side)", [0, 24, 32, 40, 56, 80, 120, 10_000]),
    "sharpness": ("sharpness (Laplacian var / gray var, face at its size, at most 50 px)", [0, 0.02, 0.04, 0.06, 0.1, 0.2, 0.4, 100]),
    "yaw": ("|yaw| (degrees)", [0, 10, 20, 30, 40, 50, 60, 91]),
    "fit": ("landmark fit (eye distances)", [0, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 100]),
}


def rates(distances: np.ndarray) -> str:
    if not len(distances):
        return "0 | - | - | -"
    below = int((distances < THRESHOLD).sum())
    return (f"{len(distances)} | {np.median(distances):.2f} | {distances.min():.2f} - {distances.max():.2f} | "
            f"{below} ({100 * below / len(distances):.1f} %)")


def table(title: str, rows: list[tuple[str, np.ndarray, np.ndarray]]) -> list[str]:
    lines = [f"| {title} | same-person pairs | median | range | below {THRESHOLD} | other-person pairs | median | "
             f"range | below {THRESHOLD} |", "|---|---|---|---|---|---|---|---|---|"]
    for label, same, other in rows:
        lines.append(f"| {label} | {rates(same)} | {rates(other)} |")
    return lines


def binned(feature: str, faces, same, other, d_same, d_other) -> list[str]:
    title, edges = BINS[feature]
    q_same = np.array([getattr(worse(faces, p), feature) for p in same])
    q_other = np.array([getattr(worse(faces, p), feature) for p in other])
    rows = []
    for low, high in zip(edges, edges[1:]):
        label = f"{low:g} - {high:g}" if high != edges[-1] else f">= {low:g}"
        rows.append((label, d_same[(q_same >= low) & (q_same < high)], d_other[(q_other >= low) & (q_other < high)]))
    return table(title + " of the worse face", rows)


def nearest_other(faces: list[Face], other: list[tuple[int, int]], d_other: np.ndarray) -> dict[int, float]:
    """Per degraded face: its distance to the nearest other person's face."""
    nearest: dict[int, float] = {}
    for (i, j), d in zip(other, d_other):
        for k in (i, j):
            if faces[k].base is not None:
                nearest[k] = min(nearest.get(k, 9.0), float(d))
    return nearest


GRID = {
    "min_size": (0.0, 32.0, 40.0, 48.0, 56.0),
    "min_sharpness": (0.0, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08),
    "max_yaw": (30.0, 40.0, 45.0, 60.0, 90.0),
    "max_fit": (0.12, 0.15, 0.2, 1e9),
}


def candidates(faces, same, other, d_same, d_other, real, found_count: int, show: int = 12) -> list[str]:
    """Every rule of GRID scored face by face: of the faces it trusts, how many lie within the
    threshold of a trusted face of another person (faces it would join to someone else), against the
    same-person pairs of two trusted faces below the threshold (joins it keeps). The best, by joins
    kept, of the rules whose trusted faces join nobody else (at most 1 % of them, none of the
    faces as found)."""
    size = np.array([f.quality.size for f in faces])
    sharp = np.array([f.quality.sharpness for f in faces])
    yaw = np.array([f.quality.yaw for f in faces])
    fit = np.array([f.quality.fit for f in faces])
    s_pairs, o_pairs = np.array(same), np.array(other)
    s_real = np.zeros(len(same), bool)
    s_real[real] = True
    close = d_other < THRESHOLD
    rows = []
    for values in itertools.product(*GRID.values()):
        rule = TrustRule(*values)
        ok = ((size >= rule.min_size) & (sharp >= rule.min_sharpness) & (yaw <= rule.max_yaw) & (fit <= rule.max_fit))
        kept = ok[s_pairs[:, 0]] & ok[s_pairs[:, 1]] & (d_same < THRESHOLD)
        joined = ok[o_pairs[:, 0]] & ok[o_pairs[:, 1]] & close
        joiners = np.zeros(len(faces), bool)
        joiners[o_pairs[joined].ravel()] = True
        rows.append((rule, int(kept.sum()), int((kept & s_real).sum()), int(joiners.sum()),
                     int(joiners[:found_count].sum()), int(ok.sum())))
    good = [r for r in rows if r[4] == 0 and r[3] <= 0.01 * max(1, r[5])]
    good.sort(key=lambda r: (-r[1], -r[5]))
    lines = [f"{len(rows)} rules (every combination of {', '.join(f'{k} {v}' for k, v in GRID.items())}); "
             f"{len(good)} of them trust no face as found that lies within {THRESHOLD} of another person, and at most"
             " 1 % of the faces they trust overall. The best of those by same-person pairs kept, and TRUST:", "",
             "| rule (min size, min sharpness, max yaw, max fit) | faces trusted | same-person pairs kept below the"
             f" threshold (within a track) | trusted faces within {THRESHOLD} of a trusted face of another person"
             " (as found) |", "|---|---|---|---|"]
    shown = good[:show] + [r for r in rows if r[0] == TRUST and r not in good[:show]]
    for rule, kept, kept_real, joiners, joiners_real, n in shown:
        mark = " **(TRUST)**" if rule == TRUST else ""
        fit = "-" if rule.max_fit > 1e8 else f"{rule.max_fit:g}"
        lines.append(f"| {rule.min_size:g}, {rule.min_sharpness:g}, {rule.max_yaw:g}, {fit}{mark} | {n} | "
                     f"{kept} of {len(same)} ({kept_real} of {len(real)}) | {joiners} ({joiners_real}) |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    parser.add_argument("--per-track", type=int, default=8)
    parser.add_argument("--base-size", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cache", type=Path, help="keep the described faces in this pickle and reuse them")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    clips = sorted((args.media / "videos").iterdir())
    photos = sorted((args.media / "photos").iterdir())
    if args.cache and args.cache.is_file():
        faces, found = pickle.loads(args.cache.read_bytes())
        for face in faces:  # sharpness again from the kept chip (its definition may have changed)
            face.quality = dataclasses.replace(face.quality, sharpness=chip_sharpness(face.chip, face.quality.size))
    else:
        models = Models()
        images: dict = {}
        faces = []
        for clip in clips:
            faces += clip_faces(clip, models, args.per_track, images)
        for photo in photos:
            faces += photo_faces(photo, models, images)
        found = len(faces)
        faces += degraded_faces(faces, models, images, args.base_size)
        if args.cache:
            args.cache.write_bytes(pickle.dumps((faces, found)))
    same, other = pairs(faces)
    descriptors = np.stack([f.descriptor for f in faces])

    def distances(pair_list):
        return np.array([np.linalg.norm(descriptors[i] - descriptors[j]) for i, j in pair_list])

    d_same, d_other = distances(same), distances(other)
    real = [k for k, (i, j) in enumerate(same) if faces[i].base is None and faces[j].base is None]
    real_other = [k for k, (i, j) in enumerate(other) if faces[i].base is None and faces[j].base is None]
    lines = [
        "## Face descriptor distances by face quality (bench/identity_quality.py)",
        "",
        f"Media: {args.media} ({len(clips)} clips, {len(photos)} photos). dlib's `dlib_face_recognition_resnet_model_v1`"
        f" descriptor, threshold {THRESHOLD}. Faces as found: {found} "
        f"({sum(f.source in {c.name for c in clips} for f in faces[:found])} from clip tracks, up to {args.per_track}"
        f" per track; the rest from photos); degraded copies: {len(faces) - found} (faces of at least"
        f" {args.base_size:g} px turned at most 30 degrees, shrunk to {', '.join(map(str, DEGRADE_SIZES))} px and"
        f" blurred with sigma {', '.join(f'{s:g}' for s in DEGRADE_SIGMAS)} px). Pairs: {len(same)} same-person"
        f" ({len(real)} within a track), {len(other)} other-person ({len(real_other)} between faces as found)."
        f" Run: {time.perf_counter() - started:.0f} s. Command: `python bench/identity_quality.py`.",
        "",
        "Same person: two faces of one track, or a degraded face and its source (or, in the collage, another photo",
        "of its actor). Other people: faces of two tracks seen side by side, two faces of one photo, or a degraded",
        "face and such another person's face. A pair is binned by its worse face.",
        "",
        "### Faces as found (clips and photos, no degradation)",
        "",
    ]
    for feature in BINS:
        lines += binned(feature, faces, [same[k] for k in real], [other[k] for k in real_other],
                        d_same[real], d_other[real_other]) + [""]
    lines += ["### All pairs, degraded faces included", ""]
    for feature in BINS:
        lines += binned(feature, faces, same, other, d_same, d_other) + [""]
    lines += ["### Degraded faces by level: distance to their source, to the nearest other person", ""]
    nearest = nearest_other(faces, other, d_other)
    by_level: dict[str, list[int]] = {}
    for k, face in enumerate(faces):
        if face.base is not None:
            by_level.setdefault(face.level, []).append(k)
    lines += ["| level | faces | median sharpness | to its source: median | > 0.6 | nearest other: median | < 0.6 "
              "(would join another person) | faces trusted by the rule | trusted and nearer another person than 0.6 |",
              "|---|---|---|---|---|---|---|---|---|"]
    own_d = {}
    for (i, j), d in zip(same, d_same):
        for k in (i, j):
            if faces[k].base is not None:
                own_d[k] = float(d)
    for level in sorted(by_level, key=lambda s: (int(s.split("px")[0]), s)):
        ks = by_level[level]
        to_source = np.array([own_d[k] for k in ks if k in own_d])
        near = np.array([nearest[k] for k in ks if k in nearest])
        trusted = [k for k in ks if TRUST.trusted(faces[k].quality)]
        wrong = [k for k in trusted if nearest.get(k, 9.0) < THRESHOLD]
        lines.append(
            f"| {level} | {len(ks)} | {np.median([faces[k].quality.sharpness for k in ks]):.2f} | "
            f"{np.median(to_source):.2f} | {int((to_source >= THRESHOLD).sum())} | "
            f"{np.median(near) if len(near) else float('nan'):.2f} | {int((near < THRESHOLD).sum())} of {len(near)} | "
            f"{len(trusted)} | {len(wrong)} |")
    lines += ["", "### Candidate rules: joins they still allow", ""] + candidates(faces, same, other, d_same, d_other, real, found)
    lines += ["", "### The scale sharpness is measured at (quality.SHARPNESS_SCALE)", "",
              "Sharpness on the face brought to its own size but at most this many pixels; for each scale the best rule"
              " found as above:", "", "| scale (px) | best rule | faces trusted | same-person pairs kept (within a track)"
              " | faces joined to another person (as found) |", "|---|---|---|---|---|"]
    for scale in (100.0, 64.0, SHARPNESS_SCALE, 40.0):
        rescaled = [dataclasses.replace(f, quality=dataclasses.replace(
            f.quality, sharpness=chip_sharpness(f.chip, f.quality.size, scale))) for f in faces]
        best = candidates(rescaled, same, other, d_same, d_other, real, found, show=1)[4]
        cells = best.strip("|").split("|")
        lines.append(f"| {scale:g}{' **(used)**' if scale == SHARPNESS_SCALE else ''} |"
                     + "|".join(cells[:4]).replace(" **(TRUST)**", "") + "|")
    lines += ["", f"### The rule: sse.faces.quality.TRUST = {TRUST}", ""]
    trust = np.array([TRUST.trusted(f.quality) for f in faces])

    def split(pair_list, d):
        both = np.array([trust[i] and trust[j] for i, j in pair_list], dtype=bool)
        return d[both], d[~both]

    s_both, s_not = split(same, d_same)
    o_both, o_not = split(other, d_other)
    rs_both, rs_not = split([same[k] for k in real], d_same[real])
    ro_both, ro_not = split([other[k] for k in real_other], d_other[real_other])
    lines += table("pairs", [
        ("faces as found, both trusted", rs_both, ro_both),
        ("faces as found, one or both untrusted", rs_not, ro_not),
        ("all pairs, both trusted", s_both, o_both),
        ("all pairs, one or both untrusted", s_not, o_not),
    ])
    lines += ["", f"Faces trusted: {int(trust[:found].sum())} of {found} as found, "
              f"{int(trust[found:].sum())} of {len(faces) - found} degraded.", ""]
    reasons: dict[str, int] = {}
    for face in faces:
        for reason in TRUST.why_not(face.quality).split(", "):
            if reason:
                key = reason.split(" ")[0] + (" " + reason.split(" ")[1] if reason.startswith("landmark") else "")
                reasons[key] = reasons.get(key, 0) + 1
    lines.append("Untrusted faces by failed check (a face may fail several): "
                 + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ".")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
