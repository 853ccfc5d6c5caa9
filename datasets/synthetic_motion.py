"""Articulated stick-figure kinematics of the synthetic Chaotic World actions: pose and labels over time.

A person is a 15-joint skeleton (head, neck, hip, two arms with elbow and hand, two legs with knee
and foot) posed by limb angles in a canonical frame where the person faces +x, lengths in units of
the standing height H and y pointing down (image convention). Each action is a function of time, so
the classes differ by their motion over a second or two, not only by one frame: walking and running
differ by speed and stride frequency, waving oscillates the forearm, raising hands lifts the arms
once and holds them, kneeling lowers the body, brawlers alternate straight punches at each other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Chaotic World class ids (1-based, list_action.pbtxt) of the actions the generator renders.
CLAPPING = 9
FIGHTING = 14
INJURED = 23
KNEELING = 24
PUNCHING = 30
RAISING_HANDS = 33
RUNNING = 37
WALKING = 46
WATCHING = 47
WAVING_HANDS = 50
RENDERED_CLASSES = (CLAPPING, FIGHTING, INJURED, KNEELING, PUNCHING, RAISING_HANDS, RUNNING, WALKING,
                    WATCHING, WAVING_HANDS)

PRIMARY_ACTIONS = ("walking", "running", "watching", "kneeling", "injured", "scuffle", "brawl")
ARM_ACTIONS = ("waving", "raising", "clapping")
FIGHT_ACTIONS = ("scuffle", "brawl")

# Body proportions, in units of the standing height H.
HEAD_RADIUS = 0.075
NECK_TO_HEAD = 0.085
TORSO = 0.33
SHOULDER_DROP = 0.025
UPPER_ARM = 0.18
FOREARM = 0.17
THIGH = 0.25
SHIN = 0.25

JOINTS = ("head", "neck", "hip", "shoulder0", "elbow0", "hand0", "shoulder1", "elbow1", "hand1",
          "hip0", "knee0", "foot0", "hip1", "knee1", "foot1")
J = {name: index for index, name in enumerate(JOINTS)}

# Durations (s) of the one-off transitions.
KNEEL_SECONDS = 0.7
RAISE_SECONDS = 0.5
# Share of a brawl cycle one fighter spends punching (the other fighter punches half a cycle later).
PUNCH_SHARE = 0.4


@dataclass
class Pose:
    """A skeleton pose in the canonical frame (facing +x, y down, lengths in H).

    Limb angles are absolute, in radians from straight down, positive towards +x (forward);
    index 0 is the limb on the -x side of the body, index 1 the one on the +x side.

    Attributes:
        lean: torso angle from vertical, positive = leaning forward.
        arms: ``[[upper, lower], [upper, lower]]``.
        legs: ``[[thigh, shin], [thigh, shin]]``.
        shoulder_half: half the shoulder width (about 0.085 seen from the front, 0.025 from the side).
        hip_half: half the hip width.
        roll: rotation of the whole body about the hip (pi/2 = lying, head towards +x).
        lift: height of the lowest point above the ground (flight phase of running).
        shift: forward shift of the hip over the ground anchor (lunges).
    """

    lean: float = 0.0
    arms: list[list[float]] = field(default_factory=lambda: [[-0.12, -0.05], [0.12, 0.05]])
    legs: list[list[float]] = field(default_factory=lambda: [[-0.07, -0.07], [0.07, 0.07]])
    shoulder_half: float = 0.085
    hip_half: float = 0.045
    roll: float = 0.0
    lift: float = 0.0
    shift: float = 0.0


@dataclass(frozen=True)
class PersonSpec:
    """Everything that determines one rendered person over the whole clip.

    Attributes:
        person_id: id within the video (csv column 7).
        primary: one of PRIMARY_ACTIONS (body motion).
        arm_action: one of ARM_ACTIONS or None (overrides the arms of the primary action).
        x: anchor x (pixels, frame coordinates without camera shake) at time ``t_ref``.
        y: ground y of the feet (pixels); also sets the depth order.
        height: standing height H in pixels.
        facing: +1 facing right, -1 facing left.
        velocity: horizontal speed (pixels/s, signed) of walkers and runners.
        t_ref: time (s) at which the anchor is at ``x``.
        freq: cycle frequency (Hz) of the primary action (gait, shoves, punches).
        phase: cycle phase (rad).
        arm_freq: frequency (Hz) of waving or clapping.
        arm_phase: phase (rad) of waving or clapping.
        onset: start time (s) of kneeling.
        arm_onset: start time (s) of raising hands.
        wave_both: waving with both arms (else the +x arm only).
        role: 0 or 1 inside a fighting pair (who strikes first).
        colours: RGB of shirt, trousers, skin, hair.
    """

    person_id: int
    primary: str
    arm_action: str | None
    x: float
    y: float
    height: float
    facing: int
    velocity: float = 0.0
    t_ref: float = 0.0
    freq: float = 1.0
    phase: float = 0.0
    arm_freq: float = 2.0
    arm_phase: float = 0.0
    onset: float = 0.0
    arm_onset: float = 0.0
    wave_both: bool = False
    role: int = 0
    colours: tuple[tuple[int, int, int], ...] = ((200, 40, 40), (40, 40, 90), (220, 180, 150), (30, 20, 10))


def _smoothstep(value: float) -> float:
    value = min(max(value, 0.0), 1.0)
    return value * value * (3.0 - 2.0 * value)


def _unit(theta: float) -> np.ndarray:
    return np.array([math.sin(theta), math.cos(theta)])


def _two_link(vector: tuple[float, float], first: float, second: float, bend: int) -> list[float]:
    """Angles (upper, lower) of a two-bone chain reaching ``vector`` from its root; ``bend`` picks the elbow side."""
    distance = min(max(math.hypot(*vector), abs(first - second) + 1e-6), first + second - 1e-6)
    base = math.atan2(vector[0], vector[1])
    cos_alpha = (first * first + distance * distance - second * second) / (2.0 * first * distance)
    upper = base + bend * math.acos(min(max(cos_alpha, -1.0), 1.0))
    elbow = first * _unit(upper)
    lower = math.atan2(vector[0] - elbow[0], vector[1] - elbow[1])
    return [upper, lower]


def _lerp_pose(start: Pose, end: Pose, weight: float) -> Pose:
    def mix(a: float, b: float) -> float:
        return a + (b - a) * weight

    return Pose(
        lean=mix(start.lean, end.lean),
        arms=[[mix(a, b) for a, b in zip(sa, ea)] for sa, ea in zip(start.arms, end.arms)],
        legs=[[mix(a, b) for a, b in zip(sl, el)] for sl, el in zip(start.legs, end.legs)],
        shoulder_half=mix(start.shoulder_half, end.shoulder_half),
        hip_half=mix(start.hip_half, end.hip_half),
        roll=mix(start.roll, end.roll),
        lift=mix(start.lift, end.lift),
        shift=mix(start.shift, end.shift),
    )


# ----------------------------------------------------------------------------------------------
# Primary (body) actions.
# ----------------------------------------------------------------------------------------------


def _standing(spec: PersonSpec, t: float) -> Pose:
    # A slow idle sway keeps "still" people from being pixel-identical over the window.
    sway = 0.03 * math.sin(2.0 * math.pi * 0.4 * t + spec.phase)
    return Pose(lean=sway)


def _gait(spec: PersonSpec, t: float, amplitude: float, knee: float, arm_swing: float, elbow: float,
          lean: float, flight: float) -> Pose:
    angle = 2.0 * math.pi * spec.freq * t + spec.phase
    sin_w, cos_w = math.sin(angle), math.cos(angle)
    # A leg bends its knee while it swings forward (its thigh angle is increasing).
    thigh0, thigh1 = amplitude * sin_w, -amplitude * sin_w
    legs = [[thigh0, thigh0 - knee * max(0.0, cos_w) - 0.05], [thigh1, thigh1 - knee * max(0.0, -cos_w) - 0.05]]
    arms = [[-arm_swing * sin_w, -arm_swing * sin_w + elbow], [arm_swing * sin_w, arm_swing * sin_w + elbow]]
    return Pose(lean=lean, arms=arms, legs=legs, shoulder_half=0.025, hip_half=0.015,
                lift=flight * max(0.0, math.sin(2.0 * angle)))


def _walking(spec: PersonSpec, t: float) -> Pose:
    return _gait(spec, t, amplitude=0.42, knee=0.7, arm_swing=0.35, elbow=0.25, lean=0.06, flight=0.0)


def _running(spec: PersonSpec, t: float) -> Pose:
    return _gait(spec, t, amplitude=0.85, knee=1.7, arm_swing=0.85, elbow=1.5, lean=0.3, flight=0.05)


def _kneeling(spec: PersonSpec, t: float) -> Pose:
    kneel = Pose(lean=0.06, arms=[[0.05, 0.35], [0.2, 0.5]], legs=[[0.05, -1.5], [0.3, -1.35]])
    return _lerp_pose(_standing(spec, t), kneel, _smoothstep((t - spec.onset) / KNEEL_SECONDS))


def _injured(spec: PersonSpec, t: float) -> Pose:
    # Lying on the ground; one arm twitches slowly so the body is not a still image.
    twitch = 0.25 * math.sin(2.0 * math.pi * 0.5 * t + spec.phase)
    return Pose(lean=0.0, arms=[[2.6, 2.9 + twitch], [0.25, 0.2]], legs=[[0.08, 0.0], [-0.1, -0.12]],
                shoulder_half=0.05, hip_half=0.03, roll=math.pi / 2)


def _scuffle(spec: PersonSpec, t: float) -> Pose:
    """Grappling: both reach for the other's shoulders and shove back and forth in turn."""
    push = math.sin(2.0 * math.pi * spec.freq * t + spec.phase + math.pi * spec.role)
    reach = [1.25 + 0.3 * push, 1.5 + 0.25 * push]
    return Pose(lean=0.3 + 0.18 * push, arms=[[reach[0] - 0.15, reach[1] - 0.1], reach],
                legs=[[-0.4, -0.45], [0.3, 0.22]], shoulder_half=0.04, hip_half=0.03, shift=0.05 * push)


