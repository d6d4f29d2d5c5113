"""What a backbone module declares so the variant driver can build all five forms on it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from caffe.net_spec import Top

from .common import Builder, DataConfig, Feature
from .heads import HeadStyle

# (builder, data top, input channels, input size) -> the trunk's last feature map
TrunkFn = Callable[[Builder, Top, int, int], Feature]
# (builder, last feature, classes, with its own loss) -> score vector
MainHeadFn = Callable[[Builder, Feature, int, bool], Top]


@dataclass(frozen=True)
class Backbone:
    """A backbone family: its trunk, where branches attach, its release's names and defaults.

    ``taps[k]`` lists the trunk blobs whose branches give the k-score forms (the main head, when
    the backbone has one, is the k-th score). ``head_point`` moves a branch's layers to a later
    place in the prototxt (the DenseNet release writes them inside the last dense block).
    ``solver`` holds the released SolverParameter fields; snapshots go to
    ``models/{folder}/{snapshot_name}[_{variant}]_train``.
    ``original_tap``: for a backbone without a main head, the tap whose -s head is the Original
    form's classifier. ``branch_width(classes, fusion)`` is the width of a branch's scores."""

    key: str
    title: str
    folder: str
    file_base: str
    net_name: str
    released: str
    trunk: TrunkFn
    taps: dict[int, tuple[str, ...]]
    suffix: Callable[[str], str]
    style: HeadStyle
    data: DataConfig
    solver: dict
    snapshot_name: str
    main_head: MainHeadFn | None = None
    original_tap: str | None = None
    head_point: dict[str, str] = field(default_factory=dict)
    branch_width: Callable[[int, str], int] = lambda classes, fusion: classes
