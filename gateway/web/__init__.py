"""The operator's web dashboard served by the gateway (issue 9); see :mod:`gateway.web.router`."""

from gateway.web.router import StreamHub, hub_for, mount

__all__ = ["StreamHub", "hub_for", "mount"]
