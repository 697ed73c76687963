"""A gated call's arguments as params, and params (a reviewer's edit, a resumed action) back into a
call of the function."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any


def named_arguments(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name (defaults applied; ``**kwargs`` merged in, ``*args`` left out):
    the params of the proposal. TypeError when they are not JSON."""
    signature = inspect.signature(function)
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    params: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            params.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            params[name] = value
    json.dumps(params)  # TypeError now, with the function's name in the traceback, if not JSON
    return params


def call_with_params(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], params: Mapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with ``params`` in place of the proposed ones (the inverse of
    ``named_arguments``): each named argument from ``params``, else its default; keys the function
    does not name go to its ``**kwargs``; ``*args`` as called. ValueError when they do not fit."""
    signature = inspect.signature(function)
    bound = signature.bind_partial(*args, **kwargs)
    rest = dict(params)
    var_keyword = None
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue  # not part of the params: passed as called
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = name
        elif name in rest:
            bound.arguments[name] = rest.pop(name)
        elif parameter.default is not inspect.Parameter.empty:
            bound.arguments[name] = parameter.default
        else:
            raise ValueError(f"the approved params have no {name!r}, which {function.__name__} requires")
    if var_keyword is not None:
        bound.arguments[var_keyword] = rest
    elif rest:
        raise ValueError(f"{function.__name__} takes no argument {', '.join(sorted(rest))}")
    return bound.args, bound.kwargs


def jsonable(value: Any) -> Any:
    """``value`` when it is JSON, else None (an outcome's result must be JSON)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value
