"""Bounded YAML reading: a file's size, nesting depth and alias expansion are checked on the event stream first.

PyYAML expands aliases as shared references, but every consumer (pydantic, the grid product) walks the expanded
tree, so a 600-byte 'billion laughs' file costs gigabytes; its composer also recurses per nesting level. The
event stream is flat, so counting on it costs the file's size, whatever the file holds.
"""

from __future__ import annotations

import yaml

MAX_FILE_BYTES = 1_000_000  # a grid or study file is a page of YAML; a megabyte is already generous
MAX_DEPTH = 50  # the deepest real file nests 4 levels
MAX_NODES = 100_000  # scalars and collections after aliases are expanded


def yaml_shape_problem(text: str) -> str | None:
    """None when the YAML text is small, shallow and its aliases expand to few nodes; else one line why not."""
    if len(text) > MAX_FILE_BYTES:
        return f"{len(text)} characters is more than a config file needs (at most {MAX_FILE_BYTES})"
    anchors: dict[str, int] = {}
    stack: list[tuple[str | None, int]] = []  # (anchor, expanded nodes so far) per open collection
    total = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels deep (line {event.start_mark.line + 1})"
            stack.append((event.anchor, 1))
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                return None  # an undefined alias: the loader reports it with its line
            anchor, size = None, anchors[event.anchor]
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        else:
            continue
        if anchor is not None:
            anchors[anchor] = size
        if stack:
            stack[-1] = (stack[-1][0], stack[-1][1] + size)
        else:
            total += size
        if size > MAX_NODES or total > MAX_NODES or (stack and stack[-1][1] > MAX_NODES):
            return f"its aliases (*name) expand to more than {MAX_NODES} values; write the values out instead"
    return None
