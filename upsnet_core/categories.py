"""Category metadata and the index conventions every part of the project shares.

Three numberings exist and must never be confused:

* ``category_id``: the dataset's own id (Cityscapes ``car`` = 26, COCO ``person`` = 1).
  It appears in panoptic PNG/JSON files, in the label image (``category_id * 1000 + k``)
  and in ROS messages.
* ``semantic index``: the channel of the semantic head, ``0 .. num_classes - 1``.
  Stuff classes come first (``0 .. num_stuff - 1``), thing classes after them
  (``num_stuff .. num_classes - 1``), each group in the order of the category list.
  Semantic targets use :data:`IGNORE_INDEX` for pixels that carry no label.
* ``thing label``: the class of the instance head (torchvision convention),
  ``1 .. num_things``, with ``0`` the background. Thing label ``t`` is semantic index
  ``num_stuff + t - 1``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

IGNORE_INDEX = 255
"""Semantic-target value for pixels without a label (void, padding)."""

VOID_ID = 0
"""Label-image value of pixels that belong to no segment (void and the unknown class)."""

LABEL_DIVISOR = 1000
"""Label image value = ``category_id * LABEL_DIVISOR + instance_index``."""

MAX_CATEGORY_ID = 254
"""Largest category id: the 8-bit semantic image uses 255 for unknown."""

PRESETS = ("cityscapes", "coco_panoptic")


@dataclass(frozen=True)
class Category:
    """One class of the panoptic task."""

    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int]

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "isthing": int(self.isthing),
                "color": list(self.color)}

    @staticmethod
    def from_dict(entry: dict) -> "Category":
        try:
            color = entry.get("color", (0, 0, 0))
            return Category(int(entry["id"]), str(entry["name"]), bool(entry["isthing"]),
                            (int(color[0]), int(color[1]), int(color[2])))
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"invalid category entry {entry!r}: needs id, name, isthing "
                             f"and optionally color [r, g, b] ({error})") from error


class CategorySet:
    """The ordered classes of a model: stuff first, then things (see module docstring)."""

    def __init__(self, categories: Iterable[Category]):
        categories = list(categories)
        if not categories:
            raise ValueError("a category set needs at least one category")
        ids = [c.id for c in categories]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate category ids {duplicates}")
        out_of_range = sorted(i for i in ids if not VOID_ID < i < MAX_CATEGORY_ID + 1)
        if out_of_range:
            # 0 is void in the label image; 255 is unknown in the 8-bit semantic image.
            raise ValueError(f"category ids must be in {VOID_ID + 1}..{MAX_CATEGORY_ID}; "
                             f"got {out_of_range}")
        self.stuff = [c for c in categories if not c.isthing]
        self.things = [c for c in categories if c.isthing]
        if not self.things:
            raise ValueError("a panoptic category set needs at least one thing class")
        self.ordered = self.stuff + self.things
        self._index_by_id = {c.id: i for i, c in enumerate(self.ordered)}
        self._by_name = {c.name: c for c in self.ordered}

    @property
    def num_stuff(self) -> int:
        return len(self.stuff)

    @property
    def num_things(self) -> int:
        return len(self.things)

    @property
    def num_classes(self) -> int:
        return len(self.ordered)

    def __len__(self) -> int:
        return self.num_classes

    def __iter__(self):
        return iter(self.ordered)

    def __contains__(self, category_id: int) -> bool:
        return category_id in self._index_by_id

    def by_id(self, category_id: int) -> Category:
        return self.ordered[self.semantic_index(category_id)]

    def semantic_index(self, category_id: int) -> int:
        """Semantic channel of a dataset category id."""
        try:
            return self._index_by_id[category_id]
        except KeyError:
            raise KeyError(f"category id {category_id} is not one of this model's classes "
                           f"{sorted(self._index_by_id)}") from None

    def thing_label(self, category_id: int) -> int:
        """Instance-head label (1-based) of a thing category id."""
        index = self.semantic_index(category_id)
        if index < self.num_stuff:
            raise ValueError(f"category id {category_id} ({self.ordered[index].name}) is stuff, "
                             "not a thing class")
        return index - self.num_stuff + 1

    def category_of_thing_label(self, label: int) -> Category:
        return self.things[label - 1]

    def category_ids(self) -> list[int]:
        """Dataset id per semantic index."""
        return [c.id for c in self.ordered]

    def select(self, names: Sequence[str]) -> "CategorySet":
        """The subset named by ``names``, keeping this set's order."""
        unknown = [n for n in names if n not in self._by_name]
        if unknown:
            raise ValueError(f"unknown class names {unknown}; known: {sorted(self._by_name)}")
        wanted = set(names)
        return CategorySet(c for c in self.ordered if c.name in wanted)

    def to_list(self) -> list[dict]:
        return [c.to_dict() for c in self.ordered]

    @staticmethod
    def from_list(entries: Iterable[dict]) -> "CategorySet":
        return CategorySet(Category.from_dict(e) for e in entries)

    @staticmethod
    def preset(name: str) -> "CategorySet":
        """A category table shipped with the package: ``cityscapes`` or ``coco_panoptic``."""
        if name not in PRESETS:
            raise ValueError(f"unknown category preset {name!r}; known presets: {list(PRESETS)}")
        text = resources.files("upsnet_core").joinpath("presets", f"{name}.json").read_text()
        return CategorySet.from_list(json.loads(text))

    @staticmethod
    def from_json_file(path: str | Path) -> "CategorySet":
        """Categories from a COCO-panoptic style JSON (a list, or a dict with ``categories``)."""
        data = json.loads(Path(path).read_text())
        entries = data["categories"] if isinstance(data, dict) else data
        return CategorySet.from_list(entries)

    @staticmethod
    def from_config(spec: dict | str | list) -> "CategorySet":
        """Build from a config entry.

        Accepted forms: a preset name; a list of category dicts; or a dict with one of
        ``preset`` / ``json`` / ``list`` and an optional ``classes`` list of names that
        selects a subset.
        """
        if isinstance(spec, str):
            return CategorySet.preset(spec)
        if isinstance(spec, list):
            return CategorySet.from_list(spec)
        if not isinstance(spec, dict):
            raise ValueError(f"categories must be a preset name, a list or a mapping; got {spec!r}")
        sources = [k for k in ("preset", "json", "list") if k in spec]
        if len(sources) != 1:
            raise ValueError("categories needs exactly one of 'preset', 'json', 'list'; "
                             f"got keys {sorted(spec)}")
        source = sources[0]
        if source == "preset":
            categories = CategorySet.preset(spec["preset"])
        elif source == "json":
            categories = CategorySet.from_json_file(spec["json"])
        else:
            categories = CategorySet.from_list(spec["list"])
        if "classes" in spec:
            categories = categories.select(spec["classes"])
        return categories