def punch_strength(spec: PersonSpec, t: float, role: int) -> float:
    """How far (0..1) the brawler of ``role`` is into a punch at time ``t``; roles alternate."""
    cycle = spec.freq * t + spec.phase / (2.0 * math.pi)
    local = (cycle - 0.5 * role) % 1.0
    return math.sin(math.pi * local / PUNCH_SHARE) if local < PUNCH_SHARE else 0.0


def _brawl(spec: PersonSpec, t: float) -> Pose:
    """Boxing: guard up, alternate straight punches with the other fighter, recoil when hit."""
    own = punch_strength(spec, t, spec.role)
    other = punch_strength(spec, t, 1 - spec.role)
    guard = [[0.6, 2.6], [0.75, 2.75]]
    striking = int(spec.freq * t + spec.phase / (2.0 * math.pi)) % 2
    arms = [list(guard[0]), list(guard[1])]
    arms[striking] = [a + (b - a) * own for a, b in zip(guard[striking], (1.55, 1.55))]
    bounce = 0.02 * abs(math.sin(2.0 * math.pi * 2.0 * spec.freq * t))
    return Pose(lean=0.12 + 0.15 * own - 0.3 * other, arms=arms, legs=[[-0.3, -0.38], [0.25, 0.18]],
                shoulder_half=0.04, hip_half=0.03, lift=bounce, shift=0.08 * own - 0.06 * other)


