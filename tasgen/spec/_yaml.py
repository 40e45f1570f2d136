"""Safe YAML reading that remembers where every key and value came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Location, Problem

# Anchors and aliases can blow a small file up exponentially ("billion laughs").
_MAX_NODES = 100_000
# A spec nests a handful of levels; PyYAML's composer recurses once per level.
_MAX_DEPTH = 32

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


@dataclass
class Site:
    """The source of one value: its key's and its value's location, and its children's."""

    value: Location
    key: Location | None = None
    block: bool = False  # a block collection starts on the line after its key
    children: dict[Any, Site] = field(default_factory=dict)

    @property
    def best(self) -> Location:
        """The location to report for the value: its key for block collections."""
        return self.key if self.block and self.key is not None else self.value

    @classmethod
    def uniform(cls, data: Any, location: Location) -> Site:
        """A site tree of ``data`` where every node sits at one location (e.g. ``--set``)."""
        site = cls(value=location, key=location)
        if isinstance(data, dict):
            site.children = {k: cls.uniform(v, location) for k, v in data.items()}
        elif isinstance(data, list):
            site.children = {i: cls.uniform(v, location) for i, v in enumerate(data)}
        return site


class _NodeError(Exception):
    def __init__(self, path: tuple, mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.path, self.mark, self.message = path, mark, message


def _tag_error(path: tuple, node: yaml.Node) -> _NodeError:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    return _NodeError(
        path,
        node.start_mark,
        f"the tag {tag!r} is not allowed in a spec (only plain YAML values are)",
    )


class YamlProblem(Exception):
    """Raised by the loader with every problem of one document."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def _loc(file: str, mark: yaml.Mark | None) -> Location:
    if mark is None:
        return Location(file)
    return Location(file, mark.line + 1, mark.column + 1)


class LocatingLoader(yaml.SafeLoader):
    """A SafeLoader that returns plain data plus a `Site` tree of start marks.

    Only the safe constructors run: a tag such as ``!!python/object`` is reported as
    a located problem, never executed. Duplicate keys, which plain PyYAML silently
    drops, are reported too.
    """

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self._problems: list[Problem] = []
        self._count = 0

    def located_document(self) -> tuple[Any, Site]:
        """Read the single document of the stream.

        Returns:
            The plain data (None for an empty file) and its site tree.

        Raises:
            YamlProblem: on a syntax error, a forbidden tag or a duplicate key.
        """
        try:
            node = self.get_single_node()
            if node is None:
                return None, Site(Location(self.file))
            data, site = self._walk(node, (), set())
        except _NodeError as err:
            self._problems.append(
                Problem.at(_loc(self.file, err.mark), _dotted(err.path), err.message)
            )
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            message = " ".join(filter(None, [err.problem, err.context and f"({err.context})"]))
            self._problems.append(Problem.at(_loc(self.file, mark), "", f"invalid YAML: {message}"))
        except yaml.YAMLError as err:
            self._problems.append(Problem.at(Location(self.file), "", f"invalid YAML: {err}"))
        except RecursionError:
            self._problems.append(
                Problem.at(Location(self.file), "", f"nested too deeply (a spec nests at most {_MAX_DEPTH} levels)")
            )
        finally:
            self.dispose()
        if self._problems:
            raise YamlProblem(self._problems)
        return data, site

    def _walk(self, node: yaml.Node, path: tuple, stack: set[int]) -> tuple[Any, Site]:
        self._count += 1
        if self._count > _MAX_NODES:
            raise _NodeError(
                path,
                node.start_mark,
                f"the spec is too large (over {_MAX_NODES} values; nested aliases?)",
            )
        if len(path) > _MAX_DEPTH:
            raise _NodeError(
                path[:_MAX_DEPTH], node.start_mark, f"nested too deeply (a spec nests at most {_MAX_DEPTH} levels)"
            )
        if id(node) in stack:
            raise _NodeError(
                path, node.start_mark, "recursive alias (a value that contains itself)"
            )
        site = Site(_loc(self.file, node.start_mark))
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path), site
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            raise _tag_error(path, node)
        site.block = not node.flow_style
        stack = stack | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, child in enumerate(node.value):
                value, site.children[i] = self._walk(child, (*path, i), stack)
                items.append(value)
            return items, site
        explicit = sum(k.tag != "tag:yaml.org,2002:merge" for k, _ in node.value)
        self.flatten_mapping(node)  # resolves `<<: *anchor` merge keys, placed first
        merged = len(node.value) - explicit
        mapping: dict[Any, Any] = {}
        written: set[Any] = set()  # keys written in this mapping (merged ones may be overridden)
        for i, (key_node, value_node) in enumerate(node.value):
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else []
            key_loc = _loc(self.file, key_node.start_mark)
            try:
                hash(key)
            except TypeError:
                self._problems.append(
                    Problem.at(key_loc, _dotted(path), "a key must be a plain value")
                )
                continue
            if i >= merged:
                if key in written:
                    first = site.children[key].key or site.value
                    self._problems.append(
                        Problem.at(
                            key_loc,
                            _dotted((*path, key)),
                            f"duplicate key (first given at line {first.line})",
                        )
                    )
                    continue
                written.add(key)
            mapping[key], child = self._walk(value_node, (*path, key), stack)
            child.key = key_loc
            site.children[key] = child
        return mapping, site

    def _scalar(self, node: yaml.ScalarNode, path: tuple) -> Any:
        try:
            return self.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as err:
            if "could not determine a constructor" in str(err.problem):
                raise _tag_error(path, node) from None
            raise _NodeError(path, node.start_mark, str(err.problem)) from None
        except (ValueError, TypeError, OverflowError) as err:
            # The safe constructors can fail on values that look typed, e.g. 2024-13-45.
            raise _NodeError(path, node.start_mark, f"cannot read {node.value!r}: {err}") from None


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def read_yaml(text: str, file: str) -> tuple[Any, Site]:
    """Parse ``text`` safely; ``file`` is the name used in locations.

    Raises:
        YamlProblem: with every problem found in the document.
    """
    try:
        loader = LocatingLoader(text, file)
    except yaml.reader.ReaderError as err:  # raised on the first read of the text
        before = text[: err.position]
        at = Location(file, before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
        raise YamlProblem(
            [Problem.at(at, "", f"invalid YAML: character {err.character:#x} is not allowed")]
        ) from None
    return loader.located_document()
