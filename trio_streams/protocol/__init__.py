"""The HTTP protocols, framework-free: runs HTTP, Durable Streams HTTP, SSE framing.

Handlers take a parsed :class:`Request` and what they serve (a
:class:`RunsApi`, a :class:`DurableService`) and return a :class:`Response`
or a :class:`StreamingResponse`; refusals are raised (:class:`ApiError`,
:class:`~trio_streams.durable.DurableStreamError`) and rendered by
:func:`api_error_response` / :func:`render_error`. Nothing here imports a
web framework: :mod:`trio_streams.web` adapts these to Quart-Trio.
"""

from ._body import read_body as read_body
from ._ds_handlers import DurableService as DurableService
from ._ds_handlers import StreamTarget as StreamTarget
from ._ds_handlers import handle_append as handle_append
from ._ds_handlers import handle_create as handle_create
from ._ds_handlers import handle_delete as handle_delete
from ._ds_handlers import handle_head as handle_head
from ._ds_handlers import handle_read as handle_read
from ._ds_handlers import handle_stream_request as handle_stream_request
from ._ds_http import BROWSER_HEADERS as BROWSER_HEADERS
from ._ds_http import preflight as preflight
from ._ds_http import render_error as render_error
from ._ds_http import render_http_error as render_http_error
from ._errors import ApiError as ApiError
from ._errors import api_error_response as api_error_response
from ._errors import http_error_response as http_error_response
from ._messages import HeaderLookup as HeaderLookup
from ._messages import Headers as Headers
from ._messages import Query as Query
from ._messages import QueryLookup as QueryLookup
from ._messages import Request as Request
from ._messages import Response as Response
from ._messages import StreamingResponse as StreamingResponse
from ._run_streams import RunStreams as RunStreams
from ._runs_api import RunsApi as RunsApi
from ._runs_http import handle_cancel_run as handle_cancel_run
from ._runs_http import handle_get_run as handle_get_run
from ._runs_http import handle_list_runs as handle_list_runs
from ._runs_http import handle_run_events as handle_run_events
from ._runs_http import handle_start_run as handle_start_run
