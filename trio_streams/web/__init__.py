"""The HTTP side: the runs API as a Quart-Trio extension, and the app ``serve`` runs."""

from ._app import create_app as create_app
from ._auth import TokenAuth as TokenAuth
from ._demo import DemoFailure as DemoFailure
from ._demo import DemoInput as DemoInput
from ._demo import demo_producer as demo_producer
from ._durable_routes import durable_streams_blueprint as durable_streams_blueprint
from ._errors import ApiError as ApiError
from ._extension import TrioStreams as TrioStreams
from ._producers import RegisteredProducer as RegisteredProducer
from ._token_sources import TokenSourceError as TokenSourceError
