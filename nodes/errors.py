"""What a failed call means and what to do next, decided by the error's class alone.

Classes are recognised by LiteLLM exception names along the MRO, so this module does not
import litellm (the dry-run path stays fast) and works for subclasses LiteLLM adds later.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

ErrorClass = Literal[
    "rate_limit", "timeout", "connection", "server_error", "context_window",
    "content_policy", "auth", "not_found", "unsupported", "bad_request", "unknown",
]
Action = Literal[
    "cool_down_next", "retry", "next_larger_context", "next_other_provider",
    "mark_unusable_next", "next", "stop",
]

# First match wins; order matters where LiteLLM subclasses BadRequestError.
_BY_NAME: tuple[tuple[str, ErrorClass], ...] = (
    ("ContextWindowExceededError", "context_window"),
    ("ContentPolicyViolationError", "content_policy"),
    ("UnsupportedParamsError", "unsupported"),
    ("EndpointNotSupportedByModelError", "unsupported"),
    ("LiteLLMUnknownProvider", "unsupported"),
    ("RateLimitError", "rate_limit"),
    ("Timeout", "timeout"),
    ("APITimeoutError", "timeout"),
    ("AuthenticationError", "auth"),
    ("PermissionDeniedError", "auth"),
    ("PaymentRequiredError", "auth"),
    ("NotFoundError", "not_found"),
    ("InternalServerError", "server_error"),
    ("ServiceUnavailableError", "server_error"),
    ("BadGatewayError", "server_error"),
    ("APIConnectionError", "connection"),
    ("BadRequestError", "bad_request"),
    ("UnprocessableEntityError", "bad_request"),
)

ACTIONS: dict[ErrorClass, Action] = {
    "rate_limit": "cool_down_next",
    "timeout": "retry",
    "connection": "retry",
    "server_error": "retry",
    "context_window": "next_larger_context",
    "content_policy": "next_other_provider",
    "auth": "mark_unusable_next",
    "not_found": "mark_unusable_next",
    "unsupported": "next",
    "bad_request": "stop",
    "unknown": "next",
}

BREAKER_CLASSES: frozenset[ErrorClass] = frozenset(
    {"timeout", "connection", "server_error", "unknown"}
)
"""Failures that say the model is unwell: they count towards opening its circuit."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified failure: its class, the action it calls for, and a Retry-After if any."""

    error_class: ErrorClass
    action: Action
    retry_after_s: float | None = None

    @property
    def feeds_breaker(self) -> bool:
        """Whether this failure counts against the model's circuit."""
        return self.error_class in BREAKER_CLASSES


def classify(exc: BaseException) -> Failure:
    """Map an exception raised by a LiteLLM call to its class and action."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    error_class: ErrorClass = "unknown"
    for name, cls in _BY_NAME:
        if name in names:
            error_class = cls
            break
    if error_class in ("unknown", "bad_request") and _status(exc) >= 500:
        error_class = "server_error"
    retry_after = _retry_after(exc) if error_class == "rate_limit" else None
    return Failure(error_class, ACTIONS[error_class], retry_after)


def _status(exc: BaseException) -> int:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else 0


RETRY_AFTER_BOUNDS_S = (1.0, 3600.0)
"""A provider's Retry-After is held within these: it sets a cooldown shared by every
replica, so 0 (or less) still cools the model for a second and a huge value (a buggy or
hostile header) cannot bench it for years."""


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), when the provider
    sent a readable one, within RETRY_AFTER_BOUNDS_S. Looked for where LiteLLM's own
    reader looks: the exception's `headers`, then the response's."""
    for source in (getattr(exc, "headers", None), getattr(exc, "litellm_response_headers", None),
                   getattr(getattr(exc, "response", None), "headers", None)):
        seconds = _seconds(_header(source, "retry-after"))
        if seconds is not None:
            low, high = RETRY_AFTER_BOUNDS_S
            return min(max(seconds, low), high)
    return None


def _header(headers: object, name: str) -> object:
    """A header of httpx's Headers or of a plain dict, whatever the case of its name."""
    try:
        return next((v for k, v in headers.items() if str(k).lower() == name), None)  # type: ignore[attr-defined]
    except AttributeError:  # None, or not a mapping
        return None


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        try:  # the HTTP-date form: RFC 9110 allows either
            when = parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    return seconds if math.isfinite(seconds) else None
