"""The catalog's one service layer: what the API, the CLI and the console all call."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from sluice.catalog.admin import AdminService
from sluice.catalog.connections import DestinationsService, InstancesService, SourcesService
from sluice.catalog.core import Box, Core, utcnow
from sluice.catalog.crypto import SecretBox, load_or_create_key
from sluice.catalog.db import create_engine_for, migrate
from sluice.catalog.delivery_store import DeliveryStore
from sluice.catalog.filters import FiltersService
from sluice.catalog.functions import FunctionsService, PreviewRunner
from sluice.catalog.sessions import ConsoleSessions
from sluice.catalog.store import FunctionStore
from sluice.config import Config
from sluice.functions.run import arun_function


class Catalog:
    def __init__(
        self,
        engine: Engine,
        box: Box,
        *,
        clock: Callable[[], datetime] = utcnow,
        preview_runner: PreviewRunner = arun_function,
    ) -> None:
        self.engine = engine
        self.core = Core(engine, box, clock=clock)
        self.functions = FunctionsService(self.core, preview_runner=preview_runner)
        self.instances = InstancesService(self.core)
        self.sources = SourcesService(self.core)
        self.destinations = DestinationsService(self.core)
        self.admin = AdminService(self.core)
        self.delivery = DeliveryStore(self.core)
        self.filters = FiltersService(self.core)
        self.console_sessions = ConsoleSessions(self.core)  # shared by every API process
        self.function_store = FunctionStore(self.core)  # the functions' `store` (DESIGN §3.5)

    @classmethod
    def open(cls, config: Config, **kwargs: object) -> Catalog:
        """Connect, migrate to the latest schema, and load the secret key."""
        engine = create_engine_for(config.database_url)
        migrate(engine)
        box = SecretBox(load_or_create_key(config.data_dir, config.secret_key))
        return cls(engine, box, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.engine.dispose()
