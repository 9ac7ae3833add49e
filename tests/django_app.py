"""One Django project for the framework tests: ``/chat`` answers the session in force, inside a
``handler`` span of the test's tracer; a test may add views of its own. This module is the
project's URL configuration; Django is imported only when a test sets it up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langfuse_otel_sessions import current_session_id

from .conftest import Traced

_TRACED: dict[str, Traced] = {}
urlpatterns: list[Any] = []


def django_traced() -> Traced:
    """The tracing set up by the last :func:`configure_django`."""
    return _TRACED["traced"]


def chat(request: Any) -> Any:
    from django.http import JsonResponse

    with django_traced().tracer.start_as_current_span("handler"):
        return JsonResponse({"session": current_session_id()})


def configure_django(traced: Traced, **views: Callable[[Any], Any]) -> str:
    """Set Django up (once per process) to answer ``/chat`` with ``traced``'s tracer, and each
    of ``views`` at its name; returns the URL configuration to name in
    ``override_settings(ROOT_URLCONF=...)``, as another module may have set Django up first."""
    import django
    from django.conf import settings
    from django.urls import path

    _TRACED["traced"] = traced
    urlpatterns[:] = [path("chat", chat), *(path(name, view) for name, view in views.items())]
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests-only",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
        )
        django.setup()
    return __name__
