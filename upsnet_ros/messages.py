"""upsnet_core results and category tables -> this package's ROS messages."""
from __future__ import annotations

from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header

from upsnet_core.categories import IGNORE_INDEX, VOID_ID, CategorySet
from upsnet_ros.msg import Category, CategoryMap, PanopticInstance, PanopticInstanceArray


def instance_message(segment: dict, categories: CategorySet) -> PanopticInstance:
    """One segment dict of a :class:`~upsnet_core.modeling.PanopticResult` as a message."""
    x, y, width, height = (int(v) for v in segment["bbox"])
    return PanopticInstance(
        id=int(segment["id"]), category_id=int(segment["category_id"]),
        category_name=categories.by_id(int(segment["category_id"])).name,
        is_thing=bool(segment["isthing"]), score=float(segment["score"]),
        area=int(segment["area"]),
        bbox=RegionOfInterest(x_offset=x, y_offset=y, width=width, height=height, do_rectify=False),
        centroid_x=float(segment["centroid"][0]), centroid_y=float(segment["centroid"][1]))


def instances_message(segments: list[dict], categories: CategorySet,
                      header: Header) -> PanopticInstanceArray:
    """All segments of one result, with the input image's header."""
    return PanopticInstanceArray(header=header,
                                 instances=[instance_message(s, categories) for s in segments])


def category_map_message(categories: CategorySet, header: Header) -> CategoryMap:
    """The model's label set with the label images' special values."""
    return CategoryMap(
        header=header,
        categories=[Category(id=c.id, name=c.name, is_thing=c.isthing, color=list(c.color))
                    for c in categories],
        void_id=VOID_ID, semantic_unknown=IGNORE_INDEX)
