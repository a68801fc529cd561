"""Routing rules from the configuration: which agencies receive a record type, on what terms."""

from __future__ import annotations

import functools

from ackhub.core.errors import ConfigError, FailedPrecondition, PermissionDenied
from ackhub.hub.config import RouteRecipient, Settings
from ackhub.hub.exchange.catalogue import Catalogue


class Router:
    def __init__(self, settings: Settings, catalogue: Catalogue) -> None:
        """Refuses (`ConfigError`) routes for record types the catalogue does not have."""
        problems = catalogue.route_problems(settings)
        if problems:
            raise ConfigError("the configuration", problems)
        self.catalogue = catalogue  # the schemas payloads are checked against at publish
        self._routes = {route.record_type: route for route in settings.routes}
        # Each delivery keeps its recipient's terms as JSON; serialized once per recipient of a route.
        self._terms = {id(r): r.model_dump_json() for route in settings.routes for r in route.recipients}

    def recipients(self, record_type: str, publisher: str) -> list[RouteRecipient]:
        """The recipients of a record type; refuses types without a route and publishers not allowed."""
        route = self._routes.get(record_type)
        if route is None:
            raise FailedPrecondition(
                f"no route for record type {record_type!r}; add one to the configuration",
                reason="NO_ROUTE",
                metadata={"record_type": record_type},
            )
        if route.publishers and publisher not in route.publishers:
            raise PermissionDenied(
                f"agency {publisher!r} may not publish {record_type!r}",
                reason="PUBLISHER_NOT_ALLOWED",
                metadata={"record_type": record_type, "publisher": publisher},
            )
        return list(route.recipients)

    def terms_json(self, recipient: RouteRecipient) -> str:
        """The terms of one of this router's recipients, as stored on its deliveries."""
        return self._terms.get(id(recipient)) or recipient.model_dump_json()


@functools.lru_cache(maxsize=1024)
def policy_of(json_text: str) -> RouteRecipient:
    """The route terms a delivery was created with (kept on the delivery as JSON). Deliveries of one
    route share the same text, and the settings are frozen, so parsed terms are shared too."""
    return RouteRecipient.model_validate_json(json_text)