_PRIMARY = {
    "walking": _walking,
    "running": _running,
    "watching": _standing,
    "kneeling": _kneeling,
    "injured": _injured,
    "scuffle": _scuffle,
    "brawl": _brawl,
}


# ----------------------------------------------------------------------------------------------
# Arm actions (override the arms of the primary pose).
# ----------------------------------------------------------------------------------------------


def _wave(pose: Pose, spec: PersonSpec, t: float) -> None:
    # The whole raised arm sweeps from side to side, the forearm further than the upper arm, so
    # the hand travels about half the body height per half cycle.
    swing = math.sin(2.0 * math.pi * spec.arm_freq * t + spec.arm_phase)
    upper = 2.45 + 0.35 * swing
    pose.arms[1] = [upper, upper + 0.25 + 0.6 * swing]
    if spec.wave_both:
        pose.arms[0] = [-upper, -upper - 0.25 - 0.6 * swing]


def _raise(pose: Pose, spec: PersonSpec, t: float) -> None:
    weight = _smoothstep((t - spec.arm_onset) / RAISE_SECONDS)
    targets = ([-2.85, -3.0], [2.85, 3.0])
    pose.arms = [[a + (b - a) * weight for a, b in zip(arm, target)] for arm, target in zip(pose.arms, targets)]


def _clap(pose: Pose, spec: PersonSpec, t: float) -> None:
    # Seen from the front: the hands meet in front of the chest and part again.
    pose.shoulder_half = 0.085
    gap = 0.005 + 0.2 * (0.5 + 0.5 * math.cos(2.0 * math.pi * spec.arm_freq * t + spec.arm_phase))
    for side, sign in ((0, -1.0), (1, 1.0)):
        vector = (sign * (gap - pose.shoulder_half), 0.1)
        pose.arms[side] = _two_link(vector, UPPER_ARM, FOREARM, bend=int(sign))


_ARM = {"waving": _wave, "raising": _raise, "clapping": _clap}


