"""Subscription results of the simulated Unified runtime without the executor.

Every event of a subscription holds its values serialized already, so for a selection of
plain fields the result is the event with the selected fields picked out: what executing
the document gives, at a fraction of the cost, which keeps the simulator from being the
bottleneck of a 50,000-tag bench. Anything else (fragments, directives, ``__typename``)
goes through the executor.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import Any

from graphql import ExecutionResult, FieldNode, OperationDefinitionNode, SelectionSetNode

Projector = Callable[[Any], dict[str, Any]]


def projection(operation: OperationDefinitionNode) -> Projector | None:
    """A subscription's ``data`` per event, by picking the selected fields out of it, for
    a selection of plain fields (no fragments, directives or ``__typename``): the same
    result as executing it, at a fraction of the cost, since the events hold serialized
    values already. None when the selection needs the executor."""
    fields = _plain_fields(operation.selection_set)
    if fields is None or len(fields) != 1:
        return None
    ((key, _name, inner),) = fields
    if inner is None:
        return None
    return lambda event: {key: _pick(inner, event)}


_Fields = list[tuple[str, str, "_Fields | None"]]


def _plain_fields(selection_set: SelectionSetNode | None) -> _Fields | None:
    if selection_set is None:
        return None
    fields: _Fields = []
    for node in selection_set.selections:
        if not isinstance(node, FieldNode) or node.directives or node.name.value.startswith("__"):
            return None
        inner = None
        if node.selection_set is not None:
            inner = _plain_fields(node.selection_set)
            if inner is None:
                return None
        key = node.alias.value if node.alias else node.name.value
        fields.append((key, node.name.value, inner))
    return fields


def _pick(fields: _Fields, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [_pick(fields, item) for item in value]
    return {
        key: value.get(name) if inner is None else _pick(inner, value.get(name))
        for key, name, inner in fields
    }


async def projected(
    source: AsyncIterable[object], project: Projector
) -> AsyncGenerator[ExecutionResult, None]:
    """One result per event of a subscription's source, projected onto its selection."""
    try:
        async for event in source:
            yield ExecutionResult(project(event), None)
    finally:
        await source.aclose()  # type: ignore[attr-defined]
