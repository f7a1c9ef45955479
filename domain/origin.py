"""Where an order comes from: the demo's generated orders stay out of what learns or decides from them."""

from __future__ import annotations

from sqlalchemy import ColumnElement

from domain.models import Order

__all__ = ["SIMULATED", "real_orders"]

#: ``orders.source`` of the orders `giftrec demo simulate-uplift` generates (:mod:`domain.demo.simulation`).
SIMULATED = "simulation"


def real_orders() -> ColumnElement[bool]:
    """A filter for orders that happened: every source but the simulation.

    Training, bestsellers, next purchase, RFM, category lifetimes, the triggers, reminder drafting (gifts
    given, recent purchases, spending), purchase attribution, the manager pages and the data-change checks
    read only these; the campaign report reads every order, as it is what the simulation is for.
    """
    return Order.source != SIMULATED