def person_pose(spec: PersonSpec, t: float) -> Pose:
    """The pose of ``spec`` at time ``t`` (seconds from the first frame)."""
    pose = _PRIMARY[spec.primary](spec, t)
    if spec.arm_action is not None:
        _ARM[spec.arm_action](pose, spec, t)
    return pose


def person_anchor(spec: PersonSpec, t: float) -> tuple[float, float]:
    """Ground point below the hip at time ``t``, in pixels (frame coordinates, no camera shake)."""
    x = spec.x
    if spec.primary in ("walking", "running"):
        x += spec.velocity * (t - spec.t_ref)
    elif spec.primary in FIGHT_ACTIONS:
        # The pair drifts together, so the fight moves a little over the ground.
        x += 0.12 * spec.height * math.sin(2.0 * math.pi * 0.35 * t + spec.phase)
    return x, spec.y


# ----------------------------------------------------------------------------------------------
# Geometry and labels.
# ----------------------------------------------------------------------------------------------


def pose_joints(pose: Pose) -> np.ndarray:
    """Joint positions of a pose in the canonical frame, grounded.

    Args:
        pose: the pose.

    Returns:
        ``[15, 2]`` float64 (x, y) in units of H, ordered as ``JOINTS``; the ground anchor is at
        (0, 0): the lowest point of the body (head circle included) touches y = 0 unless lifted.
    """
    points = np.zeros((len(JOINTS), 2))
    hip = np.array([pose.shift, 0.0])
    up = np.array([math.sin(pose.lean), -math.cos(pose.lean)])
    neck = hip + TORSO * up
    points[J["hip"]], points[J["neck"]], points[J["head"]] = hip, neck, neck + NECK_TO_HEAD * up
    for side, (upper, lower) in enumerate(pose.arms):
        shoulder = neck + np.array([(2 * side - 1) * pose.shoulder_half, SHOULDER_DROP])
        elbow = shoulder + UPPER_ARM * _unit(upper)
        points[J[f"shoulder{side}"]], points[J[f"elbow{side}"]] = shoulder, elbow
        points[J[f"hand{side}"]] = elbow + FOREARM * _unit(lower)
    for side, (thigh, shin) in enumerate(pose.legs):
        root = hip + np.array([(2 * side - 1) * pose.hip_half, 0.0])
        knee = root + THIGH * _unit(thigh)
        points[J[f"hip{side}"]], points[J[f"knee{side}"]] = root, knee
        points[J[f"foot{side}"]] = knee + SHIN * _unit(shin)
    if pose.roll:
        cos_r, sin_r = math.cos(pose.roll), math.sin(pose.roll)
        relative = points - hip
        points = hip + relative @ np.array([[cos_r, sin_r], [-sin_r, cos_r]])
    lowest = max(points[:, 1].max(), points[J["head"], 1] + HEAD_RADIUS)
    points[:, 1] -= lowest + pose.lift
    return points


def person_joints(spec: PersonSpec, t: float) -> np.ndarray:
    """Joint positions of ``spec`` at time ``t``.

    Returns:
        ``[15, 2]`` float64 pixel coordinates (x, y) in the frame, without camera shake.
    """
    canonical = pose_joints(person_pose(spec, t))
    anchor_x, anchor_y = person_anchor(spec, t)
    pixels = canonical * spec.height
    pixels[:, 0] = anchor_x + spec.facing * pixels[:, 0]
    pixels[:, 1] += anchor_y
    return pixels


def person_labels(spec: PersonSpec, t: float) -> tuple[int, ...]:
    """Chaotic World class ids (1..50, sorted) that ``spec`` performs at time ``t``.

    A transition counts once it is half done: kneeling from mid-way down, raising hands once the
    arms are half up. Standing still (also before kneeling) is watching.
    """
    labels: set[int] = set()
    if spec.primary == "walking":
        labels.add(WALKING)
    elif spec.primary == "running":
        labels.add(RUNNING)
    elif spec.primary == "watching":
        labels.add(WATCHING)
    elif spec.primary == "kneeling":
        labels.add(KNEELING if t >= spec.onset + KNEEL_SECONDS / 2 else WATCHING)
    elif spec.primary == "injured":
        labels.add(INJURED)
    elif spec.primary == "scuffle":
        labels.add(FIGHTING)
    elif spec.primary == "brawl":
        labels.update((FIGHTING, PUNCHING))
    if spec.arm_action == "waving":
        labels.add(WAVING_HANDS)
    elif spec.arm_action == "clapping":
        labels.add(CLAPPING)
    elif spec.arm_action == "raising" and t >= spec.arm_onset + RAISE_SECONDS / 2:
        labels.add(RAISING_HANDS)
    return tuple(sorted(labels))
