"""One Django project for the framework tests: ``/chat`` answers the session in force, inside a
``handler`` span of the test's tracer. This module is the project's URL configuration; Django is
imported only when a test sets it up."""

from __future__ import annotations

from typing import Any

from langfuse_otel_sessions import current_session_id

from .conftest import Traced

_TRACED: dict[str, Traced] = {}
urlpatterns: list[Any] = []


def chat(request: Any) -> Any:
    from django.http import JsonResponse

    with _TRACED["traced"].tracer.start_as_current_span("handler"):
        return JsonResponse({"session": current_session_id()})


def configure_django(traced: Traced) -> str:
    """Set Django up (once per process) to answer ``/chat`` with ``traced``'s tracer; returns
    the URL configuration to name in ``override_settings(ROOT_URLCONF=...)``, as another
    module may have set Django up first."""
    import django
    from django.conf import settings
    from django.urls import path

    _TRACED["traced"] = traced
    urlpatterns[:] = [path("chat", chat)]
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
