"""Deciding a create (``PUT``): pure checks both stores share.

:func:`plan_create` settles a new stream's content type and first data;
:func:`confirm_existing` decides whether a ``PUT`` on an existing stream is
an idempotent repeat or a conflict. Neither changes anything: the store
commits what they allow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ._errors import conflict
from ._headers import DEFAULT_CONTENT_TYPE, is_json
from ._stream import to_data

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._log import Data
    from ._stream import CreateRequest


class ExistingStream(Protocol):
    """What :func:`confirm_existing` reads of a stored stream."""

    @property
    def name(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def config(self) -> Any: ...
    @property
    def closed(self) -> bool: ...
    @property
    def soft_deleted(self) -> bool: ...


def plan_create(request: CreateRequest, source_content_type: str | None) -> tuple[str, Data]:
    """A new stream's content type and initial data (``source_content_type``:
    the forked stream's, for a fork).

    Raises:
        DurableStreamError: 409 when a fork names another content type than
            its source's; 400 for a body that is not valid JSON in JSON mode.
    """
    content_type = request.content_type or (
        DEFAULT_CONTENT_TYPE if source_content_type is None else source_content_type
    )
    if source_content_type is not None and content_type != source_content_type:
        raise conflict(
            "content_type_mismatch",
            f"a fork has its source's content type ({source_content_type}), not {content_type}",
        )
    return content_type, to_data(request.body, json_mode=is_json(content_type), creating=True)


def confirm_existing(
    stream: ExistingStream, request: CreateRequest, stored_config: Callable[[tuple[Any, ...]], Any]
) -> None:
    """Let a ``PUT`` on an existing stream through as an idempotent repeat.

    ``stored_config`` turns the request's configuration into the form the
    store keeps (``stream.config``).

    Raises:
        DurableStreamError: 409 if the stream was soft-deleted, or differs in
            configuration or in being closed.
    """
    if stream.soft_deleted:
        raise conflict("stream_soft_deleted", f"{stream.name!r} was deleted while forks read it")
    wanted = request.content_type or (stream.content_type if request.fork else DEFAULT_CONTENT_TYPE)
    if stream.config != stored_config(request.config(wanted)):
        raise conflict("stream_exists", f"{stream.name!r} exists with a different configuration")
    if stream.closed != request.closed:
        raise conflict(
            "stream_exists", f"{stream.name!r} exists and is {'closed' if stream.closed else 'open'}"
        )
